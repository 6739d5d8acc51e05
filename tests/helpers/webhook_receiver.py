"""A webhook receiver on loopback: records every POST, can fail the first N with a chosen status.

Usable by any suite (and by notebooks): `async with WebhookReceiver() as hooks: ... hooks.url ...`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from aiohttp import web


class WebhookReceiver:
    def __init__(self, fail_first: int = 0, fail_status: int = 500, path: str = "/hook") -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.path = path
        self.received: list[dict[str, Any]] = []  # successfully accepted payloads
        self.attempts: list[dict[str, Any]] = []  # every request, including refused ones
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read() or b"null")
        self.attempts.append(body)
        self._changed.set()
        if len(self.attempts) <= self.fail_first:
            return web.Response(status=self.fail_status, text="failing on purpose")
        self.received.append(body)
        return web.json_response({"ok": True})

    async def start(self) -> "WebhookReceiver":
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]  # the free port bound
        self.url = f"http://127.0.0.1:{port}{self.path}"
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def __aenter__(self) -> "WebhookReceiver":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [p for p in self.received if p.get("event_type") == event_type]

    async def wait_for(self, predicate: Callable[["WebhookReceiver"], bool], timeout: float = 20.0) -> None:
        """Poll-free wait until `predicate(self)` holds (generous deadline for loaded machines)."""
        async def loop() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)
