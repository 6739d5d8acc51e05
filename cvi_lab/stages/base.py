"""Typed interfaces every stage backend implements.

Why here: the engine talks only to these classes, so a backend is swapped by a Hydra config
(`cvi_lab/conf/<stage>/<name>.yaml`, built with `hydra.utils.instantiate`) and no stage imports another.

Conventions shared by all stages:
- audio is mono; `np.float32` in [-1, 1] unless a field says int16; every chunk carries its sample rate;
- the ASR side works at 16 kHz; TTS speaks at its native rate (`TTS.sample_rate`); resample at the edges;
- blocking inference runs in an executor (`run_blocking`), so the event loop never stalls;
- every `warmup()` loads weights and runs one tiny inference, so the first real call is not a cold start;
- every stream is cancellable: cancelling the consuming task stops the work within one step.
"""

from __future__ import annotations

import abc
import asyncio
import functools
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Literal, Sequence, TypeVar

import numpy as np

from cvi_lab.media import TTSChunk, VideoFrame
from cvi_lab.scheduling import ModelQueue

T = TypeVar("T")

ASR_SAMPLE_RATE = 16_000

# One small pool for every call's blocking model calls (on a 2-core machine more threads only add contention),
# served by the priority of the turn each call serves (`cvi_lab/scheduling.py`).
_EXECUTOR = ModelQueue(workers=4, name="cvi-stage")


async def run_blocking(fn: Callable[..., T], *args, **kwargs) -> T:
    """Run a blocking (model) call off the event loop, on the shared model queue."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_EXECUTOR, functools.partial(fn, *args, **kwargs))


class StageError(RuntimeError):
    """A stage could not do what was asked; the message says what was wrong and what is accepted."""


class StageInputError(StageError, ValueError):
    """Bad input given to a stage (empty text, wrong sample rate, unsupported language, ...)."""


class ModelMissingError(StageError, FileNotFoundError):
    """A model file is not installed; the message names the pip package that ships it."""


def check_pcm(audio: np.ndarray, sample_rate: int, expected_rate: int, what: str) -> np.ndarray:
    """Validate mono PCM for a stage and return it as float32 in [-1, 1]."""
    if sample_rate != expected_rate:
        raise StageInputError(f"{what}: audio sample rate {sample_rate} Hz is not accepted; expected {expected_rate} Hz")
    arr = np.asarray(audio)
    if arr.ndim != 1:
        raise StageInputError(f"{what}: audio must be mono (1-D), got shape {arr.shape}")
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    if arr.dtype.kind != "f":
        raise StageInputError(f"{what}: audio dtype {arr.dtype} is not accepted; use float32 in [-1, 1] or int16")
    return arr.astype(np.float32, copy=False)




# ---------------------------------------------------------------- VAD
@dataclass
class VADEvent:
    """Speech boundary. `sample` counts samples (at the VAD's rate) since the stream started / last reset."""

    kind: Literal["speech_start", "speech_end"]
    sample: int
    sample_rate: int

    @property
    def time(self) -> float:
        return self.sample / float(self.sample_rate)


class VAD(abc.ABC):
    """Streaming voice activity detection: push 16 kHz PCM, get boundary events with sample timestamps."""

    sample_rate: int = ASR_SAMPLE_RATE

    async def warmup(self) -> None:  # pragma: no cover - default no-op
        return None

    @abc.abstractmethod
    def push(self, pcm: np.ndarray) -> list[VADEvent]:
        """Feed frames of any length (float32 or int16, mono, 16 kHz); return boundaries found in them.

        Cheap enough (< 1 ms per 32 ms frame) to run on the event loop."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget state and restart the sample counter at 0."""

    @property
    @abc.abstractmethod
    def speaking(self) -> bool:
        """True between a speech_start and the following speech_end."""

    @property
    def pending_end(self) -> int | None:
        """While speaking, once silence has begun: the `sample` the coming speech_end will carry if that silence
        lasts; None when the last frame was speech or nothing is spoken. A backend that cannot tell keeps None
        (the engine then starts its end-of-turn work at speech_end)."""
        return None


# ---------------------------------------------------------------- end of turn
class TurnDetector(abc.ABC):
    """Given the audio of the current user turn (16 kHz), the probability that the turn is complete."""

    sample_rate: int = ASR_SAMPLE_RATE

    async def warmup(self) -> None:  # pragma: no cover
        return None

    @abc.abstractmethod
    async def predict(self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE, silence_s: float = 0.0) -> float:
        """Probability in [0, 1] that the user has finished. `silence_s`: trailing silence heard so far."""


# ---------------------------------------------------------------- ASR
@dataclass
class Transcript:
    text: str
    language: str | None = None  # ISO 639-1 code, e.g. "en"
    language_probability: float | None = None
    words: list[tuple[str, float, float]] = field(default_factory=list)  # (word, start_s, end_s)


class ASR(abc.ABC):
    sample_rate: int = ASR_SAMPLE_RATE
    languages: Sequence[str] = ("en",)  # ISO 639-1 codes; "*" in the list = any (detects)

    async def warmup(self) -> None:  # pragma: no cover
        return None

    @abc.abstractmethod
    async def transcribe(self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE, language: str | None = None) -> Transcript:
        """Transcribe one utterance. `language=None` means the backend's default or detection."""

    async def partials(
        self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE, language: str | None = None
    ) -> AsyncIterator[Transcript]:
        """Optional interim results while speech goes on; default: one final result."""
        yield await self.transcribe(audio, sample_rate, language)


# ---------------------------------------------------------------- LLM
@dataclass
class ChatMessage:
    role: Literal["system", "user", "assistant", "tool"]
    content: str


@dataclass
class LLMStats:
    """Filled in by the LLM while streaming, read by the engine's latency record."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_s: float | None = None
    total_s: float | None = None
    queue_wait_s: float | None = None  # waited for the shared model (other calls' answers) before decoding


class LLM(abc.ABC):
    async def warmup(self) -> None:  # pragma: no cover
        return None

    @abc.abstractmethod
    def stream(
        self, messages: Sequence[ChatMessage], max_tokens: int | None = None, stats: LLMStats | None = None
    ) -> AsyncIterator[str]:
        """Async stream of text pieces. Cancelling the consumer stops generation within one token."""

    async def prime(self, messages: Sequence[ChatMessage]) -> None:
        """Compute the prompt state of `messages` (the prefix of the next call) while the call is idle, so the
        next answer prefills only what is new. Backends with a prompt cache implement it; default: nothing."""
        return None


# ---------------------------------------------------------------- TTS




class TTS(abc.ABC):
    sample_rate: int = 22_050
    languages: Sequence[str] = ("en",)

    async def warmup(self) -> None:  # pragma: no cover
        return None

    @abc.abstractmethod
    def stream(self, text: str) -> AsyncIterator[TTSChunk]:
        """Async stream of audio chunks for `text`. Empty/whitespace text raises StageInputError."""


# ---------------------------------------------------------------- avatar


class AvatarRenderer(abc.ABC):
    """LiveKit-style avatar contract: push speech audio, clear on barge-in, iterate frames in real time.

    A neural lip-sync backend (Wav2Lip/MuseTalk style) implements the same four methods and is selected
    with another `cvi_lab/conf/avatar/*.yaml`; the engine and transport do not change."""

    fps: int = 25
    width: int = 512
    height: int = 512

    async def warmup(self) -> None:  # pragma: no cover
        return None

    @abc.abstractmethod
    def push_audio(self, chunk: TTSChunk) -> None:
        """Queue speech audio (with optional timings) to be lip-synced and played."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Barge-in: drop all queued speech; the mouth closes on the next frame."""

    @abc.abstractmethod
    def frames(self) -> AsyncIterator[VideoFrame]:
        """Endless async iterator of frames at `fps`, paced by the renderer, idle motion when silent."""

    def close(self) -> None:
        """Release what the renderer holds (render threads); the engine calls it when the call ends."""
        return None
