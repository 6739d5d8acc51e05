"""A stand-in for the engine in transport tests: echoes the participant's audio, shows loudness as colour.

Why: tests of the transport alone (signaling, media, presence callbacks) must not need models or the calls
layer; this plays an outside peer that answers predictably (echo with one video frame of delay, an utterance
event per `conversation.respond`). What the meeting page does on a real call is tested against the real
endpoint (test_meeting_page_real_call.py)."""

from __future__ import annotations

import asyncio
import collections
import time

import numpy as np

from cvi_lab.media import VideoFrame
from cvi_lab.transport.contract import INBOUND_SAMPLE_RATE


class EchoEndpoint:
    def __init__(
        self,
        conversation_id: str = "c0ffee01",
        *,
        meeting_token: str | None = None,
        max_participants: int | None = None,
        fps: int = 25,
        size: tuple[int, int] = (240, 320),  # (height, width)
        captions_enabled: bool = True,
        greeting: str | None = "Hello from the echo replica",
        audio_only: bool = False,
    ) -> None:
        self.conversation_id = conversation_id
        self.meeting_token = meeting_token
        self.max_participants = max_participants
        self.fps = fps
        self.size = size
        self.captions_enabled = captions_enabled
        self.greenscreen = False
        self.audio_only = audio_only  # frames carry no image, as the engine's in an audio_only call
        self.require_auth = meeting_token is not None
        self.greeting = greeting
        self.ended = False
        self.joined: list[str] = []
        self.left: list[tuple[str, str]] = []
        self.interactions: list[tuple[str, object]] = []
        self.audio_frames: dict[str, int] = collections.Counter()
        self.voiced_frames: dict[str, int] = collections.Counter()
        self.bad_frames = 0
        self.frames_out = 0
        self.first_voiced_in: float | None = None  # monotonic time the first voiced participant frame arrived
        self.first_voiced_out: float | None = None  # ... and the first frame carrying it back was yielded
        self._echo = collections.deque()
        self._sinks: list = []
        self._seq = 0

    # ---------------------------------------------------------------- CallEndpoint
    def authorize(self, meeting_token: str | None) -> str | None:
        if self.ended:
            return "the call has ended"
        if self.meeting_token is not None and meeting_token != self.meeting_token:
            return "invalid or missing meeting_token"
        present = len(self.joined) - len(self.left)
        if self.max_participants is not None and present + 1 >= self.max_participants:
            return f"the room is full (max_participants={self.max_participants}, the replica counts as one)"
        return None

    async def participant_joined(self, participant_id: str) -> None:
        self.joined.append(participant_id)
        self.emit("system.replica_joined", {}, message_type="system")
        if self.greeting:
            self.emit("conversation.utterance", {"role": "replica", "speech": self.greeting})

    async def participant_left(self, participant_id: str, reason: str) -> None:
        self.left.append((participant_id, reason))

    def participant_audio(self, participant_id: str, pcm: np.ndarray) -> None:
        if pcm.dtype != np.int16 or pcm.shape != (320,):
            self.bad_frames += 1
        self.audio_frames[participant_id] += 1
        if np.sqrt(np.mean((pcm.astype(np.float32) / 32768) ** 2)) > 0.01:
            self.voiced_frames[participant_id] += 1
            if self.first_voiced_in is None:
                self.first_voiced_in = time.monotonic()
        self._echo.append(pcm)
        while len(self._echo) > 4:  # keep the echo prompt (a backlog would only add delay)
            self._echo.popleft()

    async def interaction(self, participant_id: str, message: object) -> None:
        self.interactions.append((participant_id, message))
        kind = message.get("event_type") if isinstance(message, dict) else None
        if kind == "conversation.respond":
            text = (message.get("properties") or {}).get("text", "")
            self.emit("conversation.utterance", {"role": "replica", "speech": f"you said: {text}"})
        else:
            self.emit("conversation.error", {"error": f"unknown interaction {kind!r}; accepted: conversation.respond"})

    async def outgoing(self):
        h, w = self.size
        per_frame = INBOUND_SAMPLE_RATE // self.fps
        start = time.monotonic()
        pending = np.zeros(0, np.int16)
        i = 0
        while True:
            due = start + i / self.fps
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            while len(pending) < per_frame and self._echo:
                pending = np.concatenate([pending, self._echo.popleft()])
            audio = pending[:per_frame]
            pending = pending[per_frame:]
            if len(audio) < per_frame:
                audio = np.concatenate([audio, np.zeros(per_frame - len(audio), np.int16)])
            level = float(np.sqrt(np.mean((audio.astype(np.float32) / 32768) ** 2)))
            image = np.empty((h, w, 3), np.uint8)
            image[:] = (min(255, int(level * 2000)), 64, 160)
            self.frames_out += 1
            loud = np.nonzero(np.abs(audio) > 1600)[0]  # 0.05 full scale
            if len(loud) and self.first_voiced_out is None:
                # when the onset plays: the frame plays from its yield on, sample k at k / rate after it
                self.first_voiced_out = time.monotonic() + loud[0] / INBOUND_SAMPLE_RATE
            yield VideoFrame(image=None if self.audio_only else image, pts=i / self.fps, audio=audio.astype(np.float32) / 32768,
                             audio_rate=INBOUND_SAMPLE_RATE, speaking=level > 0.01)
            i += 1

    def subscribe(self, send):
        self._sinks.append(send)
        return lambda: self._sinks.remove(send) if send in self._sinks else None

    # ---------------------------------------------------------------- helpers
    def emit(self, event_type: str, properties: dict, message_type: str = "conversation") -> None:
        self._seq += 1
        event = {"message_type": message_type, "event_type": event_type, "conversation_id": self.conversation_id,
                 "timestamp": time.time(), "seq": self._seq, "turn_idx": 0, "properties": properties}
        for sink in list(self._sinks):
            sink(event)
