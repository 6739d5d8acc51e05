"""The shared model queue (`cvi_lab/scheduling.py`): the oldest waiting turn's work first, work without a turn
last, and each job's wait and compute time booked on the turn it serves."""

from __future__ import annotations

import asyncio
import threading

from cvi_lab.engine.latency import TurnLatency
from cvi_lab.scheduling import ModelQueue, serve
from cvi_lab.stages.base import run_blocking


def test_jobs_run_by_priority_then_arrival_and_book_their_times():
    queue = ModelQueue(workers=1, name="test-queue")
    gate = threading.Event()
    order: list[str] = []
    blocker = queue.submit(gate.wait)  # holds the only worker while the others queue up
    turns = {name: TurnLatency(turn_idx=i) for i, name in enumerate(("late", "early"))}
    ctx_jobs = []

    def submit(name: str, priority: float | None) -> None:
        import contextvars

        ctx = contextvars.copy_context()

        def in_ctx():
            if priority is not None:
                serve(priority, "asr", turns.get(name))
            return queue.submit(order.append, name)

        ctx_jobs.append(ctx.run(in_ctx))

    submit("background", None)
    submit("late", 20.0)
    submit("early", 10.0)
    gate.set()
    blocker.result(timeout=10)
    for f in ctx_jobs:
        f.result(timeout=10)
    assert order == ["early", "late", "background"]
    for lat in turns.values():
        m = lat.as_metrics()
        assert m["asr_wait_ms"] >= 0 and m["asr_compute_ms"] >= 0


def test_run_blocking_books_on_the_task_that_serves_a_turn():
    lat = TurnLatency(turn_idx=0)

    async def main():
        serve(1.0, "tts", lat)
        assert await run_blocking(sum, [1, 2]) == 3
        assert await run_blocking(sum, [3]) == 3

    asyncio.run(main())
    assert set(lat.extra) == {"tts_wait_ms", "tts_compute_ms"}  # two jobs summed in one pair


def test_errors_reach_the_caller():
    queue = ModelQueue(workers=2, name="test-queue")
    future = queue.submit(int, "not a number")
    try:
        future.result(timeout=10)
    except ValueError as exc:
        assert "not a number" in str(exc)
    else:
        raise AssertionError("the job's error was lost")
