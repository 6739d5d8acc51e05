"""Persistence: SQLite (WAL, the default) or PostgreSQL (`server.store.url`), one schema and one list of
versioned migrations. `Store` is the only thing other layers use."""

from cvi_lab.store.sqlite import Store

__all__ = ["Store"]
