"""The engine as a runtime of the calls layer (`cvi_lab.calls.call.Runtime`): one engine per live call.

Register it with `server.runtimes: [cvi_lab.engine.runtime.engine_runtime]` (or
`create_app(..., runtime_factories=[engine_runtime])`). The manager builds it with the call, awaits
`start()` (stages loaded, replica built, engine running), exposes `endpoint` to the transport, forwards
room presence (`on_participant_joined` → the greeting) and awaits `stop(reason)` at the end.

Presence flows one way: transport → `EngineEndpoint.participant_joined` → manager (room, timers, stored
events) → `on_participant_joined` here → engine. A refused join (room full) raises back to the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from cvi_lab.engine.endpoint import EngineEndpoint
from cvi_lab.engine.engine import ConversationEngine, ConversationSpec, Sinks
from cvi_lab.engine.factory import create_engine
from cvi_lab.engine.recording import CallRecorder, recording_path
from cvi_lab.engine.stage_pool import StagePool

log = logging.getLogger(__name__)

POOL = StagePool()  # one per process: loaded models are shared by every call with the same stage config
GREETED_KINDS = ("participant", "client")  # observers do not get a greeting


class EngineRuntime:
    def __init__(self, call: Any, cfg: Any, pool: StagePool | None = None) -> None:
        self.call, self.cfg, self.pool = call, cfg, pool or POOL
        self.engine: ConversationEngine | None = None
        self.endpoint: EngineEndpoint | None = None
        self.recorder: CallRecorder | None = None
        self._recording_task: asyncio.Task | None = None

    async def start(self) -> None:
        call = self.call
        persona, record = call.persona, call.record
        artifacts = await call.replica_artifacts()
        spec = ConversationSpec(
            conversation_id=call.conversation_id,
            system_prompt=persona.get("system_prompt") or "",
            persona_context=persona.get("context") or "",
            conversational_context=record.get("conversational_context") or "",
            custom_greeting=record.get("custom_greeting"),
            pipeline_mode=persona.get("pipeline_mode") or "full",
            replica_id=call.replica.get("replica_id"),
        )
        self.engine = await create_engine(
            self.cfg, spec, layers=persona.get("layers") or {}, language=call.language.name, pool=self.pool,
            sinks=Sinks(record_event=call.add_event, record_turn=call.add_turn_metrics),
            replica_dir=artifacts.get("dir"), apply_greenscreen=bool(call.properties.get("apply_greenscreen")),
        )
        await self.engine.start()
        manager, cid = call.manager, call.conversation_id

        async def presence(participant_id: str, what: str, reason: str | None) -> None:
            if what == "joined":
                await manager.participant_joined(cid, participant_id)
            else:
                await manager.participant_left(cid, participant_id, reason or "left")

        tap = None
        if call.properties.get("enable_recording"):
            self._start_recording()
            if self.recorder is not None:
                recorder = self.recorder
                tap = lambda participant_id, pcm: recorder.participant_audio(pcm)  # noqa: E731
        self.endpoint = EngineEndpoint(self.engine, authorize=lambda token: manager.authorize(cid, token),
                                       on_presence=presence, audio_tap=tap)

    def _start_recording(self) -> None:
        """Record what the call sounded and looked like; a recorder that cannot start leaves the call as is."""
        try:
            path = recording_path(self.cfg["server"]["artifacts_dir"], self.call.conversation_id)
            self.recorder = CallRecorder(path, fps=getattr(self.engine.stages.avatar, "fps", 25))
        except Exception:  # noqa: BLE001
            log.exception("recording of %s could not start", self.call.conversation_id)
            self.recorder = None
            return
        self._recording_task = asyncio.ensure_future(self._record_frames(self.recorder))

    async def _record_frames(self, recorder: CallRecorder) -> None:
        """One more consumer of the engine's frames (like the transport); ends when the engine stops."""
        async for frame in self.engine.frames():
            recorder.video(frame)

    async def _finish_recording(self, recorder: CallRecorder) -> None:
        """After the end: close the file off the loop, then tell the calls layer (event, record, webhook)."""
        try:
            result = await recorder.finish()
        except Exception:  # noqa: BLE001
            log.exception("recording of %s could not be finished", self.call.conversation_id)
            return
        if result is None:
            log.warning("no recording for %s (%s)", self.call.conversation_id, recorder.failed or "no frames")
            return
        path, duration = result
        self.call.recording_ready(str(path.resolve()), duration)

    async def on_participant_joined(self, participant_id: str, kind: str = "participant") -> None:
        if self.engine is not None and kind in GREETED_KINDS:
            await self.engine.participant_joined(participant_id)

    async def on_participant_left(self, participant_id: str, kind: str = "participant", reason: str | None = None) -> None:
        if self.engine is not None:
            await self.engine.participant_left(participant_id, reason or "left")

    async def stop(self, reason: str) -> None:
        if self.engine is not None:
            await self.engine.stop(reason)
        if self._recording_task is not None:
            with contextlib.suppress(BaseException):  # the frame stream ended with the engine: let it drain
                await asyncio.wait_for(self._recording_task, 2.0)
        if self.recorder is not None:
            # in the background: the end of the call does not wait for the encoder's tail
            self.call.manager.spawn(self._finish_recording(self.recorder))
            self.recorder = None


def engine_runtime(call: Any, room: Any, cfg: Any) -> EngineRuntime:
    """The `RuntimeFactory` the calls layer registers."""
    return EngineRuntime(call, cfg)


async def _close_pool() -> None:
    await POOL.aclose()


engine_runtime.aclose = _close_pool  # the manager awaits it at server shutdown (calls/manager.py)
