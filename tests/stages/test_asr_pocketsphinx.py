"""PocketSphinx baseline (en-US model shipped in the pip package) on real speech."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hydra.utils import instantiate

from cvi_lab.audio import load_audio
from cvi_lab.stages.asr.pocketsphinx import PocketSphinxASR
from cvi_lab.stages.base import ModelMissingError, StageInputError
from tests.stages.conftest import stage_conf
from tests.stages.test_asr_faster_whisper import norm


@pytest.fixture(scope="module")
def asr():
    a = instantiate(stage_conf("asr", "pocketsphinx_en"))
    asyncio.run(a.warmup())
    return a


async def test_jfk(asr, jfk_path):
    t = await asr.transcribe(load_audio(jfk_path, 16_000)[0])
    text = norm(t.text)
    # a 1990s HMM baseline: it gets the gist, not the words (Whisper gets all three phrases)
    assert "my fellow" in text and "do for your" in text, text
    assert t.language == "en"


async def test_silence_and_bad_input(asr, tmp_path):
    assert (await asr.transcribe(np.zeros(16_000, np.float32))).text == ""
    with pytest.raises(StageInputError, match="8000 Hz"):
        await asr.transcribe(np.zeros(8000, np.float32), sample_rate=8000)
    with pytest.raises(StageInputError, match="language 'fr'.*en"):
        await asr.transcribe(np.zeros(16_000, np.float32), language="fr")
    with pytest.raises(StageInputError, match="empty"):
        await asr.transcribe(np.zeros(0, np.float32))
    with pytest.raises(ModelMissingError, match="pocketsphinx"):
        await PocketSphinxASR(model_dir=str(tmp_path / "none")).warmup()
    assert isinstance(asr, PocketSphinxASR)
