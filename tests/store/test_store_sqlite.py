"""The SQLite store: WAL, versioned migrations, seeded defaults, every table's round trip."""

from __future__ import annotations

import sqlite3

import pytest

from cvi_lab.clock import FakeClock
from cvi_lab.domain.ids import DEFAULT_PERSONA_ID, DEFAULT_REPLICA_ID
from cvi_lab.store import Store, migrations


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db" / "cvi.db", FakeClock())
    yield s
    s.close()


def test_wal_migrations_and_seeded_defaults(store, tmp_path):
    assert store.journal_mode == "wal"
    assert store.applied_migrations == [v for v, _, _ in migrations.MIGRATIONS]
    assert store.schema_version() == migrations.MIGRATIONS[-1][0]
    persona = store.get_persona(DEFAULT_PERSONA_ID)
    assert persona["pipeline_mode"] == "full" and persona["system_prompt"]
    assert persona["default_replica_id"] == DEFAULT_REPLICA_ID
    assert store.get_replica(DEFAULT_REPLICA_ID)["status"] == "completed"
    store.close()
    again = Store(tmp_path / "db" / "cvi.db")
    assert again.applied_migrations == []  # nothing re-applied
    again.close()


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "cvi.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this cvi-lab knows"):
        Store(path)


def test_records_round_trip_and_paging(store):
    p = store.insert_persona("p01", {"persona_name": "A", "system_prompt": "S", "pipeline_mode": "full",
                                     "layers": {"tts": {"voice": "joe"}}})
    assert p["layers"] == {"tts": {"voice": "joe"}} and p["created_at"].endswith("Z")
    store.clock.advance(1)
    store.update_persona("p01", {**p, "context": "C"})
    assert store.get_persona("p01")["context"] == "C"
    assert store.get_persona("p01")["updated_at"] > p["updated_at"]
    rows, total = store.list_personas(limit=1, page=2)
    assert total == 2 and len(rows) == 1
    for i in range(3):
        store.clock.advance(1)
        store.insert_conversation(f"c0{i}", {"conversation_name": f"n{i}", "status": "active" if i else "ended",
                                             "conversation_url": "u", "replica_id": "r", "persona_id": "p",
                                             "properties": {"language": "english"}, "test_mode": False})
    rows, total = store.list_conversations(limit=10, page=1, status="active")
    assert total == 2 and [r["conversation_id"] for r in rows] == ["c02", "c01"]  # newest first
    assert rows[0]["properties"] == {"language": "english"} and rows[0]["test_mode"] is False
    assert store.delete_persona("p01") and store.get_persona("p01") is None


def test_events_usage_metrics_and_delete_keeps_the_ledger(store):
    store.insert_conversation("c01", {"conversation_name": "n", "status": "active", "conversation_url": "u",
                                      "replica_id": "r", "persona_id": "p", "properties": {}})
    store.add_event("c01", "conversation.utterance", {"role": "user", "speech": "hi"})
    store.add_event("c01", "system.shutdown", {"shutdown_reason": "x"})
    events = store.events("c01")
    assert [e["message_type"] for e in events] == ["conversation", "system"]
    store.start_usage("c01")
    store.heartbeat_usage("c01", 3.5)
    store.end_usage("c01")  # crash recovery: keep the heartbeat figure
    assert store.get_usage("c01")["seconds"] == 3.5 and store.get_usage("c01")["ended_at"]
    store.end_usage("c01", 99)  # already closed: unchanged
    assert store.get_conversation("c01")["usage_seconds"] == 3.5
    store.add_turn_metrics("c01", 0, {"response_latency_s": 0.6})
    store.add_turn_metrics("c01", 0, {"response_latency_s": 0.5})  # a turn's record is replaced
    assert [m["metrics"] for m in store.turn_metrics("c01")] == [{"response_latency_s": 0.5}]
    d = store.add_delivery("c01", "system.shutdown", "http://x", {"a": 1})
    store.update_delivery(d, status="failed", attempts=5, status_code=500, error="HTTP 500")
    assert store.deliveries(status="failed")[0]["payload"] == {"a": 1}
    assert store.delete_conversation("c01")
    assert store.get_conversation("c01") is None and store.events("c01") == [] and store.turn_metrics("c01") == []
    assert store.get_usage("c01")["seconds"] == 3.5  # the ledger is accounting: kept
    assert not store.delete_conversation("c01")
