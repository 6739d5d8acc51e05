"""/v2/conversations: the hosted API's paths and JSON, success paths."""

from __future__ import annotations

from cvi_lab.domain.ids import DEFAULT_PERSONA_ID, DEFAULT_REPLICA_ID, is_id


async def create(api, **body):
    resp = await api.post("/v2/conversations", json=body)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_create_get_end_delete(api, clock):
    persona = await (await api.post("/v2/personas", json={"system_prompt": "You are Ada.",
                                                          "default_replica_id": DEFAULT_REPLICA_ID})).json()
    created = await create(api, persona_id=persona["persona_id"], conversation_name="demo",
                           callback_url="http://127.0.0.1:9/hook", conversational_context="ctx",
                           properties={"language": "spanish", "apply_greenscreen": True})
    cid = created["conversation_id"]
    assert is_id(cid, "c")
    assert set(created) == {"conversation_id", "conversation_name", "status", "conversation_url", "replica_id",
                            "persona_id", "face_id", "pal_id", "callback_url", "created_at", "meeting_token"}
    assert created["status"] == "active" and created["meeting_token"] is None
    assert created["replica_id"] == DEFAULT_REPLICA_ID and created["conversation_name"] == "demo"
    assert created["conversation_url"] == f"http://127.0.0.1:8765/meet/{cid}"
    assert created["created_at"].endswith("Z")

    clock.advance(12)
    record = await (await api.get(f"/v2/conversations/{cid}")).json()
    assert record["status"] == "active" and record["properties"]["language"] == "spanish"
    assert record["properties"]["apply_greenscreen"] is True and "events" not in record
    assert record["usage_seconds"] == 12.0 and record["shutdown_reason"] is None

    ended = await (await api.post(f"/v2/conversations/{cid}/end")).json()
    assert ended["status"] == "ended" and ended["shutdown_reason"] == "end_conversation_endpoint_hit"
    again = await api.post(f"/v2/conversations/{cid}/end")  # idempotent
    assert again.status == 200 and (await again.json())["shutdown_reason"] == "end_conversation_endpoint_hit"

    verbose = await (await api.get(f"/v2/conversations/{cid}", params={"verbose": "true"})).json()
    kinds = [e["event_type"] for e in verbose["events"]]
    assert kinds == ["system.replica_joined", "system.shutdown"]
    assert verbose["events"][1]["properties"]["shutdown_reason"] == "end_conversation_endpoint_hit"

    resp = await api.delete(f"/v2/conversations/{cid}")
    assert resp.status == 204
    assert (await api.get(f"/v2/conversations/{cid}")).status == 404
    assert (await api.delete(f"/v2/conversations/{cid}")).status == 404


async def test_resolution_over_http(api):
    c = await create(api, replica_id=DEFAULT_REPLICA_ID)  # replica only: the default persona
    assert c["persona_id"] == DEFAULT_PERSONA_ID
    c = await create(api, persona_id=DEFAULT_PERSONA_ID)  # persona only: its default replica
    assert c["replica_id"] == DEFAULT_REPLICA_ID
    no_replica = await (await api.post("/v2/personas", json={"system_prompt": "x"})).json()
    resp = await api.post("/v2/conversations", json={"persona_id": no_replica["persona_id"]})
    assert resp.status == 400 and "has no default_replica_id" in (await resp.json())["error"]
    resp = await api.post("/v2/conversations", json={})
    assert resp.status == 400 and "persona_id or replica_id is required" in (await resp.json())["message"]
    resp = await api.post("/v2/conversations", json={"persona_id": "p123456"})
    assert resp.status == 404 and "'p123456'" in (await resp.json())["error"]


async def test_test_mode_and_require_auth(api):
    test = await create(api, replica_id=DEFAULT_REPLICA_ID, test_mode=True)
    assert test["status"] == "ended"
    assert (await (await api.get(f"/v2/conversations/{test['conversation_id']}")).json())["usage_seconds"] == 0
    auth = await create(api, replica_id=DEFAULT_REPLICA_ID, require_auth=True)
    assert auth["meeting_token"] and auth["conversation_url"].endswith("?t=" + auth["meeting_token"])


async def test_list_paging_and_status(api):
    # the first ends before the third starts: the shipped concurrency limit (2) holds two live calls
    ids = [(await create(api, replica_id=DEFAULT_REPLICA_ID))["conversation_id"] for _ in range(2)]
    await api.post(f"/v2/conversations/{ids[0]}/end")
    ids.append((await create(api, replica_id=DEFAULT_REPLICA_ID))["conversation_id"])
    body = await (await api.get("/v2/conversations")).json()
    assert set(body) == {"data", "total_count"} and body["total_count"] == 3
    assert [c["conversation_id"] for c in body["data"]] == ids[::-1]  # newest first
    page = await (await api.get("/v2/conversations", params={"limit": "2", "page": "2"})).json()
    assert [c["conversation_id"] for c in page["data"]] == [ids[0]] and page["total_count"] == 3
    active = await (await api.get("/v2/conversations", params={"status": "active"})).json()
    assert active["total_count"] == 2 and all(c["status"] == "active" for c in active["data"])
    ended = await (await api.get("/v2/conversations", params={"status": "ended"})).json()
    assert [c["conversation_id"] for c in ended["data"]] == [ids[0]]


async def test_timers_end_calls_through_the_api(api, clock):
    c = await create(api, replica_id=DEFAULT_REPLICA_ID, properties={"participant_absent_timeout": 10})
    clock.advance(11)
    await api.app["manager"].drain()
    record = await (await api.get(f"/v2/conversations/{c['conversation_id']}")).json()
    assert record["shutdown_reason"] == "participant_absent_timeout reached" and record["usage_seconds"] == 10.0


async def test_api_only_app_has_no_meeting_page_and_documents_its_routes(api):
    """Without the WebRTC transport installed there is no meeting page (the transport serves the real one)."""
    c = await create(api, replica_id=DEFAULT_REPLICA_ID)
    page = await api.get(f"/meet/{c['conversation_id']}")
    assert page.status == 404
    spec = await (await api.get("/openapi.json")).json()
    expected = {("post", "/v2/conversations"), ("get", "/v2/conversations"), ("get", "/v2/conversations/{conversation_id}"),
                ("get", "/v2/conversations/{conversation_id}/turns"),
                ("post", "/v2/conversations/{conversation_id}/end"), ("delete", "/v2/conversations/{conversation_id}"),
                ("post", "/v2/conversations/{conversation_id}/send-app-message"),
                ("post", "/v2/personas"), ("get", "/v2/personas"), ("get", "/v2/personas/{persona_id}"),
                ("patch", "/v2/personas/{persona_id}"), ("delete", "/v2/personas/{persona_id}"),
                ("post", "/v2/replicas"), ("get", "/v2/replicas"), ("get", "/v2/replicas/{replica_id}"),
                ("delete", "/v2/replicas/{replica_id}"),
                ("post", "/v2/pals"), ("get", "/v2/pals"), ("get", "/v2/pals/{pal_id}"),
                ("patch", "/v2/pals/{pal_id}"), ("delete", "/v2/pals/{pal_id}"),
                ("post", "/v2/faces"), ("get", "/v2/faces"), ("get", "/v2/faces/{face_id}"),
                ("delete", "/v2/faces/{face_id}"),
                ("post", "/v2/documents"), ("get", "/v2/documents"), ("get", "/v2/documents/{document_id}"),
                ("patch", "/v2/documents/{document_id}"), ("delete", "/v2/documents/{document_id}"),
                ("get", "/v2/memories"), ("get", "/v2/memories/{memory_id}"), ("delete", "/v2/memories/{memory_id}"),
                ("delete", "/v2/memory_stores/{memory_store}")}
    got = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert got == expected
    schemas = spec["components"]["schemas"]
    for name in ("ConversationCreate", "ConversationProperties", "Conversation", "TurnRecord", "PersonaCreate", "Persona",
                 "Layers", "ReplicaCreate", "Replica", "Pal", "Face", "Error"):
        assert name in schemas, name
    props = schemas["ConversationProperties"]["properties"]
    assert props["max_call_duration"]["default"] == 3600 and props["participant_absent_timeout"]["default"] == 300
    # every $ref resolves
    import json
    import re
    for ref in re.findall(r'"#/components/schemas/(\w+)"', json.dumps(spec)):
        assert ref in schemas, ref


async def test_installers_can_replace_the_meeting_page(tmp_path, clock):
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from cvi_lab.api.app import create_app
    from tests.helpers.config import make_cfg

    async def real_page(request):
        return web.Response(text="transport page")

    def install(app):
        app.router.add_get("/meet/{conversation_id}", real_page, name="meet")

    app = create_app(make_cfg(tmp_path), clock=clock, installers=[install])
    async with TestClient(TestServer(app)) as client:
        assert await (await client.get("/meet/c1234")).text() == "transport page"


async def test_nulls_mean_defaults_and_language_is_normalised(api):
    c = await create(api, replica_id=DEFAULT_REPLICA_ID, persona_id=None, custom_greeting=None, callback_url=None,
                     properties={"language": "Spanish", "max_call_duration": None})
    record = await (await api.get(f"/v2/conversations/{c['conversation_id']}")).json()
    assert record["custom_greeting"] == "Hey there, how's it going? What can I do for you today?"
    assert record["properties"]["language"] == "spanish" and record["properties"]["max_call_duration"] == 3600
    resp = await api.post("/v2/conversations", json={"replica_id": DEFAULT_REPLICA_ID, "bogus": None})
    assert resp.status == 400 and "unknown field 'bogus'" in (await resp.json())["error"]


async def test_public_url_shapes_the_conversation_url(make_client):
    api = await make_client(public_url="https://cvi.example.org/")
    c = await create(api, replica_id=DEFAULT_REPLICA_ID)
    assert c["conversation_url"] == f"https://cvi.example.org/meet/{c['conversation_id']}"


def test_the_configured_builder_is_the_real_one_and_importable():
    from cvi_lab.calls.replicas import load_object
    from cvi_lab.config import STAGE_GROUPS
    from cvi_lab.config import compose as compose_config

    cfg = compose_config([f"~{g}" for g in STAGE_GROUPS])
    builder = load_object(cfg.server.replica_builder)
    assert callable(builder) and builder.__module__ == "cvi_lab.stages.avatar.replica_builder"


async def test_transport_installer_mounts_the_meeting_routes(tmp_path, clock):
    from aiohttp.test_utils import TestClient, TestServer

    from cvi_lab.api.app import create_app
    from cvi_lab.api.plugins import install_transport
    from tests.helpers.config import make_cfg

    app = create_app(make_cfg(tmp_path), clock=clock, installers=[install_transport])
    async with TestClient(TestServer(app)) as client:
        c = await (await client.post("/v2/conversations", json={"replica_id": DEFAULT_REPLICA_ID})).json()
        page = await client.get(f"/meet/{c['conversation_id']}")
        # no runtime is registered here, so the call has no endpoint: the transport's page says it is not live
        assert page.status == 404 and "text/html" in page.headers["Content-Type"]
        asset = await client.get("/meet-assets/meeting.js")
        assert asset.status == 200  # the transport's routes are mounted
        ended = await client.post(f"/v2/conversations/{c['conversation_id']}/end")
        assert ended.status == 200


async def test_turn_metrics_endpoint(api):
    c = await create(api, replica_id=DEFAULT_REPLICA_ID)
    cid = c["conversation_id"]
    empty = await api.get(f"/v2/conversations/{cid}/turns")
    assert empty.status == 200 and await empty.json() == {"data": [], "total_count": 0}
    store = api.app["store"]
    store.add_turn_metrics(cid, 2, {"response_latency_ms": 640.0, "llm_tokens": 12})
    store.add_turn_metrics(cid, 1, {"response_latency_ms": 580.5})
    body = await (await api.get(f"/v2/conversations/{cid}/turns")).json()
    assert body["total_count"] == 2 and [t["turn_idx"] for t in body["data"]] == [1, 2]
    assert body["data"][1]["metrics"] == {"response_latency_ms": 640.0, "llm_tokens": 12}
    assert all(set(t) == {"turn_idx", "metrics", "created_at"} and t["created_at"] for t in body["data"])
    missing = await api.get("/v2/conversations/c_doesnotexist/turns")
    assert missing.status == 404 and "not found" in (await missing.json())["error"]
    spec = await (await api.get("/openapi.json")).json()
    op = spec["paths"]["/v2/conversations/{conversation_id}/turns"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["data"]["items"] == {
        "$ref": "#/components/schemas/TurnRecord"}
