"""Lip-sync and avatar quality measured from rendered frames + audio only (never the renderer's internals).

Why black-box: the lab compares avatar backends (parametric, neural); all of them must be judged by what a
viewer sees and hears. Measures:
- mouth openness per frame: dark-pixel fraction inside a mouth box found on the frames themselves (Haar face on
  the first frame → lower-face box), minus its quietest value;
- speech envelope per frame: RMS of the audio that plays during the frame, in dB above a floor;
- lip-sync offset: lag of the peak of the normalised cross-correlation (positive = video late), refined to
  sub-frame by a parabola, and the peak correlation;
- mouth closed through silences; green screen exact on background pixels; frames not frozen while idle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from cvi_lab.media import GREENSCREEN_RGB

KEY = GREENSCREEN_RGB


def find_mouth_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the mouth area: the lower-middle of the largest Haar frontal face."""
    import os

    import cv2

    grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
    faces = cascade.detectMultiScale(grey, 1.08, 5, minSize=(24, 24))
    if len(faces) == 0:
        raise ValueError("no face found in the first frame; pass mouth_box explicitly")
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return int(x + 0.22 * w), int(y + 0.62 * h), int(x + 0.78 * w), int(y + 1.08 * h)


def mouth_openness(images: Sequence[np.ndarray], box: tuple[int, int, int, int], dark: float | None = None) -> np.ndarray:
    """Fraction of dark pixels in the mouth box per frame, minus the minimum over the clip (0 = most closed).

    `dark`: luminance threshold; default 45 % of the box's median luminance in the first frame (skin), which
    counts the shadowed inner mouth and not lips or skin."""
    x0, y0, x1, y1 = box
    lum = [(img[y0:y1, x0:x1].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) for img in images]
    thr = 0.45 * float(np.median(lum[0])) if dark is None else dark
    raw = np.array([(l < thr).mean() for l in lum])
    return raw - raw.min()


def speech_envelope(audio_per_frame: Sequence[np.ndarray], floor_db: float = -50.0) -> np.ndarray:
    """Per-frame loudness: RMS in dB above `floor_db` (0 in silence)."""
    out = []
    for a in audio_per_frame:
        a = np.asarray(a, np.float64)
        rms = np.sqrt(np.mean(a * a)) if len(a) else 0.0
        out.append(max(0.0, 20 * np.log10(rms + 1e-9) - floor_db))
    return np.array(out)


def split_audio(audio: np.ndarray, rate: int, fps: float, n_frames: int) -> list[np.ndarray]:
    """Cut one audio track into the samples that play during each frame."""
    edges = [int(i * rate / fps) for i in range(n_frames + 1)]
    return [audio[edges[i] : edges[i + 1]] for i in range(n_frames)]


def xcorr_offset(video: np.ndarray, audio: np.ndarray, fps: float, max_lag_frames: int = 5) -> tuple[float, float, float]:
    """(offset_ms, peak_corr, corr_at_zero). offset > 0: the mouth moves after the sound."""

    def corr(lag: int) -> float:
        if lag >= 0:
            a, v = audio[: len(audio) - lag], video[lag:]
        else:
            a, v = audio[-lag:], video[: len(video) + lag]
        if len(a) < 3 or a.std() == 0 or v.std() == 0:
            return 0.0
        return float(np.corrcoef(a, v)[0, 1])

    lags = list(range(-max_lag_frames, max_lag_frames + 1))
    cs = np.array([corr(lag) for lag in lags])
    i = int(np.argmax(cs))
    frac = 0.0
    if 0 < i < len(cs) - 1:
        den = cs[i - 1] - 2 * cs[i] + cs[i + 1]
        if den < 0:
            frac = 0.5 * (cs[i - 1] - cs[i + 1]) / den
    return (lags[i] + frac) * 1000.0 / fps, float(cs[i]), float(cs[max_lag_frames])


@dataclass
class LipSyncReport:
    offset_ms: float
    peak_corr: float
    corr_at_zero: float
    closed_in_silence: bool
    max_open_in_silence: float  # relative to the clip's max openness
    silence_frames: int
    speech_frames: int
    openness: np.ndarray = field(repr=False)
    envelope: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not isinstance(v, np.ndarray)}


def lipsync_report(
    images: Sequence[np.ndarray],
    audio_per_frame: Sequence[np.ndarray],
    fps: float,
    mouth_box: tuple[int, int, int, int] | None = None,
    silence_db: float = -50.0,
    closed_frac: float = 0.15,
    guard_frames: int = 2,
) -> LipSyncReport:
    """Lip-sync quality of a rendered clip. Silence = frames whose audio and `guard_frames` neighbours on each
    side are below `silence_db`; closed = openness below `closed_frac` of the clip's maximum there."""
    box = mouth_box or find_mouth_box(images[0])
    op = mouth_openness(images, box)
    env = speech_envelope(audio_per_frame, floor_db=silence_db)
    offset, peak, zero = xcorr_offset(op, env, fps)
    quiet = env <= 0
    k = guard_frames
    silent = np.array([quiet[max(0, i - k) : i + k + 1].all() for i in range(len(quiet))])
    top = float(op.max()) or 1.0
    max_sil = float(op[silent].max() / top) if silent.any() else 0.0
    return LipSyncReport(
        offset_ms=offset,
        peak_corr=peak,
        corr_at_zero=zero,
        closed_in_silence=max_sil < closed_frac,
        max_open_in_silence=max_sil,
        silence_frames=int(silent.sum()),
        speech_frames=int((~quiet).sum()),
        openness=op,
        envelope=env,
    )


def greenscreen_check(image: np.ndarray, background: np.ndarray, person: np.ndarray, key=KEY) -> dict:
    """Given boolean masks of surely-background and surely-person pixels: are all background pixels exactly
    the key colour, and no person pixel is?"""
    is_key = np.all(image == np.array(key, np.uint8), axis=-1)
    return {
        "background_exact": bool(is_key[background].all()),
        "background_wrong_px": int((~is_key[background]).sum()),
        "person_key_px": int(is_key[person].sum()),
        "key_fraction": float(is_key.mean()),
    }


def idle_motion(images: Sequence[np.ndarray], min_mean_abs_diff: float = 0.02) -> dict:
    """Are consecutive frames different (not frozen)? Mean absolute difference per pair and the longest run
    of pairs below `min_mean_abs_diff` grey levels."""
    diffs = np.array([np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() for a, b in zip(images[:-1], images[1:])])
    frozen = diffs < min_mean_abs_diff
    run = best = 0
    for f in frozen:
        run = run + 1 if f else 0
        best = max(best, run)
    return {
        "mean_abs_diff": float(diffs.mean()) if len(diffs) else 0.0,
        "min_abs_diff": float(diffs.min()) if len(diffs) else 0.0,
        "frozen_pairs": int(frozen.sum()),
        "longest_frozen_run": int(best),
    }
