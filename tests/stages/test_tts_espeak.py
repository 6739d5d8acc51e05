"""espeak-ng TTS (the espeak-ng bundled in piper-tts, via its C API): audio, word/phoneme timings, the voices the
language table routes to, cancellation, bad input."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cvi_lab.domain.languages import LanguageTable
from cvi_lab.stages.base import ModelMissingError, StageInputError
from cvi_lab.stages.tts.espeak import EspeakTTS
from tests.stages.conftest import stage_conf


@pytest.fixture(scope="module")
def tts():
    return instantiate(stage_conf("tts", "espeak"))


async def test_sentence_chunks_with_word_and_phoneme_timings(tts):
    await tts.warmup()
    chunks = [c async for c in tts.stream("Hello there, my friend. How are you today?")]
    assert [c.text for c in chunks] == ["Hello there, my friend.", "How are you today?"]
    for c in chunks:
        assert c.sample_rate == tts.sample_rate == 22050 and c.samples.dtype == np.float32
        assert 0.05 < float(np.abs(c.samples).max()) <= 1.0 and 0.5 < c.duration < 4
        starts = [w.start for w in c.words]
        assert starts == sorted(starts) and all(0 <= w.start < w.end <= c.duration + 1e-6 for w in c.words)
        assert [p.start for p in c.phonemes] == sorted(p.start for p in c.phonemes)
        assert c.phoneme_string == "".join(p.label for p in c.phonemes)
    assert [w.label for w in chunks[0].words] == ["Hello", "there", "my", "friend"]
    assert [w.label for w in chunks[1].words] == ["How", "are", "you", "today"]
    assert chunks[0].phoneme_string.startswith("həlˈoʊ")
    # the comma pause is not part of "there": the word ends before "my" starts
    there, my = chunks[0].words[1], chunks[0].words[2]
    assert my.start - there.end > 0.05


def test_voices_of_the_language_table_work():
    table = OmegaConf.to_container(stage_conf("languages", "default"))
    routes = LanguageTable(table)
    voices = {r.name: r.tts_overrides.get("voice") for r in map(routes.resolve, routes.supported()) if r.tts == "espeak"}
    assert voices, "the language table routes some language to espeak"
    phonemes = {}
    for name, voice in voices.items():
        tts = EspeakTTS(voice=voice)
        chunk = tts.synthesize("Uno, dos, tres.")
        assert chunk.duration > 0.3 and chunk.words, name
        phonemes[name] = chunk.phoneme_string
    # each voice really speaks its own language: the same letters are pronounced differently
    assert len(set(phonemes.values())) == len(phonemes), phonemes
    assert "ɾ" in phonemes["spanish"] and "ʁ" in phonemes["french"]


def test_voice_names_variants_and_rate():
    slow, fast = EspeakTTS(voice="es", rate=120), EspeakTTS(voice="Spanish (Spain)", rate=300)
    assert slow.voice == fast.voice == "roa/es"
    text = "Buenos días, señor, ¿cómo está usted?"
    assert slow.synthesize(text).duration > 1.8 * fast.synthesize(text).duration
    assert EspeakTTS(voice="en-us+f3").synthesize("Hi there.").duration > 0.2


async def test_cancellation_aborts_promptly(tts):
    text = " ".join(f"Sentence {i} is here to make the answer long." for i in range(40))
    got = []

    async def consume():
        async for c in tts.stream(text):
            got.append(c)
            await asyncio.sleep(0.05)  # a real consumer paces the audio

    task = asyncio.create_task(consume())
    while not got:
        await asyncio.sleep(0.005)
    t0 = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - t0 < 2.0 and len(got) <= 2

    # a long sentence is aborted mid-synthesis by the stop flag
    stop = threading.Event()
    stop.set()
    long = " ".join(["and then we walked a little further along the river"] * 40)
    full = tts.synthesize("and then we walked a little further along the river")
    assert tts.synthesize(long, stop).duration < 5 * full.duration


@pytest.mark.parametrize("voice", ["xx-yy", "english", ""])
def test_unknown_voice_lists_accepted_ones(voice):
    with pytest.raises(StageInputError, match=r"unknown; accepted.*fr-fr"):
        EspeakTTS(voice=voice)


async def test_empty_text_and_bad_settings(tts):
    with pytest.raises(StageInputError, match="nothing to speak"):
        async for _ in tts.stream("  "):
            pass
    with pytest.raises(StageInputError, match="rate"):
        EspeakTTS(rate=5)
    with pytest.raises(ModelMissingError, match="cannot load the espeak-ng library"):
        EspeakTTS(library="/nonexistent/libespeak-ng.so")
