"""A scripted participant: joins a `conversation_url` over real WebRTC, speaks a WAV, records what it gets.

Why in the package: tests, experiments and notebooks all need the same participant, and response latency
(SPEC §4) is measured at the participant's side of the connection, so the recorder lives here. Times are
`time.monotonic()` seconds. The microphone (transport/microphone.py) is real-time: 20 ms frames at 48 kHz,
silence when nothing is queued, like a real mic; what was received and its analysis are transport/heard.py.

    client = ParticipantClient(conversation_url)
    await client.join()
    await client.send_wav("question.wav")              # returns when the last sample has been sent
    t = await client.wait_first_voiced_after(client.speech_ended_at, timeout=10)
    print("response latency", t - client.speech_ended_at)
    await client.leave()

CLI: `python -m cvi_lab.transport.client URL --wav f.wav --record out_dir` (transport/participant_cli.py).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit, urlunsplit

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError

from cvi_lab.audio import write_wav
from cvi_lab.transport.heard import RATE, WINDOW, Recording, VideoRecord, db_to_amp
from cvi_lab.transport.media import resample_int16
from cvi_lab.transport.microphone import MicrophoneTrack, read_audio
from cvi_lab.transport.rtc import (
    DATA_CHANNEL_LABEL,
    DEFAULT_AUDIO_PREFETCH,
    LEAVE_EVENT,
    decode_message,
    new_peer_connection,
    set_audio_prefetch,
    set_inline_audio_decode,
    set_video_marker_completion,
)

log = logging.getLogger(__name__)


class JoinError(RuntimeError):
    """The server refused the offer (status and its JSON error) or the connection did not come up."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ParticipantClient:
    """One participant of a live call (see the module docstring)."""

    def __init__(
        self,
        conversation_url: str,
        *,
        meeting_token: str | None = None,
        participant_id: str | None = None,
        receive_video: bool = True,
        keep_every_nth_image: int = 0,
        on_video_frame: Callable[[av.VideoFrame, float], None] | None = None,
        voiced_dbfs: float = -40.0,
        audio_prefetch: int | None = DEFAULT_AUDIO_PREFETCH,
        http_timeout_s: float = 20.0,
    ) -> None:
        parts = urlsplit(conversation_url)
        if parts.scheme not in ("http", "https") or "/meet/" not in parts.path:
            raise ValueError(f"not a conversation_url: {conversation_url!r}; expected http(s)://HOST/meet/<conversation_id>")
        self.conversation_url = conversation_url
        self.conversation_id = parts.path.rstrip("/").rsplit("/", 1)[-1]
        self.offer_url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/offer", "", ""))
        self.meeting_token = meeting_token or (parse_qs(parts.query).get("t") or [None])[0]
        self.participant_id = participant_id
        self.receive_video = receive_video
        self.keep_every_nth_image = keep_every_nth_image
        self.on_video_frame = on_video_frame
        self.voiced_threshold = db_to_amp(voiced_dbfs)
        self.audio_prefetch = audio_prefetch
        self.http_timeout_s = http_timeout_s
        self.mic = MicrophoneTrack(voiced_dbfs)
        self.rec = Recording()
        self.pc = None
        self.channel = None
        self.joined_at: float | None = None
        self.connection_states: list[tuple[float, str]] = []
        self._tasks: list[asyncio.Task] = []
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ joining
    async def join(self, timeout: float = 30.0) -> "ParticipantClient":
        """Offer, get the answer, wait until ICE/DTLS are up and the data channel is open."""
        import aiohttp
        from aiortc import RTCSessionDescription

        pc = self.pc = new_peer_connection()
        pc.addTrack(self.mic)
        if self.receive_video:
            pc.addTransceiver("video", direction="recvonly")
        set_audio_prefetch(pc, self.audio_prefetch)
        set_inline_audio_decode(pc)
        set_video_marker_completion(pc)
        channel = self.channel = pc.createDataChannel(DATA_CHANNEL_LABEL)
        channel.on("message", self.on_message)
        channel.on("open", self._changed.set)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", lambda: self._on_state(pc))

        await pc.setLocalDescription(await pc.createOffer())
        body: dict[str, Any] = {"sdp": pc.localDescription.sdp, "type": "offer"}
        if self.meeting_token:
            body["meeting_token"] = self.meeting_token
        if self.participant_id:
            body["participant_id"] = self.participant_id
        http_timeout = aiohttp.ClientTimeout(total=self.http_timeout_s)
        async with aiohttp.ClientSession(timeout=http_timeout) as session:
            async with session.post(self.offer_url, json=body) as resp:
                try:
                    answer = await resp.json(content_type=None)
                except Exception:
                    answer = {"error": (await resp.text())[:200]}
                if resp.status != 200:
                    await pc.close()
                    raise JoinError(f"offer refused ({resp.status}): {answer.get('error')}", resp.status)
        self.participant_id = answer["participant_id"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        ok = await self.wait_for(lambda: pc.connectionState == "connected" and channel.readyState == "open", timeout)
        if not ok:
            state = pc.connectionState
            await self.close()
            raise JoinError(f"connection did not come up within {timeout:.0f} s (state {state})")
        self.joined_at = time.monotonic()
        return self

    def _on_state(self, pc) -> None:
        self.connection_states.append((time.monotonic(), pc.connectionState))
        self._changed.set()

    def _on_track(self, track) -> None:
        runner = self._audio_loop(track) if track.kind == "audio" else self._video_loop(track)
        self._tasks.append(asyncio.ensure_future(runner))

    async def _audio_loop(self, track) -> None:
        rec = self.rec
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("receiving audio failed")
                return
            try:
                arrival = time.monotonic()
                channels = len(frame.layout.channels)
                data = frame.to_ndarray().reshape(-1)
                if frame.format.name != "s16" or frame.sample_rate != RATE:
                    raise ValueError(f"unexpected audio frame {frame.format.name} at {frame.sample_rate} Hz")
                pcm = data.reshape(-1, channels)[:, 0].copy() if channels > 1 else data.copy()
                rec.add_audio(arrival, pcm)
                self._changed.set()
            except Exception:
                log.exception("recording an audio frame failed")

    async def _video_loop(self, track) -> None:
        rec = self.rec
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("receiving video failed")
                return
            try:
                arrival = time.monotonic()
                rec.video.append(VideoRecord(arrival, frame.pts, frame.width, frame.height))
                n = self.keep_every_nth_image
                if n and (len(rec.video) - 1) % n == 0:
                    rec.images.append((arrival, frame.to_ndarray(format="rgb24")))
                if self.on_video_frame is not None:
                    self.on_video_frame(frame, arrival)
                self._changed.set()
            except Exception:
                log.exception("recording a video frame failed")

    def on_message(self, data: Any) -> None:
        """A data-channel message: kept in `rec.events` (decoded JSON, or as sent). A client for another
        server's protocol overrides this and records through `record_event`."""
        obj, error = decode_message(data)
        self.record_event(time.monotonic(), obj if error is None else data)

    def record_event(self, arrival: float, event: Any) -> None:
        """Keep a received event and wake whoever waits on one."""
        self.rec.events.append((arrival, event))
        self._changed.set()

    # ------------------------------------------------------------------ speaking and interactions
    async def send_wav(self, source: str | Path | np.ndarray, sample_rate: int | None = None, *, wait: bool = True):
        """Speak a file (any soundfile format) or mono PCM at `sample_rate`, in real time.

        Returns the monotonic time its last sample was sent (or the future, with wait=False)."""
        if isinstance(source, (str, Path)):
            pcm, rate = read_audio(source)
        else:
            if sample_rate is None:
                raise ValueError("sample_rate is required when sending a PCM array")
            pcm, rate = np.asarray(source), int(sample_rate)
        if pcm.ndim != 1:
            raise ValueError(f"PCM must be mono (1-D), got shape {pcm.shape}")
        fut = self.mic.play(resample_int16(pcm, rate, RATE))
        return await fut if wait else fut

    def send_interaction(self, message: dict | str) -> None:
        """Send an interaction (a dict is JSON-encoded; a str is sent as is, e.g. to test error handling)."""
        if self.channel is None or self.channel.readyState != "open":
            raise RuntimeError("the data channel is not open; join() first")
        self.channel.send(message if isinstance(message, str) else json.dumps(message))

    async def leave(self, how: str = "datachannel") -> None:
        """Leave the call: "datachannel" sends conversation.leave then closes, "close" only closes the PC."""
        if self.pc is None:
            return
        if how == "datachannel" and self.channel is not None and self.channel.readyState == "open":
            self.send_interaction({"message_type": "conversation", "event_type": LEAVE_EVENT,
                                   "conversation_id": self.conversation_id, "properties": {}})
            await self.wait_for(lambda: self.channel.bufferedAmount == 0, 1.0)
            await asyncio.sleep(0.05)
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.pc is not None:
            pc, self.pc = self.pc, None
            await pc.close()
        self.mic.stop()

    async def __aenter__(self) -> "ParticipantClient":
        return await self.join()

    async def __aexit__(self, *exc) -> None:
        await self.leave()

    # ------------------------------------------------------------------ waiting and measuring
    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate()` is true (re-checked on every received frame/event/state, at least every 50 ms)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
            except asyncio.TimeoutError:
                pass
        return True

    def events(self, event_type: str | None = None, since: float | None = None) -> list[tuple[float, Any]]:
        """Received events (arrival, message), optionally filtered by `event_type` and arrival time."""
        return [
            (t, e) for t, e in self.rec.events
            if (since is None or t >= since)
            and (event_type is None or (isinstance(e, dict) and e.get("event_type") == event_type))
        ]

    async def wait_event(self, event_type: str, timeout: float = 10.0, since: float | None = None) -> tuple[float, Any] | None:
        """The first event of `event_type` (arrived after `since`), waiting up to `timeout`."""
        ok = await self.wait_for(lambda: bool(self.events(event_type, since)), timeout)
        return self.events(event_type, since)[0] if ok else None

    @property
    def speech_ended_at(self) -> float | None:
        """When the last voiced 10 ms of our own speech went out (the start of a response-latency measurement)."""
        return self.mic.voiced_sent[-1] if self.mic.voiced_sent else None

    def speech_started_after(self, t: float) -> float | None:
        """When the first voiced 10 ms we sent after `t` went out."""
        i = bisect.bisect_left(self.mic.voiced_sent, t)
        return self.mic.voiced_sent[i] - WINDOW / RATE if i < len(self.mic.voiced_sent) else None

    def first_voiced_after(self, t: float, dbfs: float | None = None) -> float | None:
        """Arrival time of the first received voiced 10 ms window that arrived after `t` (None if none yet)."""
        threshold = self.voiced_threshold if dbfs is None else db_to_amp(dbfs)
        return self.rec.first_voiced_after(t, threshold)

    async def wait_first_voiced_after(self, t: float, timeout: float = 10.0) -> float | None:
        """`first_voiced_after(t)`, waiting up to `timeout` for it."""
        found: list[float] = []

        def check() -> bool:
            v = self.first_voiced_after(t)
            if v is not None:
                found.append(v)
            return v is not None

        await self.wait_for(check, timeout)
        return found[0] if found else None

    def last_voiced_between(self, since: float, until: float | None = None) -> float | None:
        """End time of the last received voiced 10 ms window that arrived in [since, until]."""
        return self.rec.last_voiced_between(since, until, self.voiced_threshold)

    def voice_stopped_after(self, start: float, quiet_s: float) -> float | None:
        """When the received audio went quiet (for `quiet_s`) after `start`: the end of its last voiced window."""
        return self.rec.voice_stopped_after(start, quiet_s, self.voiced_threshold)

    async def wait_quiet(self, since: float, quiet_s: float, timeout: float) -> bool:
        """Until nothing voiced has been received for `quiet_s` (counting from `since` if nothing came)."""
        return await self.wait_for(lambda: time.monotonic() - (self.last_voiced_between(since) or since) > quiet_s,
                                   timeout)

    def received_between(self, since: float, until: float) -> np.ndarray:
        """The received audio (float32, 48 kHz) of the chunks that arrived in [since, until]."""
        return self.rec.audio_between(since, until)

    def video_fps(self, since: float | None = None) -> float:
        """Received frames per second (over frames that arrived after `since`)."""
        times = [v.arrival for v in self.rec.video if since is None or v.arrival >= since]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def save(self, out_dir: str | Path) -> Path:
        """Write received.wav (48 kHz), events.jsonl, video.csv and summary.json to `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_wav(out / "received.wav", self.rec.audio(), RATE)
        with open(out / "events.jsonl", "w") as f:
            for t, e in self.rec.events:
                f.write(json.dumps({"arrival": t, "event": e}, default=str) + "\n")
        with open(out / "video.csv", "w") as f:
            f.write("arrival,pts,width,height\n")
            for v in self.rec.video:
                f.write(f"{v.arrival:.6f},{v.pts},{v.width},{v.height}\n")
        (out / "summary.json").write_text(json.dumps(self.summary(), indent=2))
        return out

    def summary(self) -> dict:
        first_audio = self.rec.audio_arrivals[0] if self.rec.audio_arrivals else None
        ended = self.speech_ended_at
        reply = self.first_voiced_after(ended) if ended is not None else None
        return {
            "conversation_id": self.conversation_id,
            "participant_id": self.participant_id,
            "joined_at": self.joined_at,
            "first_audio_at": first_audio,
            "audio_seconds": self.rec.audio_samples / RATE,
            "video_frames": len(self.rec.video),
            "video_fps": round(self.video_fps(), 2),
            "video_size": [self.rec.video[-1].width, self.rec.video[-1].height] if self.rec.video else None,
            "events": len(self.rec.events),
            "speech_ended_at": ended,
            "first_voiced_after_speech": reply,
            "response_latency_s": (reply - ended) if reply is not None and ended is not None else None,
        }


if __name__ == "__main__":  # the command line lives in participant_cli.py
    from cvi_lab.transport.participant_cli import main

    raise SystemExit(main())
