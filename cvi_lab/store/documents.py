"""The knowledge base's tables: documents and their passages (text cut for retrieval), and which ready
passages a call may draw on. A mixin of `Store` (same connection, same helpers; SQL in SQLite's dialect,
translated on PostgreSQL by store/database.py)."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

DOCUMENT_COLUMNS = ("document_name", "status", "progress", "error_message", "tags", "passage_count")


class DocumentTables:
    def insert_document(self, document_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        self._insert("documents", {"document_id": document_id, **fields, "created_at": now, "updated_at": now})
        return self.get_document(document_id)

    def get_document(self, document_id: str) -> dict[str, Any] | None:
        return self._row(self._exec("SELECT * FROM documents WHERE document_id = ?", [document_id]).fetchone())

    def list_documents(self, limit: int = 10, page: int = 1, status: str | None = None,
                       tags: Sequence[str] = ()) -> tuple[list[dict], int]:
        where, params = [], []
        if status:
            where.append("status = ?")
            params.append(status)
        if tags:
            where.append(f"EXISTS (SELECT 1 FROM json_each(documents.tags) WHERE value IN ({_marks(tags)}))")
            params.extend(tags)
        return self._page("documents", ("WHERE " + " AND ".join(where)) if where else "", params, limit, page)

    def update_document(self, document_id: str, **fields: Any) -> bool:
        return self._update("documents", "document_id", document_id, DOCUMENT_COLUMNS, fields)

    def delete_document(self, document_id: str) -> bool:
        """The record and its passages (ON DELETE CASCADE)."""
        return self._exec("DELETE FROM documents WHERE document_id = ?", [document_id]).rowcount > 0

    def replace_passages(self, document_id: str, passages: Iterable[str]) -> int:
        """Store a document's passages (replacing any earlier ones) in one transaction; returns how many."""
        rows = [(document_id, i, text) for i, text in enumerate(passages)]
        with self._conn.transaction():
            self._conn.execute("DELETE FROM document_passages WHERE document_id = ?", [document_id])
            self._conn.executemany("INSERT INTO document_passages (document_id, idx, text) VALUES (?,?,?)", rows)
        return len(rows)

    def ready_document_ids(self, document_ids: Sequence[str], tags: Sequence[str]) -> list[str]:
        """The ready documents named by id or carrying one of the tags, oldest first."""
        if not document_ids and not tags:
            return []
        clauses, params = [], []
        if document_ids:
            clauses.append(f"document_id IN ({_marks(document_ids)})")
            params.extend(document_ids)
        if tags:
            clauses.append(f"EXISTS (SELECT 1 FROM json_each(documents.tags) WHERE value IN ({_marks(tags)}))")
            params.extend(tags)
        rows = self._exec(f"SELECT document_id FROM documents WHERE status = 'ready' AND ({' OR '.join(clauses)})"
                          " ORDER BY created_at, rowid", params).fetchall()
        return [r[0] for r in rows]

    def passages(self, document_ids: Sequence[str]) -> list[tuple[str, int, str]]:
        """(document_id, idx, text) of these documents, in document then passage order."""
        if not document_ids:
            return []
        rows = self._exec(f"SELECT document_id, idx, text FROM document_passages WHERE document_id IN "
                          f"({_marks(document_ids)}) ORDER BY document_id, idx", list(document_ids)).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)
