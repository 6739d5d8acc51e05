"""The replica's voice: speeches from text (or audio) to the avatar, what was heard of them, and cutting them.

Why separate: producing a speech (TTS each clause as it arrives, queue its audio on the avatar, book it in
the ledger) and ending it (played out, interrupted, superseded) is one lifecycle with one set of events
(started/stopped_speaking, replica_interrupted, utterance.streaming); the engine decides *what* to say and *when*
to cut, and is told when a speech ends (`on_finished`) to store it.

`conversation.utterance.streaming` (SPEC §5): one event per clause as its first audio is queued, then one
`final` event when the speech ends. Properties: `seq` (0, 1, ... within the utterance), `content_index` (the
clause; the final event carries the number of clauses), `delta` (the clause's text), `speech` (the text so far;
in the final event what was heard), `final`, `is_interrupted` (true only on the final event of a cut speech).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable
from typing import AsyncIterator, Awaitable, Callable, Iterable

import numpy as np

from cvi_lab.clock import Clock
from cvi_lab.engine.chunker import ChunkerSettings, ClauseChunker
from cvi_lab.engine.events import EventBus
from cvi_lab.engine.latency import TurnLatency
from cvi_lab.engine.speech import Clause, Speech, SpeechLedger
from cvi_lab.engine.turns import UserTurn
from cvi_lab.media import TTSChunk, VideoFrame
from cvi_lab.scheduling import serve, turn_priority
from cvi_lab.stages.avatar.streaming import StreamingAvatar
from cvi_lab.stages.base import TTS, AvatarRenderer
from cvi_lab.stages.tts.style import NEUTRAL_VOICE, StyledVoice, VoiceStyle

log = logging.getLogger(__name__)


class StageFailure(Exception):
    """A stage broke while producing a speech (`stage`: llm | tts | ...)."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        super().__init__(f"{stage}: {exc}")
        self.stage, self.exc = stage, exc


class Speaker:
    """Speeches not yet finished, in order; the ledger of their audio; barge-in."""

    def __init__(
        self,
        avatar: AvatarRenderer,
        chunker: ChunkerSettings,
        trim_leading_silence_dbfs: float | None,
        clock: Clock,
        bus: EventBus,
        spawn: Callable[[Awaitable[None]], asyncio.Task],
        voice: Callable[[], Awaitable[TTS]],
        running: Callable[[], bool],
        on_finished: Callable[[Speech, bool], None],
        on_failure: Callable[[str, BaseException, Speech], None],
        on_cut: Callable[[], None],
    ) -> None:
        self.avatar, self.chunker, self.trim_floor_dbfs = avatar, chunker, trim_leading_silence_dbfs
        self.clock, self.bus, self._spawn, self._voice, self._running = clock, bus, spawn, voice, running
        self._on_finished, self._on_failure, self._on_cut = on_finished, on_failure, on_cut
        self.ledger = SpeechLedger(1.0 / max(1, avatar.fps), self._mark_started, self.finish)
        self.speeches: list[Speech] = []  # not yet finished, in order
        self.barge_in_at: list[float] = []  # clock times of barge-in decisions (tests, lab)
        self.voice_style: VoiceStyle = NEUTRAL_VOICE  # conversation.set_emotion (used where the TTS can)

    @property
    def busy(self) -> bool:
        """Something is to be said or is being said."""
        return bool(self.speeches or self.ledger)

    def audible(self) -> Speech | None:
        return self.ledger.audible()

    def on_frame(self, frame: VideoFrame) -> None:
        self.ledger.account(frame, self.clock.monotonic())

    # ---------------------------------------------------------------- producing
    def new_speech(self, kind: str, turn_idx: int, interruptible: bool = True, latency: TurnLatency | None = None,
                   inference_id: str | None = None) -> Speech:
        speech = Speech(kind, turn_idx, interruptible, latency=latency)
        if inference_id:
            speech.inference_id = inference_id
        self.speeches.append(speech)
        return speech

    def run(self, speech: Speech, produce: Callable[[], Awaitable[None]]) -> None:
        """Run a speech's producer; mark it produced when it ends, however it ends."""

        async def runner() -> None:
            try:
                await produce()
            except asyncio.CancelledError:
                pass
            except StageFailure as failure:
                self._on_failure(failure.stage, failure.exc, speech)
            except Exception as exc:  # noqa: BLE001 - a bug must not end the call either
                log.exception("speech producer failed")
                self._on_failure("engine", exc, speech)
            finally:
                speech.produced = True
                self.finish(speech)

        speech.task = self._spawn(runner())

    def speak_text(self, speech: Speech, text: str) -> None:
        """Produce `speech` from a whole text, clause by clause."""
        chunker = ClauseChunker(self.chunker)
        self.run(speech, lambda: self.speak(speech, chunker.push(text) + chunker.flush()))

    async def speak(self, speech: Speech, clauses: AsyncIterator[str] | Iterable[str]) -> None:
        """TTS each clause as it arrives and queue its audio on the avatar, booking it in the ledger. On the shared
        model queue an answer's clauses go by the time it began (an older answer's first)."""
        serve(turn_priority(), "tts", speech.latency)
        tts = await self._voice()
        index = 0
        async for text in _aiter(clauses):
            clause = Clause(text)
            speech.clauses.append(clause)
            announced = False
            style = self.voice_style
            try:
                styled = style != NEUTRAL_VOICE and isinstance(tts, StyledVoice)
                async with contextlib.aclosing(tts.stream_styled(text, style) if styled else tts.stream(text)) as chunks:
                    async for chunk in _timed(chunks, speech):
                        if speech.hold is not None and not speech.hold.is_set():
                            if speech.latency is not None:
                                speech.latency.mark("tts_first_audio", self.clock.monotonic())
                            await speech.hold.wait()  # a speculative answer plays only once the turn is committed
                        if not announced:  # (so a speculative answer that is dropped was never announced)
                            announced = True
                            self._stream_event(speech, speech.text(), text, index, final=False, interrupted=False)
                            index += 1
                        self.push(speech, clause, chunk)
            except (asyncio.CancelledError, StageFailure):
                raise
            except Exception as exc:  # noqa: BLE001
                raise StageFailure("tts", exc) from exc

    def push(self, speech: Speech, clause: Clause, chunk: TTSChunk) -> None:
        """Queue a chunk of the clause's audio on the avatar."""
        now = self.clock.monotonic()
        if speech.latency is not None:
            speech.latency.mark("tts_first_audio", now)
        if not speech.first_audio.is_set() and self.trim_floor_dbfs is not None:
            chunk = trim_leading_silence(chunk, self.trim_floor_dbfs)
        speech.first_audio.set()
        if len(chunk.samples) == 0:
            return
        offset = clause.duration
        if chunk.words:
            clause.words += [(w.label, offset + w.end) for w in chunk.words]
        clause.duration += chunk.duration
        self.ledger.book(speech, clause, chunk.duration, now)
        self.avatar.push_audio(chunk)

    def _stream_event(self, speech: Speech, so_far: str, delta: str, content_index: int, final: bool,
                      interrupted: bool) -> None:
        """One conversation.utterance.streaming event (see the module docstring)."""
        self.bus.emit("conversation.utterance.streaming",
                      {"role": "replica", "speech": so_far, "delta": delta, "index": content_index,
                       "content_index": content_index, "seq": speech.streamed, "final": final,
                       "is_interrupted": interrupted, "inference_id": speech.inference_id},
                      speech.turn_idx, inference_id=speech.inference_id)
        speech.streamed += 1

    # ---------------------------------------------------------------- ending
    def _mark_started(self, speech: Speech, now: float) -> None:
        if speech.started:
            return
        speech.started = True
        if speech.latency is not None:
            speech.latency.mark("first_frame_sent", now)
            if isinstance(self.avatar, StreamingAvatar):  # the call's avatar so far: rendered fps, CPU share
                speech.latency.extra.update({f"avatar_{k}": v for k, v in self.avatar.render_stats().items()})
        self.bus.emit("conversation.replica.started_speaking", {"inference_id": speech.inference_id},
                      speech.turn_idx, inference_id=speech.inference_id)

    def finish(self, speech: Speech, interrupted: bool = False) -> None:
        """Close a speech once it is fully produced and played (or interrupted)."""
        if speech.finished:
            return
        if not interrupted and (not speech.produced or self.ledger.holds(speech)):
            return
        speech.finished = True
        with contextlib.suppress(ValueError):
            self.speeches.remove(speech)
        if not self._running():
            return  # shutting down: no more events
        if speech.streamed:  # the stream of this utterance closes: what was heard of it
            heard = speech.heard_text() if interrupted else speech.text()
            self._stream_event(speech, heard, "", len(speech.clauses), final=True, interrupted=interrupted)
        if speech.started:
            if interrupted:
                self.bus.emit("conversation.replica_interrupted", {"inference_id": speech.inference_id},
                              speech.turn_idx, inference_id=speech.inference_id)
            self.bus.emit("conversation.replica.stopped_speaking",
                          {"duration": round(speech.played_s, 3), "interrupted": interrupted,
                           "inference_id": speech.inference_id},
                          speech.turn_idx, inference_id=speech.inference_id)
        self._on_finished(speech, interrupted)

    def interrupt(self, reason: str, keep: Speech | None = None) -> list[Speech]:
        """Stop every interruptible speech (playing or still being produced); the speeches stopped (none
        while the greeting plays).

        `reason`: barge_in | interaction (audible speech is cut, history truncated to the heard words);
        superseded (only answers not yet audible are dropped, silently)."""
        audible = self.ledger.audible()
        if audible is not None and not audible.interruptible:
            return []  # the greeting cannot be interrupted
        targets = [sp for sp in self.speeches if sp.interruptible and sp is not keep]
        if reason == "superseded":
            targets = [sp for sp in targets if not sp.started]
        if not targets:
            return []
        if any(sp.started for sp in targets):
            self.barge_in_at.append(self.clock.monotonic())
            self.avatar.clear()
            self._on_cut()
        self.ledger.drop(targets)
        for sp in targets:
            if sp.task is not None:
                sp.task.cancel()
            if sp.latency is not None:
                sp.latency.extra["interrupt_reason"] = reason
            self.finish(sp, interrupted=True)
        return targets

    def cancel_all(self) -> None:
        """Shutdown: stop producing every speech."""
        for speech in list(self.speeches):
            if speech.task is not None:
                speech.task.cancel()

    # ---------------------------------------------------------------- speculative answers
    def held(self, turn: UserTurn) -> Speech | None:
        """The answer prepared for this (not yet committed) user turn, if any."""
        return next((sp for sp in self.speeches if sp.held_turn is turn), None)

    def drop_held(self, turn: UserTurn) -> None:
        speech = self.held(turn)
        if speech is not None:
            speech.latency = None  # never heard: no latency record
            speech.held_turn = None
            if speech.task is not None:
                speech.task.cancel()
            self.finish(speech, interrupted=True)


def trim_leading_silence(chunk: TTSChunk, floor_dbfs: float, keep_s: float = 0.01) -> TTSChunk:
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


async def _aiter(items: AsyncIterable | Iterable) -> AsyncIterator:
    if isinstance(items, AsyncIterable):
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


async def drain(queue: asyncio.Queue) -> AsyncIterator:
    """Items from a queue until a None sentinel (a stream of clauses or chunks fed by a producer)."""
    while True:
        item = await queue.get()
        if item is None:
            return
        yield item
