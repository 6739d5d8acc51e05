"""What a participant received, with arrival times, and the analysis of it (voiced or silent, when).

Why apart from the peer connection: response latency (SPEC §4), barge-in and lip-sync are all read from
the received audio the same way (10 ms RMS windows over -40 dBFS are "voiced"); the demo, the lab, the
benchmarks and the tests ask these questions of one recording instead of each scanning it themselves.
Times are `time.monotonic()` seconds. A chunk that arrives at A holds audio playable from A on, so its
sample k is counted at A + k/48000.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvi_lab.audio import to_float32
from cvi_lab.transport.media import resample_int16

RATE = 48_000
WINDOW = 480  # 10 ms energy windows for voiced detection


def db_to_amp(dbfs: float) -> float:
    return float(10 ** (dbfs / 20.0))


def voiced_windows(pcm: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of 10 ms windows whose RMS (float scale) exceeds `threshold`."""
    x = to_float32(pcm)
    n = len(x) // WINDOW
    if n == 0:
        return np.zeros(0, int)
    rms = np.sqrt(np.mean(x[: n * WINDOW].reshape(n, WINDOW) ** 2, axis=1))
    return np.nonzero(rms > threshold)[0]


@dataclass
class VideoRecord:
    arrival: float
    pts: int | None
    width: int
    height: int


@dataclass
class Recording:
    """What the participant received, with arrival times (monotonic seconds)."""

    audio_chunks: list[np.ndarray] = field(default_factory=list)  # int16 mono 48 kHz
    audio_arrivals: list[float] = field(default_factory=list)  # one per chunk
    audio_offsets: list[int] = field(default_factory=list)  # first sample index of each chunk
    audio_samples: int = 0
    video: list[VideoRecord] = field(default_factory=list)
    images: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (arrival, RGB) every Nth frame
    events: list[tuple[float, Any]] = field(default_factory=list)

    def add_audio(self, arrival: float, pcm: np.ndarray) -> None:
        self.audio_offsets.append(self.audio_samples)
        self.audio_arrivals.append(arrival)
        self.audio_chunks.append(pcm)
        self.audio_samples += len(pcm)

    def audio(self, rate: int = RATE) -> np.ndarray:
        """All received audio, float32 mono at `rate`."""
        pcm = np.concatenate(self.audio_chunks) if self.audio_chunks else np.zeros(0, np.int16)
        return to_float32(resample_int16(pcm, RATE, rate))

    def audio_between(self, since: float, until: float) -> np.ndarray:
        """The received chunks that arrived in [since, until], float32 at 48 kHz."""
        chunks = [c for a, c in zip(self.audio_arrivals, self.audio_chunks) if since <= a <= until]
        return to_float32(np.concatenate(chunks)) if chunks else np.zeros(0, np.float32)

    def _first_voiced(self, t: float, threshold: float) -> tuple[int, int] | None:
        """(chunk, window in it) of the first voiced 10 ms window in a chunk that arrived after `t`."""
        i = bisect.bisect_left(self.audio_arrivals, t)
        for j in range(i, len(self.audio_chunks)):
            windows = voiced_windows(self.audio_chunks[j], threshold)
            if len(windows):
                return j, int(windows[0])
        return None

    def first_voiced_after(self, t: float, threshold: float) -> float | None:
        """Time of the first voiced 10 ms window in a chunk that arrived after `t` (None if none yet)."""
        found = self._first_voiced(t, threshold)
        return None if found is None else self.audio_arrivals[found[0]] + found[1] * WINDOW / RATE

    def first_voiced_sample_after(self, t: float, threshold: float) -> int | None:
        """Where `first_voiced_after(t)` lies in `audio()` at RATE: its sample index (None if none yet)."""
        found = self._first_voiced(t, threshold)
        return None if found is None else self.audio_offsets[found[0]] + found[1] * WINDOW

    def last_voiced_between(self, since: float, until: float | None, threshold: float) -> float | None:
        """End time of the last voiced 10 ms window in a chunk that arrived in [since, until]."""
        last = None
        i = bisect.bisect_left(self.audio_arrivals, since)
        for arrival, chunk in zip(self.audio_arrivals[i:], self.audio_chunks[i:]):
            if until is not None and arrival > until:
                break
            windows = voiced_windows(chunk, threshold)
            if len(windows):
                last = arrival + (windows[-1] + 1) * WINDOW / RATE
        return last

    def voice_stopped_after(self, start: float, quiet_s: float, threshold: float) -> float | None:
        """End of the last voiced window before the received audio first went quiet for `quiet_s` after
        `start` (counting from `start` itself); None if it has not gone quiet that long yet."""
        last = start
        i = bisect.bisect_left(self.audio_arrivals, start)
        for arrival, chunk in zip(self.audio_arrivals[i:], self.audio_chunks[i:]):
            windows = voiced_windows(chunk, threshold)
            if len(windows):
                last = arrival + (windows[-1] + 1) * WINDOW / RATE
            elif arrival - last >= quiet_s:
                return last
        return None
