"""A stand-in replica builder with the real one's contract, fast and model-free.

It stands in for `cvi_lab.stages.avatar.replica_builder.build_replica` in API/lifecycle tests, which check
the service around the builder (status, progress, errors, artifacts dir), not face analysis; the real
builder has its own tests under tests/stages/.
"""

from __future__ import annotations

import json
import pathlib
from typing import Callable


class ReplicaBuildError(Exception):
    """Same name as the real builder's error: the service reports its message as `error_message`."""


def build_replica(source: pathlib.Path | str, out_dir: pathlib.Path, progress: Callable[[int], None]) -> dict:
    progress(10)
    name = str(source)
    if "noface" in name:
        raise ReplicaBuildError("no face found in the source; accepted: a frontal face image or video")
    if not name.startswith("builtin:") and not pathlib.Path(name).is_file():
        raise ReplicaBuildError(f"cannot read {name}")
    progress(60)
    meta = {"source": name, "portrait": str(out_dir / "portrait.txt")}
    (out_dir / "portrait.txt").write_text("stand-in portrait")
    (out_dir / "replica.json").write_text(json.dumps(meta))
    progress(100)
    return meta
