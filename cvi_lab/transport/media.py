"""Media tracks between aiortc and the engine: inbound mic audio -> 16 kHz frames; replica frames -> RTP.

Why these shapes:
- The engine wants 20 ms int16 frames at 16 kHz (contract.INBOUND_*); browsers send 48 kHz Opus. A streaming
  resampler (libswresample through PyAV) keeps filter state between frames, so chunk edges do not click.
- The replica's audio and video come together in one `VideoFrame`; outbound.py holds the tracks that send
  them (the audio track is the clock, the video track follows it; re-exported here).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from cvi_lab.audio import to_int16
from cvi_lab.transport.contract import INBOUND_FRAME_SAMPLES, INBOUND_SAMPLE_RATE
from cvi_lab.transport.outbound import (  # noqa: F401 - re-exported
    AUDIO_FRAME_SAMPLES,
    AUDIO_PTIME_S,
    RTP_AUDIO_RATE,
    VIDEO_CLOCK_RATE,
    OpusPacketizer,
    OutboundAudioTrack,
    OutboundVideoTrack,
)

log = logging.getLogger(__name__)

__all__ = [
    "AUDIO_FRAME_SAMPLES", "AUDIO_PTIME_S", "RTP_AUDIO_RATE", "VIDEO_CLOCK_RATE", "InboundAudio", "OpusPacketizer",
    "OutboundAudioTrack", "OutboundVideoTrack", "PcmResampler", "drain", "resample_int16",
]


class PcmResampler:
    """Streaming mono int16 resampler (stateful, so consecutive chunks join without clicks).

    The filter holds back a few samples at the start; that many zeros are put in front of the first output,
    so 20 ms in gives 20 ms out from the first chunk on. Why: frame boundaries stay aligned downstream
    (a 20 ms packet fills exactly one 20 ms engine frame instead of waiting for the next packet)."""

    def __init__(self, dst_rate: int, *, prime: bool = True) -> None:
        self.dst_rate = int(dst_rate)
        self._src_rate: int | None = None
        self._resampler: av.AudioResampler | None = None
        self._primed = not prime
        self._prime = prime

    def push_frame(self, frame: av.AudioFrame) -> np.ndarray:
        """Resample a decoded av.AudioFrame (any layout/format) to mono int16 at dst_rate."""
        if self._resampler is None or frame.sample_rate != self._src_rate:
            self._src_rate = frame.sample_rate
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.dst_rate)
            self._primed = not self._prime
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        pcm = np.concatenate(out).astype(np.int16, copy=False) if out else np.zeros(0, np.int16)
        if not self._primed:
            self._primed = True
            expected = round(frame.samples * self.dst_rate / frame.sample_rate)
            if len(pcm) < expected:
                pcm = np.concatenate([np.zeros(expected - len(pcm), np.int16), pcm])
        return pcm

    def push(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        """Resample mono PCM (float32 in [-1, 1] or int16) at `rate` to mono int16 at dst_rate."""
        arr = to_int16(np.asarray(pcm).reshape(-1))
        if len(arr) == 0:
            return np.zeros(0, np.int16)
        if int(rate) == self.dst_rate and self._resampler is None:
            return arr.copy()
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = int(rate)
        return self.push_frame(frame)

    def flush(self) -> np.ndarray:
        """The samples still inside the filter (call once, at the end of a stream)."""
        if self._resampler is None:
            return np.zeros(0, np.int16)
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(None)]
        self._resampler = None
        return np.concatenate(out).astype(np.int16, copy=False) if out else np.zeros(0, np.int16)


def resample_int16(pcm: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample a whole mono clip with libswresample (fast, and no scipy import stalling the event loop)."""
    if int(src_rate) == int(dst_rate):
        return to_int16(np.asarray(pcm).reshape(-1)).copy()
    r = PcmResampler(dst_rate, prime=False)
    head = r.push(pcm, src_rate)
    return np.concatenate([head, r.flush()])


class InboundAudio:
    """Participant track -> 16 kHz mono int16 frames of INBOUND_FRAME_SAMPLES, handed to `sink` at once."""

    def __init__(self, sink: Callable[[np.ndarray], None]) -> None:
        self._sink = sink
        self._resampler = PcmResampler(INBOUND_SAMPLE_RATE)
        self._pending = np.zeros(0, np.int16)
        self.frames_in = 0
        self.last_frame_at: float | None = None

    def feed(self, frame: av.AudioFrame) -> None:
        self.frames_in += 1
        self.last_frame_at = time.monotonic()
        pcm = self._resampler.push_frame(frame)
        buf = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        n = len(buf) // INBOUND_FRAME_SAMPLES
        for i in range(n):
            chunk = buf[i * INBOUND_FRAME_SAMPLES : (i + 1) * INBOUND_FRAME_SAMPLES]
            try:
                self._sink(chunk.copy())
            except Exception:
                log.exception("participant_audio sink raised; frame dropped")
        self._pending = buf[n * INBOUND_FRAME_SAMPLES :].copy()

    async def run(self, track: MediaStreamTrack) -> None:
        """Pump `track` until it ends; errors are logged, never silent."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("inbound audio recv failed; stopping this track")
                return
            try:
                self.feed(frame)
            except Exception:
                log.exception("inbound audio frame could not be converted; dropped")


async def drain(track: MediaStreamTrack) -> None:
    """Consume a track we do not use (e.g. a participant camera): aiortc queues frames unboundedly otherwise."""
    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("draining %s track failed", track.kind)
            return
