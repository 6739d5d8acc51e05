"""Silence-timeout end-of-turn baseline."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate

from cvi_lab.stages.base import StageInputError
from cvi_lab.stages.turn.silence import SilenceTurn
from tests.stages.conftest import stage_conf


async def test_silence_timeout():
    turn = instantiate(stage_conf("turn", "silence"))
    assert isinstance(turn, SilenceTurn) and turn.threshold == 0.5
    audio = np.zeros(16_000, np.float32)
    assert await turn.predict(audio, silence_s=0.0) == 0.0
    assert await turn.predict(audio, silence_s=turn.timeout_s - 0.01) == 0.0
    assert await turn.predict(audio, silence_s=turn.timeout_s) == 1.0
    assert await turn.predict(audio, silence_s=5.0) == 1.0


async def test_bad_input():
    turn = SilenceTurn(timeout_s=0.5)
    with pytest.raises(StageInputError, match="8000 Hz"):
        await turn.predict(np.zeros(800, np.float32), sample_rate=8000, silence_s=1.0)
    with pytest.raises(StageInputError, match="silence_s"):
        await turn.predict(np.zeros(800, np.float32), silence_s=-1.0)
    with pytest.raises(StageInputError, match="timeout_s"):
        SilenceTurn(timeout_s=-1)
