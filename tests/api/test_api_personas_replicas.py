"""/v2/personas (with JSON Patch) and /v2/replicas (background builds with the stand-in builder)."""

from __future__ import annotations

import asyncio
import pathlib

from cvi_lab.domain.ids import DEFAULT_PERSONA_ID, DEFAULT_REPLICA_ID, is_id


async def test_persona_crud_and_json_patch(api):
    resp = await api.post("/v2/personas", json={
        "persona_name": "Ada", "system_prompt": "You are Ada.", "context": "Rocks.",
        "layers": {"llm": {"model": "smollm2"}, "stt": {"participant_pause_sensitivity": "low"}}})
    assert resp.status == 200
    p = await resp.json()
    pid = p["persona_id"]
    assert is_id(pid, "p") and p["pipeline_mode"] == "full" and p["default_replica_id"] is None
    assert p["layers"] == {"llm": {"model": "smollm2"}, "stt": {"participant_pause_sensitivity": "low"}}
    assert (await (await api.get(f"/v2/personas/{pid}")).json()) == p

    patch = [{"op": "replace", "path": "/system_prompt", "value": "You are Ada Lovelace."},
             {"op": "add", "path": "/layers/tts", "value": {"voice": "joe"}},
             {"op": "remove", "path": "/context"},
             {"op": "add", "path": "/default_replica_id", "value": DEFAULT_REPLICA_ID}]
    resp = await api.patch(f"/v2/personas/{pid}", json=patch)
    assert resp.status == 200, await resp.text()
    patched = await resp.json()
    assert patched["system_prompt"] == "You are Ada Lovelace." and patched["context"] is None
    assert patched["layers"]["tts"] == {"voice": "joe"} and patched["default_replica_id"] == DEFAULT_REPLICA_ID

    bad_patches = [
        ([{"op": "replace", "path": "/persona_id", "value": "p1"}], "cannot be applied"),
        ([{"op": "add", "path": "/colour", "value": "red"}], "unknown field 'colour'"),
        ([{"op": "replace", "path": "/pipeline_mode", "value": "half"}], "pipeline_mode"),
        ([{"op": "jump", "path": "/x"}], "cannot be applied"),
        ([{"op": "add", "path": "/system_prompt", "value": {}}], "system_prompt: Input should be a valid string"),
        ([{"op": "add", "path": "/context", "value": "c", "from": "/x"}], "does not take from"),
        ([{"op": "replace", "path": "/persona_name"}], "needs value"),
        ({"system_prompt": "x"}, "JSON Patch"),
        ([], "empty"),
    ]
    for ops, words in bad_patches:
        resp = await api.patch(f"/v2/personas/{pid}", json=ops)
        body = await resp.json()
        assert resp.status == 400 and words in body["error"], (ops, body)
    # well formed, but the stored record decides: a conflict (RFC 5789), or a replica that is not there
    for ops, status, words in [
        ([{"op": "remove", "path": "/system_prompt"}], 409, "system_prompt is required"),
        ([{"op": "test", "path": "/persona_name", "value": "Bob"}], 409, "cannot be applied"),
        ([{"op": "add", "path": "/layers/stt/participant_pause_sensitivity", "value": "max"}], 409, "superlow"),
        ([{"op": "add", "path": "/default_replica_id", "value": "r999999"}], 404, "not a known replica"),
    ]:
        resp = await api.patch(f"/v2/personas/{pid}", json=ops)
        body = await resp.json()
        assert resp.status == status and words in body["error"], (ops, body)
    assert (await (await api.get(f"/v2/personas/{pid}")).json()) == patched  # nothing lost

    listing = await (await api.get("/v2/personas", params={"limit": "1"})).json()
    assert listing["total_count"] == 2 and len(listing["data"]) == 1
    assert (await api.delete(f"/v2/personas/{pid}")).status == 204
    assert (await api.get(f"/v2/personas/{pid}")).status == 404
    assert (await api.patch(f"/v2/personas/{pid}", json=patch)).status == 404
    resp = await api.delete(f"/v2/personas/{DEFAULT_PERSONA_ID}")
    assert resp.status == 409 and "default persona" in (await resp.json())["error"]


async def test_echo_persona_needs_no_prompt(api):
    resp = await api.post("/v2/personas", json={"pipeline_mode": "echo", "persona_name": "parrot"})
    assert resp.status == 200 and (await resp.json())["system_prompt"] is None


async def wait_status(api, rid, statuses=("completed", "error")):
    await api.app["replicas"].drain(30)
    return await (await api.get(f"/v2/replicas/{rid}")).json()


async def test_replica_build_from_a_local_file_and_delete(api, tmp_path):
    face = tmp_path / "face.png"
    face.write_bytes(b"png")
    resp = await api.post("/v2/replicas", json={"replica_name": "me", "train_video_url": str(face)})
    assert resp.status == 200
    started = await resp.json()
    rid = started["replica_id"]
    assert is_id(rid, "r") and started["status"] == "started" and started["training_progress"] == "0/100"
    done = await wait_status(api, rid)
    assert done["status"] == "completed" and done["training_progress"] == "100/100" and done["error_message"] is None
    out = pathlib.Path(api.app["replicas"].out_dir(rid))
    assert (out / "portrait.txt").is_file()
    # a completed replica serves conversations
    conv = await (await api.post("/v2/conversations", json={"replica_id": rid})).json()
    assert conv["replica_id"] == rid and conv["status"] == "active"
    listing = await (await api.get("/v2/replicas")).json()
    assert listing["total_count"] == 2 and {r["replica_id"] for r in listing["data"]} == {rid, DEFAULT_REPLICA_ID}
    assert (await api.delete(f"/v2/replicas/{rid}")).status == 204
    assert not out.exists() and (await api.get(f"/v2/replicas/{rid}")).status == 404
    assert (await api.delete(f"/v2/replicas/{DEFAULT_REPLICA_ID}")).status == 409


async def test_replica_build_errors_are_reported(api, tmp_path):
    noface = tmp_path / "noface.png"
    noface.write_bytes(b"png")
    rid = (await (await api.post("/v2/replicas", json={"train_video_url": f"file://{noface}"})).json())["replica_id"]
    failed = await wait_status(api, rid)
    assert failed["status"] == "error" and "no face found" in failed["error_message"]
    resp = await api.post("/v2/conversations", json={"replica_id": rid})
    assert resp.status == 409 and "not ready" in (await resp.json())["error"]
    resp = await api.post("/v2/replicas", json={"train_video_url": str(tmp_path / "missing.mp4")})
    assert resp.status == 404 and (await resp.json())["field"] == "train_video_url"
    resp = await api.post("/v2/replicas", json={"train_video_url": "gopher://x/y"})
    assert resp.status == 400 and "scheme" in (await resp.json())["error"]


async def test_replica_download_with_size_cap_and_callback(make_client, tmp_path):
    from aiohttp import web

    from tests.helpers.webhook_receiver import WebhookReceiver

    async def video(request):
        size = int(request.match_info["size"])
        return web.Response(body=b"x" * size, content_type="video/mp4")

    src = web.Application()
    src.router.add_get("/{size}/face.mp4", video)
    runner = web.AppRunner(src)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    api = await make_client(**{"replicas.max_source_bytes": 1000})
    try:
        async with WebhookReceiver() as hooks:
            ok = await (await api.post("/v2/replicas", json={
                "train_video_url": f"http://127.0.0.1:{port}/500/face.mp4", "callback_url": hooks.url})).json()
            big = await (await api.post("/v2/replicas", json={
                "train_video_url": f"http://127.0.0.1:{port}/5000/face.mp4"})).json()
            assert (await wait_status(api, ok["replica_id"]))["status"] == "completed"
            failed = await wait_status(api, big["replica_id"])
            assert failed["status"] == "error" and "larger than the 1000 bytes" in failed["error_message"]
            await hooks.wait_for(lambda h: len(h.received) == 1)
            assert hooks.received[0]["replica_id"] == ok["replica_id"]
            assert hooks.received[0]["status"] == "completed"
    finally:
        await runner.cleanup()


async def test_default_replica_artifacts_are_built_at_first_use_and_cached(api):
    service = api.app["replicas"]
    first = await service.ensure_artifacts(DEFAULT_REPLICA_ID)
    assert first["source"] == "builtin:astronaut" and pathlib.Path(first["dir"]).is_dir()
    again = await asyncio.wait_for(service.ensure_artifacts(DEFAULT_REPLICA_ID), 5)
    assert again == first
    assert api.app["store"].get_replica(DEFAULT_REPLICA_ID)["status"] == "completed"
