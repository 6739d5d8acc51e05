"""Every store test runs on both backends: SQLite (a file under tmp_path) and PostgreSQL (a fresh database in
the session's throwaway cluster, tests/store/postgres.py)."""

from __future__ import annotations

import pytest

from tests.store.postgres import shared_cluster, stop_shared_cluster


@pytest.fixture(scope="session")
def pg_cluster():
    yield shared_cluster()
    stop_shared_cluster()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request, tmp_path) -> str:
    """Where a fresh store lives: a SQLite path or a postgresql:// URL."""
    if request.param == "sqlite":
        return str(tmp_path / "db" / "cvi.db")
    return request.getfixturevalue("pg_cluster").new_database()
