"""Shared fixtures for stage tests: real synthesized speech (Piper, the joe voice shipped in pip), cached per
session. Keep additions small and generic; several stage test modules share this file."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from omegaconf import DictConfig

from cvi_lab.config import load_group

SR = 16_000


def stage_conf(group: str, name: str) -> DictConfig:
    """The shipped config of one stage option (`cvi_lab/conf/<group>/<name>.yaml`), composed as the server does."""
    return load_group(group, name)


@pytest.fixture(scope="session")
def piper_voice():
    """The shipped Piper voice (en_US joe medium), loaded once."""
    from piper import PiperVoice

    from cvi_lab import assets

    return PiperVoice.load(str(assets.locate("piper_joe_onnx")), str(assets.locate("piper_joe_json")))


def _deterministic():
    """Piper samples noise inside its network; zero noise scales make the same text give the same audio."""
    from piper import SynthesisConfig

    return SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)


@pytest.fixture(scope="session")
def synthesize(piper_voice):
    """`synthesize(text, sample_rate=16000) -> float32 mono` (cached): real speech for stage tests."""
    from cvi_lab.audio import resample

    cache: dict[tuple[str, int], np.ndarray] = {}

    def _synth(text: str, sample_rate: int = SR) -> np.ndarray:
        key = (text, sample_rate)
        if key not in cache:
            parts = [(c.audio_float_array, c.sample_rate) for c in piper_voice.synthesize(text, _deterministic())]
            audio = np.concatenate([resample(a, r, sample_rate) for a, r in parts]) * 0.5
            cache[key] = audio.astype(np.float32)
        return cache[key].copy()

    return _synth


@dataclass
class SpeechScene:
    """Speech with known silences: `segments` are the true [start, end) sample spans of speech."""

    audio: np.ndarray
    sample_rate: int
    segments: list[tuple[int, int]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def speech_span(audio: np.ndarray, sample_rate: int = SR, floor_db: float = -50.0) -> tuple[int, int]:
    """First and last sample of 10 ms frames louder than `floor_db` below the clip's peak frame."""
    hop = sample_rate // 100
    n = len(audio) // hop
    frames = audio[: n * hop].reshape(n, hop)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(db > db.max() + floor_db)
    return int(loud[0] * hop), int((loud[-1] + 1) * hop)


@pytest.fixture(scope="session")
def speech_with_pauses(synthesize) -> SpeechScene:
    """Three synthesized sentences separated by 1.2 s / 0.8 s of silence, with 0.6 s lead and 1.0 s tail."""
    texts = [
        "Hello, I would like to book a table for two people tonight.",
        "Do you have anything available around eight?",
        "Thank you very much.",
    ]
    gaps = [0.6, 1.2, 0.8, 1.0]
    pieces, segments, pos = [], [], 0
    for i, text in enumerate(texts):
        sil = np.zeros(int(gaps[i] * SR), dtype=np.float32)
        pieces.append(sil)
        pos += len(sil)
        speech = synthesize(text)
        a, b = speech_span(speech)
        speech = speech[a:b]  # trim the voice's own lead/tail so the inserted gaps are exact
        pieces.append(speech)
        segments.append((pos, pos + len(speech)))
        pos += len(speech)
    pieces.append(np.zeros(int(gaps[-1] * SR), dtype=np.float32))
    return SpeechScene(np.concatenate(pieces), SR, segments, texts)
