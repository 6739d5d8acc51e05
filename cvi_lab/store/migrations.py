"""Versioned schema migrations. Append only: a released migration is never edited, a new one is added.

Each migration is a version, a name and either SQL or a function of (database, now_iso); `apply` runs the
ones not yet recorded in `schema_migrations`, each in its own transaction. The SQL is SQLite's dialect, run as is
on SQLite and translated on PostgreSQL (store/database.py): one list for both.
"""

from __future__ import annotations

import json
from typing import Callable

from cvi_lab.domain.persona import DEFAULT_PERSONA
from cvi_lab.domain.replica import DEFAULT_REPLICA
from cvi_lab.store.database import Database

INIT_SQL = """
CREATE TABLE personas (
    persona_id TEXT PRIMARY KEY,
    persona_name TEXT,
    system_prompt TEXT,
    context TEXT,
    default_replica_id TEXT,
    pipeline_mode TEXT NOT NULL DEFAULT 'full',
    layers TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE replicas (
    replica_id TEXT PRIMARY KEY,
    replica_name TEXT,
    status TEXT NOT NULL,
    training_progress TEXT NOT NULL DEFAULT '0/100',
    error_message TEXT,
    train_video_url TEXT,
    callback_url TEXT,
    artifacts TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE conversations (
    conversation_id TEXT PRIMARY KEY,
    conversation_name TEXT NOT NULL,
    status TEXT NOT NULL,
    conversation_url TEXT NOT NULL,
    replica_id TEXT NOT NULL,
    persona_id TEXT NOT NULL,
    callback_url TEXT,
    conversational_context TEXT,
    custom_greeting TEXT,
    test_mode INTEGER NOT NULL DEFAULT 0,
    require_auth INTEGER NOT NULL DEFAULT 0,
    meeting_token TEXT,
    max_participants INTEGER,
    properties TEXT NOT NULL DEFAULT '{}',
    shutdown_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    ended_at TEXT
);
CREATE INDEX conversations_status ON conversations(status, created_at);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    message_type TEXT NOT NULL,
    properties TEXT NOT NULL DEFAULT '{}',
    timestamp TEXT NOT NULL
);
CREATE INDEX events_conversation ON events(conversation_id, id);
CREATE TABLE usage (
    conversation_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    ended_at TEXT,
    seconds REAL NOT NULL DEFAULT 0
);
CREATE TABLE turn_metrics (
    conversation_id TEXT NOT NULL,
    turn_idx INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (conversation_id, turn_idx)
);
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT,
    event_type TEXT NOT NULL,
    url TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_status ON webhook_deliveries(status);
"""


KNOWLEDGE_BASE_SQL = """
CREATE TABLE documents (
    document_id TEXT PRIMARY KEY,
    document_name TEXT,
    document_url TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    error_message TEXT,
    callback_url TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    properties TEXT NOT NULL DEFAULT '{}',
    passage_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE document_passages (
    document_id TEXT NOT NULL REFERENCES documents(document_id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (document_id, idx)
);
ALTER TABLE conversations ADD COLUMN document_ids TEXT;
ALTER TABLE conversations ADD COLUMN document_tags TEXT;
ALTER TABLE conversations ADD COLUMN document_retrieval_strategy TEXT;
ALTER TABLE personas ADD COLUMN document_ids TEXT;
ALTER TABLE personas ADD COLUMN document_tags TEXT;
ALTER TABLE personas ADD COLUMN document_retrieval_strategy TEXT
"""


# host_url: the owning host's internal base URL (where another host forwards an end); NULL before this
# migration, or on a single host. The index serves each host's "my active calls" and the stale-host sweep.
HOSTS_SQL = """
ALTER TABLE conversations ADD COLUMN host_url TEXT;
CREATE INDEX conversations_host ON conversations(host_url, status)
"""


def _seed_defaults(conn: Database, now: str) -> None:
    """The default replica and persona exist after installation."""
    r = DEFAULT_REPLICA
    conn.execute(
        "INSERT OR IGNORE INTO replicas (replica_id, replica_name, status, training_progress, error_message,"
        " train_video_url, callback_url, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (r["replica_id"], r["replica_name"], r["status"], r["training_progress"], r["error_message"],
         r["train_video_url"], r["callback_url"], now, now),
    )
    p = DEFAULT_PERSONA
    conn.execute(
        "INSERT OR IGNORE INTO personas (persona_id, persona_name, system_prompt, context, default_replica_id,"
        " pipeline_mode, layers, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (p["persona_id"], p["persona_name"], p["system_prompt"], p["context"], p["default_replica_id"],
         p["pipeline_mode"], json.dumps(p["layers"]), now, now),
    )


Migration = tuple[int, str, "str | Callable[[Database, str], None]"]

MEMORIES_SQL = """
CREATE TABLE memories (
    memory_id TEXT PRIMARY KEY,
    memory_store TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    conversation_id TEXT,
    created_at TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX memories_by_store ON memories (memory_store, seq);
ALTER TABLE conversations ADD COLUMN memory_stores TEXT;
ALTER TABLE personas ADD COLUMN memory_stores TEXT
"""


MIGRATIONS: list[Migration] = [
    (1, "initial schema", INIT_SQL),
    (2, "default persona and replica", _seed_defaults),
    (3, "conversation recording path", "ALTER TABLE conversations ADD COLUMN recording_path TEXT"),
    (4, "knowledge base: documents, passages; document fields on conversations and personas", KNOWLEDGE_BASE_SQL),
    (5, "the host that runs each conversation (several hosts, one store)", HOSTS_SQL),
    (6, "memories: memory_stores on conversations and personas, the remembered sentences per tag", MEMORIES_SQL),
]


def apply(db: Database, now: str) -> list[int]:
    """Run pending migrations; returns the versions applied. Hosts sharing a database take turns
    (`migration_lock`), and each migration re-checks that no one applied it meanwhile."""
    with db.migration_lock():
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TEXT NOT NULL)"
        )
        done = {row[0] for row in db.execute("SELECT version FROM schema_migrations").fetchall()}
        known = max(v for v, _, _ in MIGRATIONS)
        if done and max(done) > known:
            raise RuntimeError(
                f"database schema version {max(done)} is newer than this cvi-lab knows ({known}); upgrade cvi-lab"
            )
        applied = []
        for version, name, step in MIGRATIONS:
            if version in done:
                continue
            with db.transaction():
                if db.execute("SELECT 1 FROM schema_migrations WHERE version = ?", [version]).fetchone():
                    continue
                if isinstance(step, str):
                    for statement in step.split(";"):
                        if statement.strip():
                            db.execute(statement)
                else:
                    step(db, now)
                db.execute("INSERT INTO schema_migrations VALUES (?,?,?)", (version, name, now))
            applied.append(version)
        return applied
