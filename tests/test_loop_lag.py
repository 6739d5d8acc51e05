import asyncio
import time

from cvi_lab.loop_lag import LoopLagProbe


async def test_probe_sees_a_blocked_loop_and_not_an_idle_one():
    async with LoopLagProbe(interval_s=0.01) as idle:
        await asyncio.sleep(0.2)
    assert idle.summary()["n"] >= 5
    async with LoopLagProbe(interval_s=0.01) as blocked:
        await asyncio.sleep(0.05)
        time.sleep(0.4)  # what a model call on the loop would do
        await asyncio.sleep(0.05)
    assert blocked.summary()["max_ms"] >= 300  # the block shows in full, however loaded the machine is
    (at_s, lag_ms), = blocked.summary(worst=1)["worst"]
    assert lag_ms >= 300 and 0.3 <= at_s < 5.0  # when it happened, seconds after start
    assert LoopLagProbe().summary() == {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
