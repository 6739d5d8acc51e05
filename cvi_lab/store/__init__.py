"""Persistence: SQLite (WAL) with versioned migrations. `Store` is the only thing other layers use."""

from cvi_lab.store.sqlite import Store

__all__ = ["Store"]
