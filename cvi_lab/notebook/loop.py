"""A private asyncio loop on a daemon thread, so synchronous notebook code can drive async code.

Why: the Jupyter kernel already runs an event loop on its main thread, so `asyncio.run` is refused there, and
widget callbacks are plain functions. The in-kernel server and the stage widgets run their coroutines here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Awaitable, Callable, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """`run(coro)` from any thread (blocking, with a timeout); `submit(coro)` returns a Future at once."""

    def __init__(self, name: str = "cvi-lab-notebook") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        if not self.running:
            raise RuntimeError("the background loop has been stopped")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("BackgroundLoop.run called from its own thread (would deadlock)")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"gave up after {timeout} s") from None

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = 30.0) -> T:
        """Run a plain function on the loop's thread (for objects owned by that loop)."""

        async def wrapper() -> T:
            return fn(*args)

        return self.run(wrapper(), timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if not self.running:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
