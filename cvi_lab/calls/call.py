"""`Call`: one live conversation as the engine (a runtime) sees it, and the runtime contract.

A runtime factory is registered with `ConversationManager.add_runtime_factory(factory)`; for each new
conversation (not test_mode) the manager calls `factory(call, room, cfg)` and awaits `runtime.start()` while
the replica waits in the room, and `runtime.stop(reason)` when the call ends. Optional runtime methods
`on_participant_joined(participant_id, kind)` / `on_participant_left(participant_id, kind, reason)` (sync or
async) receive presence, in order; an optional `endpoint` attribute (a transport `CallEndpoint`) is what
`manager.endpoint_for(conversation_id)` returns.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from cvi_lab.calls.room import Room
from cvi_lab.clock import TimerHandle
from cvi_lab.domain.languages import LanguageRoute

if TYPE_CHECKING:
    from cvi_lab.calls.manager import ConversationManager


class Runtime(Protocol):
    async def start(self) -> None: ...

    async def stop(self, reason: str) -> None: ...


# A factory may also carry `async aclose()`: the manager awaits it at shutdown to release resources the
# factory's runtimes share on the event loop (cvi_lab.engine.runtime.engine_runtime closes its stage pool).
RuntimeFactory = Callable[["Call", Room, Any], Runtime]


@dataclass(eq=False)
class Call:
    conversation_id: str
    record: dict[str, Any]  # the stored conversation at creation
    persona: dict[str, Any]
    replica: dict[str, Any]
    system_message: str  # persona system prompt + persona context + conversational context
    language: LanguageRoute
    room: Room
    started_mono: float
    manager: "ConversationManager"
    runtimes: list[Any] = field(default_factory=list)
    timers: dict[str, TimerHandle] = field(default_factory=dict)
    ending: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    _consumer: asyncio.Task | None = None

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

    def transcript(self) -> list[dict[str, str]]:
        return self.manager.transcript(self.conversation_id)

    def elapsed(self) -> float:
        return self.manager.clock.monotonic() - self.started_mono

    async def replica_artifacts(self) -> dict[str, Any]:
        """Built replica artifacts (builder dict + "dir"); built on first use for the default replica."""
        return await self.manager.replicas.ensure_artifacts(self.replica["replica_id"])

    def request_end(self, reason: str) -> None:
        """End the call from inside (e.g. an engine error); returns at once, the end runs as a task."""
        self.manager.spawn(self.manager.end(self.conversation_id, reason))

    # -------------------------------------------------------- ordered runtime notifications
    def notify(self, method: str, *args: Any) -> None:
        if self._consumer is None:
            self._consumer = asyncio.get_running_loop().create_task(self._consume())
        self._queue.put_nowait((method, args))

    async def _consume(self) -> None:
        while True:
            method, args = await self._queue.get()
            for runtime in list(self.runtimes):
                fn: Callable[..., Any] | None = getattr(runtime, method, None)
                if fn is None:
                    continue
                try:
                    result = fn(*args)
                    if inspect.isawaitable(result):
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception:  # a runtime's bug must not stop presence handling
                    self.manager.log.exception("runtime %s.%s failed", type(runtime).__name__, method)

    def stop_notifications(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
