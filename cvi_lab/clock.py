"""Injected time, so timers and turn logic are testable without sleeping.

`SystemClock` is the real one; `FakeClock` is advanced by tests. Both expose the same three things the
call lifecycle needs: a monotonic reading, a wall-clock reading and a cancellable `call_later`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle: ...


class SystemClock:
    """Real time; `call_later` schedules on the running asyncio loop."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)


@dataclass(order=True)
class _FakeTimer:
    due: float
    seq: int
    callback: Callable[[], object] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that only moves when `advance()` is called; due callbacks run in order, synchronously."""

    def __init__(self, start: datetime | None = None) -> None:
        self._mono = 1000.0
        self._wall0 = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
        self._timers: list[_FakeTimer] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._mono - 1000.0)

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        timer = _FakeTimer(self._mono + max(0.0, delay), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def advance(self, seconds: float) -> None:
        target = self._mono + seconds
        while self._timers and self._timers[0].due <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._mono = max(self._mono, timer.due)
            timer.callback()
        self._mono = target

    @property
    def pending(self) -> int:
        return sum(1 for t in self._timers if not t.cancelled)
