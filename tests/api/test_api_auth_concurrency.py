"""x-api-key auth, the loopback rule, and the concurrency limit under parallel creates."""

from __future__ import annotations

import asyncio

from cvi_lab.api.app import auth_mode
from cvi_lab.domain.ids import DEFAULT_REPLICA_ID


async def test_api_key_required_when_configured(make_client):
    api = await make_client(api_keys=["k1", "k2"])
    resp = await api.get("/v2/personas")
    err = await resp.json()
    assert resp.status == 401 and "x-api-key header is required" in err["error"]
    resp = await api.get("/v2/personas", headers={"x-api-key": "nope"})
    assert resp.status == 401 and "not valid" in (await resp.json())["error"]
    for key in ("k1", "k2"):
        assert (await api.get("/v2/personas", headers={"x-api-key": key})).status == 200
    resp = await api.post("/v2/conversations", json={"replica_id": DEFAULT_REPLICA_ID}, headers={"x-api-key": "x"})
    assert resp.status == 401
    assert (await api.get("/openapi.json")).status == 200  # the description is public


def test_no_key_only_on_loopback():
    ok, msg = auth_mode({"host": "127.0.0.1", "api_keys": []})
    assert ok and "auth: NONE" in msg and "loopback" in msg
    ok, msg = auth_mode({"host": "0.0.0.0", "api_keys": []})
    assert not ok and "refusing to start" in msg and "server.api_keys" in msg
    assert auth_mode({"host": "0.0.0.0", "api_keys": ["s"]})[0]
    assert auth_mode({"host": "::1", "api_keys": []})[0] and auth_mode({"host": "localhost", "api_keys": []})[0]
    assert not auth_mode({"host": "192.168.1.5", "api_keys": []})[0]


async def test_twenty_parallel_creates_respect_the_limit(make_client):
    limit = 3
    api = await make_client(**{"limits.max_concurrent_conversations": limit})
    body = {"replica_id": DEFAULT_REPLICA_ID}
    responses = await asyncio.gather(*(api.post("/v2/conversations", json=body) for _ in range(20)))
    codes = sorted(r.status for r in responses)
    assert codes == [200] * limit + [429] * (20 - limit)
    refused = [await r.json() for r in responses if r.status == 429]
    assert all("User has reached maximum concurrent conversations" in e["error"] for e in refused)
    ok = [await r.json() for r in responses if r.status == 200]
    assert (await (await api.get("/v2/conversations", params={"status": "active"})).json())["total_count"] == limit
    assert (await (await api.get("/v2/conversations")).json())["total_count"] == limit  # refused ones left no record
    # test_mode takes no spot
    assert (await api.post("/v2/conversations", json={**body, "test_mode": True})).status == 200
    await api.post(f"/v2/conversations/{ok[0]['conversation_id']}/end")
    assert (await api.post("/v2/conversations", json=body)).status == 200
    assert (await api.post("/v2/conversations", json=body)).status == 429
    # deleting a live conversation frees its spot too
    assert (await api.delete(f"/v2/conversations/{ok[1]['conversation_id']}")).status == 204
    assert (await api.post("/v2/conversations", json=body)).status == 200
