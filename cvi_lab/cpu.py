"""CPU priorities on a small machine: the models on the answer's critical path before media encoding.

Why: on 2 cores the ASR, LLM and TTS threads compete with aiortc's audio/video encoding and decoding, which
run on the event loop's default executor. A transcript that waits for a VP8 frame to be encoded delays the
answer; a video frame encoded 20 ms later is not seen. So the default executor's threads get a higher nice
value (Linux schedules threads individually, so this leaves the model threads at the process's priority);
nothing is raised, so it needs no privilege. Measured in benchmarks/results/latency.md (ASR hop in a call).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading

log = logging.getLogger(__name__)


def lower_this_thread(niceness: int) -> None:
    """Add `niceness` to the calling thread's nice value (Linux: per thread; elsewhere: no-op)."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
    except OSError as exc:  # pragma: no cover - a sandbox that forbids it: run at normal priority
        log.warning("could not lower the priority of media thread %s: %s", tid, exc)


def deprioritize_media(loop: asyncio.AbstractEventLoop, niceness: int, workers: int) -> None:
    """Give `loop` a default executor whose threads run `niceness` below the model threads (aiortc encodes and
    decodes there). niceness 0 leaves the loop's executor as it is."""
    if niceness <= 0:
        return
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="cvi-media", initializer=lower_this_thread, initargs=(niceness,)))
