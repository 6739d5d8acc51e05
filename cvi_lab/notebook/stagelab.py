"""Each stage on its own, from notebook code: speak, render a clip, transcribe, chat, compare two backends.

Why: trying one stage in isolation (hear a voice, read a transcript, time an answer) is how a researcher
picks the backends before putting them in a call. Stages are built from the same Hydra configs the server
uses (`cvi_lab/conf/<stage>/<name>.yaml`, given as "name" or "name key=value ..."), loaded once per kernel, and run
on a private loop thread, so plain functions and widget callbacks can call them.
"""

from __future__ import annotations

import pathlib
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from cvi_lab.audio import load_audio, resample
from cvi_lab.config import group_options
from cvi_lab.notebook.loop import BackgroundLoop

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED_SAMPLE = REPO.parent / "shared" / "data" / "jfk.flac"
SAMPLE_TEXT = "And so, my fellow Americans: ask not what your country can do for you, ask what you can do for your country."
ASR_RATE = 16_000


class StageLabError(ValueError):
    """Bad input to a stage or an unknown backend; the message says what is accepted."""


def options(group: str) -> list[str]:
    """Backends of a stage group: the config names Hydra finds for it (shipped and the user's)."""
    return group_options(group)


def parse_spec(spec: str) -> tuple[str, list[str]]:
    """"piper length_scale=1.3" -> ("piper", ["length_scale=1.3"])."""
    parts = shlex.split(str(spec or ""))
    if not parts:
        raise StageLabError("empty backend name")
    for p in parts[1:]:
        if "=" not in p:
            raise StageLabError(f"{p!r} in {spec!r} is not key=value")
    return parts[0], parts[1:]


def sample_audio() -> pathlib.Path | None:
    """A real speech recording when the shared test data is there (JFK, 11 s), else None."""
    return SHARED_SAMPLE if SHARED_SAMPLE.exists() else None


@dataclass
class Speech:
    samples: np.ndarray  # float32 mono
    sample_rate: int
    text: str
    backend: str
    chunks: list[Any] = field(repr=False, default_factory=list)  # TTSChunks (timings/phonemes for the avatar)
    first_audio_ms: float = 0.0
    total_ms: float = 0.0

    @property
    def seconds(self) -> float:
        return len(self.samples) / float(self.sample_rate)

    def at(self, rate: int = ASR_RATE) -> np.ndarray:
        return resample(self.samples, self.sample_rate, rate)


@dataclass
class Clip:
    path: pathlib.Path
    frames: int
    fps: int
    render_ms_per_frame: float

    @property
    def seconds(self) -> float:
        return self.frames / float(self.fps)


@dataclass
class Heard:
    text: str
    backend: str
    ms: float
    audio_seconds: float
    language: str | None = None

    @property
    def real_time_factor(self) -> float:
        return (self.ms / 1000.0) / self.audio_seconds if self.audio_seconds else 0.0


@dataclass
class Reply:
    text: str
    backend: str
    first_token_ms: float | None
    total_ms: float
    completion_tokens: int
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / (self.total_ms / 1000.0) if self.total_ms else 0.0


class StageLab:
    """Loads stages by config name (once) and runs them synchronously. `lab.speak("Hi")`, `lab.chat("Hi")`."""

    def __init__(self, out_dir: str | pathlib.Path | None = None) -> None:
        self.loop = BackgroundLoop("cvi-lab-stages")
        self.out_dir = pathlib.Path(out_dir or tempfile.mkdtemp(prefix="cvi-lab-stages-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._stages: dict[tuple[str, str], Any] = {}
        self._clips = 0

    # ------------------------------------------------------------ loading
    def config(self, group: str, spec: str) -> Any:
        """The composed config of one backend, with its overrides, as the server would build it."""
        from hydra.errors import HydraException

        from cvi_lab.cli import compose_config

        name, overrides = parse_spec(spec)
        if name not in options(group):
            raise StageLabError(f"unknown {group} backend {name!r}; available: {', '.join(options(group)) or 'none'}")
        try:
            cfg = compose_config([f"{group}={name}", *(f"{group}.{o}" for o in overrides)])
        except HydraException as exc:
            raise StageLabError(f"{group} {spec!r}: {exc}") from None
        return cfg[group]

    def stage(self, group: str, spec: str, timeout: float = 600.0) -> Any:
        """A warmed-up stage instance, built on first use and kept for the kernel's lifetime."""
        key = (group, " ".join(shlex.split(spec)))
        if key not in self._stages:
            cfg = self.config(group, spec)

            async def build() -> Any:
                from hydra.utils import instantiate

                stage = instantiate(cfg, _convert_="all")
                await stage.warmup()
                return stage

            self._stages[key] = self.loop.run(build(), timeout)
        return self._stages[key]

    @property
    def loaded(self) -> list[str]:
        return [f"{g}={s}" for g, s in self._stages]

    # ------------------------------------------------------------ TTS
    def speak(self, text: str, tts: str = "piper") -> Speech:
        """Text -> speech with a TTS backend; times the first audio and the whole synthesis."""
        if not str(text or "").strip():
            raise StageLabError("text: empty; type something for the replica to say")
        stage = self.stage("tts", tts)

        async def run() -> Speech:
            t0 = time.perf_counter()
            chunks, first = [], None
            async for chunk in stage.stream(text):
                first = first if first is not None else time.perf_counter() - t0
                chunks.append(chunk)
            total = time.perf_counter() - t0
            rate = chunks[0].sample_rate if chunks else int(stage.sample_rate)
            samples = np.concatenate([c.samples for c in chunks]).astype(np.float32) if chunks else np.zeros(0, np.float32)
            return Speech(samples, rate, text, tts, chunks, (first or 0.0) * 1000, total * 1000)

        return self.loop.run(run(), 300)

    # ------------------------------------------------------------ avatar
    def render(self, speech: Speech, avatar: str = "portrait_256", greenscreen: bool = False,
               replica_dir: str | pathlib.Path | None = None, pad_s: float = 0.3) -> Clip:
        """The replica saying `speech`: rendered offline (as fast as possible), written as an MP4 with audio."""
        from hydra.utils import instantiate

        from cvi_lab.stages.avatar.preview import write_mp4

        cfg = self.config("avatar", avatar)
        renderer = instantiate(cfg, _convert_="all", replica_dir=str(replica_dir) if replica_dir else None,
                               apply_greenscreen=bool(greenscreen), render_in_thread=False,
                               audio_rate=speech.sample_rate)
        t0 = time.perf_counter()
        frames = renderer.render_offline(speech.chunks, pad_s=pad_s)
        per_frame = (time.perf_counter() - t0) * 1000 / max(1, len(frames))
        renderer.close()  # declared by AvatarRenderer
        self._clips += 1
        path = write_mp4(frames, self.out_dir / f"clip{self._clips}.mp4", renderer.fps)
        return Clip(path, len(frames), renderer.fps, per_frame)

    # ------------------------------------------------------------ ASR
    def transcribe(self, audio: np.ndarray | str | pathlib.Path | Speech, sample_rate: int = ASR_RATE,
                   asr: str = "faster_whisper_tiny_en", language: str | None = None) -> Heard:
        """Audio (an array at `sample_rate`, a file, or a Speech) -> text, timed."""
        pcm = self.audio16k(audio, sample_rate)
        stage = self.stage("asr", asr)

        async def run() -> Heard:
            t0 = time.perf_counter()
            result = await stage.transcribe(pcm, ASR_RATE, language)
            return Heard(result.text.strip(), asr, (time.perf_counter() - t0) * 1000, len(pcm) / ASR_RATE,
                         result.language)

        return self.loop.run(run(), 300)

    @staticmethod
    def audio16k(audio: np.ndarray | str | pathlib.Path | Speech, sample_rate: int = ASR_RATE) -> np.ndarray:
        if isinstance(audio, Speech):
            return audio.at(ASR_RATE)
        if isinstance(audio, (str, pathlib.Path)):
            path = pathlib.Path(audio).expanduser()
            if not path.is_file():
                raise StageLabError(f"audio file {path} does not exist")
            try:
                return load_audio(path, ASR_RATE)[0]
            except ValueError as exc:
                raise StageLabError(str(exc)) from None
        arr = np.asarray(audio)
        if arr.ndim != 1 or arr.size == 0:
            raise StageLabError(f"audio must be a non-empty mono array, got shape {arr.shape}")
        return resample(arr, int(sample_rate), ASR_RATE)

    # ------------------------------------------------------------ LLM
    def chat(self, messages: str | Sequence[dict[str, str]], llm: str = "hf_causal", max_tokens: int = 48,
             system: str | None = "You are a friendly, concise assistant. Answer in one or two short sentences.",
             on_text: Any = None) -> Reply:
        """One answer from the LLM. `messages`: a user message, or [{role, content}, ...] (history).
        `on_text(text_so_far)` is called as pieces stream in (on the stage thread)."""
        from cvi_lab.stages.base import ChatMessage, LLMStats

        if isinstance(messages, str):
            if not messages.strip():
                raise StageLabError("message: empty; type a question")
            messages = [{"role": "user", "content": messages}]
        try:
            max_tokens = int(max_tokens)
        except (TypeError, ValueError):
            raise StageLabError(f"max_tokens: {max_tokens!r} is not an integer") from None
        if not 1 <= max_tokens <= 4096:
            raise StageLabError(f"max_tokens: {max_tokens} is not accepted; use 1..4096")
        chat = ([ChatMessage("system", system)] if system else []) + [
            ChatMessage(m["role"], m["content"]) for m in messages]
        stage = self.stage("llm", llm)

        async def run() -> Reply:
            stats = LLMStats()
            t0 = time.perf_counter()
            first, text = None, ""
            async for piece in stage.stream(chat, max_tokens=max_tokens, stats=stats):
                first = first if first is not None else time.perf_counter() - t0
                text += piece
                if on_text is not None:
                    on_text(text)
            total = (time.perf_counter() - t0) * 1000
            return Reply(text.strip(), llm, None if first is None else first * 1000, total,
                         stats.completion_tokens, stats.prompt_tokens, stats.cached_prompt_tokens)

        return self.loop.run(run(), 600)

    # ------------------------------------------------------------ side by side
    def check_backends(self, group: str, backends: Sequence[str]) -> None:
        """Refuse an unknown backend or bad override before any model loads (a bad B must not load A first)."""
        for backend in backends:
            self.config(group, backend)

    def compare_asr(self, audio: Any, backends: Sequence[str], sample_rate: int = ASR_RATE) -> list[Heard]:
        self.check_backends("asr", backends)
        pcm = self.audio16k(audio, sample_rate)
        return [self.transcribe(pcm, ASR_RATE, asr=b) for b in backends]

    def compare_tts(self, text: str, backends: Sequence[str]) -> list[Speech]:
        self.check_backends("tts", backends)
        return [self.speak(text, tts=b) for b in backends]

    def compare_llm(self, message: str, backends: Sequence[str], max_tokens: int = 48) -> list[Reply]:
        self.check_backends("llm", backends)
        return [self.chat(message, llm=b, max_tokens=max_tokens) for b in backends]

    def close(self) -> None:
        self._stages.clear()
        self.loop.stop()


def word_error_rate(reference: str, hypothesis: str) -> float | None:
    """WER after the lab's normalisation (lowercase, no punctuation), for the side-by-side table."""
    from cvi_lab.lab.metrics import wer

    return wer([reference], [hypothesis])
