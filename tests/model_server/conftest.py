"""`cvi-lab model-server`'s app on loopback (port 0) with the real embedded stages, in a thread of its own
(its own event loop), shared by the module: tests in any event loop talk to it over HTTP as a call host would.

The stages are built, not warmed: a request that is refused never loads a model; the first real one loads it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterator, Sequence

import pytest

from cvi_lab.config import compose


class ThreadedModelServer:
    def __init__(self, overrides: Sequence[str] = (), api_keys: Sequence[str] = ()) -> None:
        self.cfg = compose([*overrides, f"model_server.api_keys={list(api_keys)}"], config_name="model_server")
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        from aiohttp import web

        from cvi_lab.engine.stage_pool import instantiate
        from cvi_lab.model_server.app import build_app, served_models

        settings = self.cfg.model_server
        self.stages = {g: instantiate(self.cfg[g]) for g in settings.stages}
        app = build_app(self.stages, {g: served_models(self.cfg, g) for g in self.stages}, settings)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1"

    def __enter__(self) -> "ThreadedModelServer":
        self._thread.start()
        assert self._ready.wait(120), "the model server did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)


@pytest.fixture(scope="module")
def model_server() -> Iterator[ThreadedModelServer]:
    with ThreadedModelServer() as server:
        yield server
