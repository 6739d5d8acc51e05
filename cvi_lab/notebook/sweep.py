"""`cvi-lab experiment` from a notebook cell.

Why a thread: the lab runs each call with `asyncio.run`, which refuses to start inside the kernel's own
running event loop; on a worker thread there is no running loop, so the same code path as the command line
runs unchanged (Hydra composition, the joblib launcher with n_jobs=1 runs jobs one after another in-process).
"""

from __future__ import annotations

import threading
from typing import Sequence


def run_experiment(argv: Sequence[str]) -> int:
    """`cvi-lab experiment ARGV` (e.g. ["-m", "experiment=smoke", "asr=a,b"]); returns its exit code."""
    from cvi_lab.lab import app

    result: dict[str, object] = {}

    def work() -> None:
        try:
            result["code"] = app.main(list(argv))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=work, name="cvi-lab-experiment")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return int(result["code"])  # type: ignore[arg-type]
