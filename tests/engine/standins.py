"""Scripted stand-ins of the stage interfaces, for the engine's UNIT tests only.

They follow the contracts in cvi_lab/stages/base.py (async, cancellable, run off the loop where the real ones
would) but produce scripted output instantly, so the tests check the engine's logic (turn taking, barge-in
history, interactions) deterministically. Integration tests in this folder use the real stages instead.
The VAD and the avatar used with them are the real lightweight ones (EnergyVAD, a StreamingAvatar
subclass with a 32×32 blank image at 50 fps).
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Sequence

import numpy as np

from cvi_lab.stages.avatar.streaming import FrameCue, StreamingAvatar
from cvi_lab.stages.base import (
    ASR,
    LLM,
    TTS,
    ChatMessage,
    LLMStats,
    StageError,
    StageInputError,
    Transcript,
    TurnDetector,
)
from cvi_lab.media import TTSChunk
from cvi_lab.stages.vad.energy import EnergyVAD

RATE = 16_000


def tone(seconds: float, amp: float = 0.3, freq: float = 220.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.float32)


class ScriptedASR(ASR):
    """Returns the scripted texts in order (the last one repeats); counts calls."""

    def __init__(self, texts: Sequence[str] = ("hello there",), fail: bool = False) -> None:
        self.texts, self.fail, self.calls = list(texts), fail, 0

    async def transcribe(self, audio, sample_rate=RATE, language=None) -> Transcript:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.fail:
            raise StageError("scripted ASR failure")
        return Transcript(self.texts[min(self.calls - 1, len(self.texts) - 1)], language="en")


class ScriptedTurn(TurnDetector):
    def __init__(self, probs: Sequence[float] = (0.9,)) -> None:
        self.probs, self.calls = list(probs), 0

    async def predict(self, audio, sample_rate=RATE, silence_s=0.0) -> float:
        self.calls += 1
        await asyncio.sleep(0.005)
        return self.probs[min(self.calls - 1, len(self.probs) - 1)]


class ScriptedLLM(LLM):
    """Streams the scripted reply word by word (`delay` s per piece); `fail_after` pieces then raises."""

    def __init__(self, reply: str = "Sure, I can help you with that. It is easy.", delay: float = 0.01,
                 fail_after: int | None = None, fail_calls: int = 10**9) -> None:
        self.reply, self.delay, self.fail_after, self.fail_calls = reply, delay, fail_after, fail_calls
        self.prompts: list[list[ChatMessage]] = []
        self.cancelled = 0

    async def stream(self, messages, max_tokens=None, stats: LLMStats | None = None) -> AsyncIterator[str]:
        self.prompts.append(list(messages))
        pieces = [w if i == 0 else " " + w for i, w in enumerate(self.reply.split(" "))]
        t0 = time.perf_counter()
        try:
            for i, piece in enumerate(pieces):
                if self.fail_after is not None and i >= self.fail_after and len(self.prompts) <= self.fail_calls:
                    raise ConnectionError("scripted LLM endpoint down")
                await asyncio.sleep(self.delay)
                if stats is not None:
                    stats.completion_tokens += 1
                yield piece
            if stats is not None:  # like the real backends: generation wall time, set when the stream ends
                stats.total_s = time.perf_counter() - t0
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


class ScriptedTTS(TTS):
    """`per_word` seconds of a 300 Hz tone per word, one chunk per clause, with word timings."""

    sample_rate = RATE

    def __init__(self, per_word: float = 0.1, fail: bool = False) -> None:
        self.per_word, self.fail = per_word, fail
        self.texts: list[str] = []

    async def stream(self, text: str) -> AsyncIterator[TTSChunk]:
        if not text.strip():
            raise StageInputError("empty text")
        self.texts.append(text)
        await asyncio.sleep(0.005)
        if self.fail:
            raise StageError("scripted TTS failure")
        from cvi_lab.media import Timing

        words = text.split()
        timings = [Timing(w, i * self.per_word, (i + 1) * self.per_word) for i, w in enumerate(words)]
        yield TTSChunk(tone(self.per_word * len(words), 0.2, 300.0), RATE, text=text, words=timings)


class BlankAvatar(StreamingAvatar):
    """The real streaming avatar base (queue, pacing, clear) rendering a tiny blank image."""

    def __init__(self, fps: int = 50, **_per_call) -> None:  # replica_dir, apply_greenscreen, seed: unused
        super().__init__(fps=fps, width=32, height=32, audio_rate=RATE, render_in_thread=False)

    def render_frame(self, index: int, audio: np.ndarray, cue: FrameCue) -> np.ndarray:
        return np.zeros((self.height, self.width, 3), np.uint8)


def energy_vad(min_silence_ms: float = 200) -> EnergyVAD:
    return EnergyVAD(threshold_dbfs=-30.0, min_silence_ms=min_silence_ms, min_speech_ms=60)
