"""Waiting through the injected clock, so timer-driven code is testable with FakeClock."""

from __future__ import annotations

import asyncio

from cvi_lab.clock import Clock


async def sleep(clock: Clock, delay: float) -> None:
    """Like asyncio.sleep, but on `clock` (a FakeClock wakes it only when advanced past `delay`)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))

    handle = clock.call_later(delay, wake)
    try:
        await fut
    finally:
        handle.cancel()
