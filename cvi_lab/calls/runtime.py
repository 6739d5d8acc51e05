"""The contract between the calls layer and what runs a live conversation (the engine): `ConversationRuntime`.

Why a protocol here: the calls layer decides who is in the call and when it ends; the runtime turns media into
answers. The manager builds one runtime per conversation with the registered `RuntimeFactory`, awaits
`start()` before the replica joins, composes the transport's endpoint from it (calls/endpoint.py), tells it
about presence, and awaits `stop(reason)` at the end. Nothing here imports the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Protocol, runtime_checkable

import numpy as np

from cvi_lab.media import VideoFrame

if TYPE_CHECKING:
    from cvi_lab.calls.call import Call
    from cvi_lab.calls.room import CallRoom, MemberKind


class ConversationRuntime(Protocol):
    """One live conversation's media and answers, as the calls layer drives it."""

    async def start(self) -> None:
        """Load what the call needs (stages, replica); the replica joins the room once this returns."""

    async def stop(self, reason: str) -> None:
        """The call ends (`reason` is the shutdown reason); the frame stream ends with it."""

    async def participant_joined(self, participant_id: str, kind: "MemberKind") -> None:
        """Someone other than the replica is in the room (after the room accepted them)."""

    async def participant_left(self, participant_id: str, kind: "MemberKind", reason: str) -> None:
        """Someone left the room (never while the call is ending)."""

    def participant_audio(self, participant_id: str, pcm: np.ndarray) -> None:
        """A 20 ms frame of participant audio (int16 mono, 16 kHz). Must not block."""

    async def interaction(self, participant_id: str, message: object) -> str | None:
        """A data-channel message (or the same envelope from `send-app-message`), JSON-decoded. Returns None when
        it was applied, else why it was refused (the runtime has also sent that as a `conversation.error`)."""

    def outgoing(self) -> AsyncIterator[VideoFrame]:
        """The replica's frames, each with the audio that plays during it, paced in real time."""

    def subscribe(self, send: Callable[[dict], None]) -> Callable[[], None]:
        """Register a sink for outgoing events; returns an unsubscribe function."""

    def system_message(self) -> str:
        """Exactly the system message the LLM saw on the latest turn (what the stored transcript starts with)."""


class RuntimeFactory(Protocol):
    """`factory(call, room, cfg)`: the runtime of one new conversation (`cfg` is the full composed config)."""

    def __call__(self, call: "Call", room: "CallRoom", cfg: Any) -> ConversationRuntime: ...


@runtime_checkable
class ClosableRuntimeFactory(Protocol):
    """A factory whose runtimes share loop-bound resources (a stage pool, an HTTP session): the manager
    awaits `aclose()` at shutdown, after every call has stopped."""

    async def aclose(self) -> None: ...
