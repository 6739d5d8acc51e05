"""Both vocabularies of the hosted API (SPEC §5): PALs/faces beside personas/replicas, on every route."""

from __future__ import annotations

import pytest

from cvi_lab.domain.ids import DEFAULT_PERSONA_ID, DEFAULT_REPLICA_ID, is_id


async def ok(resp, status: int = 200) -> dict:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def refused(resp, status: int = 400) -> str:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"] == body["message"]
    return body["error"]


async def test_a_pal_is_a_persona_under_todays_names(api):
    pal = await ok(await api.post("/v2/pals", json={
        "pal_name": "Ada", "default_face_id": DEFAULT_REPLICA_ID, "pipeline_mode": "echo",
        "layers": {"transport": {"transport_type": "livekit"}}}))
    pid = pal["pal_id"]
    assert is_id(pid, "p") and pal["pal_name"] == "Ada" and pal["default_face_id"] == DEFAULT_REPLICA_ID
    assert not {"persona_id", "persona_name", "default_replica_id"} & set(pal)
    assert pal["layers"]["transport"] == {"transport_type": "livekit"}
    # the same record on the older route, under the older names
    persona = await ok(await api.get(f"/v2/personas/{pid}"))
    assert persona["persona_id"] == pid and persona["persona_name"] == "Ada"
    assert persona["default_replica_id"] == DEFAULT_REPLICA_ID and "pal_id" not in persona
    assert persona["layers"]["transport"] == {"transport_type": "livekit"}
    # and the other way: a persona created with the older names reads as a PAL
    older = await ok(await api.post("/v2/personas", json={"persona_name": "Bo", "system_prompt": "Be Bo."}))
    as_pal = await ok(await api.get(f"/v2/pals/{older['persona_id']}"))
    assert as_pal["pal_name"] == "Bo" and as_pal["system_prompt"] == "Be Bo."
    listing = await ok(await api.get("/v2/pals", params={"limit": "100"}))
    assert {p["pal_id"] for p in listing["data"]} == {pid, older["persona_id"], DEFAULT_PERSONA_ID}
    assert all("persona_id" not in p for p in listing["data"])


async def test_either_name_is_taken_on_either_route(api):
    on_old = await ok(await api.post("/v2/personas", json={"pal_name": "X", "system_prompt": "s"}))
    assert on_old["persona_name"] == "X"
    on_new = await ok(await api.post("/v2/pals", json={"persona_name": "Y", "default_replica_id": DEFAULT_REPLICA_ID,
                                                       "system_prompt": "s"}))
    assert on_new["pal_name"] == "Y" and on_new["default_face_id"] == DEFAULT_REPLICA_ID
    # a null is "not given", so it does not count as the second name
    one = await ok(await api.post("/v2/pals", json={"pal_name": "Z", "persona_name": None, "system_prompt": "s"}))
    assert one["pal_name"] == "Z"


@pytest.mark.parametrize("path,body,names", [
    ("/v2/pals", {"pal_name": "A", "persona_name": "B", "system_prompt": "s"}, ("persona_name", "pal_name")),
    ("/v2/personas", {"default_face_id": DEFAULT_REPLICA_ID, "default_replica_id": "r0000", "system_prompt": "s"},
     ("default_replica_id", "default_face_id")),
    ("/v2/faces", {"face_name": "A", "replica_name": "B", "train_video_url": "builtin:astronaut"},
     ("replica_name", "face_name")),
    ("/v2/conversations", {"pal_id": DEFAULT_PERSONA_ID, "persona_id": "p1234"}, ("persona_id", "pal_id")),
    ("/v2/conversations", {"face_id": DEFAULT_REPLICA_ID, "replica_id": "r1234"}, ("replica_id", "face_id")),
])
async def test_two_names_of_one_field_are_refused(api, path, body, names):
    message = await refused(await api.post(path, json=body))
    assert all(name in message for name in names) and "give one of them" in message, message
    # even with one value: the document says "one of them", and the server does what it says
    old, new = names
    same = {**body, old: body[new]}
    assert "give one of them" in await refused(await api.post(path, json=same))


async def test_pal_routes_answer_in_todays_words(api):
    assert "pal_id 'p0000' not found" in await refused(await api.get("/v2/pals/p0000"), 404)
    assert "the default PAL" in await refused(await api.delete(f"/v2/pals/{DEFAULT_PERSONA_ID}"), 409)
    message = await refused(await api.post("/v2/pals", json={"system_prompt": "s", "default_face_id": "r0000"}), 404)
    assert "default_face_id 'r0000' is not a known face" in message
    assert "face_id 'r0000' not found" in await refused(await api.get("/v2/faces/r0000"), 404)
    assert "the default face" in await refused(await api.delete(f"/v2/faces/{DEFAULT_REPLICA_ID}"), 409)
    # the older routes keep the older words
    assert "persona_id 'p0000' not found" in await refused(await api.get("/v2/personas/p0000"), 404)


async def test_a_json_patch_on_a_pal_uses_todays_paths(api):
    pal = await ok(await api.post("/v2/pals", json={"pal_name": "A", "system_prompt": "s"}))
    patched = await ok(await api.patch(f"/v2/pals/{pal['pal_id']}", json=[
        {"op": "replace", "path": "/pal_name", "value": "B"},
        {"op": "add", "path": "/default_face_id", "value": DEFAULT_REPLICA_ID}]))
    assert patched["pal_name"] == "B" and patched["default_face_id"] == DEFAULT_REPLICA_ID
    message = await refused(await api.patch(f"/v2/pals/{pal['pal_id']}", json=[
        {"op": "replace", "path": "/persona_name", "value": "C"}]))
    assert "editable paths: /pal_name" in message
    assert (await ok(await api.get(f"/v2/personas/{pal['pal_id']}")))["persona_name"] == "B"


async def test_a_face_is_a_replica_under_todays_names(api, tmp_path):
    image = tmp_path / "face.png"
    image.write_bytes(b"png")
    face = await ok(await api.post("/v2/faces", json={"face_name": "me", "train_video_url": str(image)}))
    fid = face["face_id"]
    assert is_id(fid, "r") and face["face_name"] == "me" and "replica_id" not in face
    await api.app["replicas"].drain(30)
    assert (await ok(await api.get(f"/v2/replicas/{fid}")))["replica_name"] == "me"
    done = await ok(await api.get(f"/v2/faces/{fid}"))
    assert done["status"] == "completed" and done["face_name"] == "me"
    listing = await ok(await api.get("/v2/faces"))
    assert {f["face_id"] for f in listing["data"]} == {fid, DEFAULT_REPLICA_ID}
    assert (await api.delete(f"/v2/faces/{fid}")).status == 204
    assert (await api.get(f"/v2/replicas/{fid}")).status == 404


async def test_conversations_resolve_pal_and_face_and_carry_both_pairs(api):
    pal = await ok(await api.post("/v2/pals", json={"pal_name": "A", "pipeline_mode": "echo",
                                                    "default_face_id": DEFAULT_REPLICA_ID}))
    by_pal = await ok(await api.post("/v2/conversations", json={"pal_id": pal["pal_id"]}))
    assert by_pal["pal_id"] == by_pal["persona_id"] == pal["pal_id"]
    assert by_pal["face_id"] == by_pal["replica_id"] == DEFAULT_REPLICA_ID
    # face only -> the default PAL
    by_face = await ok(await api.post("/v2/conversations", json={"face_id": DEFAULT_REPLICA_ID, "test_mode": True}))
    assert by_face["pal_id"] == by_face["persona_id"] == DEFAULT_PERSONA_ID
    record = await ok(await api.get(f"/v2/conversations/{by_pal['conversation_id']}"))
    assert (record["pal_id"], record["face_id"]) == (pal["pal_id"], DEFAULT_REPLICA_ID)
    listing = await ok(await api.get("/v2/conversations"))
    assert all(c["pal_id"] == c["persona_id"] and c["face_id"] == c["replica_id"] for c in listing["data"])
    ended = await ok(await api.post(f"/v2/conversations/{by_pal['conversation_id']}/end"))
    assert ended["pal_id"] == pal["pal_id"]
    assert "pal_id" in await refused(await api.post("/v2/conversations", json={"pal_id": "p0000"}), 404)


async def test_a_pal_on_another_transport_is_stored_but_cannot_start_a_call_here(api):
    livekit = await ok(await api.post("/v2/pals", json={
        "pal_name": "lk", "pipeline_mode": "echo", "default_face_id": DEFAULT_REPLICA_ID,
        "layers": {"transport": {"transport_type": "livekit"}}}))
    message = await refused(await api.post("/v2/conversations", json={"pal_id": livekit["pal_id"]}))
    assert "'livekit'" in message and "supported: webrtc" in message
    assert (await ok(await api.get("/v2/conversations")))["total_count"] == 0
    ours = await ok(await api.post("/v2/pals", json={
        "pal_name": "rtc", "pipeline_mode": "echo", "default_face_id": DEFAULT_REPLICA_ID,
        "layers": {"transport": {"transport_type": "webrtc"}}}))
    assert (await ok(await api.post("/v2/conversations", json={"pal_id": ours["pal_id"]})))["status"] == "active"
    # moved onto our transport with a JSON Patch, the first PAL can start one too
    await ok(await api.patch(f"/v2/pals/{livekit['pal_id']}", json=[
        {"op": "replace", "path": "/layers/transport/transport_type", "value": "webrtc"}]))
    assert (await ok(await api.post("/v2/conversations", json={"pal_id": livekit["pal_id"]})))["status"] == "active"
    unknown = await refused(await api.post("/v2/pals", json={"pipeline_mode": "echo", "layers": {"transport": {"x": 1}}}))
    assert "unknown field 'layers.transport.x'" in unknown and "transport_type" in unknown


async def test_events_and_webhooks_name_the_replica_by_both_ids(api):
    """SPEC §5: wherever a record names a replica it carries face_id beside replica_id (and pal_id beside
    persona_id): the stored events of a conversation and every webhook payload."""
    conv = await (await api.post("/v2/conversations", json={
        "face_id": DEFAULT_REPLICA_ID, "callback_url": "http://127.0.0.1:9/hook"})).json()
    cid = conv["conversation_id"]
    await api.post(f"/v2/conversations/{cid}/end")
    record = await (await api.get(f"/v2/conversations/{cid}?verbose=true")).json()
    named = [e["properties"] for e in record["events"] if "replica_id" in e["properties"]]
    assert named and all(p["face_id"] == p["replica_id"] == DEFAULT_REPLICA_ID for p in named), record["events"]
    payloads = [d["payload"] for d in api.app["store"].deliveries(cid)]
    assert {p["event_type"] for p in payloads} >= {"system.shutdown", "application.transcription_ready"}
    assert all(p["properties"]["face_id"] == p["properties"]["replica_id"] for p in payloads), payloads
