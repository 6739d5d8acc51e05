"""The SQLite store: one connection, WAL mode, autocommit per statement so a SIGKILL loses nothing written.

Calls are short and run inline on the event loop (sub-millisecond on a local file); a lock makes the rare
call from a worker thread safe. Records come back as plain dicts ready for the domain models.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
import threading
from typing import Any, Iterable

from cvi_lab.clock import Clock, SystemClock
from cvi_lab.domain.timefmt import iso
from cvi_lab.domain.documents import KNOWLEDGE_FIELDS
from cvi_lab.store import migrations
from cvi_lab.store.documents import DocumentTables
from cvi_lab.store.memories import MemoryTables

_JSON_COLUMNS = {"layers", "properties", "payload", "metrics", "artifacts", "tags", "document_ids", "document_tags",
                 "memory_stores"}
_BOOL_COLUMNS = {"test_mode", "require_auth"}

PERSONA_COLUMNS = ("persona_name", "system_prompt", "context", "default_replica_id", "pipeline_mode", "layers",
                   *KNOWLEDGE_FIELDS)
REPLICA_COLUMNS = (
    "replica_name", "status", "training_progress", "error_message", "train_video_url", "callback_url", "artifacts",
)
CONVERSATION_COLUMNS = (
    "conversation_name", "status", "conversation_url", "replica_id", "persona_id", "callback_url",
    "conversational_context", "custom_greeting", "test_mode", "require_auth", "meeting_token", "max_participants",
    "properties", "shutdown_reason", "ended_at", "recording_path", *KNOWLEDGE_FIELDS,
)


def message_type_of(event_type: str) -> str:
    head = event_type.split(".", 1)[0]
    return head if head in ("system", "application", "conversation") else "system"


class Store(DocumentTables, MemoryTables):
    def __init__(self, path: str | pathlib.Path, clock: Clock | None = None) -> None:
        self.path = pathlib.Path(path)
        self.clock = clock or SystemClock()
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self.applied_migrations = migrations.apply(self._conn, self.now())

    def now(self) -> str:
        return iso(self.clock.now())

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def journal_mode(self) -> str:
        return self._conn.execute("PRAGMA journal_mode").fetchone()[0]

    def schema_version(self) -> int:
        return self._conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]

    # ------------------------------------------------------------ helpers
    def _exec(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, tuple(params))

    @staticmethod
    def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        out = dict(row)
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
        row = self._row(
            self._exec("SELECT * FROM conversations WHERE conversation_id = ?", [conversation_id]).fetchone()
        )
        if row is not None:
            usage = self.get_usage(conversation_id)
            row["usage_seconds"] = usage["seconds"] if usage else 0.0
        return row

    def list_conversations(self, limit: int = 10, page: int = 1, status: str | None = None) -> tuple[list[dict], int]:
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        rows, total = self._page("conversations", where, params, limit, page)
        for row in rows:
            usage = self.get_usage(row["conversation_id"])
            row["usage_seconds"] = usage["seconds"] if usage else 0.0
        return rows, total

    def update_conversation(self, conversation_id: str, **fields: Any) -> bool:
        return self._update("conversations", "conversation_id", conversation_id, CONVERSATION_COLUMNS, fields)

    def delete_conversation(self, conversation_id: str) -> bool:
        """Removes the record, its events and turn metrics; the usage ledger row stays (it is accounting)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                n = self._conn.execute(
                    "DELETE FROM conversations WHERE conversation_id = ?", [conversation_id]
                ).rowcount
                self._conn.execute("DELETE FROM events WHERE conversation_id = ?", [conversation_id])
                self._conn.execute("DELETE FROM turn_metrics WHERE conversation_id = ?", [conversation_id])
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return n > 0

    # ------------------------------------------------------------ events (transcript and lifecycle)
    def add_event(
        self, conversation_id: str, event_type: str, properties: dict[str, Any] | None = None,
        message_type: str | None = None, timestamp: str | None = None,
    ) -> int:
        cur = self._exec(
            "INSERT INTO events (conversation_id, event_type, message_type, properties, timestamp) VALUES (?,?,?,?,?)",
            [conversation_id, event_type, message_type or message_type_of(event_type),
             json.dumps(properties or {}), timestamp or self.now()],
        )
        return cur.lastrowid

    def events(self, conversation_id: str) -> list[dict[str, Any]]:
        rows = self._exec(
            "SELECT event_type, message_type, properties, timestamp FROM events WHERE conversation_id = ? ORDER BY id",
            [conversation_id],
        ).fetchall()
        return [self._row(r) for r in rows]

    # ------------------------------------------------------------ usage ledger
    def start_usage(self, conversation_id: str) -> None:
        now = self.now()
        self._exec("INSERT OR REPLACE INTO usage (conversation_id, started_at, heartbeat_at, seconds) VALUES (?,?,?,0)",
                   [conversation_id, now, now])

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
        self._exec("INSERT OR REPLACE INTO turn_metrics (conversation_id, turn_idx, metrics, created_at)"
                   " VALUES (?,?,?,?)", [conversation_id, int(turn_idx), json.dumps(metrics), self.now()])

    def turn_metrics(self, conversation_id: str) -> list[dict[str, Any]]:
        rows = self._exec("SELECT turn_idx, metrics, created_at FROM turn_metrics WHERE conversation_id = ?"
                          " ORDER BY turn_idx", [conversation_id]).fetchall()
        return [self._row(r) for r in rows]

    # ------------------------------------------------------------ webhook deliveries
    def add_delivery(self, conversation_id: str | None, event_type: str, url: str, payload: dict[str, Any]) -> int:
        now = self.now()
        cur = self._exec(
            "INSERT INTO webhook_deliveries (conversation_id, event_type, url, payload, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?)", [conversation_id, event_type, url, json.dumps(payload), now, now])
        return cur.lastrowid

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
