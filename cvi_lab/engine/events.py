"""The engine's outgoing events: the data-channel envelope (SPEC §3), its subscribers, and the stored transcript.

Why separate: every part of the engine announces things; one bus numbers them (`seq`), stamps them, fans them
out to the transport's data channels and hands transcript events to the calls layer's sinks, so that a broken
subscriber or sink never breaks the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from cvi_lab.clock import Clock
from cvi_lab.domain.vocabulary import both_id_names

log = logging.getLogger(__name__)

# Events stored in the transcript (the rest are live-only signals).
# (system.replica_joined / system.shutdown are recorded by the calls layer, which owns the lifecycle.)
RECORDED = {
    "conversation.utterance",
    "conversation.replica_interrupted",
    "conversation.tool_call",
    "conversation.error",
}

Sink = Callable[..., "Awaitable[None] | None"]


@dataclass
class Sinks:
    """Where the engine stores what happens (given by the calls layer; sync or async callables)."""

    record_event: Sink | None = None  # (event_type, properties) - transcript events, see RECORDED
    record_turn: Sink | None = None  # (turn_idx, metrics dict) - one per replica answer, see latency.py


class EventBus:
    """Numbered, stamped events to the data-channel subscribers; transcript events and turn records to sinks."""

    def __init__(self, conversation_id: str, clock: Clock, sinks: Sinks, current_turn: Callable[[], int],
                 spawn: Callable[[Awaitable[None]], asyncio.Task]) -> None:
        self.conversation_id, self.clock, self.sinks = conversation_id, clock, sinks
        self._current_turn, self._spawn = current_turn, spawn
        self._seq = 0
        self._subscribers: list[Callable[[dict], None]] = []
        self._joined_event: dict | None = None

    def subscribe(self, send: Callable[[dict], None]) -> Callable[[], None]:
        """Add an event sink (the transport's data channel). It first gets system.replica_joined, which was
        emitted at start(), before any participant could be listening."""
        if self._joined_event is not None:
            self._send(send, self._joined_event)
        self._subscribers.append(send)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(send)

        return unsubscribe

    def announce_joined(self, replica_id: str | None) -> None:
        """system.replica_joined: sent now and replayed to every later subscriber."""
        self._joined_event = self.emit("system.replica_joined", both_id_names({"replica_id": replica_id}),
                                       message_type="system")

    def emit(self, event_type: str, properties: dict, turn_idx: int | None = None, message_type: str = "conversation",
             inference_id: str | None = None) -> dict:
        """Send an event to every data-channel subscriber and record transcript events."""
        self._seq += 1
        event = {
            "message_type": message_type,
            "event_type": event_type,
            "conversation_id": self.conversation_id,
            "properties": properties,
            "timestamp": self.clock.now().isoformat(),
            "seq": self._seq,
            "turn_idx": self._current_turn() if turn_idx is None else turn_idx,
        }
        if inference_id:
            event["inference_id"] = inference_id
        for send in list(self._subscribers):
            self._send(send, event)
        if event_type in RECORDED:
            meta = {"turn_idx": event["turn_idx"], "seq": event["seq"], "timestamp": event["timestamp"]}
            if inference_id:
                meta["inference_id"] = inference_id
            self._call_sink(self.sinks.record_event, event_type, {**properties, **meta})
        return event

    def error(self, message: str, source: str, **extra: Any) -> None:
        self.emit("conversation.error", {"error": message, "source": source, **extra})

    def record_turn(self, turn_idx: int, metrics: dict) -> None:
        self._call_sink(self.sinks.record_turn, turn_idx, metrics)

    @staticmethod
    def _send(send: Callable[[dict], None], event: dict) -> None:
        try:
            send(event)
        except Exception:  # noqa: BLE001 - a broken subscriber must not break the call
            log.exception("event subscriber failed")

    def _call_sink(self, sink: Sink | None, *args: Any) -> None:
        if sink is None:
            return
        try:
            result = sink(*args)
            if inspect.isawaitable(result):
                self._spawn(_await_sink(result))
        except Exception:  # noqa: BLE001
            log.exception("sink failed")


async def _await_sink(result: Awaitable) -> None:
    try:
        await result
    except Exception:  # noqa: BLE001
        log.exception("sink failed")
