"""One live conversation: listen, decide, answer, speak, lip-sync; barge-in, greeting, interactions.

Read top to bottom:
1. inputs: `participant_joined` (first one → greeting), `push_audio` (→ `TurnTaking`, the listening side),
   `handle_interaction` (the data-channel protocol, SPEC §3);
2. a committed user turn → `_respond`: LLM stream → clause chunker → TTS → avatar, with the LLM and TTS
   overlapped through a queue (the first clause is spoken while the LLM goes on);
3. `_pump`: the avatar's paced frames go out (`frames()`), and each frame's audio is booked against what was
   pushed (the ledger), so we know what the participant has *heard*: that drives started/stopped_speaking,
   the first-frame latency mark, and, on barge-in, the history truncation;
4. barge-in / interrupt: clear the avatar, cancel the producing task, keep only the heard words.
Every outgoing event goes to the data-channel subscribers and (transcript events) to `record_event`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import inspect
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

import numpy as np

from cvi_lab.audio import resample, to_float32
from cvi_lab.clock import Clock, SystemClock
from cvi_lab.engine.chunker import ClauseChunker
from cvi_lab.engine.interactions import SENSITIVITY_KEYS, parse_interaction, text_prop
from cvi_lab.engine.latency import TurnLatency
from cvi_lab.engine.pipeline_config import EngineSettings, PipelineConfigError
from cvi_lab.engine.turns import TurnTaking, UserTurn, clock_sleep
from cvi_lab.stages.base import (
    ASR,
    LLM,
    TTS,
    VAD,
    AvatarRenderer,
    ChatMessage,
    LLMStats,
    Transcript,
    TurnDetector,
)
from cvi_lab.media import TTSChunk, VideoFrame

log = logging.getLogger(__name__)

# Events stored in the transcript (the rest are live-only signals).
# (system.replica_joined / system.shutdown are recorded by the calls layer, which owns the lifecycle.)
RECORDED = {
    "conversation.utterance",
    "conversation.replica_interrupted",
    "conversation.tool_call",
    "conversation.error",
}
DEFAULT_GREETING = "Hey there, how's it going? What can I do for you today?"

Sink = Callable[..., "Awaitable[None] | None"]


@dataclass
class ConversationSpec:
    """Who the replica is in this call (from the persona + the conversation request)."""

    conversation_id: str
    system_prompt: str = ""
    persona_context: str = ""
    conversational_context: str = ""
    custom_greeting: str | None = None
    pipeline_mode: str = "full"  # full | echo
    replica_id: str | None = None


@dataclass
class Sinks:
    """Where the engine stores what happens (given by the calls layer; sync or async callables)."""

    record_event: Sink | None = None  # (event_type, properties) - transcript events, see RECORDED
    record_turn: Sink | None = None  # (turn_idx, metrics dict) - one per replica answer, see latency.py


@dataclass
class Stages:
    vad: VAD
    tts: TTS
    avatar: AvatarRenderer
    turn: TurnDetector | None = None
    asr: ASR | None = None
    llm: LLM | None = None


class StageFailure(Exception):
    def __init__(self, stage: str, exc: BaseException) -> None:
        super().__init__(f"{stage}: {exc}")
        self.stage, self.exc = stage, exc


# ------------------------------------------------------------------ what the replica says
@dataclass
class Clause:
    text: str
    duration: float = 0.0  # seconds of audio pushed for it
    played: float = 0.0  # seconds of it that went out in frames
    words: list[tuple[str, float]] = field(default_factory=list)  # (word, end time in the clause) if known

    def heard(self) -> str:
        if self.duration <= 0 or self.played >= self.duration - 1e-3:
            return self.text if self.played > 0 else ""
        if self.words:
            return " ".join(w for w, end in self.words if end <= self.played + 1e-3)
        # no timings: assume words are spread evenly over the audio; keep only the fully heard ones
        words = self.text.split()
        return " ".join(words[: int(len(words) * self.played / self.duration)])


@dataclass
class Speech:
    """One replica utterance: the greeting, an answer, an echo, an apology."""

    kind: str
    turn_idx: int
    interruptible: bool = True
    inference_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    latency: TurnLatency | None = None
    clauses: list[Clause] = field(default_factory=list)
    task: asyncio.Task | None = None
    produced: bool = False  # no more audio will be pushed
    started: bool = False  # its first audio went out
    finished: bool = False
    first_audio: asyncio.Event = field(default_factory=asyncio.Event)
    last_input: float = 0.0  # echo: when the sender last gave us something
    tts_s: float = 0.0  # TTS compute wall time spent producing its audio (for the TTS real-time factor)
    tts_audio_s: float = 0.0  # seconds of audio the TTS synthesized for it
    hold: asyncio.Event | None = None  # speculative answer: its audio waits for this (set at the commit)
    held_turn: Any = None  # ... prepared for this user turn
    held_text: str = ""  # ... from this transcript

    @property
    def played_s(self) -> float:
        return sum(c.played for c in self.clauses)

    def heard_text(self) -> str:
        return " ".join(t for t in (c.heard() for c in self.clauses) if t)

    def text(self) -> str:
        return " ".join(c.text for c in self.clauses)


@dataclass
class _Booked:
    speech: Speech
    clause: Clause
    remaining: float
    pushed_at: float


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
        self.sinks = sinks or Sinks()
        self.conversation_id = spec.conversation_id
        self.echo_mode = spec.pipeline_mode == "echo"
        # Multilingual calls: the ASR detects each utterance's language and the reply is spoken by the TTS
        # route of that language (`voice_for_language(code) -> TTS`, set by the factory from the language table).
        self.voice_for_language: Callable[[str], Awaitable[TTS]] | None = None
        self.reply_language: str | None = None
        if not self.echo_mode and (stages.asr is None or stages.llm is None):
            raise PipelineConfigError("full pipeline_mode needs an ASR and an LLM stage")
        self.listener = TurnTaking(
            stages.vad, stages.turn, None if self.echo_mode else stages.asr, settings, self.clock, self
        )
        self.history: list[ChatMessage] = []
        self._window_start = 0  # first history message in the prompt (see _trim_history)
        self.context = spec.conversational_context or ""
        self.turn_idx = 0
        self.participants: set[str] = set()
        self.greeted = False
        self.latencies: list[dict] = []  # every record_turn payload, also kept here (offline driver, tests)
        self._seq = 0
        self._subscribers: list[Callable[[dict], None]] = []
        self._outputs: list[asyncio.Queue] = []
        self._ledger: collections.deque[_Booked] = collections.deque()
        self._speeches: list[Speech] = []  # not yet finished, in order
        self._echo: dict[str, tuple[Speech, asyncio.Queue, ClauseChunker]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._pump_task: asyncio.Task | None = None
        self._frame_s = 1.0 / max(1, getattr(stages.avatar, "fps", 25))
        self.running = False
        self.barge_in_at: list[float] = []  # clock times of barge-in decisions (tests, lab)
        self.startup_warnings: list[str] = []  # reported as error events by start()
        self._joined_event: dict | None = None
        self.plan = None  # the PipelinePlan it was built from (factory)

    # ================================================================ lifecycle
    async def start(self) -> None:
        """Start the frame pump and announce the replica."""
        if self.running:
            return
        self.running = True
        self._pump_task = asyncio.ensure_future(self._pump())
        self._spawn(self._prime_llm())
        self._joined_event = self.emit("system.replica_joined", {"replica_id": self.spec.replica_id}, message_type="system")
        for warning in self.startup_warnings:
            self.error(warning, "stage", stage=warning.split(" ", 1)[0])

    async def _prime_llm(self, messages: list[ChatMessage] | None = None) -> None:
        """Pre-fill the LLM's prompt cache with the prompt so far (system message + history, or `messages`), off
        the critical path, so the next answer only prefills the new user turn (`LLM.prime`)."""
        if self.echo_mode or self.stages.llm is None:
            return
        try:
            await self.stages.llm.prime(messages or self._messages())
        except Exception as exc:  # noqa: BLE001 - a failing prime shows up again (and is reported) on use
            log.warning("LLM prefix priming failed: %s", exc)

    async def stop(self, reason: str = "end_conversation_endpoint_hit") -> None:
        """Announce the shutdown, cancel all work, end the frame streams. Idempotent."""
        if not self.running:
            return
        self.emit("system.shutdown", {"replica_id": self.spec.replica_id, "shutdown_reason": reason}, message_type="system")
        self.running = False
        await self.listener.close()
        for speech in list(self._speeches):
            if speech.task is not None:
                speech.task.cancel()
        tasks = [t for t in self._tasks] + ([self._pump_task] if self._pump_task else [])
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for q in self._outputs:
            q.put_nowait(None)
        close = getattr(self.stages.avatar, "close", None)
        if callable(close):
            close()

    @property
    def busy(self) -> bool:
        """The replica has something to say or is saying it."""
        return bool(self._speeches or self._ledger)

    @property
    def idle(self) -> bool:
        """Nothing to say and no participant turn being listened to or decided."""
        return not self.busy and self.listener.turn is None

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ================================================================ participants
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

    # ================================================================ events out
    def subscribe(self, send: Callable[[dict], None]) -> Callable[[], None]:
        """Add an event sink (the transport's data channel). It first gets system.replica_joined, which was
        emitted at start(), before any participant could be listening."""
        if self._joined_event is not None:
            try:
                send(self._joined_event)
            except Exception:  # noqa: BLE001
                log.exception("event subscriber failed")
        self._subscribers.append(send)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(send)

        return unsubscribe

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
            "turn_idx": self.turn_idx if turn_idx is None else turn_idx,
        }
        if inference_id:
            event["inference_id"] = inference_id
        for send in list(self._subscribers):
            try:
                send(event)
            except Exception:  # noqa: BLE001 - a broken subscriber must not break the call
                log.exception("event subscriber failed")
        if event_type in RECORDED:
            meta = {"turn_idx": event["turn_idx"], "seq": event["seq"], "timestamp": event["timestamp"]}
            if inference_id:
                meta["inference_id"] = inference_id
            self._call_sink(self.sinks.record_event, event_type, {**properties, **meta})
        return event

    def _call_sink(self, sink: Sink | None, *args: Any) -> None:
        if sink is None:
            return
        try:
            result = sink(*args)
            if inspect.isawaitable(result):
                self._spawn(self._await_sink(result))
        except Exception:  # noqa: BLE001
            log.exception("sink failed")

    @staticmethod
    async def _await_sink(result: Awaitable) -> None:
        try:
            await result
        except Exception:  # noqa: BLE001
            log.exception("sink failed")

    def error(self, message: str, source: str, **extra: Any) -> None:
        self.emit("conversation.error", {"error": message, "source": source, **extra})

    # ================================================================ frames out
    async def frames(self) -> AsyncIterator[VideoFrame]:
        """The replica's frames (each with its audio) for one consumer; ends when the engine stops."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=8)
        self._outputs.append(queue)
        try:
            while True:
                frame = await queue.get()
                if frame is None:
                    return
                yield frame
        finally:
            with contextlib.suppress(ValueError):
                self._outputs.remove(queue)

    async def _pump(self) -> None:
        """Pull the avatar's paced frames, book their audio, fan them out (a slow consumer drops old frames)."""
        try:
            async for frame in self.stages.avatar.frames():
                self._book_frame(frame)
                for q in self._outputs:
                    if q.full():
                        q.get_nowait()
                    q.put_nowait(frame)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the avatar died: say so; audio/video stop, events go on
            log.exception("avatar frames failed")
            self.error(f"avatar stopped producing frames: {exc}", "stage", stage="avatar")

    def _book_frame(self, frame: VideoFrame) -> None:
        """Account the frame's audio to the oldest pushed-but-unplayed clauses (the avatar plays FIFO)."""
        now = self.clock.monotonic()
        if frame.speaking:
            left = len(frame.audio) / float(frame.audio_rate)
            while left > 1e-9 and self._ledger:
                booked = self._ledger[0]
                self._mark_started(booked.speech, now)
                take = min(left, booked.remaining)
                booked.remaining -= take
                booked.clause.played += take
                left -= take
                if booked.remaining <= 1e-6:
                    self._ledger.popleft()
                    self._maybe_finish(booked.speech)
        else:
            # Nothing was queued in the avatar for this frame: audio pushed before it has all been played
            # (up to resampling rounding). Entries pushed in the last frames may not have reached it yet.
            while self._ledger and self._ledger[0].pushed_at < now - 2 * self._frame_s:
                booked = self._ledger.popleft()
                booked.clause.played += booked.remaining
                booked.remaining = 0.0
                self._mark_started(booked.speech, now)
                self._maybe_finish(booked.speech)

    def _mark_started(self, speech: Speech, now: float) -> None:
        if speech.started:
            return
        speech.started = True
        if speech.latency is not None:
            speech.latency.mark("first_frame_sent", now)
        self.emit("conversation.replica.started_speaking", {"inference_id": speech.inference_id}, speech.turn_idx,
                  inference_id=speech.inference_id)

    def _maybe_finish(self, speech: Speech, interrupted: bool = False) -> None:
        """Close a speech once it is fully produced and played (or interrupted): events, history, metrics."""
        if speech.finished:
            return
        if not interrupted and (not speech.produced or any(b.speech is speech for b in self._ledger)):
            return
        speech.finished = True
        with contextlib.suppress(ValueError):
            self._speeches.remove(speech)
        if not self.running:
            return  # shutting down: no more events
        heard = speech.heard_text() if interrupted else speech.text()
        if speech.started:
            if interrupted:
                self.emit("conversation.replica_interrupted", {"inference_id": speech.inference_id}, speech.turn_idx,
                          inference_id=speech.inference_id)
            self.emit("conversation.replica.stopped_speaking",
                      {"duration": round(speech.played_s, 3), "interrupted": interrupted, "inference_id": speech.inference_id},
                      speech.turn_idx, inference_id=speech.inference_id)
        if speech.kind != "greeting" and heard:  # the greeting went into history when it started
            self.emit("conversation.utterance", {"role": "replica", "speech": heard}, speech.turn_idx,
                      inference_id=speech.inference_id)
            self._remember("assistant", heard)
        if speech.latency is not None:
            lat = speech.latency
            lat.extra.update(interrupted=interrupted, spoken_s=round(speech.played_s, 3), clauses=len(speech.clauses),
                             kind=speech.kind, tts_s=round(speech.tts_s, 4), tts_audio_s=round(speech.tts_audio_s, 4))
            metrics = lat.as_metrics()
            self.latencies.append(metrics)
            self._call_sink(self.sinks.record_turn, lat.turn_idx, metrics)

    # ================================================================ speaking
    def _new_speech(self, kind: str, interruptible: bool = True, latency: TurnLatency | None = None,
                    turn_idx: int | None = None, inference_id: str | None = None) -> Speech:
        speech = Speech(kind, self.turn_idx if turn_idx is None else turn_idx, interruptible, latency=latency)
        if inference_id:
            speech.inference_id = inference_id
        self._speeches.append(speech)
        return speech

    def _run(self, speech: Speech, produce: Callable[[], Awaitable[None]]) -> None:
        """Run a speech's producer; mark it produced when it ends, however it ends."""

        async def runner() -> None:
            try:
                await produce()
            except asyncio.CancelledError:
                pass
            except StageFailure as failure:
                self._stage_failed(failure.stage, failure.exc, speech)
            except Exception as exc:  # noqa: BLE001 - a bug must not end the call either
                log.exception("speech producer failed")
                self._stage_failed("engine", exc, speech)
            finally:
                speech.produced = True
                self._maybe_finish(speech)

        speech.task = self._spawn(runner())

    async def _reply_voice(self) -> TTS:
        """The TTS for the next reply: the detected language's voice in multilingual calls, else the default."""
        if self.voice_for_language is None or not self.reply_language:
            return self.stages.tts
        try:
            return await self.voice_for_language(self.reply_language)
        except Exception as exc:  # noqa: BLE001 - a missing voice must not silence the replica
            log.warning("no voice for detected language %r (%s); using the default", self.reply_language, exc)
            return self.stages.tts

    async def _speak(self, speech: Speech, clauses: AsyncIterator[str] | Iterable[str]) -> None:
        """TTS each clause as it arrives and queue its audio on the avatar, booking it in the ledger."""
        tts = await self._reply_voice()
        index = 0
        async for text in _aiter(clauses):
            clause = Clause(text)
            speech.clauses.append(clause)
            announced = False
            try:
                async with contextlib.aclosing(tts.stream(text)) as chunks:
                    async for chunk in _timed(chunks, speech):
                        if speech.hold is not None and not speech.hold.is_set():
                            if speech.latency is not None:
                                speech.latency.mark("tts_first_audio", self.clock.monotonic())
                            await speech.hold.wait()  # a speculative answer plays only once the turn is committed
                        if not announced:  # (so a speculative answer that is dropped was never announced)
                            announced = True
                            self.emit("conversation.utterance.streaming",
                                      {"role": "replica", "speech": speech.text(), "delta": text, "index": index,
                                       "inference_id": speech.inference_id}, speech.turn_idx,
                                      inference_id=speech.inference_id)
                            index += 1
                        self._push(speech, clause, chunk)
            except (asyncio.CancelledError, StageFailure):
                raise
            except Exception as exc:  # noqa: BLE001
                raise StageFailure("tts", exc) from exc

    def _push(self, speech: Speech, clause: Clause, chunk: TTSChunk) -> None:
        now = self.clock.monotonic()
        if speech.latency is not None:
            speech.latency.mark("tts_first_audio", now)
        if not speech.first_audio.is_set() and self.settings.trim_leading_silence_dbfs is not None:
            chunk = _trim_leading_silence(chunk, self.settings.trim_leading_silence_dbfs)
        speech.first_audio.set()
        if len(chunk.samples) == 0:
            return
        offset = clause.duration
        if chunk.words:
            clause.words += [(w.label, offset + w.end) for w in chunk.words]
        clause.duration += chunk.duration
        self._ledger.append(_Booked(speech, clause, chunk.duration, now))
        self.stages.avatar.push_audio(chunk)

    def _say_greeting(self) -> None:
        text = (self.spec.custom_greeting or self.settings.greeting or DEFAULT_GREETING).strip()
        speech = self._new_speech("greeting", interruptible=False)
        # Not interruptible, so what is said is what is heard: it enters the history and transcript now.
        self._remember("assistant", text)
        self.emit("conversation.utterance", {"role": "replica", "speech": text}, speech.turn_idx,
                  inference_id=speech.inference_id)
        chunker = ClauseChunker(self.settings.chunker)
        self._run(speech, lambda: self._speak(speech, chunker.push(text) + chunker.flush()))

    def say(self, text: str, kind: str = "echo", interruptible: bool = True) -> Speech:
        """Make the replica say `text` (echo, apology, lab scripts)."""
        speech = self._new_speech(kind, interruptible)
        chunker = ClauseChunker(self.settings.chunker)
        self._run(speech, lambda: self._speak(speech, chunker.push(text) + chunker.flush()))
        return speech

    def _stage_failed(self, stage: str, exc: BaseException, speech: Speech | None = None) -> None:
        """A stage broke during an answer: error event, then a short apology (unless the TTS is what broke)."""
        log.warning("stage %s failed: %s", stage, exc)
        self.error(f"{stage} failed: {exc}", "stage", stage=stage)
        if speech is not None and speech.held_turn is not None:
            # an answer prepared for a turn not yet committed: apologise at the commit, if these words stand
            speech.held_turn.extra["held_failed"] = (speech.held_text, stage)
            speech.latency = None  # never heard: no latency record
            return
        if speech is not None and speech.latency is not None:
            speech.latency.extra["error"] = f"{stage}: {exc}"
        if stage not in ("tts", "avatar") and self.running and (speech is None or speech.kind != "apology"):
            self.say(self.settings.apology, kind="apology")

    # TurnHandler side used by TurnTaking for failures outside an answer (VAD, ASR, end-of-turn)
    def stage_failed(self, stage: str, exc: BaseException) -> None:
        self._stage_failed(stage, exc, None)

    # ================================================================ listening (TurnTaking callbacks)
    def _audible(self) -> Speech | None:
        """The speech whose audio is playing now (head of the ledger), if any."""
        return self._ledger[0].speech if self._ledger else None

    def user_started(self, turn: UserTurn, new_turn: bool) -> None:
        if new_turn:
            self.turn_idx += 1
            turn.latency.turn_idx = self.turn_idx
            audible = self._audible()
            turn.overlapped = audible is not None and audible.interruptible
        self.emit("conversation.user.started_speaking", {}, turn.latency.turn_idx)

    def user_stopped(self, turn: UserTurn) -> None:
        self.emit("conversation.user.stopped_speaking", {}, turn.latency.turn_idx)

    def user_speech(self, turn: UserTurn, speech_s: float) -> None:
        """Called on every frame while the participant speaks: barge-in once it lasts long enough."""
        if turn.barged_in or speech_s * 1000.0 < self.settings.barge_in_min_ms:
            return
        if self._interrupt("barge_in", keep=self._held(turn)):  # (not the answer being prepared for this turn)
            turn.barged_in = True
            turn.overlapped = False
        elif turn.overlapped and self._audible() is None:
            # the replica ended on its own while the participant kept talking: a turn, not a backchannel
            turn.overlapped = False

    async def turn_complete(self, turn: UserTurn, transcript: Transcript) -> None:
        text = (transcript.text or "").strip()
        held = self._held(turn)
        if held is not None and held.held_text != text:
            self._drop_held(turn)
            held = None
        if not text:
            return
        if turn.overlapped and not turn.barged_in:
            return  # spoke over the replica without interrupting it: a backchannel, not a turn
        self._interrupt("superseded", keep=held)  # an answer not yet audible is for an older, now extended, turn
        self.emit("conversation.utterance", {"role": "user", "speech": text}, turn.latency.turn_idx)
        self._remember("user", text)
        lat = turn.latency
        lat.extra["user_text"] = text
        if transcript.language:
            lat.extra["language"] = transcript.language
            self.reply_language = transcript.language
        if held is not None:  # the answer prepared before the commit: let it play
            for mark in ("speech_end", "vad_end", "turn_decision", "asr_final"):  # the listening side's marks
                setattr(held.latency, mark, getattr(lat, mark))
            held.latency.extra.update(lat.extra, speculative=True)
            held.held_turn = None
            held.hold.set()
            return
        failed_text, failed_stage = turn.extra.pop("held_failed", (None, None))
        if failed_text == text and failed_stage not in ("tts", "avatar"):  # its prepared answer broke
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
        self._drop_held(turn)
        lat = dataclasses.replace(turn.latency, extra=dict(turn.latency.extra))
        speech = self._new_speech("response", latency=lat, turn_idx=lat.turn_idx)
        speech.hold, speech.held_turn, speech.held_text = asyncio.Event(), turn, text
        self._run(speech, lambda: self._respond(speech, pending_user=text))

    def turn_abandoned(self, turn: UserTurn) -> None:
        self._drop_held(turn)

    def _held(self, turn: UserTurn) -> Speech | None:
        return next((sp for sp in self._speeches if sp.held_turn is turn), None)

    def _drop_held(self, turn: UserTurn) -> None:
        speech = self._held(turn)
        if speech is not None:
            speech.latency = None  # never heard: no latency record
            speech.held_turn = None
            if speech.task is not None:
                speech.task.cancel()
            self._maybe_finish(speech, interrupted=True)

    # ================================================================ answering
    def _answer(self, lat: TurnLatency) -> None:
        speech = self._new_speech("response", latency=lat, turn_idx=lat.turn_idx)
        self._run(speech, lambda: self._respond(speech))

    def _messages(self) -> list[ChatMessage]:
        """System message (stable, so the LLM's prefix cache holds) + history."""
        s = self.settings
        parts = [self.spec.system_prompt or s.system_prompt_default, self.spec.persona_context, self.context]
        if s.tools:
            specs = [t.get("function", t) for t in s.tools]
            parts.append(
                "You can call these tools. To call one, reply with only a JSON object "
                '{"name": <tool name>, "arguments": {...}}.\n' + json.dumps(specs)
            )
        system = "\n\n".join(p.strip() for p in parts if p and p.strip())
        return [ChatMessage("system", system)] + self.history[self._window_start :]

    def _trim_history(self) -> None:
        """Move the start of the prompt's history window, in blocks of `history_trim_block` messages, once the
        next answer's prompt would hold more than `history_max_messages`. Called only after an answer (before
        priming), so between two trims the prompt only grows at its end and the LLM's prompt cache holds every
        earlier turn; a sliding window would change the prefix right after the system message on every turn
        and force a full prefill (seen as 3x slower answers from turn 20 of a long call)."""
        s = self.settings
        while len(self.history) + 1 - self._window_start > s.history_max_messages:
            self._window_start += s.history_trim_block
            while self._window_start < len(self.history) - 1 and self.history[self._window_start].role != "user":
                self._window_start += 1  # a window opens with a user message

    def _remember(self, role: str, text: str) -> None:
        """Append to the history, merging consecutive messages of one role (an answer never heard). After an
        answer, the prompt so far is primed in the LLM while the participant speaks."""
        if self.history and self.history[-1].role == role:
            self.history[-1] = ChatMessage(role, f"{self.history[-1].content} {text}".strip())
        else:
            self.history.append(ChatMessage(role, text))
        if role == "assistant" and self.running:
            self._trim_history()
            self._spawn(self._prime_llm())

    async def _respond(self, speech: Speech, pending_user: str | None = None) -> None:
        """LLM → chunker → queue → TTS → avatar. The LLM runs ahead in its own task while clauses are spoken.
        `pending_user`: the user's words not yet in the history (a speculative answer)."""
        lat = speech.latency
        queue: asyncio.Queue = asyncio.Queue()
        stats = LLMStats()
        messages = self._messages()
        if pending_user:
            if messages[-1].role == "user":
                messages[-1] = ChatMessage("user", f"{messages[-1].content} {pending_user}")
            else:
                messages.append(ChatMessage("user", pending_user))
        producer = asyncio.ensure_future(self._llm_clauses(speech, queue, stats, messages))
        try:
            await self._speak(speech, _drain(queue))
            await producer
        finally:
            producer.cancel()
            if lat is not None:
                lat.extra.update(prompt_tokens=stats.prompt_tokens, cached_prompt_tokens=stats.cached_prompt_tokens,
                                 completion_tokens=stats.completion_tokens, llm_tokens=stats.completion_tokens,
                                 llm_s=None if stats.total_s is None else round(stats.total_s, 4))

    async def _llm_clauses(self, speech: Speech, queue: asyncio.Queue, stats: LLMStats,
                           messages: list[ChatMessage]) -> None:
        """Stream the LLM, cut clauses, hand them to the speaker; a tool call (JSON reply) becomes an event."""
        lat, s = speech.latency, self.settings
        chunker = ClauseChunker(s.chunker)
        said: list[str] = []
        first_sent = False
        tool_buffer: str | None = None
        head = ""
        try:
            # aclosing: a cancelled answer stops the LLM's decoding now, not when the generator is collected
            async with contextlib.aclosing(self.stages.llm.stream(messages, s.max_tokens, stats)) as pieces:
                async for piece in pieces:
                    if lat is not None:
                        lat.mark("llm_first_token", self.clock.monotonic())
                    if tool_buffer is not None:
                        tool_buffer += piece
                        continue
                    if s.tools and not first_sent and not head.strip():
                        head += piece
                        if head.lstrip().startswith(("{", "<tool_call>")):
                            tool_buffer = head
                            continue
                    for clause in chunker.push(piece):
                        if lat is not None:
                            lat.mark("first_clause", self.clock.monotonic())
                        said.append(clause)
                        await queue.put(clause)
                        if not first_sent and s.pause_llm_until_first_audio:
                            # 2 cores: let the TTS have them until the first audio exists
                            first_sent = True
                            await speech.first_audio.wait()
                        first_sent = True
            if tool_buffer is not None:
                self._tool_call(tool_buffer, speech)
            for clause in chunker.flush():
                if lat is not None:
                    lat.mark("first_clause", self.clock.monotonic())
                said.append(clause)
                await queue.put(clause)
            if said and tool_buffer is None and (speech.hold is None or speech.hold.is_set()):
                # The answer is decoded while most of it is still to be spoken: prime the next prompt now, on
                # a CPU that would idle, not while the participant speaks (when the ASR needs it).
                self._spawn(self._prime_llm(messages + [ChatMessage("assistant", " ".join(said))]))
        except (asyncio.CancelledError, StageFailure):
            raise
        except Exception as exc:  # noqa: BLE001
            raise StageFailure("llm", exc) from exc
        finally:
            queue.put_nowait(None)

    def _tool_call(self, text: str, speech: Speech) -> None:
        raw = text.strip().removeprefix("<tool_call>").removesuffix("</tool_call>").strip()
        try:
            call = json.loads(raw)
            name = call.get("name") or call.get("tool")
            arguments = call.get("arguments", call.get("parameters", {}))
            if not isinstance(name, str):
                raise ValueError("no tool name")
        except (ValueError, AttributeError):
            self.error(f"the LLM produced an unreadable tool call: {raw[:200]}", "llm", stage="llm")
            return
        self.emit("conversation.tool_call",
                  {"name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)},
                  speech.turn_idx, inference_id=speech.inference_id)

    # ================================================================ interrupting
    def _interrupt(self, reason: str, keep: Speech | None = None) -> bool:
        """Stop every interruptible speech (playing or still being produced). False if the greeting plays.

        `reason`: barge_in | interaction (audible speech is cut, history truncated to the heard words);
        superseded (only answers not yet audible are dropped, silently)."""
        audible = self._audible()
        if audible is not None and not audible.interruptible:
            return False  # the greeting cannot be interrupted
        targets = [sp for sp in self._speeches if sp.interruptible and sp is not keep]
        if reason == "superseded":
            targets = [sp for sp in targets if not sp.started]
        if not targets:
            return False
        now = self.clock.monotonic()
        if any(sp.started for sp in targets):
            self.barge_in_at.append(now)
            self.stages.avatar.clear()
            for q in self._outputs:  # frames already rendered with that audio must not go out either
                while not q.empty():
                    q.get_nowait()
        target_ids = {id(sp) for sp in targets}
        self._ledger = collections.deque(b for b in self._ledger if id(b.speech) not in target_ids)
        for sp in targets:
            if sp.task is not None:
                sp.task.cancel()
            if sp.latency is not None:
                sp.latency.extra["interrupt_reason"] = reason
            self._maybe_finish(sp, interrupted=True)
        for key, (sp, _, _) in list(self._echo.items()):
            if id(sp) in target_ids:
                del self._echo[key]
        return True

    # ================================================================ interactions (data channel)
    async def handle_interaction(self, message: object) -> None:
        """Validate and apply one data-channel message; anything wrong → an error event, the call goes on."""
        try:
            event_type, props = parse_interaction(message, self.conversation_id)
        except ValueError as exc:
            self.error(str(exc), "interaction")
            return
        try:
            if event_type == "conversation.echo":
                self._echo_message(props)
            elif event_type == "conversation.respond":
                self._respond_message(props)
            elif event_type == "conversation.interrupt":
                self._interrupt("interaction")
            elif event_type == "conversation.overwrite_llm_context":
                self.context = text_prop(props, "context", allow_empty=True)
            elif event_type == "conversation.append_llm_context":
                extra = text_prop(props, "context")
                self.context = f"{self.context} {extra}".strip()
            elif event_type == "conversation.sensitivity":
                self._sensitivity(props)
        except (ValueError, PipelineConfigError) as exc:
            self.error(str(exc), "interaction", received_event_type=event_type)

    def _respond_message(self, props: dict) -> None:
        text = text_prop(props, "text")
        if self.echo_mode:
            raise ValueError("conversation.respond is not available in echo pipeline_mode; use conversation.echo")
        self._interrupt("interaction")
        self.turn_idx += 1
        now = self.clock.monotonic()
        lat = TurnLatency(turn_idx=self.turn_idx, source="respond", speech_end=now, turn_decision=now, asr_final=now)
        self.emit("conversation.utterance", {"role": "user", "speech": text})
        self._remember("user", text)
        self._answer(lat)

    def _echo_message(self, props: dict) -> None:
        modality = props.get("modality", "text")
        inference_id = str(props.get("inference_id") or uuid.uuid4().hex[:12])
        done = bool(props.get("done", True if modality == "text" and "inference_id" not in props else False))
        if modality == "text":
            text = text_prop(props, "text", allow_empty=done)
            speech, queue, chunker = self._echo_stream(inference_id)
            for clause in chunker.push(text):
                queue.put_nowait(clause)
        elif modality == "audio":
            audio = props.get("audio")
            if not isinstance(audio, str):
                raise ValueError("conversation.echo (audio): 'audio' must be base64 of 16-bit PCM")
            try:
                raw = base64.b64decode(audio, validate=True)
            except ValueError:
                raise ValueError("conversation.echo (audio): 'audio' is not valid base64") from None
            rate = props.get("sample_rate", 24_000)
            if not isinstance(rate, int) or not 8_000 <= rate <= 48_000:
                raise ValueError("conversation.echo (audio): sample_rate must be an integer in 8000..48000")
            pcm = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2")
            speech, queue, chunker = self._echo_stream(inference_id)
            if len(pcm):
                queue.put_nowait(TTSChunk(resample(pcm, rate, self.stages.tts.sample_rate), self.stages.tts.sample_rate))
        else:
            raise ValueError(f"conversation.echo: modality {modality!r} is not accepted; use 'text' or 'audio'")
        if done:
            self._close_echo(inference_id)
        else:
            self._spawn(self._echo_idle(inference_id, speech))

    def _echo_stream(self, inference_id: str) -> tuple[Speech, asyncio.Queue, ClauseChunker]:
        if inference_id not in self._echo:
            speech = self._new_speech("echo", inference_id=inference_id)
            queue: asyncio.Queue = asyncio.Queue()
            self._echo[inference_id] = (speech, queue, ClauseChunker(self.settings.chunker))
            self._run(speech, lambda: self._speak_echo(speech, queue))
        speech, queue, chunker = self._echo[inference_id]
        speech.last_input = self.clock.monotonic()
        return speech, queue, chunker

    async def _speak_echo(self, speech: Speech, queue: asyncio.Queue) -> None:
        """Echo items: text clauses go through the TTS, audio chunks straight to the avatar."""
        async for item in _drain(queue):
            if isinstance(item, TTSChunk):
                clause = Clause("")
                speech.clauses.append(clause)
                self._push(speech, clause, item)
            else:
                await self._speak(speech, [item])

    def _close_echo(self, inference_id: str) -> None:
        entry = self._echo.pop(inference_id, None)
        if entry is not None:
            _, queue, chunker = entry
            for clause in chunker.flush():
                queue.put_nowait(clause)
            queue.put_nowait(None)

    async def _echo_idle(self, inference_id: str, speech: Speech) -> None:
        """Echo text sent without `done`: speak the rest (and end the utterance) after a quiet spell."""
        wait = self.settings.echo_idle_flush_ms / 1000.0
        while inference_id in self._echo and self._echo[inference_id][0] is speech:
            idle = self.clock.monotonic() - speech.last_input
            if idle >= wait:
                self._close_echo(inference_id)
                return
            await clock_sleep(self.clock, wait - idle)

    def _sensitivity(self, props: dict) -> None:
        levels = {SENSITIVITY_KEYS[k]: v for k, v in props.items() if k in SENSITIVITY_KEYS}
        unknown = sorted(set(props) - set(SENSITIVITY_KEYS))
        if unknown or not levels:
            raise ValueError(
                f"conversation.sensitivity: properties {unknown or '{}'} not accepted; use "
                "participant_pause_sensitivity and/or participant_interrupt_sensitivity"
            )
        # VAD min silence is fixed when the VAD is built; the turn threshold, patience and barge-in apply now.
        self.settings = self.settings.with_sensitivity(**levels)
        self.listener.settings = self.settings


def _trim_leading_silence(chunk: TTSChunk, floor_dbfs: float, keep_s: float = 0.01) -> TTSChunk:
    """Start an utterance at its first audible 10 ms (TTS voices lead with ~50 ms of silence: pure latency)."""
    x, rate = chunk.samples, chunk.sample_rate
    n = max(1, int(0.01 * rate))
    frames = len(x) // n
    if frames == 0:
        return chunk
    level = 10 * np.log10(np.mean(np.square(x[: frames * n].reshape(frames, n), dtype=np.float64), axis=1) + 1e-12)
    loud = np.flatnonzero(level > floor_dbfs)
    cut = max(0, (int(loud[0]) if len(loud) else 0) * n - int(keep_s * rate))
    if cut == 0:
        return chunk
    shift = cut / rate

    def moved(timings):
        if not timings:
            return timings
        return [type(t)(t.label, max(0.0, t.start - shift), max(0.0, t.end - shift)) for t in timings]

    return TTSChunk(x[cut:], rate, chunk.text, moved(chunk.words), moved(chunk.phonemes), chunk.phoneme_string)


async def _aiter(items: AsyncIterator | Iterable) -> AsyncIterator:
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


async def _timed(chunks: AsyncIterator[TTSChunk], speech: Speech) -> AsyncIterator[TTSChunk]:
    """Book the TTS's wall time per chunk (not the time the consumer holds it: holds, pushes) and the audio
    it synthesized, so a turn reports the TTS real-time factor."""
    it = chunks.__aiter__()
    while True:
        t0 = time.perf_counter()
        try:
            chunk = await it.__anext__()
        except StopAsyncIteration:
            speech.tts_s += time.perf_counter() - t0
            return
        speech.tts_s += time.perf_counter() - t0
        speech.tts_audio_s += chunk.duration
        yield chunk


async def _drain(queue: asyncio.Queue) -> AsyncIterator:
    """Items from a queue until a None sentinel."""
    while True:
        item = await queue.get()
        if item is None:
            return
        yield item
