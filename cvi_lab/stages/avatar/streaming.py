"""The real-time half of every avatar backend: audio queue, frame/audio pairing, pacing, barge-in.

Why a shared base: A/V sync, pacing and `clear()` are the parts that are easy to get subtly wrong and are
the same for a parametric portrait and a neural lip-sync model. A backend subclasses `StreamingAvatar` and
implements one method:

    def render_frame(self, index: int, audio: np.ndarray, cue: FrameCue) -> np.ndarray  # (H, W, 3) uint8

`audio` is exactly the PCM (float32 at `audio_rate`) that plays during frame `index` (zero-padded when idle);
`cue` carries whether speech is playing, the viseme/phoneme label at the frame centre (from TTS timings or
the chunk's phoneme string), whether `clear()` just happened, and `window(before_s, after_s)` for models that
need audio context (e.g. a Wav2Lip mel window of ~200 ms: the queued TTS audio gives the lookahead for free).
A neural backend is then one file plus one `cvi_lab/conf/avatar/<name>.yaml` (`_target_` + its weights path); the
engine keeps calling `instantiate(cfg.avatar, replica_dir=..., apply_greenscreen=..., seed=...)`.

Bounded in real time: the render thread runs `render_niceness` below the model threads (the engine sets it from
`engine.avatar_render_niceness`), so with several calls on a few cores the avatars take what the models leave.
A frame that is late by more than one frame period repeats the previous image with its own audio instead of
rendering: the audio never waits for the picture. `render_stats()` reports frames rendered and repeated per
second and the render thread's CPU share (per call).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Sequence

import numpy as np

from cvi_lab.audio import resample
from cvi_lab.cpu import lower_this_thread
from cvi_lab.stages.base import AvatarRenderer, StageInputError
from cvi_lab.media import TTSChunk, VideoFrame

# (start_sample, end_sample, label) relative to the chunk start, at the renderer's audio_rate
Segment = tuple[int, int, str]


@dataclass
class FrameCue:
    speaking: bool = False
    label: str | None = None  # phoneme / viseme label active at the frame centre, when known
    cleared: bool = False  # clear() was called since the previous frame
    window: Callable[[float, float], np.ndarray] = field(default=lambda b, a: np.zeros(0, np.float32), repr=False)


@dataclass
class _Queued:
    samples: np.ndarray
    segments: list[Segment]
    pos: int = 0


class StreamingAvatar(AvatarRenderer):
    """Queue + pacing + sync for frame-by-frame avatar backends (see module docstring)."""

    def __init__(self, fps: int = 25, width: int = 512, height: int = 512, audio_rate: int = 22050, seed: int = 0,
                 render_in_thread: bool = True, history_s: float = 0.5) -> None:
        if fps <= 0 or width < 32 or height < 32:
            raise StageInputError(f"avatar: fps must be > 0 and width/height >= 32, got fps={fps} size={width}x{height}")
        self.fps, self.width, self.height = int(fps), int(width), int(height)
        self.audio_rate, self.seed = int(audio_rate), int(seed)
        self.render_in_thread = render_in_thread
        self._queue: collections.deque[_Queued] = collections.deque()
        self._lock = threading.Lock()
        self._index = 0
        self._cleared = False
        self._history = np.zeros(int(history_s * self.audio_rate), np.float32)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.render_ms: collections.deque[float] = collections.deque(maxlen=500)
        self.render_niceness = 0  # added to the render thread's nice value (see the module docstring)
        self._last_image: np.ndarray | None = None
        self._rendered = 0
        self._repeated = 0
        self._render_cpu_s = 0.0
        self._started_at: float | None = None

    # ---------------------------------------------------------------- to implement
    def render_frame(self, index: int, audio: np.ndarray, cue: FrameCue) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def annotate(self, samples: np.ndarray, chunk: TTSChunk) -> list[Segment]:
        """Label segments for a pushed chunk (e.g. visemes); default none."""
        return []

    # ---------------------------------------------------------------- contract
    def push_audio(self, chunk: TTSChunk) -> None:
        samples = np.asarray(chunk.samples)
        if samples.ndim != 1:
            raise StageInputError(f"avatar: audio must be mono (1-D), got shape {samples.shape}")
        if chunk.sample_rate <= 0:
            raise StageInputError(f"avatar: bad sample rate {chunk.sample_rate}")
        samples = resample(samples, chunk.sample_rate, self.audio_rate)
        if len(samples) == 0:
            return
        segments = self.annotate(samples, chunk)
        with self._lock:
            self._queue.append(_Queued(np.ascontiguousarray(samples, np.float32), segments))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._cleared = True

    @property
    def queued_seconds(self) -> float:
        with self._lock:
            return sum(len(q.samples) - q.pos for q in self._queue) / self.audio_rate

    def samples_in_frame(self, index: int) -> int:
        """Frame i plays samples [floor(i*rate/fps), floor((i+1)*rate/fps)): exact for any rate/fps."""
        return (index + 1) * self.audio_rate // self.fps - index * self.audio_rate // self.fps

    def _take(self, n: int) -> tuple[np.ndarray, int, str | None, bool, np.ndarray]:
        out = np.zeros(n, np.float32)
        got, label = 0, None
        centre = n // 2
        with self._lock:
            cleared, self._cleared = self._cleared, False
            while got < n and self._queue:
                q = self._queue[0]
                k = min(n - got, len(q.samples) - q.pos)
                if got <= centre < got + k:
                    at = q.pos + (centre - got)
                    for s, e, lab in q.segments:
                        if s <= at < e:
                            label = lab
                            break
                out[got : got + k] = q.samples[q.pos : q.pos + k]
                q.pos += k
                got += k
                if q.pos >= len(q.samples):
                    self._queue.popleft()
            ahead = self._peek(int(0.25 * self.audio_rate))
        return out, got, label, cleared, ahead

    def _peek(self, n: int) -> np.ndarray:
        parts, left = [], n
        for q in self._queue:
            if left <= 0:
                break
            piece = q.samples[q.pos : q.pos + left]
            parts.append(piece)
            left -= len(piece)
        ahead = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return np.pad(ahead, (0, n - len(ahead)))

    def render_stats(self) -> dict[str, float]:
        """Since `frames()` began: images rendered and repeated per second, and the render CPU share (of one core)."""
        wall = 0.0 if self._started_at is None else time.monotonic() - self._started_at
        per_s = (lambda n: round(n / wall, 1)) if wall > 0 else (lambda n: 0.0)
        return {"rendered_frames": self._rendered, "repeated_frames": self._repeated,
                "rendered_fps": per_s(self._rendered), "repeated_fps": per_s(self._repeated),
                "render_cpu_share": round(self._render_cpu_s / wall, 3) if wall > 0 else 0.0}

    def next_frame(self, render: bool = True) -> VideoFrame:
        """The next frame now (no pacing). Same code path for real time and offline. `render=False` (a late frame)
        repeats the previous image with this frame's audio."""
        index = self._index
        n = self.samples_in_frame(index)
        audio, got, label, cleared, ahead = self._take(n)
        hist = np.concatenate([self._history, audio])[-len(self._history):] if len(self._history) else audio
        self._history = hist
        rate = self.audio_rate

        def window(before_s: float, after_s: float, _h=hist, _a=ahead, _n=n) -> np.ndarray:
            """Audio from `before_s` before this frame's end to `after_s` after it (zero-padded)."""
            b = min(len(_h), int(before_s * rate))
            a = min(len(_a), int(after_s * rate))
            return np.concatenate([_h[len(_h) - b :], _a[:a]])

        cue = FrameCue(speaking=got > 0, label=label, cleared=cleared, window=window)
        if render or self._last_image is None:
            t0, cpu0 = time.perf_counter(), time.thread_time()
            image = self.render_frame(index, audio, cue)
            self.render_ms.append((time.perf_counter() - t0) * 1000.0)
            self._render_cpu_s += time.thread_time() - cpu0
            self._rendered += 1
            self._last_image = image
        else:
            image = self._last_image
            self._repeated += 1
        self._index += 1
        return VideoFrame(image=image, pts=index / self.fps, audio=audio, audio_rate=rate, speaking=got > 0,
                          interrupted=cleared)

    def render_offline(self, chunks: Sequence[TTSChunk], pad_s: float = 0.5, lead_s: float | None = None) -> list[VideoFrame]:
        """Render `chunks` as fast as possible: `lead_s` (default pad_s) idle, the speech, `pad_s` idle."""
        lead = pad_s if lead_s is None else lead_s
        frames = [self.next_frame() for _ in range(int(round(lead * self.fps)))]
        for c in chunks:
            self.push_audio(c)
        while self.queued_seconds > 0:
            frames.append(self.next_frame())
        frames.extend(self.next_frame() for _ in range(int(round(pad_s * self.fps))))
        return frames

    async def frames(self) -> AsyncIterator[VideoFrame]:
        """Endless frames paced by the loop clock; rendering runs on a private thread (cv2 drops the GIL)."""
        loop = asyncio.get_running_loop()
        if self.render_in_thread and self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="cvi-avatar", initializer=lower_this_thread, initargs=(self.render_niceness,))
        start = loop.time()
        first = self._index
        self._started_at = time.monotonic()
        try:
            while True:
                due = start + (self._index - first) / self.fps
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -1.0:  # consumer stalled for over a second: re-anchor rather than burst
                    start, first = loop.time(), self._index
                render = delay > -1.0 / self.fps  # later than a frame period: repeat the image, keep the audio
                if self._executor is not None:
                    frame = await loop.run_in_executor(self._executor, self.next_frame, render)
                else:
                    frame = self.next_frame(render)
                yield frame
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
