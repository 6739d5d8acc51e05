"""Media tracks between aiortc and the engine: inbound mic audio -> 16 kHz frames; replica frames -> RTP.

Why these shapes:
- The engine wants 20 ms int16 frames at 16 kHz (contract.INBOUND_*); browsers send 48 kHz Opus. A streaming
  resampler (libswresample through PyAV) keeps filter state between frames, so chunk edges do not click.
- The replica's audio and video come together in one `VideoFrame`. The audio track is the clock: it emits a
  20 ms frame every 20 ms whatever happens (silence when the source is late, so RTP stays continuous and
  never glitches), and the video track releases each image when the audio that belongs to it goes out, so
  the receiver gets them in sync. Buffers are kept shallow (tens of ms) because latency is the product.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import time
from typing import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from cvi_lab.audio import to_int16
from cvi_lab.transport.contract import INBOUND_FRAME_SAMPLES, INBOUND_SAMPLE_RATE

log = logging.getLogger(__name__)

RTP_AUDIO_RATE = 48_000
AUDIO_PTIME_S = 0.020
AUDIO_FRAME_SAMPLES = int(RTP_AUDIO_RATE * AUDIO_PTIME_S)  # 960
VIDEO_CLOCK_RATE = 90_000
_AUDIO_TIME_BASE = fractions.Fraction(1, RTP_AUDIO_RATE)
_VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


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


class OutboundAudioTrack(MediaStreamTrack):
    """The replica's voice to one peer: 48 kHz mono, 20 ms frames, paced by its own clock.

    `push()` appends replica audio (already 48 kHz int16). `recv()` is called by aiortc's sender: it waits
    for the next 20 ms slot, takes 960 samples, and pads with silence when the source is late, so RTP
    timestamps stay continuous. While audio is flowing and a slot finds the buffer short, it waits up to
    `underrun_wait_s` for the source before padding (hides frame-arrival jitter without adding latency).
    When the queue passes `max_buffer_s` (the source burst after a stall), the oldest audio is dropped down to
    `target_buffer_s`: one audible skip instead of a permanent delay.

    Phase tracking: audio that arrives just after a slot waits up to 20 ms for the next one, and a queue left
    over from a hiccup would delay everything after it for good (in and out rates are equal). The track
    watches how long each push's first sample waits (over `phase_window` pushes) and moves its slots earlier,
    at most `phase_step_s` at a time, until the shortest wait is `phase_margin_s`: 10-20 ms less latency,
    RTP timestamps unchanged (the receiver sees packets slightly early, which its jitter buffer absorbs).
    `phase_step_s=0` turns it off.
    """

    kind = "audio"

    def __init__(
        self,
        *,
        underrun_wait_s: float = 0.015,
        max_buffer_s: float = 0.2,
        target_buffer_s: float = 0.04,
        max_lag_s: float = 0.5,
        phase_margin_s: float = 0.003,
        phase_step_s: float = 0.004,
        phase_window: int = 12,
    ) -> None:
        super().__init__()
        self.underrun_wait_s = underrun_wait_s
        self.max_buffer_samples = int(max_buffer_s * RTP_AUDIO_RATE)
        self.target_buffer_samples = min(self.max_buffer_samples, int(target_buffer_s * RTP_AUDIO_RATE))
        self.max_lag_s = max_lag_s
        self.phase_margin_s = phase_margin_s
        self.phase_step_s = phase_step_s
        self.phase_window = phase_window
        self._phase_waits: list[float] = []
        self._sleeping_until: float | None = None
        self.phase_shift_s = 0.0  # total the slots were moved earlier
        self._buf = bytearray()  # int16 little-endian samples
        self._data = asyncio.Event()
        self._progress = asyncio.Event()
        self._start: float | None = None
        self._emitted = 0  # samples emitted (RTP clock)
        self._flowing = False
        self.enqueued = 0  # real samples ever pushed (index space for A/V alignment)
        self.taken = 0  # real samples emitted or dropped
        self.silence_frames = 0
        self.underruns = 0
        self.dropped_samples = 0
        self.cut_samples = 0  # dropped on barge-in (cut())
        self._last_drop_log = -1e9

    @property
    def started(self) -> bool:
        return self._start is not None

    @property
    def buffered_s(self) -> float:
        return len(self._buf) / 2 / RTP_AUDIO_RATE

    def push(self, pcm48: np.ndarray) -> None:
        """Queue replica audio; ignored until aiortc starts pulling (a peer still connecting must not queue)."""
        if not self.started or self.readyState != "live" or len(pcm48) == 0:
            return
        self._track_phase()
        self._buf += np.ascontiguousarray(pcm48, dtype="<i2").tobytes()
        self.enqueued += len(pcm48)
        if len(self._buf) // 2 > self.max_buffer_samples:
            excess = len(self._buf) // 2 - self.target_buffer_samples
            del self._buf[: excess * 2]
            self.taken += excess
            self.dropped_samples += excess
            now = time.monotonic()
            if now - self._last_drop_log > 5.0:
                self._last_drop_log = now
                log.warning(
                    "outbound audio queue passed %.0f ms (source burst, or the sender stalled): dropped the oldest "
                    "%.0f ms (%.0f ms in all so far)",
                    self.max_buffer_samples / 48,
                    excess / 48,
                    self.dropped_samples / 48,
                )
        self._data.set()

    def cut(self) -> int:
        """Barge-in: drop the replica audio still queued here (the engine cut it upstream), so the participant
        stops hearing it now rather than after the queue plays out. Returns the samples dropped."""
        dropped = len(self._buf) // 2
        if dropped:
            del self._buf[:]
            self.taken += dropped  # the A/V index space: video waiting on these samples is released
            self.cut_samples += dropped
        self._progress.set()
        return dropped

    def _track_phase(self) -> None:
        """Called as audio arrives: how long will its first sample wait (queue ahead of it + slot phase)?"""
        if self.phase_step_s <= 0 or self._start is None:
            return
        if self._sleeping_until is not None:  # the usual case: the track sleeps until its next slot
            next_due = self._sleeping_until
        else:  # between slots (aiortc is encoding the last frame) or waiting for data (goes out at once)
            next_due = self._start + (self._emitted + AUDIO_FRAME_SAMPLES) / RTP_AUDIO_RATE
        slots_ahead = (len(self._buf) // 2) // AUDIO_FRAME_SAMPLES
        self._phase_waits.append(max(0.0, next_due + slots_ahead * AUDIO_PTIME_S - time.monotonic()))
        if len(self._phase_waits) >= self.phase_window:
            shortest = min(self._phase_waits)
            self._phase_waits.clear()
            if shortest > self.phase_margin_s:
                step = min(self.phase_step_s, shortest - self.phase_margin_s)
                self._start -= step
                self.phase_shift_s += step

    async def wait_progress(self, index: int, timeout: float) -> bool:
        """Wait until the real sample `index` has gone out (True), or `timeout` passed (False)."""
        deadline = time.monotonic() + timeout
        while self.taken < index and self.readyState == "live":
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except asyncio.TimeoutError:
                return False
        return True

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            return await self._next_frame()
        except (MediaStreamError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("outbound audio frame failed; sending silence")
            return self._frame(np.zeros(AUDIO_FRAME_SAMPLES, np.int16))

    async def _next_frame(self) -> av.AudioFrame:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._emitted += AUDIO_FRAME_SAMPLES
            due = self._start + self._emitted / RTP_AUDIO_RATE
            if due > now:
                self._sleeping_until = due
                try:
                    await asyncio.sleep(due - now)
                finally:
                    self._sleeping_until = None
            elif now - due > self.max_lag_s:
                # the loop stalled: skip ahead instead of bursting; RTP timestamps stay continuous
                self._start = now - self._emitted / RTP_AUDIO_RATE
        need = AUDIO_FRAME_SAMPLES * 2
        if len(self._buf) < need and (self._flowing or self._buf):
            deadline = time.monotonic() + self.underrun_wait_s
            while len(self._buf) < need:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._data.clear()
                try:
                    await asyncio.wait_for(self._data.wait(), remaining)
                except asyncio.TimeoutError:
                    break
        take = min(len(self._buf), need)
        if take:
            pcm = np.frombuffer(bytes(self._buf[:take]), dtype="<i2").astype(np.int16)
            del self._buf[:take]
            self.taken += take // 2
            if take < need:
                self.underruns += 1
                pcm = np.concatenate([pcm, np.zeros(AUDIO_FRAME_SAMPLES - len(pcm), np.int16)])
            self._flowing = True
        else:
            if self._flowing:
                self.underruns += 1
            self._flowing = False
            self.silence_frames += 1
            pcm = np.zeros(AUDIO_FRAME_SAMPLES, np.int16)
        self._progress.set()
        return self._frame(pcm)

    def _frame(self, pcm: np.ndarray) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RTP_AUDIO_RATE
        frame.pts = self._emitted
        frame.time_base = _AUDIO_TIME_BASE
        return frame

    def stop(self) -> None:
        super().stop()
        self._data.set()
        self._progress.set()


class OutboundVideoTrack(MediaStreamTrack):
    """The replica's face to one peer. Each image waits for its own audio to go out (A/V sync), then leaves.

    Only the newest `max_queue` images are kept: when the encoder falls behind, frames are skipped rather than
    delayed. `av_sync_max_wait_s` bounds the wait for audio (e.g. when the peer takes no audio)."""

    kind = "video"

    def __init__(self, audio: OutboundAudioTrack | None = None, *, max_queue: int = 2, av_sync_max_wait_s: float = 0.12) -> None:
        super().__init__()
        self._audio = audio
        self.av_sync_max_wait_s = av_sync_max_wait_s
        self._queue: collections.deque[tuple[np.ndarray, int]] = collections.deque(maxlen=max_queue)
        self._ready = asyncio.Event()
        self._start: float | None = None
        self._last_pts = -1
        self.frames_sent = 0
        self.frames_dropped = 0
        self.pushed = 0

    def push(self, image: np.ndarray, audio_index: int | None) -> None:
        """Queue an RGB image; it leaves once the audio track has taken `audio_index` samples (None: at once)."""
        if self.readyState != "live":
            return
        if len(self._queue) == self._queue.maxlen:
            self.frames_dropped += 1
        self._queue.append((image, -1 if audio_index is None else audio_index))
        self.pushed += 1
        self._ready.set()

    async def recv(self) -> av.VideoFrame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            try:
                return await self._next_frame()
            except (MediaStreamError, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("outbound video frame failed; skipping it")

    async def _next_frame(self) -> av.VideoFrame:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
            if self.readyState != "live":
                raise MediaStreamError
        image, audio_index = self._queue.popleft()
        audio = self._audio
        if audio is not None and audio.started and audio_index >= 0:
            await audio.wait_progress(audio_index, self.av_sync_max_wait_s)
        now = time.monotonic()
        if self._start is None:
            self._start = now
        pts = int((now - self._start) * VIDEO_CLOCK_RATE)
        if pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = pts
        frame.time_base = _VIDEO_TIME_BASE
        self.frames_sent += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()
