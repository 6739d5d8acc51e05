"""A manager wired like the server's (same create_app), driven by a FakeClock, without HTTP."""

from __future__ import annotations

import pytest

from cvi_lab.api.app import create_app
from cvi_lab.clock import FakeClock
from tests.helpers.config import make_cfg


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_env(tmp_path, clock):
    apps = []

    async def make(runtime_factories=(), **server):
        app = create_app(make_cfg(tmp_path / f"home{len(apps)}", **server), clock=clock,
                         runtime_factories=runtime_factories)
        await app["manager"].start()
        apps.append(app)
        return app

    yield make
    for app in apps:
        await app["manager"].close()
        await app["replicas"].close()
        await app["webhooks"].close()
        app["store"].close()
