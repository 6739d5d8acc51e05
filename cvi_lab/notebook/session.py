"""One conversation as the notebook follows it: create, poll, end — the control panel's logic, no widgets.

Why polling: the browser gets live events over the WebRTC data channel, but the kernel is not in the call.
It reads `GET /v2/conversations/{id}?verbose=true` (status, transcript, lifecycle) and the per-turn latency
records; with the server in the kernel it also subscribes to the engine's live events, which carry what is
never stored (who is speaking, the replica's words as they stream).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from cvi_lab.notebook.client import ApiClient
from cvi_lab.notebook.form import CallForm
from cvi_lab.notebook.server import RemoteServer


@dataclass
class Caption:
    role: str  # "user" | "replica"
    text: str
    turn_idx: int | None = None
    timestamp: str = ""


@dataclass
class Snapshot:
    """Everything the panel shows at one moment."""

    conversation_id: str
    status: str = "active"
    conversation_url: str = ""
    shutdown_reason: str | None = None
    usage_seconds: float = 0.0
    captions: list[Caption] = field(default_factory=list)
    replica_joined: bool = False
    participants: int = 0
    replica_speaking: bool | None = None  # None: unknown (no live events from this server)
    user_speaking: bool | None = None
    streaming_text: str = ""  # the replica's words so far in the current answer (live events only)
    turns: list[dict[str, Any]] = field(default_factory=list)
    turns_available: bool = True  # False: the server offers no per-turn latency records
    errors: list[str] = field(default_factory=list)
    live_note: str = ""  # why speaking state is unknown, when it is

    @property
    def ended(self) -> bool:
        return self.status == "ended"


class LiveState:
    """Folds the engine's data-channel events into speaking flags; written on the server's loop thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.replica_speaking = False
        self.user_speaking = False
        self.streaming_text = ""
        self.seen = 0

    def __call__(self, event: dict) -> None:
        kind = event.get("event_type", "")
        props = event.get("properties") or {}
        with self._lock:
            self.seen += 1
            if kind == "conversation.replica.started_speaking":
                self.replica_speaking, self.streaming_text = True, ""
            elif kind == "conversation.replica.stopped_speaking":
                self.replica_speaking = False
            elif kind == "conversation.user.started_speaking":
                self.user_speaking = True
            elif kind == "conversation.user.stopped_speaking":
                self.user_speaking = False
            elif kind == "conversation.utterance.streaming":
                self.streaming_text = str(props.get("speech") or props.get("text") or self.streaming_text)
            elif kind == "conversation.utterance" and props.get("role") == "replica":
                self.streaming_text = ""
            elif kind == "system.shutdown":
                self.replica_speaking = self.user_speaking = False

    def read(self) -> tuple[bool, bool, str]:
        with self._lock:
            return self.replica_speaking, self.user_speaking, self.streaming_text


def snapshot_from(record: dict[str, Any], turns: list[dict[str, Any]] | None,
                  live: LiveState | None = None) -> Snapshot:
    """A Snapshot from a verbose conversation record, its turn records, and the live state if any."""
    snap = Snapshot(
        conversation_id=record["conversation_id"], status=record.get("status", "active"),
        conversation_url=record.get("conversation_url", ""), shutdown_reason=record.get("shutdown_reason"),
        usage_seconds=float(record.get("usage_seconds") or 0.0),
        turns=sorted(turns or [], key=lambda t: t.get("turn_idx") or 0), turns_available=turns is not None,
    )
    for ev in record.get("events") or []:
        kind, props = ev.get("event_type", ""), ev.get("properties") or {}
        if kind == "conversation.utterance":
            snap.captions.append(Caption(props.get("role", "?"), str(props.get("speech", "")),
                                         props.get("turn_idx"), ev.get("timestamp", "")))
        elif kind == "system.replica_joined":
            snap.replica_joined = True
        elif kind == "system.participant_joined":
            snap.participants += 1
        elif kind == "system.participant_left":
            snap.participants = max(0, snap.participants - 1)
        elif kind == "conversation.error":
            snap.errors.append(str(props.get("message") or props.get("error") or props))
    if live is not None:
        snap.replica_speaking, snap.user_speaking, snap.streaming_text = live.read()
    if snap.ended:
        snap.replica_speaking = False if snap.replica_speaking is not None else None
        snap.user_speaking = False if snap.user_speaking is not None else None
        snap.participants = 0
    return snap


class CallSession:
    """A conversation being followed: `CallSession.create(server, form)`, then `poll()`, then `end()`."""

    def __init__(self, server: RemoteServer, conversation_id: str, created: dict[str, Any] | None = None) -> None:
        self.server = server
        self.client: ApiClient = server.client()
        self.conversation_id = conversation_id
        self.created = created or {}
        self.live = LiveState()
        self._unsubscribe: Callable[[], None] | None = None
        self._subscribe_tried_at = 0.0
        self.last: Snapshot | None = None

    @classmethod
    def create(cls, server: RemoteServer, form: CallForm | dict[str, Any]) -> "CallSession":
        """POST /v2/conversations (the call starts at once). FormError / ApiError say what was wrong."""
        body = form.to_request() if isinstance(form, CallForm) else dict(form)
        created = server.client().create_conversation(body)
        session = cls(server, created["conversation_id"], created)
        session.subscribe()
        return session

    @property
    def conversation_url(self) -> str:
        return self.created.get("conversation_url") or (self.last.conversation_url if self.last else "")

    def subscribe(self) -> None:
        """Follow the engine's live events when the server is in this kernel (once; polling works without)."""
        if self._unsubscribe is not None or not self.server.in_process:
            return
        self._subscribe_tried_at = time.monotonic()
        try:
            self._unsubscribe = self.server.subscribe_events(self.conversation_id, self.live)
        except Exception:  # noqa: BLE001 - live events are a bonus; polling still works
            self._unsubscribe = None

    def poll(self) -> Snapshot:
        record = self.client.get_conversation(self.conversation_id, verbose=True)
        turns = self.server.turn_metrics(self.conversation_id)
        if record.get("status") == "active" and self._unsubscribe is None \
                and time.monotonic() - self._subscribe_tried_at > 2.0:
            self.subscribe()  # the engine may attach after creation
        snap = snapshot_from(record, turns, self.live if self._unsubscribe is not None else None)
        if self._unsubscribe is None:
            snap.live_note = ("no engine is attached to this call (the server has no runtime registered)"
                              if self.server.in_process
                              else "live events need the server in this kernel (start_server())")
        if snap.ended:
            self.close()
        self.last = snap
        return snap

    def end(self) -> Snapshot:
        """POST .../end (idempotent), then the final snapshot (shutdown reason, usage, all turns)."""
        self.client.end_conversation(self.conversation_id)
        return self.poll()

    def transcript(self) -> list[Caption]:
        return (self.last or self.poll()).captions

    def close(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            try:
                unsubscribe()
            except Exception:  # noqa: BLE001 - the engine may be gone already
                pass
