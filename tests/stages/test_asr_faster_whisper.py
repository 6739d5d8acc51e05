"""faster-whisper ASR (tiny.en default, base multilingual) on real speech: jfk.flac and synthesized speech."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import numpy as np
import pytest
from hydra.utils import instantiate

from cvi_lab.audio import load_audio, to_int16
from cvi_lab.stages.asr.faster_whisper import FasterWhisperASR
from cvi_lab.stages.base import ModelMissingError, StageInputError
from tests.stages.conftest import stage_conf

JFK_PHRASES = ("my fellow americans", "your country", "do for you")


def norm(text: str) -> str:
    return " ".join("".join(c if c.isalnum() or c == "'" else " " for c in text.lower()).split())


@pytest.fixture(scope="module")
def tiny():
    asr = instantiate(stage_conf("asr", "faster_whisper_tiny_en"))
    asyncio.run(asr.warmup())
    return asr


@pytest.fixture(scope="module")
def base():
    asr = instantiate(stage_conf("asr", "faster_whisper_base"))
    asyncio.run(asr.warmup())
    return asr


@pytest.fixture(scope="module")
def jfk(jfk_path):
    return load_audio(jfk_path, 16_000)[0]


def test_confs_declare_languages(tiny, base):
    assert isinstance(tiny, FasterWhisperASR) and tiny.languages == ("en",) and tiny.sample_rate == 16_000
    assert "*" in base.languages and {"en", "es", "fr", "de"} <= set(base.languages)
    assert (tiny.beam_size, tiny.compute_type, tiny.cpu_threads) == (1, "int8", 2)


async def test_tiny_en_transcribes_jfk(tiny, jfk):
    t = await tiny.transcribe(jfk)
    for phrase in JFK_PHRASES:
        assert phrase in norm(t.text), t.text
    assert t.language == "en"


async def test_tiny_en_accepts_int16(tiny, jfk):
    t = await tiny.transcribe(to_int16(jfk))
    assert "your country" in norm(t.text)


async def test_base_detects_english_on_jfk(base, jfk):
    t = await base.transcribe(jfk, language=None)
    for phrase in JFK_PHRASES:
        assert phrase in norm(t.text), t.text
    assert t.language == "en" and t.language_probability > 0.5


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs the espeak-ng program for Spanish speech")
async def test_base_detects_spanish(base, tmp_path):
    wav = tmp_path / "es.wav"
    text = "Buenos días, me gustaría reservar una mesa para dos personas esta noche, por favor."
    subprocess.run(["espeak-ng", "-v", "es", "-w", str(wav), text], check=True, capture_output=True)
    audio, _ = load_audio(wav, 16_000)
    t = await base.transcribe(audio)
    assert t.language == "es", t
    assert "mesa" in norm(t.text) or "personas" in norm(t.text), t.text
    forced = await base.transcribe(audio, language="es")
    assert forced.language == "es"


async def test_synthesized_speech(tiny, synthesize):
    t = await tiny.transcribe(synthesize("Please book a table for two people tonight."))
    assert "table for two" in norm(t.text), t.text


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros(32_000, np.float32),
        (0.05 * np.random.default_rng(0).standard_normal(32_000)).astype(np.float32),
        (0.3 * np.sin(2 * np.pi * 440 * np.arange(32_000) / 16_000)).astype(np.float32),
    ],
    ids=["silence", "noise", "tone"],
)
async def test_non_speech_gives_empty_transcript(tiny, audio):
    assert (await tiny.transcribe(audio)).text == ""


async def test_partials_grow_then_final(jfk):
    asr = FasterWhisperASR(model="tiny_en", partial_interval_ms=4000)
    results = [t.text async for t in asr.partials(jfk)]
    assert len(results) == 3  # at 4 s, 8 s, then the final 11 s
    assert "my fellow americans" in norm(results[-1]) and len(results[0]) < len(results[-1])


async def test_partials_are_cancellable(jfk):
    asr = FasterWhisperASR(model="tiny_en", partial_interval_ms=1000)
    seen = []

    async def consume():
        async for t in asr.partials(jfk):
            seen.append(t)
            await asyncio.sleep(3600)  # the consumer stalls; cancellation must end the stream here

    task = asyncio.create_task(consume())
    while not seen:
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(seen) == 1


async def test_bad_input_is_a_clear_error(tiny, base, tmp_path):
    with pytest.raises(StageInputError, match="44100 Hz.*16000"):
        await tiny.transcribe(np.zeros(44_100, np.float32), sample_rate=44_100)
    with pytest.raises(StageInputError, match="language 'es'.*accepted ISO codes: en"):
        await tiny.transcribe(np.zeros(16_000, np.float32), language="es")
    with pytest.raises(StageInputError, match="language 'klingon'.*accepted ISO codes:.*fr"):
        await base.transcribe(np.zeros(16_000, np.float32), language="klingon")
    with pytest.raises(StageInputError, match="empty"):
        await tiny.transcribe(np.zeros(0, np.float32))
    with pytest.raises(StageInputError, match="mono"):
        await tiny.transcribe(np.zeros((16_000, 2), np.float32))
    with pytest.raises(StageInputError, match="language 'xx'"):
        FasterWhisperASR(model="tiny_en", language="xx")
    with pytest.raises(ModelMissingError, match="accepted: 'tiny_en'"):
        await FasterWhisperASR(model=str(tmp_path / "no-such-model")).warmup()
