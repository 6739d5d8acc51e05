"""The replica's media to one peer: an audio track that is the clock, a video track that follows it.

Why these shapes (see also media.py):
- The audio track emits a 20 ms frame every 20 ms whatever happens (silence when the source is late or idle,
  so RTP stays continuous), and the video track releases each image when the audio that belongs to it goes
  out, so the receiver gets them in sync. Buffers are kept shallow (tens of ms): latency is the product.
- Only speech is queued. The engine's idle frames carry silence; queueing it would let every stall of the
  frame source leave a backlog of silence in front of the next answer (in and out rates are equal, so it
  never drains: measured 40-140 ms before the first word). The track makes the silence itself instead.
- The first frame of speech after silence does not wait for the next 20 ms slot: the clock is moved to it.
- The track encodes Opus itself (2.5 ms "lowdelay" lookahead instead of 6.5 ms) and hands aiortc ready
  packets, so no frame waits for a thread of the default executor (which the video encoder and others share:
  up to 38 ms measured under load).
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger(__name__)

RTP_AUDIO_RATE = 48_000
AUDIO_PTIME_S = 0.020
AUDIO_FRAME_SAMPLES = int(RTP_AUDIO_RATE * AUDIO_PTIME_S)  # 960
VIDEO_CLOCK_RATE = 90_000
AUDIO_TIME_BASE = fractions.Fraction(1, RTP_AUDIO_RATE)
_VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


class OpusPacketizer:
    """20 ms mono int16 frames -> Opus packets (av.Packet, pts in 1/48000), encoded inline (~0.2 ms a frame).

    aiortc sends an av.Packet from a track as is (`RTCRtpSender` packs it instead of encoding), so the
    encoder runs where the frame is made. "lowdelay" is Opus' restricted low-delay mode (CELT, 2.5 ms
    lookahead); any Opus decoder plays it."""

    def __init__(self, bit_rate: int = 64_000, application: str = "lowdelay") -> None:
        self.bit_rate = bit_rate
        self.application = application
        self._codec: av.CodecContext | None = None

    def _open(self) -> av.CodecContext:
        codec = av.CodecContext.create("libopus", "w")
        codec.bit_rate = self.bit_rate
        codec.format = "s16"
        codec.layout = "mono"
        codec.sample_rate = RTP_AUDIO_RATE
        codec.time_base = AUDIO_TIME_BASE
        codec.options = {"application": self.application}
        return codec

    def encode(self, pcm: np.ndarray, pts: int) -> av.Packet:
        if self._codec is None:
            self._codec = self._open()
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm, np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RTP_AUDIO_RATE
        frame.pts = pts
        frame.time_base = AUDIO_TIME_BASE
        packets = self._codec.encode(frame)
        if len(packets) != 1:  # libopus gives exactly one packet per 20 ms frame; anything else is a bug
            raise RuntimeError(f"opus encoder returned {len(packets)} packets for one frame")
        packet = packets[0]
        packet.pts = pts
        packet.time_base = AUDIO_TIME_BASE
        return packet


class OutboundAudioTrack(MediaStreamTrack):
    """The replica's voice to one peer: 48 kHz mono, 20 ms frames, paced by its own clock.

    `push()` appends replica speech (48 kHz int16); `idle()` says the source was silent for a frame (nothing
    is queued: the track makes silence itself, and the end of speech is not counted as an underrun).
    `recv()` is called by aiortc's sender: it waits for the next 20 ms slot, takes 960 samples, and pads with
    silence when the source is late, so RTP timestamps stay continuous. While speech is flowing and a slot
    finds the buffer short, it waits up to `underrun_wait_s` for the source before padding (counted in
    `underruns`). When the queue passes `max_buffer_s` (the source burst after a stall), the oldest audio is
    dropped down to `target_buffer_s`: one audible skip instead of a permanent delay.

    Onset: speech that arrives while the track is idle and sleeping until its next slot goes out at once
    (`fast_start`); the slots move to it. Phase tracking: during speech, the track watches how long each
    push's first sample waits (over `phase_window` pushes) and moves its slots earlier, at most
    `phase_step_s` at a time, until the shortest wait is `phase_margin_s`. Both keep RTP timestamps
    continuous (the receiver sees packets slightly early, which a jitter buffer absorbs); `phase_step_s=0`
    turns phase tracking off. `encode=True` (default) makes recv() return Opus packets (OpusPacketizer);
    `encode=False` returns raw frames (aiortc encodes them on its executor).
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
        fast_start: bool = True,
        encode: bool = True,
    ) -> None:
        super().__init__()
        self.underrun_wait_s = underrun_wait_s
        self.max_buffer_samples = int(max_buffer_s * RTP_AUDIO_RATE)
        self.target_buffer_samples = min(self.max_buffer_samples, int(target_buffer_s * RTP_AUDIO_RATE))
        self.max_lag_s = max_lag_s
        self.phase_margin_s = phase_margin_s
        self.phase_step_s = phase_step_s
        self.phase_window = phase_window
        self.fast_start = fast_start
        self._encoder = OpusPacketizer() if encode else None
        self._phase_waits: list[float] = []
        self._sleeping_until: float | None = None
        self.phase_shift_s = 0.0  # total the slots were moved earlier (phase tracking and fast starts)
        self._buf = bytearray()  # int16 little-endian samples
        self._data = asyncio.Event()
        self._progress = asyncio.Event()
        self._start: float | None = None
        self._emitted = 0  # samples emitted (RTP clock)
        self._flowing = False
        self._source_idle = True  # the source's last frame was silence (idle()), not speech (push())
        self.enqueued = 0  # real samples ever pushed (index space for A/V alignment)
        self.taken = 0  # real samples emitted or dropped
        self.silence_frames = 0
        self.underruns = 0
        self.fast_starts = 0
        self.dropped_samples = 0
        self.cut_samples = 0  # dropped on barge-in (cut())
        self._last_drop_log = -1e9

    @property
    def started(self) -> bool:
        return self._start is not None

    def encode_with_aiortc(self) -> None:
        """Send raw frames (aiortc encodes them): the negotiated codec is not Opus."""
        self._encoder = None

    @property
    def buffered_s(self) -> float:
        return len(self._buf) / 2 / RTP_AUDIO_RATE

    def push(self, pcm48: np.ndarray) -> None:
        """Queue replica speech; ignored until aiortc starts pulling (a peer still connecting must not queue)."""
        if not self.started or self.readyState != "live" or len(pcm48) == 0:
            return
        self._source_idle = False
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

    def idle(self) -> None:
        """The source was silent for a frame: nothing to queue (the track sends silence by itself), and when
        the speech still queued runs out that is the end of speech, not an underrun."""
        self._source_idle = True
        self._data.set()  # a slot waiting for more speech stops waiting

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
        if self.phase_step_s <= 0 or self._start is None or not self._flowing:
            return  # an onset after silence is handled by fast_start, not by moving the slots
        if self._sleeping_until is not None:  # the usual case: the track sleeps until its next slot
            next_due = self._sleeping_until
        else:  # between slots (aiortc is sending the last frame) or waiting for data (goes out at once)
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

    async def recv(self) -> av.AudioFrame | av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            pcm = await self._next_pcm()
        except (MediaStreamError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("outbound audio frame failed; sending silence")
            pcm = np.zeros(AUDIO_FRAME_SAMPLES, np.int16)
        if self._encoder is not None:
            try:
                return self._encoder.encode(pcm, self._emitted)
            except Exception:
                log.exception("opus encoding failed; aiortc encodes from now on")
                self._encoder = None
        return self._frame(pcm)

    async def _sleep_until(self, due: float) -> None:
        """Sleep to the slot at `due`; while idle, speech that arrives first ends the sleep (fast start)."""
        self._sleeping_until = due
        try:
            if not (self.fast_start and not self._flowing and not self._buf):
                await asyncio.sleep(due - time.monotonic())
                return
            while self.readyState == "live":
                early = due - time.monotonic()
                if early <= 0:
                    return
                if self._buf:  # speech came in: this slot is now, and so are the ones after it
                    self._start -= early
                    self.phase_shift_s += early
                    self.fast_starts += 1
                    return
                self._data.clear()
                try:
                    await asyncio.wait_for(self._data.wait(), early)
                except asyncio.TimeoutError:
                    return
        finally:
            self._sleeping_until = None

    async def _next_pcm(self) -> np.ndarray:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._emitted += AUDIO_FRAME_SAMPLES
            due = self._start + self._emitted / RTP_AUDIO_RATE
            if due > now:
                await self._sleep_until(due)
            elif now - due > self.max_lag_s:
                # the loop stalled: skip ahead instead of bursting; RTP timestamps stay continuous
                self._start = now - self._emitted / RTP_AUDIO_RATE
            if self.readyState != "live":
                raise MediaStreamError
        need = AUDIO_FRAME_SAMPLES * 2
        if len(self._buf) < need and not self._source_idle and (self._flowing or self._buf):
            deadline = time.monotonic() + self.underrun_wait_s
            while len(self._buf) < need and not self._source_idle:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._data.clear()
                try:
                    await asyncio.wait_for(self._data.wait(), remaining)
                except asyncio.TimeoutError:
                    break
        take = min(len(self._buf), need)
        short = take < need and not self._source_idle  # the source is speaking but its audio is late
        if take:
            pcm = np.frombuffer(bytes(self._buf[:take]), dtype="<i2").astype(np.int16)
            del self._buf[:take]
            self.taken += take // 2
            if take < need:
                self.underruns += short
                pcm = np.concatenate([pcm, np.zeros(AUDIO_FRAME_SAMPLES - len(pcm), np.int16)])
            self._flowing = not (take < need and self._source_idle)
        else:
            if self._flowing and short:
                self.underruns += 1
            self._flowing = False
            self.silence_frames += 1
            pcm = np.zeros(AUDIO_FRAME_SAMPLES, np.int16)
        self._progress.set()
        return pcm

    def _frame(self, pcm: np.ndarray) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RTP_AUDIO_RATE
        frame.pts = self._emitted
        frame.time_base = AUDIO_TIME_BASE
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
