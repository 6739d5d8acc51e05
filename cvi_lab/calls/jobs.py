"""`BackgroundJobs`: the tasks a service starts after answering a request (replica builds, document processing).

Why one class: each service must keep a reference to its tasks (the loop holds only weak ones), let tests and
shutdown wait for them, and cancel them at close; written once, the services only `start` jobs.
"""

from __future__ import annotations

import asyncio
from typing import Coroutine


class BackgroundJobs:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def start(self, coro: Coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the running jobs (up to `timeout` s)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def close(self) -> None:
        """Cancel the running jobs and wait until they have stopped."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
