"""Persistence across SIGKILL: a real server process is killed mid-conversation and restarted on the same home
and store, on both backends (each statement commits on its own: what was written before the kill is there)."""

from __future__ import annotations

import signal
import time

import aiohttp
import pytest

from cvi_lab.store.database import open_database

from tests.helpers.config import STANDIN_BUILDER
from tests.helpers.server_process import ServerProcess

OVERRIDES = ("server.usage.heartbeat_s=0.2", "server.runtimes=[tests.helpers.scripted_runtime.factory]",
             f"server.replica_builder={STANDIN_BUILDER}")


def persisted_usage(location, cid) -> float:
    db = open_database(location)
    try:
        row = db.execute("SELECT seconds FROM usage WHERE conversation_id = ?", [cid]).fetchone()
        return row[0] if row else 0.0
    finally:
        db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def server_store(request, tmp_path) -> tuple[str, tuple[str, ...]]:
    """(where the server's store is, the overrides that put it there)."""
    if request.param == "sqlite":
        return str(tmp_path / "home" / "cvi-lab.db"), ()
    url = request.getfixturevalue("pg_cluster").new_database()
    return url, (f"server.store.url={url}",)


async def test_sigkill_mid_conversation_then_restart(tmp_path, server_store):
    home = tmp_path / "home"
    db, store_overrides = server_store
    overrides = (*OVERRIDES, *store_overrides)
    with ServerProcess(home, *overrides) as first:
        first.wait_ready()
        async with aiohttp.ClientSession(first.base) as http:
            persona = await (await http.post("/v2/personas", json={
                "system_prompt": "You are Ada.", "default_replica_id": "rdefa0017"})).json()
            face = tmp_path / "face.png"
            face.write_bytes(b"png")
            replica = await (await http.post("/v2/replicas", json={"train_video_url": str(face)})).json()
            live = await (await http.post("/v2/conversations", json={
                "persona_id": persona["persona_id"], "conversational_context": "Ctx."})).json()
            test = await (await http.post("/v2/conversations", json={
                "persona_id": persona["persona_id"], "test_mode": True})).json()
        assert live["status"] == "active"
        cid = live["conversation_id"]
        deadline = time.monotonic() + 60
        while persisted_usage(db, cid) < 0.2 and time.monotonic() < deadline:  # at least one heartbeat stored
            time.sleep(0.05)
        before_kill = persisted_usage(db, cid)
        assert before_kill >= 0.2
        first.stop(signal.SIGKILL)

    with ServerProcess(home, *overrides) as second:
        second.wait_ready()
        async with aiohttp.ClientSession(second.base) as http:
            rec = await (await http.get(f"/v2/conversations/{cid}", params={"verbose": "true"})).json()
            assert rec["status"] == "ended" and rec["shutdown_reason"] == "server_restart"
            assert rec["usage_seconds"] >= round(before_kill, 3) - 0.001  # usage up to the last heartbeat
            kinds = [e["event_type"] for e in rec["events"]]
            assert kinds[:3] == ["conversation.utterance", "conversation.utterance", "system.replica_joined"]
            assert kinds[-1] == "system.shutdown"
            speech = [e["properties"]["speech"] for e in rec["events"] if e["event_type"] == "conversation.utterance"]
            assert speech == ["Hey there, how's it going? What can I do for you today?", "What is a replica?"]
            assert (await http.get(f"/v2/personas/{persona['persona_id']}")).status == 200
            assert (await (await http.get(f"/v2/replicas/{replica['replica_id']}")).json())["status"] in (
                "started", "completed", "error")
            assert (await (await http.get(f"/v2/conversations/{test['conversation_id']}")).json())["status"] == "ended"
            listing = await (await http.get("/v2/conversations")).json()
            assert listing["total_count"] == 2
            # the restarted server works normally and frees the orphan's spot
            again = await http.post("/v2/conversations", json={"persona_id": persona["persona_id"]})
            assert again.status == 200
        assert second.stop(signal.SIGTERM) == 0
        assert "resolved 1 conversation(s) left active by a previous run" in second.output()
        assert "ending live conversations" in second.output()
    conn = open_database(db)
    assert conn.execute("SELECT COUNT(*) FROM turn_metrics WHERE conversation_id = ?", [cid]).fetchone()[0] == 1
    reasons = dict(conn.execute("SELECT conversation_id, shutdown_reason FROM conversations").fetchall())
    assert reasons[cid] == "server_restart" and "server_shutdown" in reasons.values()
    conn.close()
