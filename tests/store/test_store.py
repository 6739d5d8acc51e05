"""The store on both backends (conftest.store_location): versioned migrations, seeded defaults, every table's
round trip, and two processes writing at once; SQLite's WAL."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from cvi_lab.clock import FakeClock
from cvi_lab.domain.ids import DEFAULT_PERSONA_ID, DEFAULT_REPLICA_ID
from cvi_lab.store import Store, migrations
from cvi_lab.store.database import open_database, to_postgres
from tests.helpers.server_process import REPO, env


@pytest.fixture
def store(store_location):
    s = Store(store_location, FakeClock())
    yield s
    s.close()


def test_migrations_and_seeded_defaults(store, store_location):
    assert store.applied_migrations == [v for v, _, _ in migrations.MIGRATIONS]
    assert store.schema_version() == migrations.MIGRATIONS[-1][0]
    persona = store.get_persona(DEFAULT_PERSONA_ID)
    assert persona["pipeline_mode"] == "full" and persona["system_prompt"]
    assert persona["default_replica_id"] == DEFAULT_REPLICA_ID
    assert store.get_replica(DEFAULT_REPLICA_ID)["status"] == "completed"
    assert "rowid" not in persona  # PostgreSQL's spelled-out rowid stays inside the store
    store.close()
    again = Store(store_location)
    assert again.applied_migrations == []  # nothing re-applied
    again.close()


def test_sqlite_runs_in_wal_mode(tmp_path):
    Store(tmp_path / "cvi.db").close()
    conn = sqlite3.connect(tmp_path / "cvi.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_newer_schema_is_refused(store_location):
    Store(store_location).close()
    db = open_database(store_location)
    db.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    db.close()
    with pytest.raises(RuntimeError, match="newer than this cvi-lab knows"):
        Store(store_location)


def test_the_postgres_dialect_is_one_translation_of_the_sqlite_sql():
    assert to_postgres("SELECT * FROM t WHERE a = ? AND b LIKE '5%'") == "SELECT * FROM t WHERE a = %s AND b LIKE '5%%'"
    assert to_postgres("INSERT OR IGNORE INTO t (a) VALUES (?)") == (
        "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING")
    assert to_postgres("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, s REAL\n)") == (
        "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, s DOUBLE PRECISION, rowid BIGSERIAL)")
    assert to_postgres("SELECT 1 FROM json_each(documents.tags) WHERE value IN (?)") == (
        "SELECT 1 FROM json_array_elements_text(documents.tags::json) AS json_each(value) WHERE value IN (%s)")
    assert to_postgres("BEGIN IMMEDIATE") == "BEGIN"


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


def test_two_processes_writing_at_once_lose_nothing(store_location):
    """Two writers start together on a new database (both migrate it) and interleave inserts and updates."""
    n = 60
    writers = [subprocess.Popen([sys.executable, "-m", "tests.store.writer", store_location, tag, str(n)],
                                cwd=REPO, env=env(), stderr=subprocess.PIPE) for tag in ("a", "b")]
    for w in writers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err.decode()
    store = Store(store_location)
    try:
        assert store.applied_migrations == []
        _, total = store.list_conversations(limit=1, page=1)
        assert total == 2 * n
        shared = store.events("shared")
        for tag in ("a", "b"):  # each writer's events all there, in its own order
            assert [e["properties"]["i"] for e in shared if e["properties"]["writer"] == tag] == list(range(n))
            assert all(store.events(f"c{tag}{i:04d}") for i in range(n))
        assert store.get_conversation("ca0007")["properties"] == {"i": 7}
    finally:
        store.close()


def test_documents_tags_and_passages(store):
    """The knowledge base's queries: json_each over tags, passages replaced in one transaction, cascade."""
    store.insert_document("d01", {"document_name": "a", "document_url": "u", "status": "ready", "tags": ["x", "y"]})
    store.clock.advance(1)
    store.insert_document("d02", {"document_name": "b", "document_url": "u", "status": "processing", "tags": ["x"]})
    assert store.replace_passages("d01", ["one", "two"]) == 2
    assert store.replace_passages("d01", ["three"]) == 1 and store.replace_passages("d02", []) == 0
    assert store.passages(["d01", "d02"]) == [("d01", 0, "three")]
    assert store.ready_document_ids([], ["x"]) == ["d01"]  # d02 is not ready
    rows, total = store.list_documents(tags=["x"])
    assert total == 2 and [r["document_id"] for r in rows] == ["d02", "d01"]
    assert store.list_documents(tags=["nope"])[1] == 0
    assert store.delete_document("d01") and store.passages(["d01"]) == []
