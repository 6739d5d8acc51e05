"""The memories table: remembered sentences per memory store (tag), in the order they were learned. A mixin of
`Store` (same connection, same helpers); portable SQL only (`?` placeholders, no engine-specific functions).

`seq` orders memories within the store (timestamps of one call's memories are equal); it is the store's count
at insertion, kept by one writer per call end.
"""

from __future__ import annotations

from typing import Any, Sequence

from cvi_lab.domain.ids import new_id
from cvi_lab.domain.memories import MEMORY


class MemoryTables:
    def add_memories(self, memory_store: str, conversation_id: str, items: Sequence[tuple[str, str]],
                     keep: int) -> int:
        """Append (kind, text) items not already in the store (same text, any case), then drop the oldest beyond
        `keep`; returns how many were added."""
        known = {r[0].casefold() for r in self._exec("SELECT text FROM memories WHERE memory_store = ?",
                                                     [memory_store]).fetchall()}
        seq = self._exec("SELECT COALESCE(MAX(seq), 0) FROM memories WHERE memory_store = ?",
                         [memory_store]).fetchone()[0]
        added = 0
        for kind, text in items:
            if text.casefold() in known:
                continue
            known.add(text.casefold())
            seq += 1
            added += 1
            self._insert("memories", {"memory_id": new_id(MEMORY), "memory_store": memory_store, "kind": kind,
                                      "text": text, "conversation_id": conversation_id, "created_at": self.now(),
                                      "seq": seq})
        newest_first = self._exec("SELECT memory_id FROM memories WHERE memory_store = ? ORDER BY seq DESC",
                                  [memory_store]).fetchall()
        for (memory_id,) in newest_first[keep:]:
            self._exec("DELETE FROM memories WHERE memory_id = ?", [memory_id])
        return added

    def get_memory(self, memory_id: str) -> dict[str, Any] | None:
        return self._row(self._exec("SELECT * FROM memories WHERE memory_id = ?", [memory_id]).fetchone())

    def list_memories(self, limit: int = 10, page: int = 1, memory_store: str | None = None) -> tuple[list[dict], int]:
        """Newest first (the store's pages), optionally of one memory store."""
        where, params = ("WHERE memory_store = ?", [memory_store]) if memory_store else ("", [])
        return self._page("memories", where, params, limit, page)

    def recall(self, memory_stores: Sequence[str], count: int) -> list[dict[str, Any]]:
        """The newest `count` memories of these stores (one per text), oldest of them first."""
        if not memory_stores or count <= 0:
            return []
        marks = ", ".join("?" for _ in memory_stores)
        rows = self._exec(f"SELECT * FROM memories WHERE memory_store IN ({marks}) ORDER BY created_at DESC, "
                          "seq DESC", list(memory_stores)).fetchall()
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            record = self._row(row)
            out.setdefault(record["text"].casefold(), record)
            if len(out) >= count:
                break
        return list(reversed(out.values()))

    def delete_memory(self, memory_id: str) -> bool:
        return self._exec("DELETE FROM memories WHERE memory_id = ?", [memory_id]).rowcount > 0

    def delete_memory_store(self, memory_store: str) -> int:
        """Every memory of the tag; returns how many there were."""
        return self._exec("DELETE FROM memories WHERE memory_store = ?", [memory_store]).rowcount
