"""How late the event loop runs its callbacks: the proof that model inference stays off the loop.

A probe task sleeps `interval_s` over and over and records how much later than asked it woke up. On a loop
that nothing blocks the lateness stays at scheduler noise (a few ms, more on a loaded 2-core box); a model
call run on the loop shows up as lateness of its whole duration.

    async with LoopLagProbe() as probe:
        ...
    probe.summary()  # {"n", "p50_ms", "p99_ms", "max_ms"}
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np


class LoopLagProbe:
    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = float(interval_s)
        self.lags_ms: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.interval_s)
            self.lags_ms.append(max(0.0, (time.monotonic() - asked - self.interval_s) * 1000.0))

    def start(self) -> "LoopLagProbe":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def __aenter__(self) -> "LoopLagProbe":
        return self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def summary(self) -> dict[str, float | int | None]:
        if not self.lags_ms:
            return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
        v = np.asarray(self.lags_ms)
        return {"n": int(len(v)), "p50_ms": round(float(np.percentile(v, 50)), 1),
                "p99_ms": round(float(np.percentile(v, 99)), 1), "max_ms": round(float(v.max()), 1)}
