"""The hosts tests share the store tests' throwaway PostgreSQL cluster (tests/store/postgres.py)."""

from __future__ import annotations

import pytest

from tests.store.postgres import shared_cluster, stop_shared_cluster


@pytest.fixture(scope="session")
def pg_cluster():
    yield shared_cluster()
    stop_shared_cluster()
