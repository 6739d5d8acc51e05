"""The store: every table's records as plain dicts ready for the domain models, on SQLite (a file, the
default) or PostgreSQL (`server.store.url`, several hosts sharing it), through store/database.py.

Calls are short and run inline on the event loop, synchronously: sub-millisecond on a local SQLite file, about
a round trip to PostgreSQL (benchmarks/bench_store.py measures both); a lock makes the rare call from a
worker thread safe. Each statement commits on its own, so a SIGKILL loses nothing written.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Iterable, Mapping

from cvi_lab.clock import Clock, SystemClock
from cvi_lab.domain.timefmt import iso
from cvi_lab.domain.documents import KNOWLEDGE_FIELDS
from cvi_lab.store import migrations
from cvi_lab.store.database import Cursor, Database, open_database
from cvi_lab.store.documents import DocumentTables
from cvi_lab.store.memories import MemoryTables

_JSON_COLUMNS = {"layers", "properties", "payload", "metrics", "artifacts", "tags", "document_ids", "document_tags",
                 "memory_stores"}
_BOOL_COLUMNS = {"test_mode", "require_auth"}
# A conversation comes with its usage ledger's seconds (0 before the call started): one join, one round trip
_USAGE_SECONDS = "COALESCE(u.seconds, 0.0) AS usage_seconds"
_WITH_USAGE = "LEFT JOIN usage u ON u.conversation_id = c.conversation_id"
_HIDDEN_COLUMNS = ("rowid",)  # PostgreSQL's spelled-out rowid (store/database.py): never part of a record

PERSONA_COLUMNS = ("persona_name", "system_prompt", "context", "default_replica_id", "pipeline_mode", "layers",
                   *KNOWLEDGE_FIELDS)
REPLICA_COLUMNS = (
    "replica_name", "status", "training_progress", "error_message", "train_video_url", "callback_url", "artifacts",
)
CONVERSATION_COLUMNS = (
    "conversation_name", "status", "conversation_url", "replica_id", "persona_id", "callback_url",
    "conversational_context", "custom_greeting", "test_mode", "require_auth", "meeting_token", "max_participants",
    "properties", "shutdown_reason", "ended_at", "recording_path", "host_url", *KNOWLEDGE_FIELDS,
)


def message_type_of(event_type: str) -> str:
    head = event_type.split(".", 1)[0]
    return head if head in ("system", "application", "conversation") else "system"


class Store(DocumentTables, MemoryTables):
    def __init__(self, location: str | pathlib.Path, clock: Clock | None = None) -> None:
        """`location`: a postgresql:// URL, or the SQLite file's path."""
        self.clock = clock or SystemClock()
        self._conn: Database = open_database(location)
        self._lock = self._conn.lock
        self.kind = self._conn.kind
        self.location = self._conn.location
        self.path: pathlib.Path | None = self._conn.path  # the SQLite file; None on PostgreSQL
        try:
            self.applied_migrations = migrations.apply(self._conn, self.now())
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def configured(cls, store: Mapping[str, Any], clock: Clock | None = None) -> "Store":
        """The store `server.store` names: PostgreSQL at `url` when one is set, else SQLite at `path`."""
        return cls(store["url"] if store["url"] else store["path"], clock)

    def now(self) -> str:
        return iso(self.clock.now())

    def close(self) -> None:
        self._conn.close()

    def schema_version(self) -> int:
        return self._exec("SELECT MAX(version) FROM schema_migrations").fetchone()[0]

    # ------------------------------------------------------------ helpers
    def _exec(self, sql: str, params: Iterable[Any] = ()) -> Cursor:
        return self._conn.execute(sql, params)

    @staticmethod
    def _row(row: Any) -> dict[str, Any] | None:
        if row is None:
            return None
        out = dict(row)
        for hidden in _HIDDEN_COLUMNS:
            out.pop(hidden, None)
        for key in list(out):
            if key in _JSON_COLUMNS and out[key] is not None:
                out[key] = json.loads(out[key])
            elif key in _BOOL_COLUMNS:
                out[key] = bool(out[key])
        return out

    @staticmethod
    def _encode(key: str, value: Any) -> Any:
        if key in _JSON_COLUMNS and value is not None:
            return json.dumps(value)
        if key in _BOOL_COLUMNS:
            return int(bool(value))
        return value

    def _insert(self, table: str, record: dict[str, Any]) -> None:
        keys = list(record)
        self._exec(
            f"INSERT INTO {table} ({', '.join(keys)}) VALUES ({', '.join('?' for _ in keys)})",
            (self._encode(k, record[k]) for k in keys),
        )

    def _update(self, table: str, key: str, ident: str, allowed: tuple[str, ...], fields: dict[str, Any]) -> bool:
        bad = set(fields) - set(allowed)
        if bad:
            raise KeyError(f"{table}: cannot update {sorted(bad)}")
        fields = {**fields, "updated_at": self.now()}
        sets = ", ".join(f"{k} = ?" for k in fields)
        cur = self._exec(
            f"UPDATE {table} SET {sets} WHERE {key} = ?", [*(self._encode(k, v) for k, v in fields.items()), ident]
        )
        return cur.rowcount > 0

    def _page(self, table: str, where: str, params: list[Any], limit: int, page: int) -> tuple[list[dict], int]:
        total = self._exec(f"SELECT COUNT(*) FROM {table} {where}", params).fetchone()[0]
        rows = self._exec(
            f"SELECT * FROM {table} {where} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
            [*params, limit, (page - 1) * limit],
        ).fetchall()
        return [self._row(r) for r in rows], total

    # ------------------------------------------------------------ personas
    def insert_persona(self, persona_id: str, document: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        self._insert("personas", {"persona_id": persona_id, **{k: document.get(k) for k in PERSONA_COLUMNS},
                                  "created_at": now, "updated_at": now})
        return self.get_persona(persona_id)

    def get_persona(self, persona_id: str) -> dict[str, Any] | None:
        return self._row(self._exec("SELECT * FROM personas WHERE persona_id = ?", [persona_id]).fetchone())

    def list_personas(self, limit: int = 10, page: int = 1) -> tuple[list[dict], int]:
        return self._page("personas", "", [], limit, page)

    def update_persona(self, persona_id: str, document: dict[str, Any]) -> dict[str, Any] | None:
        self._update("personas", "persona_id", persona_id, PERSONA_COLUMNS,
                     {k: document.get(k) for k in PERSONA_COLUMNS})
        return self.get_persona(persona_id)

    def delete_persona(self, persona_id: str) -> bool:
        return self._exec("DELETE FROM personas WHERE persona_id = ?", [persona_id]).rowcount > 0

    # ------------------------------------------------------------ replicas
    def insert_replica(self, replica_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        self._insert("replicas", {"replica_id": replica_id, **fields, "created_at": now, "updated_at": now})
        return self.get_replica(replica_id)

    def get_replica(self, replica_id: str) -> dict[str, Any] | None:
        return self._row(self._exec("SELECT * FROM replicas WHERE replica_id = ?", [replica_id]).fetchone())

    def list_replicas(self, limit: int = 10, page: int = 1) -> tuple[list[dict], int]:
        return self._page("replicas", "", [], limit, page)

    def update_replica(self, replica_id: str, **fields: Any) -> bool:
        return self._update("replicas", "replica_id", replica_id, REPLICA_COLUMNS, fields)

    def delete_replica(self, replica_id: str) -> bool:
        return self._exec("DELETE FROM replicas WHERE replica_id = ?", [replica_id]).rowcount > 0

    # ------------------------------------------------------------ conversations
    def insert_conversation(self, conversation_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        self._insert("conversations", {"conversation_id": conversation_id, **fields,
                                       "created_at": now, "updated_at": now})
        return self.get_conversation(conversation_id)

    def get_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        return self._row(self._exec(
            f"SELECT c.*, {_USAGE_SECONDS} FROM conversations c {_WITH_USAGE} WHERE c.conversation_id = ?",
            [conversation_id]).fetchone())

    def list_conversations(self, limit: int = 10, page: int = 1, status: str | None = None) -> tuple[list[dict], int]:
        """A page, newest first, each with its usage."""
        where, params = ("WHERE c.status = ?", [status]) if status else ("", [])
        total = self._exec(f"SELECT COUNT(*) FROM conversations c {where}", params).fetchone()[0]
        rows = self._exec(
            f"SELECT c.*, {_USAGE_SECONDS} FROM conversations c {_WITH_USAGE} {where}"
            " ORDER BY c.created_at DESC, c.rowid DESC"
            " LIMIT ? OFFSET ?", [*params, limit, (page - 1) * limit]).fetchall()
        return [self._row(r) for r in rows], total

    def update_conversation(self, conversation_id: str, **fields: Any) -> bool:
        return self._update("conversations", "conversation_id", conversation_id, CONVERSATION_COLUMNS, fields)

    def finish_conversation(self, conversation_id: str, shutdown_reason: str) -> bool:
        """Marks a record ended unless it already is; True for the one caller (of any host) that ended it."""
        now = self.now()
        return self._exec("UPDATE conversations SET status = 'ended', shutdown_reason = ?, ended_at = ?,"
                          " updated_at = ? WHERE conversation_id = ? AND status <> 'ended'",
                          [shutdown_reason, now, now, conversation_id]).rowcount > 0

    def active_conversations(self, host_url: str | None = None) -> list[dict[str, Any]]:
        """The active records, oldest first; with `host_url`, only those that host runs."""
        where, params = ("AND host_url = ?", [host_url]) if host_url is not None else ("", [])
        rows = self._exec(f"SELECT * FROM conversations WHERE status = 'active' {where} ORDER BY created_at, rowid",
                          params).fetchall()
        return [self._row(r) for r in rows]

    def stale_conversations(self, heartbeat_before: str) -> list[dict[str, Any]]:
        """Active records whose usage was last beaten before `heartbeat_before`: their host stopped."""
        rows = self._exec(
            "SELECT c.* FROM conversations c LEFT JOIN usage u ON u.conversation_id = c.conversation_id"
            " WHERE c.status = 'active' AND COALESCE(u.heartbeat_at, c.created_at) < ? ORDER BY c.created_at",
            [heartbeat_before]).fetchall()
        return [self._row(r) for r in rows]

    def delete_conversation(self, conversation_id: str) -> bool:
        """Removes the record, its events and turn metrics; the usage ledger row stays (it is accounting)."""
        with self._conn.transaction():
            n = self._exec("DELETE FROM conversations WHERE conversation_id = ?", [conversation_id]).rowcount
            self._exec("DELETE FROM events WHERE conversation_id = ?", [conversation_id])
            self._exec("DELETE FROM turn_metrics WHERE conversation_id = ?", [conversation_id])
        return n > 0

    # ------------------------------------------------------------ events (transcript and lifecycle)
    def add_event(
        self, conversation_id: str, event_type: str, properties: dict[str, Any] | None = None,
        message_type: str | None = None, timestamp: str | None = None,
    ) -> int:
        return self._exec(
            "INSERT INTO events (conversation_id, event_type, message_type, properties, timestamp) VALUES (?,?,?,?,?)"
            " RETURNING id", [conversation_id, event_type, message_type or message_type_of(event_type),
                              json.dumps(properties or {}), timestamp or self.now()],
        ).fetchone()[0]

    def events(self, conversation_id: str) -> list[dict[str, Any]]:
        rows = self._exec(
            "SELECT event_type, message_type, properties, timestamp FROM events WHERE conversation_id = ? ORDER BY id",
            [conversation_id],
        ).fetchall()
        return [self._row(r) for r in rows]

    # ------------------------------------------------------------ usage ledger
    def start_usage(self, conversation_id: str) -> None:
        now = self.now()
        self._exec("INSERT INTO usage (conversation_id, started_at, heartbeat_at, seconds, ended_at)"
                   " VALUES (?,?,?,0,NULL)"
                   " ON CONFLICT (conversation_id) DO UPDATE SET started_at = excluded.started_at,"
                   " heartbeat_at = excluded.heartbeat_at, seconds = 0, ended_at = NULL", [conversation_id, now, now])

    def heartbeat_usage(self, conversation_id: str, seconds: float) -> None:
        self._exec("UPDATE usage SET seconds = ?, heartbeat_at = ? WHERE conversation_id = ? AND ended_at IS NULL",
                   [float(seconds), self.now(), conversation_id])

    def end_usage(self, conversation_id: str, seconds: float | None = None) -> None:
        """Closes the ledger row; `seconds=None` keeps the last heartbeat's figure (crash recovery)."""
        now = self.now()
        if seconds is None:
            self._exec("UPDATE usage SET ended_at = heartbeat_at WHERE conversation_id = ? AND ended_at IS NULL",
                       [conversation_id])
        else:
            self._exec("UPDATE usage SET seconds = ?, heartbeat_at = ?, ended_at = ? WHERE conversation_id = ?"
                       " AND ended_at IS NULL", [float(seconds), now, now, conversation_id])

    def get_usage(self, conversation_id: str) -> dict[str, Any] | None:
        return self._row(self._exec("SELECT * FROM usage WHERE conversation_id = ?", [conversation_id]).fetchone())

    # ------------------------------------------------------------ per-turn latency metrics
    def add_turn_metrics(self, conversation_id: str, turn_idx: int, metrics: dict[str, Any]) -> None:
        self._exec("INSERT INTO turn_metrics (conversation_id, turn_idx, metrics, created_at) VALUES (?,?,?,?)"
                   " ON CONFLICT (conversation_id, turn_idx) DO UPDATE SET metrics = excluded.metrics,"
                   " created_at = excluded.created_at",
                   [conversation_id, int(turn_idx), json.dumps(metrics), self.now()])

    def turn_metrics(self, conversation_id: str) -> list[dict[str, Any]]:
        rows = self._exec("SELECT turn_idx, metrics, created_at FROM turn_metrics WHERE conversation_id = ?"
                          " ORDER BY turn_idx", [conversation_id]).fetchall()
        return [self._row(r) for r in rows]

    # ------------------------------------------------------------ webhook deliveries
    def add_delivery(self, conversation_id: str | None, event_type: str, url: str, payload: dict[str, Any]) -> int:
        now = self.now()
        return self._exec(
            "INSERT INTO webhook_deliveries (conversation_id, event_type, url, payload, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?) RETURNING id", [conversation_id, event_type, url, json.dumps(payload), now, now],
        ).fetchone()[0]

    def update_delivery(self, delivery_id: int, *, status: str, attempts: int, status_code: int | None,
                        error: str | None) -> None:
        self._exec("UPDATE webhook_deliveries SET status = ?, attempts = ?, last_status_code = ?, last_error = ?,"
                   " updated_at = ? WHERE id = ?", [status, attempts, status_code, error, self.now(), delivery_id])

    def deliveries(self, conversation_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        clauses, params = [], []
        if conversation_id is not None:
            clauses.append("conversation_id = ?")
            params.append(conversation_id)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._exec(f"SELECT * FROM webhook_deliveries {where} ORDER BY id", params).fetchall()
        return [self._row(r) for r in rows]
