"""Energy-threshold VAD: the baseline, on the same synthesized speech with known silences."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate

from cvi_lab.stages.base import StageInputError
from cvi_lab.stages.vad.energy import EnergyVAD
from tests.stages.conftest import stage_conf
from tests.stages.test_vad_silero import assert_boundaries, run_vad


def test_conf_builds_energy():
    vad = instantiate(stage_conf("vad", "energy"))
    assert isinstance(vad, EnergyVAD) and vad.sample_rate == 16_000


def test_boundaries_within_100ms(speech_with_pauses):
    # 400 ms: a plain energy gate splits at the comma pause of the first sentence with 250 ms (a baseline limit)
    vad = EnergyVAD(min_silence_ms=400)
    assert_boundaries(run_vad(vad, speech_with_pauses.audio, 320), speech_with_pauses)


def test_frame_size_does_not_change_events(speech_with_pauses):
    vad = EnergyVAD()
    audio = speech_with_pauses.audio
    whole = [e for e, _ in run_vad(vad, audio, len(audio))]
    rng = np.random.default_rng(1)
    assert [e for e, _ in run_vad(vad, audio, (int(n) for n in rng.integers(1, 900, size=10_000)))] == whole


def test_silence_and_wrong_input():
    vad = EnergyVAD()
    assert vad.push(np.zeros(32_000, np.float32)) == [] and not vad.speaking
    with pytest.raises(StageInputError, match="mono"):
        vad.push(np.zeros((320, 2), np.float32))
    with pytest.raises(StageInputError, match="frame_ms"):
        EnergyVAD(frame_ms=0)
