"""The shared model queue: every call's blocking model work (ASR, end-of-turn, TTS) on one small thread pool,
served by priority, with each job's queue wait and compute time booked on the turn it serves.

Why: the stage pool shares one ASR, one turn detector and one TTS between all calls of a server, and on two
cores the pool's threads are few. In arrival order, a call whose participant just stopped speaking waited
behind other calls' background work; served by priority (the time the turn ended, oldest first; work
without a turn, e.g. warm-ups, last), the oldest waiting turn goes first and no call starves another.
What the engine records per turn (`<hop>_wait_ms` beside `<hop>_compute_ms`) tells under load whether a hop
was slow or waited for the model.

The engine states what its work serves with `serve(priority, hop, times)` in the task doing it (a context
variable: tasks created from there inherit it); stages only call `stages.base.run_blocking`, unchanged.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import heapq
import itertools
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, TypeVar

T = TypeVar("T")

BACKGROUND = math.inf  # priority of work that serves no waiting turn


class QueueTimes(Protocol):
    """Where a job's times are booked (the turn's latency record)."""

    def add_queue_time(self, hop: str, wait_s: float, compute_s: float) -> None: ...


@dataclass(frozen=True)
class Served:
    """What the current task's model work serves: its priority (lower first), the hop, where to book times."""

    priority: float = BACKGROUND
    hop: str = ""
    times: QueueTimes | None = None


_SERVED: contextvars.ContextVar[Served] = contextvars.ContextVar("cvi_served", default=Served())


def serve(priority: float, hop: str, times: QueueTimes | None) -> None:
    """From now on, this task's (and its future child tasks') model work serves `hop` of a turn at `priority`."""
    _SERVED.set(Served(priority, hop, times))


def turn_priority() -> float:
    """The priority of a turn that ends now: its end time (older turns first)."""
    return time.monotonic()


class ModelQueue(concurrent.futures.Executor):
    """A thread pool that runs the waiting job of lowest (priority, arrival) first."""

    def __init__(self, workers: int, name: str) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._workers = workers
        self._name = name
        self._threads: list[threading.Thread] = []

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Run `fn` with the current task's `Served` (its priority; its times booked on the turn)."""
        served = _SERVED.get()
        future: concurrent.futures.Future = concurrent.futures.Future()
        queued = time.perf_counter()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            started = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                if served.times is not None:
                    served.times.add_queue_time(served.hop, started - queued, time.perf_counter() - started)

        with self._cv:
            heapq.heappush(self._heap, (served.priority, next(self._seq), job))
            if len(self._threads) < self._workers:
                t = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
            self._cv.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._heap:
                    self._cv.wait()
                _, _, job = heapq.heappop(self._heap)
            job()
