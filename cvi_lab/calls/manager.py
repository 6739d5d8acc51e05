"""The conversation manager: creates calls (room + replica + timers + usage), ends them, keeps the ledger.

Creating a conversation starts the call at once (SPEC §1): a room opens, the replica joins and waits,
the three timers and the usage clock run, and a concurrency spot is taken until the end. Every timer uses
the injected clock. State that must survive a crash (records, events, usage heartbeats, deliveries) goes
to the store as it happens; `start()` resolves conversations a killed server left active. Hosts sharing the
store (calls/hosts.py) each run their own calls and end the others' through their owner.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
from typing import Any, Callable, Coroutine, Mapping

from cvi_lab.calls.call import Call
from cvi_lab.calls.documents import check_document_ids
from cvi_lab.calls.endpoint import ConversationEndpoint
from cvi_lab.calls.hosts import HostPeers
from cvi_lab.calls.memories import recall_memories
from cvi_lab.calls.orphans import RecordsWithoutCall
from cvi_lab.calls.rate import RateWindow
from cvi_lab.calls.reads import ConversationReads
from cvi_lab.calls.replicas import ReplicaService
from cvi_lab.calls.room import CallRoom, MemberKind, PresenceEvent
from cvi_lab.calls.runtime import ClosableRuntimeFactory, RuntimeFactory
from cvi_lab.calls.settings import server_settings
from cvi_lab.calls.webhooks import WebhookDeliverer
from cvi_lab.clock import Clock, TimerHandle
from cvi_lab.domain.conversation import (
    ConversationCreate, ConversationCreated, ShutdownReason,
)
from cvi_lab.domain.documents import knowledge
from cvi_lab.domain.errors import Conflict, InvalidInput, LimitReached, NotFound, Unavailable
from cvi_lab.domain.ids import CONVERSATION, new_id
from cvi_lab.domain.languages import LanguageTable, UnsupportedLanguageError
from cvi_lab.domain.resolution import resolve_persona_replica
from cvi_lab.store import Store

CONCURRENCY_MESSAGE = "User has reached maximum concurrent conversations"


class ConversationManager(ConversationReads, RecordsWithoutCall):
    log = logging.getLogger(__name__)

    def __init__(
        self, store: Store, cfg: Any, *, clock: Clock, webhooks: WebhookDeliverer, replicas: ReplicaService,
        base_url: str,
    ) -> None:
        self.store = store
        self.cfg = cfg  # the full composed config, handed to runtime factories
        settings = server_settings(cfg)
        server: Mapping[str, Any] = settings["server"]
        self.clock = clock
        self.webhooks = webhooks
        self.replicas = replicas
        self.base_url = base_url.rstrip("/")
        self.languages = LanguageTable(settings["languages"])
        self.limits = dict(server["limits"])
        self.max_concurrent = int(self.limits["max_concurrent_conversations"])
        usage = server.get("usage") or {}
        self.heartbeat_s = float(usage.get("heartbeat_s", 2.0))
        self.runtime_stop_timeout_s = float(server.get("runtime_stop_timeout_s", 10.0))
        self.hosts = HostPeers(server["hosts"])
        self.live: dict[str, Call] = {}  # the calls this host runs
        self._factory: RuntimeFactory | None = None
        self._end_listeners: list[Callable[[str, str], Any]] = []
        self._tasks: set[asyncio.Task] = set()
        self._heartbeat: TimerHandle | None = None
        self._closed = False

    # ------------------------------------------------------------ wiring
    def add_runtime_factory(self, factory: RuntimeFactory) -> None:
        """`factory(call, room, cfg)` -> the `ConversationRuntime` of each new call (calls/runtime.py).
        A conversation has one runtime: registering a second factory is a configuration error."""
        if self._factory is not None:
            raise ValueError(f"a runtime factory is already registered ({self._factory!r}); a conversation "
                             f"has one runtime, so server.runtimes takes one entry")
        self._factory = factory

    def add_end_listener(self, listener: Callable[[str, str], Any]) -> None:
        """`listener(conversation_id, shutdown_reason)` (sync or async) after a live call ended, e.g. the
        transport closing its peers. Errors are logged, never raised into the end."""
        self._end_listeners.append(listener)

    @property
    def host_url(self) -> str:
        """Where other hosts reach this one (stored on each record it runs)."""
        return self.hosts.internal_url or self.base_url

    def validation_context(self) -> dict[str, Any]:
        return {"limits": self.limits}

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait until background work the manager spawned (timer-driven ends) has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def room(self, conversation_id: str) -> CallRoom | None:
        call = self.live.get(conversation_id)
        return call.room if call else None

    def call(self, conversation_id: str) -> Call | None:
        return self.live.get(conversation_id)

    def endpoint_for(self, conversation_id: str) -> ConversationEndpoint | None:
        """The transport's `CallEndpoint` for a live call whose runtime has started (the transport's resolve)."""
        call = self.live.get(conversation_id)
        return call.endpoint if call is not None and not call.ending else None

    def authorize(self, conversation_id: str, meeting_token: str | None) -> str | None:
        """None if someone may join the meeting now; else why not (unknown, ended, token, full)."""
        call = self.live.get(conversation_id)
        if call is None:
            record = self.store.get_conversation(conversation_id)
            return "unknown conversation" if record is None else "the conversation has ended"
        if call.ending:
            return "the conversation has ended"
        if call.record["require_auth"]:
            if not meeting_token or not secrets.compare_digest(meeting_token, call.record["meeting_token"] or ""):
                return "a valid meeting_token is required"
            if call.elapsed() > call.properties["participant_absent_timeout"]:
                return "the meeting_token has expired"
        return call.room.can_join()

    # ------------------------------------------------------------ lifecycle of the manager
    async def start(self) -> list[str]:
        """Resolve conversations a previous (killed) run left active; resume pending webhooks; start heartbeats."""
        orphans = self.resolve_orphans()
        self.webhooks.resume_pending()
        self._schedule_heartbeat()
        return orphans

    async def close(self) -> None:
        """Graceful stop: end live calls (reason server_shutdown), stop heartbeats."""
        self._closed = True
        if self._heartbeat:
            self._heartbeat.cancel()
        await asyncio.gather(*(self.end(cid, ShutdownReason.SERVER_SHUTDOWN) for cid in list(self.live)),
                             return_exceptions=True)
        await self.hosts.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if isinstance(self._factory, ClosableRuntimeFactory):  # the runtimes' shared, loop-bound resources
            try:
                await self._factory.aclose()
            except Exception:  # noqa: BLE001
                self.log.warning("closing runtime factory %r failed", self._factory, exc_info=True)

    def _schedule_heartbeat(self) -> None:
        if not self._closed and self.heartbeat_s > 0:
            self._heartbeat = self.clock.call_later(self.heartbeat_s, self._beat)

    def _beat(self) -> None:
        for cid, call in list(self.live.items()):
            if not call.ending:
                self.store.heartbeat_usage(cid, call.elapsed())
        if self.hosts.shared:
            self._sweep_stale()
        self._schedule_heartbeat()

    # ------------------------------------------------------------ create
    async def create(self, req: ConversationCreate) -> dict[str, Any]:
        try:
            language = self.languages.resolve(req.properties.language)
        except UnsupportedLanguageError as exc:
            raise InvalidInput(str(exc), field="properties.language") from None
        if req.callback_url:
            await self.webhooks.outbound.check(req.callback_url, "callback_url")
        check_document_ids(self.store, req.document_ids)
        persona, replica = resolve_persona_replica(
            req.persona_id, req.replica_id, self.store.get_persona, self.store.get_replica
        )
        cid = new_id(CONVERSATION)
        token = secrets.token_urlsafe(16) if req.require_auth else None
        url = f"{self.base_url}/meet/{cid}" + (f"?t={token}" if token else "")
        fields = {
            "conversation_name": req.conversation_name or f"Conversation {cid}",
            "status": "ended" if req.test_mode else "active",
            "conversation_url": url, "replica_id": replica["replica_id"], "persona_id": persona["persona_id"],
            "callback_url": req.callback_url, "conversational_context": req.conversational_context,
            "custom_greeting": req.custom_greeting, "test_mode": req.test_mode, "require_auth": req.require_auth,
            "meeting_token": token, "max_participants": req.max_participants,
            "properties": {**req.properties.model_dump(), "language": language.name},
            "host_url": self.host_url, **knowledge(req),
        }
        if req.test_mode:  # the record only: no room, no replica, no usage, no spot
            record = self.store.insert_conversation(cid, fields)
            return self._created(record)
        # Take a concurrency spot before the first await, so parallel creates cannot overshoot.
        if self._closed:
            raise Unavailable("the server is shutting down")
        if len(self.live) >= self.max_concurrent:
            raise LimitReached(f"{CONCURRENCY_MESSAGE} ({self.max_concurrent}); end one to start another")
        record = self.store.insert_conversation(cid, fields)
        persona = recall_memories(self.cfg, self.store, persona, record)  # the runtime's context has them
        call = Call(
            conversation_id=cid, record=record, persona=persona, replica=replica, language=language,
            room=CallRoom(cid, req.max_participants), started_mono=self.clock.monotonic(), manager=self,
            app_messages=RateWindow(int(self.limits["app_messages_per_window"]),
                                    float(self.limits["app_messages_window_s"]), self.clock.monotonic),
        )
        self.live[cid] = call
        self.store.start_usage(cid)
        props = req.properties
        call.timers["absent"] = self.clock.call_later(
            props.participant_absent_timeout, lambda: self._timeout(cid, ShutdownReason.PARTICIPANT_ABSENT))
        call.timers["max"] = self.clock.call_later(
            props.max_call_duration, lambda: self._timeout(cid, ShutdownReason.MAX_CALL_DURATION))
        call.room.subscribe(lambda ev: self._on_presence(call, ev))
        try:
            if self._factory is not None:
                runtime = call.runtime = self._factory(call, call.room, self.cfg)
                await runtime.start()
                call.endpoint = ConversationEndpoint(call, runtime)
        except Exception as exc:
            self.log.exception("conversation %s failed to start", cid)
            await self.end(cid, ShutdownReason.STARTUP_FAILED)
            raise Unavailable(f"conversation {cid} could not start: {type(exc).__name__}: {exc}") from None
        if not call.ending:
            call.room.join(replica["replica_id"], kind="replica")
        return self._created(self.store.get_conversation(cid) or record)

    def _created(self, record: dict[str, Any]) -> dict[str, Any]:
        return ConversationCreated.model_validate(record).model_dump()

    # ------------------------------------------------------------ presence and timers
    def _on_presence(self, call: Call, ev: PresenceEvent) -> None:
        cid = call.conversation_id
        if ev.kind == "room_closed":
            return
        if ev.participant_kind == "replica":
            if ev.kind == "participant_joined":
                props = {"replica_id": ev.participant_id}
                self.store.add_event(cid, "system.replica_joined", props)
                self.webhooks.send(cid, call.record["callback_url"], "system.replica_joined", props)
            return
        if call.ending:
            return
        props = {"participant_id": ev.participant_id, "kind": ev.participant_kind}
        if ev.kind == "participant_joined":
            for name in ("absent", "left"):
                timer = call.timers.pop(name, None)
                if timer:
                    timer.cancel()
            self.store.add_event(cid, "system.participant_joined", props)
        else:
            self.store.add_event(cid, "system.participant_left", {**props, "reason": ev.reason})
            if ev.participants == 0:
                delay = call.properties["participant_left_timeout"]
                if delay <= 0:
                    self._timeout(cid, ShutdownReason.PARTICIPANT_LEFT)
                else:
                    call.timers["left"] = self.clock.call_later(
                        delay, lambda: self._timeout(cid, ShutdownReason.PARTICIPANT_LEFT))

    def _timeout(self, cid: str, reason: str) -> None:
        call = self.live.get(cid)
        if call is not None and not call.ending:
            self.spawn(self.end(cid, reason, at=self.clock.monotonic()))

    async def participant_joined(
        self, conversation_id: str, participant_id: str, kind: MemberKind = "participant"
    ) -> None:
        """Join a live call without the transport (tests, scripts); raises RoomError if refused."""
        call = self.live.get(conversation_id)
        if call is None:
            raise NotFound(f"conversation_id {conversation_id!r} is not live")
        await call.participant_joined(participant_id, kind)

    async def participant_left(self, conversation_id: str, participant_id: str, reason: str = "left") -> None:
        call = self.live.get(conversation_id)
        if call is not None:
            await call.participant_left(participant_id, reason)

    # ------------------------------------------------------------ app messages
    async def app_message(self, conversation_id: str, message: object) -> dict[str, Any]:
        """`POST .../send-app-message`: one interaction envelope into the live call, through the same endpoint
        the data channel uses. 404 unknown, 400 not live (ended, test mode: SPEC §5) or refused by the runtime,
        409 no runtime on this server, 429 over the rate."""
        call = self.live.get(conversation_id)
        if call is None or call.ending:
            if call is None and self.store.get_conversation(conversation_id) is None:
                raise NotFound(f"conversation {conversation_id!r} does not exist")
            raise InvalidInput(f"conversation {conversation_id} is not live (ended, or test_mode); app messages go "
                               "to live conversations", field="conversation.status")
        wait = call.app_messages.admit()
        if wait is not None:
            raise LimitReached(f"more than {call.app_messages.max_requests} app messages in "
                               f"{call.app_messages.window_s:g} s to conversation {conversation_id}; "
                               f"retry in {wait:.1f} s")
        if call.endpoint is None:
            raise Conflict(f"conversation {conversation_id} has no live runtime on this server "
                               "(server.runtimes is empty), so it cannot take interactions")
        refused = await call.endpoint.interaction("app-message", message)
        if refused is not None:
            raise InvalidInput(refused)
        return {"conversation_id": conversation_id, "status": "delivered"}

    # ------------------------------------------------------------ end, delete
    async def end(
        self, conversation_id: str, reason: str = ShutdownReason.END_ENDPOINT, *, at: float | None = None,
        forwarded: bool = False,
    ) -> dict[str, Any]:
        """Ends a live call (idempotent: an ended one is returned as is). `at`: monotonic time the end was
        decided (a timer's due time), so usage does not include the time the end task waited to run.
        `forwarded`: another host sent it here as the owner, so it is never forwarded again."""
        call = self.live.get(conversation_id)
        if call is None:
            record = self.store.get_conversation(conversation_id)
            if record is not None and record["status"] == "active":
                await self._end_not_running_here(record, reason, forwarded)
            return self.get(conversation_id)
        if call.ending:
            await call.ended.wait()
            return self.get(conversation_id)
        call.ending = True
        system: str | None = None
        try:
            for timer in call.timers.values():
                timer.cancel()
            seconds = (at if at is not None else self.clock.monotonic()) - call.started_mono
            self.store.end_usage(conversation_id, seconds)
            if call.runtime is not None:
                try:
                    await asyncio.wait_for(call.runtime.stop(reason), self.runtime_stop_timeout_s)
                except Exception:
                    self.log.exception("runtime %s did not stop cleanly", type(call.runtime).__name__)
                system = self._final_system_message(call)
            call.room.close(reason)
        finally:
            self.live.pop(conversation_id, None)  # frees the concurrency spot
            record = self.store.get_conversation(conversation_id)
            if record is not None:
                self._finish_record(record, reason, system)
            call.ended.set()
        for listener in list(self._end_listeners):
            try:
                result = listener(conversation_id, reason)
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, self.runtime_stop_timeout_s)
            except Exception:
                self.log.exception("end listener %r failed", listener)
        return self.get(conversation_id)

    def _final_system_message(self, call: Call) -> str | None:
        """The system message the LLM saw last, read once the runtime stopped (no later turn can change it)."""
        try:
            return call.system_message()
        except Exception:  # noqa: BLE001 - a runtime's bug must not keep the call from ending
            self.log.exception("runtime %s could not give its system message", type(call.runtime).__name__)
            return None

    def _finish_record(self, record: dict[str, Any], reason: str, system_message: str | None = None) -> None:
        """Ended: status, system.shutdown, the transcript webhook (`system_message`: what the LLM saw; None
        when no runtime ran the call, or a killed run's orphan, whose prompt died with it)."""
        cid = record["conversation_id"]
        if not self.store.finish_conversation(cid, reason):
            return  # already ended (by another host's end or sweep): its events and webhooks are sent
        props = {"replica_id": record["replica_id"], "shutdown_reason": reason}
        self.store.add_event(cid, "system.shutdown", props)
        url = record.get("callback_url")
        self.webhooks.send(cid, url, "system.shutdown", props)
        self.webhooks.send(cid, url, "application.transcription_ready", {
            "replica_id": record["replica_id"], "transcript": self.transcript(cid, system_message),
        })

    def recording_ready(self, conversation_id: str, path: str, duration: float) -> None:
        """SPEC §3 application.recording_ready: event in the transcript, `recording_path` on the record,
        webhook through the same deliverer as transcription_ready. A deleted conversation gets nothing."""
        record = self.store.get_conversation(conversation_id)
        if record is None:
            return
        props = {"replica_id": record["replica_id"], "recording_path": path, "duration": round(float(duration), 3)}
        self.store.update_conversation(conversation_id, recording_path=path)
        self.store.add_event(conversation_id, "application.recording_ready", props)
        self.webhooks.send(conversation_id, record.get("callback_url"), "application.recording_ready", props)

    async def delete(self, conversation_id: str) -> None:
        record = self.store.get_conversation(conversation_id)
        if conversation_id in self.live or (record is not None and record["status"] == "active"):
            await self.end(conversation_id, ShutdownReason.DELETED)
        if not self.store.delete_conversation(conversation_id):
            raise NotFound(f"conversation_id {conversation_id!r} not found", field="conversation_id")
