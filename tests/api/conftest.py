"""An in-process API (aiohttp TestServer on loopback) over a private store, with a FakeClock."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cvi_lab.api.app import create_app
from cvi_lab.clock import FakeClock
from tests.helpers.config import make_cfg


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_client(tmp_path, clock):
    clients: list[TestClient] = []

    async def make(headers=None, **server) -> TestClient:
        app = create_app(make_cfg(tmp_path / f"home{len(clients)}", **server), clock=clock)
        client = TestClient(TestServer(app, host="127.0.0.1"), headers=headers)
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        assert client.app["stats"]["internal_errors"] == 0, "a request reached the 500 handler"
        await client.close()


@pytest.fixture
async def api(make_client) -> TestClient:
    return await make_client()
