"""The engine as the calls layer's runtime (`cvi_lab.calls.runtime.ConversationRuntime`): one engine per call.

Register it with `server.runtimes: [cvi_lab.engine.runtime.engine_runtime]` (or
`create_app(..., runtime_factories=[engine_runtime])`). The manager builds it with the call, awaits
`start()` (stages loaded, replica built, engine running), composes the transport's endpoint from it
(calls/endpoint.py), tells it who joined once the room accepted them (the greeting) and awaits
`stop(reason)` at the end. Presence: transport → endpoint → call (room, timers) → here → engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AsyncIterator, Callable

import numpy as np

from cvi_lab.calls.call import Call
from cvi_lab.calls.room import CallRoom, MemberKind
from cvi_lab.engine.engine import ConversationEngine, ConversationSpec, Sinks
from cvi_lab.engine.factory import create_engine
from cvi_lab.engine.recording import CallRecorder, recording_path
from cvi_lab.engine.stage_pool import StagePool
from cvi_lab.media import VideoFrame
from cvi_lab.stages.retrieval import Passage
from cvi_lab.transport.contract import INBOUND_SAMPLE_RATE

log = logging.getLogger(__name__)

POOL = StagePool()  # one per process: loaded models are shared by every call with the same stage config
GREETED_KINDS = ("participant", "client")  # observers do not get a greeting
assert INBOUND_SAMPLE_RATE == 16_000  # the transport delivers the VAD's rate: participant audio is not resampled


class EngineRuntime:
    """Implements `ConversationRuntime` with a `ConversationEngine` (and the call's recorder)."""

    def __init__(self, call: Call, cfg: Any, pool: StagePool | None = None) -> None:
        self.call, self.cfg, self.pool = call, cfg, pool or POOL
        self.engine: ConversationEngine | None = None
        self.recorder: CallRecorder | None = None
        self._recording_task: asyncio.Task | None = None

    async def start(self) -> None:
        call = self.call
        persona, record = call.persona, call.record
        audio_only = call.properties["audio_only"]  # no image: the replica's artifacts are not needed either
        artifacts = {} if audio_only else await call.replica_artifacts()
        passages, strategy = call.knowledge()
        spec = ConversationSpec(
            conversation_id=call.conversation_id,
            system_prompt=persona.get("system_prompt") or "",
            persona_context=persona.get("context") or "",
            conversational_context=record.get("conversational_context") or "",
            custom_greeting=record.get("custom_greeting"),
            pipeline_mode=persona.get("pipeline_mode") or "full",
            replica_id=call.replica["replica_id"],
            passages=tuple(Passage(*p) for p in passages), retrieval_strategy=strategy,
        )
        self.engine = await create_engine(
            self.cfg, spec, layers=persona.get("layers") or {}, language=call.language.name, pool=self.pool,
            sinks=Sinks(record_event=call.add_event, record_turn=call.add_turn_metrics),
            replica_dir=artifacts.get("dir"), apply_greenscreen=call.properties["apply_greenscreen"],
            audio_only=audio_only,
        )
        await self.engine.start()
        if call.properties["enable_recording"]:
            self._start_recording()

    def _started(self) -> ConversationEngine:
        """The engine; the calls layer reaches the media methods only after `start()` returned."""
        if self.engine is None:
            raise RuntimeError(f"the runtime of {self.call.conversation_id} has not started")
        return self.engine

    def _start_recording(self) -> None:
        """Record what the call sounded and looked like; a recorder that cannot start leaves the call as is."""
        try:
            path = recording_path(self.cfg["server"]["artifacts_dir"], self.call.conversation_id)
            self.recorder = CallRecorder(path, fps=self._started().stages.avatar.fps)
        except Exception:  # noqa: BLE001
            log.exception("recording of %s could not start", self.call.conversation_id)
            self.recorder = None
            return
        self._recording_task = asyncio.ensure_future(self._record_frames(self.recorder))

    async def _record_frames(self, recorder: CallRecorder) -> None:
        """One more consumer of the engine's frames (like the transport); ends when the engine stops."""
        async for frame in self._started().frames():
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

    # ------------------------------------------------------------------ ConversationRuntime: presence
    async def participant_joined(self, participant_id: str, kind: MemberKind) -> None:
        if kind in GREETED_KINDS:
            await self._started().participant_joined(participant_id)

    async def participant_left(self, participant_id: str, kind: MemberKind, reason: str) -> None:
        await self._started().participant_left(participant_id, reason)

    # ------------------------------------------------------------------ ConversationRuntime: media
    def participant_audio(self, participant_id: str, pcm: np.ndarray) -> None:
        """16 kHz int16 frames, the VAD's rate already (int16 → float32 inside the engine)."""
        self._started().push_audio(pcm)
        if self.recorder is not None:
            try:
                self.recorder.participant_audio(pcm)
            except Exception:  # noqa: BLE001 - the recording must not break the media path
                log.exception("recording participant audio of %s failed", self.call.conversation_id)

    async def interaction(self, participant_id: str, message: object) -> str | None:
        return await self._started().handle_interaction(message)

    def outgoing(self) -> AsyncIterator[VideoFrame]:
        return self._started().frames()

    def subscribe(self, send: Callable[[dict], None]) -> Callable[[], None]:
        return self._started().subscribe(send)

    def system_message(self) -> str:
        """What the LLM saw on the latest turn (the engine's own; the transcript starts with it)."""
        return self._started().system_message()

    async def stop(self, reason: str) -> None:
        if self.engine is not None:
            await self.engine.stop(reason)
        if self._recording_task is not None:
            with contextlib.suppress(BaseException):  # the frame stream ended with the engine: let it drain
                await asyncio.wait_for(self._recording_task, 2.0)
        if self.recorder is not None:
            # in the background: the end of the call does not wait for the encoder's tail
            self.call.spawn(self._finish_recording(self.recorder))
            self.recorder = None


class EngineRuntimeFactory:
    """The `RuntimeFactory` (and `ClosableRuntimeFactory`) the calls layer registers: its runtimes share one
    stage pool, closed at server shutdown."""

    def __init__(self, pool: StagePool) -> None:
        self.pool = pool

    def __call__(self, call: Call, room: CallRoom, cfg: Any) -> EngineRuntime:
        return EngineRuntime(call, cfg, self.pool)

    async def aclose(self) -> None:
        await self.pool.aclose()


engine_runtime = EngineRuntimeFactory(POOL)  # `server.runtimes: [cvi_lab.engine.runtime.engine_runtime]`
