"""`Call`: one live conversation as its runtime (the engine) sees it, and where presence reaches the runtime.

The manager builds a `Call` per conversation (not test_mode), gives it the runtime its `RuntimeFactory` makes
(calls/runtime.py), and, once the runtime started, the endpoint the transport calls (calls/endpoint.py).
Presence goes room first, runtime second: `participant_joined` joins the room (which may refuse: the error
reaches the caller) and then tells the runtime, so the runtime never hears of someone the room refused.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Coroutine

from cvi_lab.calls.rate import RateWindow
from cvi_lab.calls.room import CallRoom, MemberKind
from cvi_lab.clock import TimerHandle
from cvi_lab.domain.documents import knowledge_scope
from cvi_lab.domain.languages import LanguageRoute

if TYPE_CHECKING:
    from cvi_lab.calls.endpoint import ConversationEndpoint
    from cvi_lab.calls.manager import ConversationManager
    from cvi_lab.calls.runtime import ConversationRuntime


@dataclass(eq=False)
class Call:
    conversation_id: str
    record: dict[str, Any]  # the stored conversation at creation
    persona: dict[str, Any]
    replica: dict[str, Any]
    language: LanguageRoute
    room: CallRoom
    started_mono: float
    manager: "ConversationManager"
    app_messages: RateWindow  # send-app-message requests (server.limits.app_messages_*)
    runtime: "ConversationRuntime | None" = None  # None when the server registers no runtime factory
    endpoint: "ConversationEndpoint | None" = None  # set once the runtime has started
    timers: dict[str, TimerHandle] = field(default_factory=dict)
    ending: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def properties(self) -> dict[str, Any]:
        return self.record["properties"]

    @property
    def custom_greeting(self) -> str:
        return self.record["custom_greeting"]

    # -------------------------------------------------------- recorders for the engine
    def add_event(self, event_type: str, properties: dict[str, Any] | None = None) -> None:
        """Persist an event at once (e.g. "conversation.utterance" {role: user|replica, speech})."""
        self.manager.store.add_event(self.conversation_id, event_type, properties)

    def add_turn_metrics(self, turn_idx: int, metrics: dict[str, Any]) -> None:
        self.manager.store.add_turn_metrics(self.conversation_id, turn_idx, metrics)

    def recording_ready(self, path: str, duration: float) -> None:
        """The call's recording is written (after the end): stored, shown on the record, sent as a webhook."""
        self.manager.recording_ready(self.conversation_id, path, duration)

    def system_message(self) -> str | None:
        """What the LLM saw as its system message on the latest turn; None without a runtime."""
        return self.runtime.system_message() if self.runtime is not None else None

    def transcript(self) -> list[dict[str, str]]:
        return self.manager.transcript(self.conversation_id, self.system_message())

    def elapsed(self) -> float:
        return self.manager.clock.monotonic() - self.started_mono

    async def replica_artifacts(self) -> dict[str, Any]:
        """Built replica artifacts (builder dict + "dir"); built on first use for the default replica."""
        return await self.manager.replicas.ensure_artifacts(self.replica["replica_id"])

    def knowledge(self) -> tuple[list[tuple[str, int, str]], str]:
        """The passages (document_id, idx, text) of the ready documents this call draws on, and its retrieval
        strategy (SPEC §5: the conversation's and its persona's document_ids / document_tags)."""
        ids, tags, strategy = knowledge_scope(self.record, self.persona)
        store = self.manager.store
        return store.passages(store.ready_document_ids(ids, tags)), strategy

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Background work of the call that may outlive it (e.g. finishing the recording), tracked by the
        manager: `drain()` waits for it, shutdown cancels what is left."""
        self.manager.spawn(coro)

    def request_end(self, reason: str) -> None:
        """End the call from inside (e.g. an engine error); returns at once, the end runs as a task."""
        self.manager.spawn(self.manager.end(self.conversation_id, reason))

    # -------------------------------------------------------- presence: room, then runtime
    async def participant_joined(self, participant_id: str, kind: MemberKind = "participant") -> None:
        """Join the room (raises RoomFull / RoomClosed if refused), then tell the runtime once."""
        if self.room.join(participant_id, kind) and self.runtime is not None and not self.ending:
            await self.runtime.participant_joined(participant_id, kind)

    async def participant_left(self, participant_id: str, reason: str = "left") -> None:
        kind = self.room.members.get(participant_id)
        if kind is None or not self.room.leave(participant_id, reason):
            return
        if self.runtime is not None and not self.ending:
            await self.runtime.participant_left(participant_id, kind, reason)
