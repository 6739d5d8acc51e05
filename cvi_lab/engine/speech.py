"""What the replica says and what the participant has heard of it: speeches, clauses and the audio ledger.

Why separate: the avatar plays pushed audio FIFO at its own pace, so "what was heard" is known only by booking
each outgoing frame's audio against what was pushed. The ledger does that bookkeeping and nothing else; it
tells its owner when a speech first becomes audible and when all its pushed audio has played.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable

from cvi_lab.engine.latency import TurnLatency
from cvi_lab.engine.turns import UserTurn
from cvi_lab.media import VideoFrame


@dataclass
class Clause:
    text: str
    duration: float = 0.0  # seconds of audio pushed for it
    played: float = 0.0  # seconds of it that went out in frames
    words: list[tuple[str, float]] = field(default_factory=list)  # (word, end time in the clause) if known

    def heard(self) -> str:
        if self.duration <= 0 or self.played >= self.duration - 1e-3:
            return self.text if self.played > 0 else ""
        if self.words:
            return " ".join(w for w, end in self.words if end <= self.played + 1e-3)
        # no timings: assume words are spread evenly over the audio; keep only the fully heard ones
        words = self.text.split()
        return " ".join(words[: int(len(words) * self.played / self.duration)])


@dataclass
class Speech:
    """One replica utterance: the greeting, an answer, an echo, an apology."""

    kind: str
    turn_idx: int
    interruptible: bool = True
    inference_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    latency: TurnLatency | None = None
    clauses: list[Clause] = field(default_factory=list)
    task: asyncio.Task | None = None
    produced: bool = False  # no more audio will be pushed
    started: bool = False  # its first audio went out
    finished: bool = False
    first_audio: asyncio.Event = field(default_factory=asyncio.Event)
    last_input: float = 0.0  # echo: when the sender last gave us something
    tts_s: float = 0.0  # TTS compute wall time spent producing its audio (for the TTS real-time factor)
    tts_audio_s: float = 0.0  # seconds of audio the TTS synthesized for it
    hold: asyncio.Event | None = None  # speculative answer: its audio waits for this (set at the commit)
    held_turn: UserTurn | None = None  # ... prepared for this user turn
    held_text: str = ""  # ... from this transcript
    streamed: int = 0  # conversation.utterance.streaming events sent for it (the next one's seq)

    @property
    def played_s(self) -> float:
        return sum(c.played for c in self.clauses)

    def heard_text(self) -> str:
        return " ".join(t for t in (c.heard() for c in self.clauses) if t)

    def text(self) -> str:
        return " ".join(c.text for c in self.clauses)


@dataclass
class _Booked:
    speech: Speech
    clause: Clause
    remaining: float
    pushed_at: float


class SpeechLedger:
    """Audio pushed to the avatar and not yet played, oldest first, booked per clause."""

    def __init__(self, frame_s: float, on_started: Callable[[Speech, float], None],
                 on_drained: Callable[[Speech], None]) -> None:
        self._frame_s = frame_s
        self._on_started, self._on_drained = on_started, on_drained
        self._booked: collections.deque[_Booked] = collections.deque()

    def __bool__(self) -> bool:
        return bool(self._booked)

    def book(self, speech: Speech, clause: Clause, seconds: float, now: float) -> None:
        self._booked.append(_Booked(speech, clause, seconds, now))

    def audible(self) -> Speech | None:
        """The speech whose audio is playing now (head of the ledger), if any."""
        return self._booked[0].speech if self._booked else None

    def holds(self, speech: Speech) -> bool:
        """Some of the speech's pushed audio has not played yet."""
        return any(b.speech is speech for b in self._booked)

    def drop(self, speeches: Iterable[Speech]) -> None:
        """Forget the audio of these speeches (the avatar was cleared)."""
        ids = {id(sp) for sp in speeches}
        self._booked = collections.deque(b for b in self._booked if id(b.speech) not in ids)

    def account(self, frame: VideoFrame, now: float) -> None:
        """Account the frame's audio to the oldest pushed-but-unplayed clauses (the avatar plays FIFO)."""
        if frame.speaking:
            left = len(frame.audio) / float(frame.audio_rate)
            while left > 1e-9 and self._booked:
                booked = self._booked[0]
                self._on_started(booked.speech, now)
                take = min(left, booked.remaining)
                booked.remaining -= take
                booked.clause.played += take
                left -= take
                if booked.remaining <= 1e-6:
                    self._booked.popleft()
                    self._on_drained(booked.speech)
        else:
            # Nothing was queued in the avatar for this frame: audio pushed before it has all been played
            # (up to resampling rounding). Entries pushed in the last frames may not have reached it yet.
            while self._booked and self._booked[0].pushed_at < now - 2 * self._frame_s:
                booked = self._booked.popleft()
                booked.clause.played += booked.remaining
                booked.remaining = 0.0
                self._on_started(booked.speech, now)
                self._on_drained(booked.speech)
