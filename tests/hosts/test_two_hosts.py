"""Two cvi-lab hosts on loopback sharing one PostgreSQL database: each lists, gets and ends the other's calls,
`conversation_url` names the host that runs the call, concurrency limits are per host, and a host that is gone
has its calls ended rather than left live."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from cvi_lab.calls.hosts import HOST_KEY_HEADER
from cvi_lab.clock import FakeClock
from cvi_lab.harness.server import InProcessServer, loopback_config
from cvi_lab.store import Store
from tests.helpers.config import make_cfg
from tests.helpers.quiet_runtime import QuietRuntime
from tests.helpers.server_process import free_port

KEY = "hosts-secret"


class RecordingRuntime(QuietRuntime):
    """A runtime that only says when it stopped (the engine is not what these tests are about)."""

    def __init__(self, stops: list[tuple[str, str]], conversation_id: str) -> None:
        self.stops, self.conversation_id = stops, conversation_id

    async def start(self) -> None:
        return None

    async def stop(self, reason: str) -> None:
        self.stops.append((self.conversation_id, reason))


@pytest.fixture
async def hosts(pg_cluster, tmp_path):
    url = pg_cluster.new_database()
    base = make_cfg(tmp_path / "unused")
    running, stops = [], {"a": [], "b": []}
    for name in ("a", "b"):
        cfg = loopback_config(base, tmp_path / name, **{"store.url": url, "hosts.key": KEY,
                                                         "hosts.stale_after_s": 5, "usage.heartbeat_s": 0.2,
                                                         "limits.max_concurrent_conversations": 1})
        factory = lambda call, room, cfg, log=stops[name]: RecordingRuntime(log, call.conversation_id)  # noqa: E731
        running.append(await InProcessServer(cfg, runtime_factories=[factory]).start())
    yield running[0], running[1], stops, url
    for srv in running:
        await srv.stop()


async def test_either_host_lists_gets_and_ends_the_others_call(hosts):
    a, b, stops, _ = hosts
    conv = await a.api("POST", "/v2/conversations", {"persona_id": "pdefa0017"})
    cid = conv["conversation_id"]
    assert conv["conversation_url"] == f"{a.base}/meet/{cid}" and a.base != b.base  # names the host running it
    listing = await b.api("GET", "/v2/conversations")
    assert [c["conversation_id"] for c in listing["data"]] == [cid]
    on_a, on_b = await a.api("GET", f"/v2/conversations/{cid}"), await b.api("GET", f"/v2/conversations/{cid}")
    assert on_b["status"] == "active"
    assert {**on_a, "usage_seconds": 0} == {**on_b, "usage_seconds": 0}  # one record (A adds live usage)

    # limits are per host: A holds one call, B still takes its own
    status, body = await a.api("POST", "/v2/conversations", {"persona_id": "pdefa0017"}, ok=False)
    assert status == 429 and "maximum concurrent conversations" in body["error"]
    other = await b.api("POST", "/v2/conversations", {"persona_id": "pdefa0017"})
    assert other["conversation_url"].startswith(b.base)

    ended = await b.api("POST", f"/v2/conversations/{cid}/end")
    assert ended["status"] == "ended" and ended["shutdown_reason"] == "end_conversation_endpoint_hit"
    assert stops["a"] == [(cid, "end_conversation_endpoint_hit")] and stops["b"] == []  # stopped on A, by A
    assert a.app["manager"].call(cid) is None and b.app["manager"].call(other["conversation_id"]) is not None
    assert (await a.api("GET", f"/v2/conversations/{cid}"))["status"] == "ended"
    events = (await b.api("GET", f"/v2/conversations/{cid}?verbose=true"))["events"]
    assert [e["event_type"] for e in events].count("system.shutdown") == 1
    # the spot on A is free again; A deletes B's live call: ended there first
    await a.api("POST", "/v2/conversations", {"persona_id": "pdefa0017"})
    status, _ = await a.api("DELETE", f"/v2/conversations/{other['conversation_id']}", ok=False)
    assert status == 204 and stops["b"] == [(other["conversation_id"], "conversation_deleted")]


async def test_the_internal_end_takes_only_the_hosts_key(hosts, tmp_path):
    a, _, stops, url = hosts
    cid = (await a.api("POST", "/v2/conversations", {"persona_id": "pdefa0017"}))["conversation_id"]
    stranger_cfg = loopback_config(make_cfg(tmp_path / "unused"), tmp_path / "c",
                                   **{"store.url": url, "hosts.key": "not-the-key"})
    async with InProcessServer(stranger_cfg) as stranger:  # shares the store, not the key: refused, call stays
        status, body = await stranger.api("POST", f"/v2/conversations/{cid}/end", ok=False)
        assert status == 503 and "server.hosts.key" in body["error"]
    assert stops["a"] == [] and a.app["manager"].call(cid) is not None
    async with a.http.post(f"/internal/conversations/{cid}/end", json={"shutdown_reason": "server_shutdown"},
                           headers={HOST_KEY_HEADER: "wrong"}) as resp:
        assert resp.status == 401 and HOST_KEY_HEADER in (await resp.json())["error"]
    async with a.http.post(f"/internal/conversations/{cid}/end", json={"shutdown_reason": "bored"},
                           headers={HOST_KEY_HEADER: KEY}) as resp:
        assert resp.status == 400 and "shutdown_reason" in (await resp.json())["error"]
    assert (await a.api("GET", f"/v2/conversations/{cid}"))["status"] == "active"
    # a forwarded end that reaches a host not running the call ends the record there, never forwards again
    _record_of_a_gone_host(url, "cgone0003", f"http://127.0.0.1:{free_port()}", datetime.now(timezone.utc))
    async with a.http.post("/internal/conversations/cgone0003/end", json={"shutdown_reason": "server_shutdown"},
                           headers={HOST_KEY_HEADER: KEY}) as resp:
        assert resp.status == 200 and (await resp.json())["shutdown_reason"] == "server_shutdown"


def _record_of_a_gone_host(url: str, cid: str, host_url: str, beaten_at: datetime) -> None:
    store = Store(url, FakeClock(beaten_at))
    store.insert_conversation(cid, {"conversation_name": cid, "status": "active", "conversation_url": "u",
                                    "replica_id": "rdefa0017", "persona_id": "pdefa0017", "properties": {},
                                    "custom_greeting": "Hi.",
                                    "host_url": host_url})
    store.start_usage(cid)
    store.close()


async def test_a_host_that_is_gone_has_its_calls_ended_not_left_live(hosts):
    a, b, _, url = hosts
    nobody = f"http://127.0.0.1:{free_port()}"
    now = datetime.now(timezone.utc)
    _record_of_a_gone_host(url, "cgone0001", nobody, now)  # just beaten, but nobody listens there
    ended = await b.api("POST", "/v2/conversations/cgone0001/end")
    assert ended["status"] == "ended" and ended["shutdown_reason"] == "server_restart"
    _record_of_a_gone_host(url, "cgone0002", nobody, now - timedelta(minutes=5))  # its host stopped beating
    deadline = asyncio.get_running_loop().time() + 30
    while (await a.api("GET", "/v2/conversations/cgone0002"))["status"] == "active":
        assert asyncio.get_running_loop().time() < deadline, "no host swept the stale call"
        await asyncio.sleep(0.1)
    events = (await a.api("GET", "/v2/conversations/cgone0002?verbose=true"))["events"]
    assert [e["event_type"] for e in events] == ["system.shutdown"]  # one host won the sweep
