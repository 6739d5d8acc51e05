"""The participant's microphone: a paced 48 kHz mono track that plays queued PCM, silence otherwise.

Why its own module: the time each voiced 10 ms went out is where a response-latency measurement starts
(SPEC §4), so the track is paced like a real mic and remembers what it sent.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from cvi_lab.audio import to_int16
from cvi_lab.transport.heard import RATE, WINDOW, db_to_amp, voiced_windows

log = logging.getLogger(__name__)

FRAME = 960  # 20 ms
_TIME_BASE = fractions.Fraction(1, RATE)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """A soundfile-readable file as mono float32 at its own rate."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise ValueError(f"cannot read audio file {path}: {exc}; accepted: WAV, FLAC, OGG") from exc
    return data.mean(axis=1), int(rate)


class MicrophoneTrack(MediaStreamTrack):
    """A paced 48 kHz mono mic: plays queued PCM, silence otherwise; remembers when voice went out."""

    kind = "audio"

    def __init__(self, voiced_dbfs: float = -40.0) -> None:
        super().__init__()
        self._threshold = db_to_amp(voiced_dbfs)
        self._buf = np.zeros(0, np.int16)
        self._pending: list[tuple[int, asyncio.Future]] = []  # (queued sample index, done future)
        self._queued = 0  # samples ever queued
        self._played = 0  # queued samples sent
        self._start: float | None = None
        self._emitted = 0
        self.voiced_sent: list[float] = []  # send time of each voiced 10 ms window
        self.frames_sent = 0

    def play(self, pcm48: np.ndarray) -> asyncio.Future:
        """Queue int16/float mono PCM at 48 kHz; the future resolves when its last sample has been sent."""
        pcm = to_int16(np.asarray(pcm48).reshape(-1))
        self._buf = np.concatenate([self._buf, pcm])
        self._queued += len(pcm)
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((self._queued, fut))
        if len(pcm) == 0:
            self._resolve()
        return fut

    def clear(self) -> None:
        """Stop talking now (drop what is queued)."""
        self._played += len(self._buf)
        self._buf = np.zeros(0, np.int16)
        self._resolve()

    def _resolve(self) -> None:
        while self._pending and self._pending[0][0] <= self._played:
            _, fut = self._pending.pop(0)
            if not fut.done():
                fut.set_result(time.monotonic())

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            now = time.monotonic()
            if self._start is None:
                self._start = now
            else:
                self._emitted += FRAME
                due = self._start + self._emitted / RATE
                if due > now:
                    await asyncio.sleep(due - now)
                elif now - due > 0.5:  # the loop stalled: skip ahead rather than burst
                    self._start = now - self._emitted / RATE
            sent_at = time.monotonic()
            take = min(FRAME, len(self._buf))
            pcm = self._buf[:take]
            self._buf = self._buf[take:]
            self._played += take
            if take < FRAME:
                pcm = np.concatenate([pcm, np.zeros(FRAME - take, np.int16)])
            if take:
                for w in voiced_windows(pcm, self._threshold):
                    self.voiced_sent.append(sent_at + (w + 1) * WINDOW / RATE)
            self._resolve()
            self.frames_sent += 1
        except (MediaStreamError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("microphone frame failed; sending silence")
            pcm = np.zeros(FRAME, np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._emitted
        frame.time_base = _TIME_BASE
        return frame

    def stop(self) -> None:
        super().stop()
        for _, fut in self._pending:
            if not fut.done():
                fut.cancel()
        self._pending.clear()
