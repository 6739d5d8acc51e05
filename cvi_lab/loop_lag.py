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
        self.at_s: list[float] = []  # when each wake-up came, seconds since start()
        self.started_at = 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.interval_s)
            now = time.monotonic()
            self.lags_ms.append(max(0.0, (now - asked - self.interval_s) * 1000.0))
            self.at_s.append(now - self.started_at)

    def start(self) -> "LoopLagProbe":
        self.started_at = time.monotonic()
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

    def summary(self, worst: int = 0) -> dict[str, Any]:
        """n, p50/p99/max lateness; with `worst` > 0 also the worst wake-ups as [seconds since start, ms]."""
        if not self.lags_ms:
            return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None} | ({"worst": []} if worst else {})
        v = np.asarray(self.lags_ms)
        out: dict[str, Any] = {"n": int(len(v)), "p50_ms": round(float(np.percentile(v, 50)), 1),
                               "p99_ms": round(float(np.percentile(v, 99)), 1), "max_ms": round(float(v.max()), 1)}
        if worst:
            top = sorted(np.argsort(v)[::-1][:worst].tolist())
            out["worst"] = [[round(self.at_s[i], 2), round(float(v[i]), 1)] for i in top]
        return out
