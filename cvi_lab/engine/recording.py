"""Call recording (`properties.enable_recording`): the replica's video + audio and the participant's audio,
stream-encoded to one MP4 (H.264 + AAC, the participant mixed into the replica's audio track) while the call runs.

Why a thread and a bounded queue: encoding is CPU work that must never stall the event loop or the replica's
frames, and a long call must not sit in RAM. The loop only enqueues (`video`, `participant_audio`, never
blocking; when the encoder lags, video images are dropped first, then whole items), the encoder thread mixes
and encodes as items come, and `finish()` waits for it off the loop. Any failure disables the recording
(`failed`), never the call.

Timeline: the replica's frames carry their presentation time (`VideoFrame.pts`) and exactly the audio played
during them, so video and replica audio are placed by pts. Participant audio is placed by arrival time, mapped
onto the frame timeline (frames are paced in real time), kept contiguous while it flows.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from cvi_lab.audio import to_float32
from cvi_lab.media import VideoFrame

log = logging.getLogger(__name__)

PARTICIPANT_RATE = 16_000
MIX_LAG_S = 0.5  # participant audio may arrive this late relative to the replica's frames and still be mixed
REANCHOR_S = 0.2  # a participant gap longer than this is kept as silence (stream paused), shorter is jitter


class _Mixer:
    """A sliding float32 buffer addressed by absolute sample index: sources add, the encoder pops."""

    def __init__(self) -> None:
        self.base = 0  # absolute index of buf[0]; everything before went to the encoder
        self.buf = np.zeros(0, np.float32)
        self.end = 0  # highest index written + 1

    def add(self, pos: int, x: np.ndarray) -> None:
        if pos < self.base:  # too late: that part is encoded already
            x, pos = x[self.base - pos :], self.base
        if len(x) == 0:
            return
        need = pos - self.base + len(x)
        if need > len(self.buf):
            self.buf = np.concatenate([self.buf, np.zeros(need - len(self.buf), np.float32)])
        self.buf[pos - self.base : need] += x
        self.end = max(self.end, pos + len(x))

    def pop(self, upto: int) -> np.ndarray:
        n = max(0, upto - self.base)
        if n > len(self.buf):
            self.buf = np.concatenate([self.buf, np.zeros(n - len(self.buf), np.float32)])
        out, self.buf = self.buf[:n], self.buf[n:]
        self.base += n
        return out


class CallRecorder:
    """Create with the final path, feed from the loop, `await finish()` → (path, duration_s) or None."""

    def __init__(self, path: str | Path, fps: int = 25, max_queue: int = 400) -> None:
        self.path = Path(path)
        self.fps = int(fps)
        self.max_queue = max_queue
        self.failed: str | None = None
        self.dropped = 0  # items dropped because the encoder lagged
        self.duration = 0.0
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._part = self.path.with_name(self.path.name + ".part")
        self._thread = threading.Thread(target=self._run, name=f"recorder-{self.path.stem}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ loop side (never blocks)
    def _put(self, item: tuple) -> None:
        if self._closed or self.failed:
            return
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def video(self, frame: VideoFrame) -> None:
        """A replica frame (image + the audio played during it)."""
        image = frame.image if self._q.qsize() < self.max_queue // 2 else None  # lagging: keep the audio only
        self._put(("video", image, frame.pts, frame.audio, frame.audio_rate, time.monotonic()))

    def participant_audio(self, pcm: np.ndarray) -> None:
        """A participant frame (int16 or float32, 16 kHz mono)."""
        self._put(("participant", np.array(pcm, copy=True), time.monotonic()))

    async def finish(self) -> tuple[Path, float] | None:
        """Stop feeding, let the encoder drain and close the file (in a thread). None if nothing was written."""
        if self._closed:
            return None
        self._closed = True
        await asyncio.to_thread(self._close_blocking)
        if self.failed or not self.path.exists():
            return None
        return self.path, self.duration

    def _close_blocking(self) -> None:
        self._q.put(None)  # blocking is fine here: this runs in a worker thread
        self._thread.join()

    # ------------------------------------------------------------ encoder thread
    def _run(self) -> None:
        enc: _Encoder | None = None
        try:
            while True:
                item = self._q.get()
                if item is None:
                    break
                if enc is None:
                    if item[0] != "video":
                        continue  # no timeline yet (no replica frame): nothing to place it against
                    enc = _Encoder(self._part, self.fps, item[1], item[4])
                enc.feed(item)
            if enc is not None:
                self.duration = enc.close()
                self._part.replace(self.path)
        except Exception as exc:  # noqa: BLE001 - a recording failure must not break the call
            self.failed = f"{type(exc).__name__}: {exc}"
            log.exception("recording %s failed", self.path)
            if enc is not None:
                enc.abort()
            while True:  # keep draining so finish() returns
                try:
                    if self._q.get_nowait() is None:
                        break
                except queue.Empty:
                    if self._closed:
                        break
                    time.sleep(0.05)
            self._part.unlink(missing_ok=True)


class _Encoder:
    """PyAV muxing, mixing and pts bookkeeping; lives in the recorder thread only."""

    def __init__(self, path: Path, fps: int, first_image: np.ndarray | None, audio_rate: int) -> None:
        import av

        self.av = av
        self.rate = int(audio_rate)
        self.fps = fps
        self.container = av.open(str(path), "w", format="mp4")
        h, w = (first_image.shape[:2] if first_image is not None else (512, 512))
        self.w, self.h = w - w % 2, h - h % 2  # yuv420p needs even sizes
        self.vs = self.container.add_stream("libx264", rate=fps)
        self.vs.width, self.vs.height, self.vs.pix_fmt = self.w, self.h, "yuv420p"
        self.vs.options = {"preset": "ultrafast", "tune": "zerolatency"}
        self.vs.codec_context.thread_count = 1  # two cores: leave the rest to the live pipeline
        self.as_ = self.container.add_stream("aac", rate=self.rate, layout="mono")
        self.mix = _Mixer()
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
        self.offset: float | None = None  # monotonic time - frame pts (min over frames)
        self.last_vpts = -1
        self.video_end = 0.0
        self.p_end: int | None = None  # participant: next contiguous sample index
        self.a_pts = 0

    def feed(self, item: tuple) -> None:
        if item[0] == "video":
            _, image, pts, audio, rate, t = item
            self.offset = t - pts if self.offset is None else min(self.offset, t - pts)
            vpts = int(round(pts * self.fps))
            if image is not None and vpts > self.last_vpts:
                self._video(image, vpts)
            if rate != self.rate:
                from cvi_lab.audio import resample

                audio = resample(audio, rate, self.rate)
            self.mix.add(int(round(pts * self.rate)), to_float32(audio))
            self.video_end = max(self.video_end, pts + 1.0 / self.fps)
            self._audio(self.mix.pop(int((self.video_end - MIX_LAG_S) * self.rate)))
        else:
            _, pcm, t = item
            frame = self.av.AudioFrame.from_ndarray(to_float32(pcm).reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = PARTICIPANT_RATE
            x = np.concatenate([f.to_ndarray().reshape(-1) for f in self.resampler.resample(frame)] or
                               [np.zeros(0, np.float32)])
            if self.offset is None or len(x) == 0:
                return
            pos = int(round((t - self.offset) * self.rate)) - len(x)  # it arrived once fully captured
            if self.p_end is None or pos > self.p_end + REANCHOR_S * self.rate:
                self.p_end = max(pos, 0)
            self.mix.add(self.p_end, x)
            self.p_end += len(x)

    def _video(self, image: np.ndarray, vpts: int) -> None:
        img = np.ascontiguousarray(image[: self.h, : self.w, :3])
        if img.shape[:2] != (self.h, self.w):  # the renderer changed size: pad/crop to the stream's size
            canvas = np.zeros((self.h, self.w, 3), np.uint8)
            canvas[: img.shape[0], : img.shape[1]] = img
            img = canvas
        frame = self.av.VideoFrame.from_ndarray(img.astype(np.uint8, copy=False), format="rgb24")
        frame.pts = vpts
        for packet in self.vs.encode(frame):
            self.container.mux(packet)
        self.last_vpts = vpts

    def _audio(self, x: np.ndarray) -> None:
        if len(x) == 0:
            return
        frame = self.av.AudioFrame.from_ndarray(np.clip(x, -1.0, 1.0).reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self.a_pts
        self.a_pts += len(x)
        for packet in self.as_.encode(frame):
            self.container.mux(packet)

    def close(self) -> float:
        self._audio(self.mix.pop(max(self.mix.end, int(self.video_end * self.rate))))
        for stream in (self.vs, self.as_):
            for packet in stream.encode(None):
                self.container.mux(packet)
        self.container.close()
        return max(self.video_end, self.a_pts / self.rate)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001
            pass


def recording_path(artifacts_dir: Any, conversation_id: str) -> Path:
    return Path(str(artifacts_dir)) / "recordings" / f"{conversation_id}.mp4"
