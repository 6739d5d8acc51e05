"""Speech → mouth pose (openness, roundness), frame by frame, causally.

Why audio features first: every TTS gives audio, only some give timings. Openness follows the frame's own RMS
(dB, against an adaptive speech level, so loud and quiet voices both open fully) and roundness follows the
spectral centroid (rounded vowels are darker). Visemes from phoneme timings, or from a phoneme string spread
over the chunk's voiced regions (Piper), shape the pose: lips shut on p/b/m, round on o/u/w, wide on a.
No lookahead: the pose for a frame comes from the audio that plays in that frame, so lip-sync lag stays
within the frame.
"""

from __future__ import annotations

import librosa
import numpy as np

from cvi_lab.media import TTSChunk

# viseme class -> (openness factor, roundness)
VISEMES: dict[str, tuple[float, float]] = {
    "closed": (0.15, 0.0),
    "fv": (0.35, -0.2),
    "round": (0.8, 1.0),
    "open": (1.1, 0.0),
    "spread": (0.75, -0.6),
    "neutral": (0.85, 0.0),
}
_PHONEME_CLASS: dict[str, str] = {}
for _chars, _cls in (
    ("pbm", "closed"),
    ("fv", "fv"),
    ("oʊuwɔɒʊɵʉy", "round"),
    ("aɑæʌɐɶ", "open"),
    ("iɪeɛɪəɚɜ", "spread"),
):
    for _c in _chars:
        _PHONEME_CLASS[_c] = _cls
_SKIP = set("ˈˌːˑ‿ .,;:!?-—\"'()\n\t")
_VOWELS = set("aɑæʌɐɶoʊuɔɒɵʉyiɪeɛəɚɜ")


def phoneme_class(label: str) -> str:
    """Viseme class of a phoneme label (IPA; the first letter decides; unknown → neutral)."""
    for ch in label:
        if ch in _SKIP:
            continue
        return _PHONEME_CLASS.get(ch, "neutral")
    return "neutral"


def viseme_segments(samples: np.ndarray, rate: int, chunk: TTSChunk) -> list[tuple[int, int, str]]:
    """Viseme segments (start, end, class) in samples at `rate` for one chunk: from phoneme timings when the
    TTS gives them, else the phoneme string spread over voiced regions weighted vowel 1.6 : consonant 1."""
    if chunk.phonemes:
        return [(int(t.start * rate), int(t.end * rate), phoneme_class(t.label)) for t in chunk.phonemes if t.end > t.start]
    if not chunk.phoneme_string:
        return []
    symbols = [c for c in chunk.phoneme_string if c not in _SKIP]
    if not symbols:
        return []
    hop = max(1, rate // 100)  # 10 ms
    n = len(samples) // hop
    if n == 0:
        return []
    rms = librosa.feature.rms(y=np.asarray(samples, np.float32), frame_length=hop, hop_length=hop, center=False)[0]
    db = librosa.amplitude_to_db(rms, ref=1.0, amin=1e-6, top_db=None)  # 10 ms frames, dB re full scale
    voiced = np.nonzero(db > max(-50.0, db.max() - 35.0))[0]
    if voiced.size == 0:
        return []
    weights = np.array([1.6 if c in _VOWELS else 1.0 for c in symbols])
    bounds = np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum() * voiced.size
    segs = []
    for i, c in enumerate(symbols):
        a, b = int(bounds[i]), max(int(bounds[i]) + 1, int(bounds[i + 1]))
        idx = voiced[a:min(b, voiced.size)]
        if idx.size == 0:
            continue
        # a symbol's voiced frames may span a pause: emit one segment per contiguous run
        runs = np.split(idx, np.nonzero(np.diff(idx) > 1)[0] + 1)
        for r in runs:
            segs.append((int(r[0] * hop), int((r[-1] + 1) * hop), phoneme_class(c)))
    return segs


class MouthDriver:
    """Per-frame pose from the frame's audio; deterministic, causal, cheap (one FFT of ~900 samples)."""

    def __init__(self, rate: int, floor_db: float = -48.0, range_db: float = 24.0, gamma: float = 0.8,
                 release: float = 0.35, level_init_db: float = -18.0) -> None:
        self.rate = rate
        self.floor_db, self.range_db, self.gamma, self.release = floor_db, range_db, gamma, release
        self.level_init_db = level_init_db
        self.reset()

    def reset(self) -> None:
        self.level_db = self.level_init_db
        self.open = 0.0
        self.round = 0.0

    def close_now(self) -> None:
        """Barge-in: the next pose is closed (no release tail)."""
        self.open = 0.0
        self.round = 0.0

    def step(self, audio: np.ndarray, label: str | None = None) -> tuple[float, float]:
        if len(audio) == 0:
            target, rnd = 0.0, 0.0
        else:
            rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
            db = 20 * np.log10(rms + 1e-9)
            if db > self.floor_db:
                # adaptive speech level: jumps up to loud frames, sinks slowly (about 1 dB per second at 25 fps)
                self.level_db = max(db, self.level_db - 0.04)
            lo = self.level_db - self.range_db
            target = 0.0 if db <= self.floor_db else float(np.clip((db - lo) / self.range_db, 0.0, 1.0)) ** self.gamma
            rnd = 0.0
            if target > 0:
                spec = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
                freqs = np.fft.rfftfreq(len(audio), 1.0 / self.rate)
                band = (freqs > 200) & (freqs < 4000)
                centroid = float((spec[band] * freqs[band]).sum() / (spec[band].sum() + 1e-9))
                rnd = float(np.clip((1300.0 - centroid) / 700.0, -0.6, 1.0))
            if label is not None:
                f, r = VISEMES.get(label, VISEMES["neutral"])
                target = min(1.0, target * f)
                rnd = 0.5 * rnd + 0.5 * r
        # open at once (no lag), close with a short release; roundness eases
        self.open = target if target >= self.open else max(target, self.open * self.release)
        self.round = 0.5 * self.round + 0.5 * rnd if target > 0 else self.round * 0.5
        return self.open, self.round
