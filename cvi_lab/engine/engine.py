"""One live conversation: listen, decide, answer, speak, lip-sync; barge-in, greeting, interactions.

`ConversationEngine` composes one part per job and makes the decisions between them:
- inputs: `participant_joined` (first one → greeting), `push_audio` (→ `TurnTaking`, the listening side, which
  calls back the `TurnHandler` methods below), `handle_interaction` (the data-channel protocol, SPEC §3 and §5:
  `interactions` validates it, `inbound.Inbound` applies it, `echo.EchoStreams` plays echoes);
- a committed user turn → `answering.Answerer`: LLM stream → clause chunker → the speaker, overlapped;
  `prompt.Dialogue` holds the history and builds the ONE system message (`system_message()`);
- `speaker.Speaker`: TTS → avatar, the ledger of what the participant has *heard* (`speech`), barge-in;
- `frame_pump.FramePump`: the avatar's paced frames out to every consumer (`frames()`);
- `events.EventBus`: every outgoing event to the data-channel subscribers and (transcript events) the sinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

import numpy as np

from cvi_lab.audio import to_float32
from cvi_lab.clock import Clock, SystemClock
from cvi_lab.domain.conversation import DEFAULT_GREETING, ShutdownReason
from cvi_lab.domain.documents import DEFAULT_RETRIEVAL_STRATEGY, RetrievalStrategy
from cvi_lab.domain.persona import DEFAULT_PERSONA
from cvi_lab.domain.vocabulary import both_id_names
from cvi_lab.engine.answering import Answerer
from cvi_lab.engine.echo import EchoStreams
from cvi_lab.engine.emotion import EmotionTable
from cvi_lab.engine.inbound import Inbound
from cvi_lab.engine.events import EventBus, Sinks
from cvi_lab.engine.frame_pump import FramePump
from cvi_lab.engine.latency import TurnLatency
from cvi_lab.engine.pipeline_config import EngineSettings, PipelineConfigError
from cvi_lab.engine.prompt import Dialogue
from cvi_lab.engine.speaker import Speaker
from cvi_lab.engine.speech import Speech
from cvi_lab.engine.turns import TurnTaking, UserTurn
from cvi_lab.media import VideoFrame
from cvi_lab.stages.retrieval import Knowledge, Passage, Retriever
from cvi_lab.stages.base import ASR, LLM, TTS, VAD, AvatarRenderer, ChatMessage, Transcript, TurnDetector

__all__ = ["ConversationEngine", "ConversationSpec", "Sinks", "Stages"]

log = logging.getLogger(__name__)

QUIET_STAGES = ("tts", "avatar")  # a failure of these is not apologised for: the apology could not be heard


@dataclass
class ConversationSpec:
    """Who the replica is in this call (from the persona + the conversation request)."""

    conversation_id: str
    system_prompt: str = ""
    persona_context: str = ""
    conversational_context: str = ""
    custom_greeting: str = DEFAULT_GREETING  # SPEC §1's default, as the API fills it
    pipeline_mode: str = "full"  # full | echo
    replica_id: str | None = None
    passages: tuple[Passage, ...] = ()  # the knowledge base's ready passages this call may draw on
    retrieval_strategy: RetrievalStrategy = DEFAULT_RETRIEVAL_STRATEGY


@dataclass
class Stages:
    vad: VAD
    tts: TTS
    avatar: AvatarRenderer
    turn: TurnDetector | None = None
    asr: ASR | None = None
    llm: LLM | None = None
    retrieval: Retriever | None = None


class ConversationEngine:
    """The engine of one conversation. Create, `await start()`, feed it, `await stop(reason)`."""

    def __init__(
        self,
        spec: ConversationSpec,
        stages: Stages,
        settings: EngineSettings,
        clock: Clock | None = None,
        sinks: Sinks | None = None,
    ) -> None:
        self.spec, self.stages, self.settings = spec, stages, settings
        self.clock = clock or SystemClock()
        self.conversation_id = spec.conversation_id
        self.echo_mode = spec.pipeline_mode == "echo"
        # Multilingual calls: the ASR detects each utterance's language and the reply is spoken by the TTS
        # route of that language (`voice_for_language(code) -> TTS`, set by the factory from the language table).
        self.voice_for_language: Callable[[str], Awaitable[TTS]] | None = None
        self.reply_language: str | None = None
        if not self.echo_mode and (stages.asr is None or stages.llm is None):
            raise PipelineConfigError("full pipeline_mode needs an ASR and an LLM stage")
        self.turn_idx = 0
        self.participants: set[str] = set()
        self.greeted = False
        self.latencies: list[dict] = []  # every record_turn payload, also kept here (offline driver, tests)
        self.running = False
        self.startup_warnings: list[str] = []  # reported as error events by start()
        self.plan = None  # the PipelinePlan it was built from (factory)
        self._tasks: set[asyncio.Task] = set()
        self._pump_task: asyncio.Task | None = None

        self.emotions = EmotionTable(settings.emotions)
        self.bus = EventBus(self.conversation_id, self.clock, sinks or Sinks(), lambda: self.turn_idx, self._spawn)
        self.dialogue = Dialogue(spec.system_prompt or DEFAULT_PERSONA["system_prompt"], spec.persona_context,
                                 spec.conversational_context, settings.tools, settings.history_max_messages,
                                 settings.history_trim_block)
        self.pump = FramePump(stages.avatar, lambda frame: self.speaker.on_frame(frame), self._avatar_failed,
                              settings.avatar_render_niceness)
        self.speaker = Speaker(stages.avatar, settings.chunker, settings.trim_leading_silence_dbfs, self.clock,
                               self.bus, self._spawn, self._reply_voice, lambda: self.running,
                               self._speech_finished, self._stage_failed, self.pump.drop_pending)
        self.answerer = None if self.echo_mode else Answerer(stages.llm, settings, self.dialogue, self.speaker,
                                                             self.bus, self.clock, self._spawn,
                                                             Knowledge.of_call(stages.retrieval, spec.passages,
                                                                               spec.retrieval_strategy))
        self.echo = EchoStreams(self.speaker, settings.chunker, settings.echo_idle_flush_ms, stages.tts.sample_rate,
                                self.clock, self._spawn, lambda: self.turn_idx)
        self.listener = TurnTaking(
            stages.vad, stages.turn, None if self.echo_mode else stages.asr, settings, self.clock, self
        )
        self.inbound = Inbound(self)

    # ================================================================ lifecycle
    async def start(self) -> None:
        """Start the frame pump and announce the replica."""
        if self.running:
            return
        self.running = True
        self._pump_task = asyncio.ensure_future(self.pump.run())
        self._prime()
        self.bus.announce_joined(self.spec.replica_id)
        for warning in self.startup_warnings:
            self.bus.error(warning, "stage", stage=warning.split(" ", 1)[0])

    async def stop(self, reason: str = ShutdownReason.END_ENDPOINT) -> None:
        """Announce the shutdown, cancel all work, end the frame streams. Idempotent."""
        if not self.running:
            return
        self.bus.emit("system.shutdown", both_id_names({"replica_id": self.spec.replica_id, "shutdown_reason": reason}),
                      message_type="system")
        self.running = False
        await self.listener.close()
        self.speaker.cancel_all()
        tasks = [t for t in self._tasks] + ([self._pump_task] if self._pump_task else [])
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self.pump.end()
        self.stages.avatar.close()

    @property
    def busy(self) -> bool:
        """The replica has something to say or is saying it."""
        return self.speaker.busy

    @property
    def idle(self) -> bool:
        """Nothing to say and no participant turn being listened to or decided."""
        return not self.busy and self.listener.turn is None

    @property
    def history(self) -> list[ChatMessage]:
        """The call's chat history (the LLM gets its latest window)."""
        return self.dialogue.history

    def system_message(self) -> str:
        """Exactly the system message the LLM saw on the latest turn (before any turn: the one it would see
        now). The stored transcript takes it from here."""
        return self.dialogue.sent_system_message()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _prime(self) -> None:
        if self.answerer is not None:  # (echo mode has no LLM)
            self._spawn(self.answerer.prime())

    # ================================================================ participants, audio, frames, events
    async def participant_joined(self, participant_id: str) -> None:
        self.participants.add(participant_id)
        self.listener.enabled = True
        if not self.greeted and self.running:
            self.greeted = True
            self._say_greeting()

    async def participant_left(self, participant_id: str, reason: str = "left") -> None:
        self.participants.discard(participant_id)

    def push_audio(self, pcm: np.ndarray) -> None:
        """A frame of participant audio (int16 or float32, 16 kHz mono). Never blocks (VAD ~1 ms/frame)."""
        if self.running:
            self.listener.push(to_float32(pcm))

    def frames(self) -> AsyncIterator[VideoFrame]:
        """The replica's frames (each with its audio) for one consumer; ends when the engine stops."""
        return self.pump.frames()

    def subscribe(self, send: Callable[[dict], None]) -> Callable[[], None]:
        """Add an event sink (the transport's data channel); it first gets system.replica_joined."""
        return self.bus.subscribe(send)

    def _avatar_failed(self, exc: Exception) -> None:
        self.bus.error(f"avatar stopped producing frames: {exc}", "stage", stage="avatar")

    # ================================================================ speaking
    def _say_greeting(self) -> None:
        text = (self.spec.custom_greeting or DEFAULT_GREETING).strip()
        speech = self.speaker.new_speech("greeting", self.turn_idx, interruptible=False)
        # Not interruptible, so what is said is what is heard: it enters the history and transcript now.
        self._remember("assistant", text)
        self.bus.emit("conversation.utterance", {"role": "replica", "speech": text}, speech.turn_idx,
                      inference_id=speech.inference_id)
        self.speaker.speak_text(speech, text)

    def say(self, text: str, kind: str = "echo", interruptible: bool = True) -> Speech:
        """Make the replica say `text` (echo, apology, lab scripts)."""
        speech = self.speaker.new_speech(kind, self.turn_idx, interruptible)
        self.speaker.speak_text(speech, text)
        return speech

    def _answer(self, lat: TurnLatency) -> None:
        speech = self.speaker.new_speech("response", lat.turn_idx, latency=lat)
        self.speaker.run(speech, lambda: self.answerer.respond(speech))

    def _speech_finished(self, speech: Speech, interrupted: bool) -> None:
        """A speech ended (played out or cut): its heard words into the transcript and history, its metrics."""
        heard = speech.heard_text() if interrupted else speech.text()
        if speech.kind != "greeting" and heard:  # the greeting went into history when it started
            self.bus.emit("conversation.utterance", {"role": "replica", "speech": heard}, speech.turn_idx,
                          inference_id=speech.inference_id)
            self._remember("assistant", heard)
        if speech.latency is not None:
            lat = speech.latency
            lat.extra.update(interrupted=interrupted, spoken_s=round(speech.played_s, 3), clauses=len(speech.clauses),
                             kind=speech.kind, tts_s=round(speech.tts_s, 4), tts_audio_s=round(speech.tts_audio_s, 4))
            metrics = lat.as_metrics()
            self.latencies.append(metrics)
            self.bus.record_turn(lat.turn_idx, metrics)

    def _remember(self, role: str, text: str) -> None:
        """Into the history; after an answer, the prompt so far is primed in the LLM while the participant speaks."""
        self.dialogue.add(role, text)
        if role == "assistant" and self.running:
            self.dialogue.trim()
            self._prime()

    async def _reply_voice(self) -> TTS:
        """The TTS for the next reply: the detected language's voice in multilingual calls, else the default."""
        if self.voice_for_language is None or not self.reply_language:
            return self.stages.tts
        try:
            return await self.voice_for_language(self.reply_language)
        except Exception as exc:  # noqa: BLE001 - a missing voice must not silence the replica
            log.warning("no voice for detected language %r (%s); using the default", self.reply_language, exc)
            return self.stages.tts

    def _interrupt(self, reason: str, keep: Speech | None = None) -> bool:
        """Stop every interruptible speech (see `Speaker.interrupt`); False if nothing was (the greeting plays)."""
        stopped = self.speaker.interrupt(reason, keep)
        self.echo.forget(stopped)
        return bool(stopped)

    def _stage_failed(self, stage: str, exc: BaseException, speech: Speech | None = None) -> None:
        """A stage broke during an answer: error event, then a short apology (unless the TTS is what broke)."""
        log.warning("stage %s failed: %s", stage, exc)
        self.bus.error(f"{stage} failed: {exc}", "stage", stage=stage)
        if speech is not None and speech.held_turn is not None:
            # an answer prepared for a turn not yet committed: apologise at the commit, if these words stand
            speech.held_turn.extra["held_failed"] = (speech.held_text, stage)
            speech.latency = None  # never heard: no latency record
            return
        if speech is not None and speech.latency is not None:
            speech.latency.extra["error"] = f"{stage}: {exc}"
        if stage not in QUIET_STAGES and self.running and (speech is None or speech.kind != "apology"):
            self.say(self.settings.apology, kind="apology")

    # ================================================================ listening (TurnHandler, called by TurnTaking)
    def stage_failed(self, stage: str, exc: BaseException) -> None:
        """A failure outside an answer (VAD, ASR, end-of-turn)."""
        self._stage_failed(stage, exc, None)

    def user_started(self, turn: UserTurn, new_turn: bool) -> None:
        if new_turn:
            self.turn_idx += 1
            turn.latency.turn_idx = self.turn_idx
            audible = self.speaker.audible()
            turn.overlapped = audible is not None and audible.interruptible
        self.bus.emit("conversation.user.started_speaking", {}, turn.latency.turn_idx)

    def user_stopped(self, turn: UserTurn) -> None:
        self.bus.emit("conversation.user.stopped_speaking", {}, turn.latency.turn_idx)

    def user_speech(self, turn: UserTurn, speech_s: float) -> None:
        """Called on every frame while the participant speaks: barge-in once it lasts long enough."""
        if turn.barged_in or speech_s * 1000.0 < self.settings.barge_in_min_ms:
            return
        if self._interrupt("barge_in", keep=self.speaker.held(turn)):  # (not the answer prepared for this turn)
            turn.barged_in = True
            turn.overlapped = False
        elif turn.overlapped and self.speaker.audible() is None:
            # the replica ended on its own while the participant kept talking: a turn, not a backchannel
            turn.overlapped = False

    async def turn_complete(self, turn: UserTurn, transcript: Transcript) -> None:
        text = (transcript.text or "").strip()
        held = self.speaker.held(turn)
        if held is not None and held.held_text != text:
            self.speaker.drop_held(turn)
            held = None
        if not text:
            return
        if turn.overlapped and not turn.barged_in:
            return  # spoke over the replica without interrupting it: a backchannel, not a turn
        self._interrupt("superseded", keep=held)  # an answer not yet audible is for an older, now extended, turn
        self.bus.emit("conversation.utterance", {"role": "user", "speech": text}, turn.latency.turn_idx)
        self._remember("user", text)
        lat = turn.latency
        lat.extra["user_text"] = text
        if transcript.language:
            lat.extra["language"] = transcript.language
            self.reply_language = transcript.language
        if held is not None:  # the answer prepared before the commit: let it play
            held.latency.take_listening_marks(lat)
            held.latency.extra.update(lat.extra, speculative=True)
            held.held_turn = None
            held.hold.set()
            return
        failed_text, failed_stage = turn.extra.pop("held_failed", (None, None))
        if failed_text == text and failed_stage not in QUIET_STAGES:  # its prepared answer broke
            self.say(self.settings.apology, kind="apology")
            return
        self._answer(lat)

    def turn_tentative(self, turn: UserTurn, transcript: Transcript) -> None:
        """The detector thinks the participant may go on; prepare the answer to what we have (LLM, first
        clause, its TTS) so that, if the patience runs out with no more speech, it plays at once."""
        text = (transcript.text or "").strip()
        if transcript.language:
            self.reply_language = transcript.language
        if not self.settings.speculative_answer or not text or (turn.overlapped and not turn.barged_in):
            return
        self.speaker.drop_held(turn)
        lat = dataclasses.replace(turn.latency, extra=dict(turn.latency.extra))
        speech = self.speaker.new_speech("response", lat.turn_idx, latency=lat)
        speech.hold, speech.held_turn, speech.held_text = asyncio.Event(), turn, text
        self.speaker.run(speech, lambda: self.answerer.respond(speech, pending_user=text))

    def turn_abandoned(self, turn: UserTurn) -> None:
        self.speaker.drop_held(turn)

    # ================================================================ interactions (data channel)
    async def handle_interaction(self, message: object) -> str | None:
        """Validate and apply one data-channel (or send-app-message) envelope; anything wrong → an error event,
        and returned; the call goes on (see `inbound.Inbound`)."""
        return await self.inbound.handle(message)

    def respond_to(self, text: str, source: str, announce: bool) -> None:
        """Answer `text` as the participant's side now (respond: their words, announced as their utterance;
        tool_result: a tool's, already in the dialogue)."""
        if self.echo_mode:
            raise ValueError(f"conversation.{source} is not available in echo pipeline_mode; use conversation.echo")
        self._interrupt("interaction")
        self.turn_idx += 1
        now = self.clock.monotonic()
        lat = TurnLatency(turn_idx=self.turn_idx, source=source, speech_end=now, turn_decision=now, asr_final=now)
        if announce:
            self.bus.emit("conversation.utterance", {"role": "user", "speech": text})
            self._remember("user", text)
        self._answer(lat)

    def interrupt(self) -> None:
        """conversation.interrupt: stop what the replica says (not the greeting)."""
        self._interrupt("interaction")
