"""The default replica with the real builder: built from builtin:astronaut at first use, then reused."""

from __future__ import annotations

import asyncio
import pathlib

from cvi_lab.domain.ids import DEFAULT_REPLICA_ID

REAL_BUILDER = "cvi_lab.stages.avatar.replica_builder.build_replica"


async def test_default_replica_built_once_with_the_real_builder(make_env):
    app = await make_env(replica_builder=REAL_BUILDER)
    service = app["replicas"]
    first, second = await asyncio.gather(service.ensure_artifacts(DEFAULT_REPLICA_ID),
                                         service.ensure_artifacts(DEFAULT_REPLICA_ID))
    assert first == second  # concurrent first uses build once
    out = pathlib.Path(first["dir"])
    assert out == service.out_dir(DEFAULT_REPLICA_ID) and (out / "replica.json").is_file()
    mtime = (out / "replica.json").stat().st_mtime_ns
    assert await service.ensure_artifacts(DEFAULT_REPLICA_ID) == first
    assert (out / "replica.json").stat().st_mtime_ns == mtime  # cached, not rebuilt
    record = app["store"].get_replica(DEFAULT_REPLICA_ID)
    assert record["status"] == "completed" and record["artifacts"]["dir"] == str(out)
