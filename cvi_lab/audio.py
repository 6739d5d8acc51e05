"""Audio helpers used at the edges (files, resampling, format conversion): resample once, in one place."""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np


def to_float32(pcm: np.ndarray) -> np.ndarray:
    """int16 or float PCM -> float32 in [-1, 1]."""
    arr = np.asarray(pcm)
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    return arr.astype(np.float32, copy=False)


def to_int16(pcm: np.ndarray) -> np.ndarray:
    """float PCM in [-1, 1] (clipped) or int16 -> int16."""
    arr = np.asarray(pcm)
    if arr.dtype == np.int16:
        return arr
    return (np.clip(arr, -1.0, 1.0) * 32767.0).astype(np.int16)


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Polyphase resampling of mono float audio (returns float32); length ceil(n * dst / src), exact per chunk.

    Why scipy and not torchaudio or soxr: torchaudio's resample is no faster on a 20 ms chunk and would put
    torch on the server's import path; soxr HQ (librosa's resampler) is 2-5x faster and more accurate, but
    it changes the 16 kHz input every model hears, and the PocketSphinx baseline's JFK words flip on it."""
    x = to_float32(pcm)
    if src_rate == dst_rate or len(x) == 0:
        return x
    from scipy.signal import resample_poly

    g = gcd(int(src_rate), int(dst_rate))
    return resample_poly(x, dst_rate // g, src_rate // g).astype(np.float32)


def load_audio(path: str | Path, sample_rate: int | None = 16_000) -> tuple[np.ndarray, int]:
    """Read any soundfile-readable file, mix to mono, resample to `sample_rate` (None = keep)."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise ValueError(f"cannot read audio file {path}: {exc}; accepted: WAV, FLAC, OGG") from exc
    mono = data.mean(axis=1)
    if sample_rate is not None and rate != sample_rate:
        mono, rate = resample(mono, rate, sample_rate), sample_rate
    return mono.astype(np.float32), int(rate)


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int) -> Path:
    import soundfile as sf

    sf.write(str(path), to_int16(pcm), sample_rate, subtype="PCM_16")
    return Path(path)


def rms_dbfs(pcm: np.ndarray) -> float:
    x = to_float32(pcm)
    if len(x) == 0:
        return -120.0
    return float(20 * np.log10(np.sqrt(np.mean(x * x)) + 1e-9))
