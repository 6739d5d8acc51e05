"""TTS -> ASR round trip on real audio: the default pair (Piper joe -> faster-whisper tiny.en) must understand
itself with WER <= 10 % over varied sentences. Text is normalized before scoring (case, punctuation, numbers
as words), so only recognition errors count. espeak-ng (formant synthesis) is far less natural: whisper
tiny.en still gets most of its English (measured ~11-21 % WER), the bound is a sanity check."""

from __future__ import annotations

import re

import jiwer
import numpy as np
import pytest
from hydra.utils import instantiate

from cvi_lab.audio import resample
from tests.stages.conftest import stage_conf

SENTENCES = [
    "Hello, how are you doing today?",
    "I would like to book a table for two people tonight.",
    "The weather in Lisbon is warm and sunny in the spring.",
    "Can you tell me where the nearest train station is?",
    "My favorite color is blue, but I also like green.",
    "Please send the report to my manager before Friday.",
    "We are meeting at the coffee shop around the corner.",
    "The museum opens at nine in the morning.",
    "Thank you very much for your help.",
    "What time does the last bus leave the city?",
    "She bought three apples and a loaf of bread.",
    "Turn left at the traffic lights and keep going straight.",
    "I think we should take a short break now.",
    "The children are playing football in the park.",
    "Do you know a good restaurant near the river?",
    "My flight was delayed by two hours yesterday.",
    "Could you repeat that a little more slowly, please?",
    "The doctor said I need to drink more water.",
    "Our team finished the project ahead of schedule.",
    "Let me check my calendar and call you back.",
    "The library is closed on Sundays and public holidays.",
    "I am learning to play the piano this year.",
    "It is raining, so bring an umbrella with you.",
    "How much does a ticket to the concert cost?",
]

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    return " ".join(_ONES[int(d)] for d in str(n))


def normalize(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"(\d+):00\b", r"\1", text)  # "9:00" -> "9"
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text)
    text = re.sub(r"[^\w\s']", " ", text).replace("'", "")
    return re.sub(r"\s+", " ", text).strip()


def test_normalize():
    assert normalize("At 9:00, I'll buy 2 apples!") == "at nine ill buy two apples"


@pytest.fixture(scope="module")
def asr():
    return instantiate(stage_conf("asr", "faster_whisper_tiny_en"))


async def test_piper_to_whisper_tiny_en_wer(asr):
    # Default voice settings except noise: zero noise makes the audio (and so the WER) reproducible.
    tts = instantiate(stage_conf("tts", "piper"), noise_scale=0.0, noise_w_scale=0.0)
    refs, hyps = [], []
    for text in SENTENCES:
        chunks = [c async for c in tts.stream(text)]
        audio = np.concatenate([c.samples for c in chunks])
        transcript = await asr.transcribe(resample(audio, tts.sample_rate, 16_000), 16_000)
        refs.append(normalize(text))
        hyps.append(normalize(transcript.text))
    wer = jiwer.wer(refs, hyps)
    misses = [(r, h) for r, h in zip(refs, hyps) if r != h]
    print(f"piper -> faster-whisper tiny.en: WER {wer:.3f} over {len(refs)} sentences; misses: {misses}")
    assert wer <= 0.10, misses


async def test_espeak_en_to_whisper_tiny_en_is_intelligible(asr):
    tts = instantiate(stage_conf("tts", "espeak"))
    refs, hyps = [], []
    for text in SENTENCES[:12]:
        audio = np.concatenate([c.samples async for c in tts.stream(text)])
        transcript = await asr.transcribe(resample(audio, tts.sample_rate, 16_000), 16_000)
        refs.append(normalize(text))
        hyps.append(normalize(transcript.text))
    wer = jiwer.wer(refs, hyps)
    print(f"espeak en-us -> faster-whisper tiny.en: WER {wer:.3f} over {len(refs)} sentences")
    assert wer <= 0.35, list(zip(refs, hyps))
