"""`CallRoom`, a call's presence state: who is present, the participant cap, and presence events.

Pure state, no timers or I/O: the transport (or a test) calls `join` / `leave`; listeners (the manager)
turn the events into timers, stored events and runtime notifications. The replica is a member of kind
"replica" and counts toward `max_participants`; everyone else (participants, observers, clients) is a
participant for the timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

MemberKind = Literal["replica", "participant", "observer", "client"]


class RoomError(Exception):
    """A join the room refuses; the message says why (full, closed, already present)."""


class RoomFull(RoomError):
    pass


class RoomClosed(RoomError):
    pass


@dataclass(frozen=True)
class PresenceEvent:
    kind: Literal["participant_joined", "participant_left", "room_closed"]
    participant_id: str | None
    participant_kind: MemberKind | None
    reason: str | None
    participants: int  # non-replica members present after the event


Listener = Callable[[PresenceEvent], None]


class CallRoom:
    """Who is in one call (the replica included) and whether someone else may join."""

    def __init__(self, conversation_id: str, max_participants: int | None = None) -> None:
        self.conversation_id = conversation_id
        self.max_participants = max_participants
        self.members: dict[str, MemberKind] = {}  # participant_id -> kind
        self.closed = False
        self.ever_joined = False  # a non-replica member has been present at some point
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    @property
    def participant_count(self) -> int:
        """Members other than the replica (the ones the timeouts watch)."""
        return sum(1 for k in self.members.values() if k != "replica")

    @property
    def member_count(self) -> int:
        return len(self.members)

    @property
    def replica_present(self) -> bool:
        return "replica" in self.members.values()

    def can_join(self, participant_id: str | None = None) -> str | None:
        """None if a new member may join; else the reason."""
        if self.closed:
            return "the conversation has ended"
        if participant_id is not None and participant_id in self.members:
            return None
        if self.max_participants is not None and self.member_count >= self.max_participants:
            return f"the room is full (max_participants {self.max_participants}, the replica counts as one)"
        return None

    def join(self, participant_id: str, kind: MemberKind = "participant") -> bool:
        """Adds a member; False if already present (idempotent). Raises RoomFull / RoomClosed."""
        reason = self.can_join(participant_id)
        if reason:
            raise (RoomClosed if self.closed else RoomFull)(reason)
        if participant_id in self.members:
            return False
        self.members[participant_id] = kind
        if kind != "replica":
            self.ever_joined = True
        self._emit(PresenceEvent("participant_joined", participant_id, kind, None, self.participant_count))
        return True

    def leave(self, participant_id: str, reason: str = "left") -> bool:
        """Removes a member; False if it was not present."""
        kind = self.members.pop(participant_id, None)
        if kind is None:
            return False
        self._emit(PresenceEvent("participant_left", participant_id, kind, reason, self.participant_count))
        return True

    def close(self, reason: str) -> None:
        """Ends presence: everyone leaves (replica last), then no one may join."""
        if self.closed:
            return
        for pid, kind in sorted(self.members.items(), key=lambda kv: kv[1] == "replica"):
            self.members.pop(pid, None)
            self._emit(PresenceEvent("participant_left", pid, kind, "call_ended", self.participant_count))
        self.closed = True
        self._emit(PresenceEvent("room_closed", None, None, reason, 0))

    def _emit(self, event: PresenceEvent) -> None:
        for listener in list(self._listeners):
            listener(event)
