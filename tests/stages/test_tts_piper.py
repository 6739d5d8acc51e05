"""Piper TTS on the shipped joe voice: streaming chunks, phonemes, cancellation, bad input."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import pytest_asyncio
from hydra.utils import instantiate

from cvi_lab.stages.base import ModelMissingError, StageInputError
from cvi_lab.stages.tts.piper import PiperTTS
from cvi_lab.stages.tts.text import split_text
from tests.stages.conftest import stage_conf

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tts():
    cfg = stage_conf("tts", "piper")
    model = instantiate(cfg, noise_scale=0.0, noise_w_scale=0.0)  # deterministic audio
    await model.warmup()
    return model


async def test_streams_one_chunk_per_clause_with_phonemes(tts):
    text = "Sure, I can help you with that today. The museum opens at nine, and it closes at six!"
    chunks = [c async for c in tts.stream(text)]
    assert [c.text for c in chunks] == split_text(text, "clause", 3)
    assert len(chunks) == 3
    assert tts.sample_rate == 22050
    for c in chunks:
        assert c.sample_rate == 22050 and c.samples.dtype == np.float32 and c.samples.ndim == 1
        assert 0.05 < float(np.abs(c.samples).max()) <= 1.0
        assert c.phoneme_string
        assert 0.4 < c.duration < 6.0
    assert "ð" in chunks[0].phoneme_string  # "that" is phonemized


async def test_phoneme_and_word_timings_from_alignments(tts):
    import onnx  # noqa: F401 - the alignment patch needs it (a core dependency)
    assert tts.has_alignments
    chunk = tts.synthesize("Hello there, my friend.")
    assert [w.label for w in chunk.words] == ["Hello", "there", "my", "friend"]
    for seq in (chunk.words, chunk.phonemes):
        assert all(0 <= t.start < t.end <= chunk.duration + 1e-6 for t in seq)
        assert all(a.end <= b.start + 1e-9 for a, b in zip(seq, seq[1:]))
    assert chunk.words[2].start - chunk.words[1].end > 0.1  # the comma pause
    assert chunk.phonemes[0].label == "h" and chunk.phonemes[-1].end <= chunk.duration
    assert chunk.words[0].start == chunk.phonemes[0].start
    # no one-to-one word match ("3.50" is spoken as several words): phonemes only
    odd = tts.synthesize("It costs 3.50 dollars.")
    assert odd.phonemes and odd.words is None
    # same audio with and without the alignment output
    plain = PiperTTS(alignments=False, noise_scale=0.0, noise_w_scale=0.0)
    assert np.array_equal(plain.synthesize("Hello there, my friend.").samples, chunk.samples)
    assert plain.synthesize("Hi.").phonemes is None


async def test_same_text_same_audio_with_zero_noise(tts):
    a = [c.samples async for c in tts.stream("Hello there.")]
    b = [c.samples async for c in tts.stream("Hello there.")]
    assert np.array_equal(np.concatenate(a), np.concatenate(b))


async def test_sentence_chunking_and_speed():
    slow = PiperTTS(chunking="sentence", length_scale=1.5, noise_scale=0.0, noise_w_scale=0.0)
    fast = PiperTTS(chunking="sentence", noise_scale=0.0, noise_w_scale=0.0)
    text = "First, a clause. Then, another one."
    s = [c async for c in slow.stream(text)]
    f = [c async for c in fast.stream(text)]
    assert [c.text for c in f] == ["First, a clause.", "Then, another one."]
    assert sum(c.duration for c in s) > 1.3 * sum(c.duration for c in f)


async def test_cancellation_stops_the_stream(tts):
    text = " ".join(f"This is sentence number {w} of a long answer." for w in ["one", "two", "three", "four", "five", "six", "seven", "eight"])
    got = []

    async def consume():
        async for c in tts.stream(text):
            got.append(c)

    task = asyncio.create_task(consume())
    while not got:
        await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - t0 < 2.0
    assert len(got) <= 2

    agen = tts.stream(text)
    await agen.__anext__()
    await agen.aclose()  # closing early is fine too


@pytest.mark.parametrize("text", ["", "   \n", "...", None])
async def test_empty_text_is_a_clear_error(tts, text):
    with pytest.raises(StageInputError, match="nothing to speak|must be a string"):
        async for _ in tts.stream(text):
            pass


async def test_missing_voice_files_and_bad_settings(tmp_path):
    with pytest.raises(ModelMissingError, match="does not exist"):
        PiperTTS(model=str(tmp_path / "nope.onnx"))
    with pytest.raises(StageInputError, match="chunking"):
        PiperTTS(chunking="word")
    with pytest.raises(StageInputError, match="alignments"):
        PiperTTS(alignments="sometimes")
