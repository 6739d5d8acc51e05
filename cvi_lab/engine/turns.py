"""Turn taking, listening side: participant audio → VAD → (ASR ∥ end-of-turn) → committed user turns.

Why its own module: this is where latency is won or lost before the LLM starts. At every pause the VAD
reports (its min silence is short on purpose) the ASR starts at once, in parallel with the end-of-turn
detector, so the transcript is usually ready when the detector says "complete". If the detector says
"incomplete" we wait up to the patience; if speech resumes, the pending decision (and its ASR) is
cancelled and the turn goes on, to be transcribed again, whole, at the next pause.

Early start: the VAD says where the speech would end as soon as silence begins (`VAD.pending_end`), while
its min silence (~200 ms) is still running. `early_decision_ms` after that candidate end, the same decision
(ASR ∥ end-of-turn, and the engine's held answer) starts on exactly the audio the final decision would use;
if the VAD then ends the segment at that sample, the running decision simply continues, so the transcript
is the one-shot transcript of the same audio, ready ~200 ms sooner. If speech resumes, it is cancelled.

The engine (the speaking side) gets callbacks: `user_started` / `user_stopped` per VAD segment,
`user_speech(turn, seconds)` on every frame while the participant speaks (barge-in check),
`turn_complete(turn, transcript)` once a turn is committed, and, while the patience runs on a turn the
detector judged unfinished, `turn_tentative(turn, transcript)` (start preparing an answer) and
`turn_abandoned(turn)` (the participant went on: drop it).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from cvi_lab.clock import Clock
from cvi_lab.engine.latency import TurnLatency
from cvi_lab.engine.pipeline_config import EngineSettings
from cvi_lab.scheduling import serve, turn_priority
from cvi_lab.stages.base import ASR, VAD, StageError, Transcript, TurnDetector


@dataclass
class UserTurn:
    """One participant turn: possibly several VAD segments separated by pauses the detector judged incomplete."""

    start_sample: int  # first speech sample (VAD clock, without pre-roll)
    latency: TurnLatency
    segment_start: int = 0  # start of the current VAD segment
    end_sample: int | None = None  # end of the last segment (None while speaking)
    speech_samples: int = 0  # summed length of the finished segments
    segments: int = 0
    overlapped: bool = False  # began while the replica was speaking (interruptibly); set by the engine
    barged_in: bool = False  # this turn's speech interrupted the replica
    extra: dict = field(default_factory=dict)


class TurnHandler(Protocol):
    def user_started(self, turn: UserTurn, new_turn: bool) -> None: ...

    def user_stopped(self, turn: UserTurn) -> None: ...

    def user_speech(self, turn: UserTurn, speech_s: float) -> None: ...

    async def turn_complete(self, turn: UserTurn, transcript: Transcript) -> None: ...

    def turn_tentative(self, turn: UserTurn, transcript: Transcript) -> None: ...

    def turn_abandoned(self, turn: UserTurn) -> None: ...

    def stage_failed(self, stage: str, exc: BaseException) -> None: ...


async def clock_sleep(clock: Clock, delay: float) -> None:
    """Sleep on the injected clock (a FakeClock test advances it; the real one uses the loop)."""
    if delay <= 0:
        return
    fut: asyncio.Future = asyncio.get_running_loop().create_future()
    handle = clock.call_later(delay, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        handle.cancel()


def reads_finished(text: str, unfinished_last_words: Sequence[str]) -> bool | None:
    """True: the transcript ends like a finished sentence (closing punctuation after a last word that does not
    call for more). False: it is left hanging (an ellipsis, a comma or dash, or a last word such as "and",
    "to", "the", "um"). None: the words do not tell (no punctuation), the detector's verdict stands."""
    text = (text or "").strip()
    if not text:
        return None
    if text.endswith(("...", "…", ",", "-", "—")):
        return False
    last = text.rstrip(".?!\"'”’").split()[-1:] or [""]
    if last[0].lower().strip(",;:\"'“‘") in set(unfinished_last_words):
        return False
    return True if text[-1] in ".?!" else None


LOUD_POWER = 10 ** (-50 / 10)  # mean power of a -50 dBFS frame: quieter frames inside a VAD segment are pauses


class _AudioBuffer:
    """Recent participant audio addressed by absolute sample index (the VAD's counter)."""

    def __init__(self, keep_samples: int) -> None:
        self.keep = keep_samples
        self._frames: list[np.ndarray] = []
        self.base = 0  # absolute index of the first kept sample
        self.end = 0  # absolute index after the last sample

    def append(self, x: np.ndarray, pin: int | None) -> None:
        self._frames.append(x)
        self.end += len(x)
        floor = self.end - self.keep if pin is None else min(pin, self.end - self.keep)
        while self._frames and self.base + len(self._frames[0]) <= floor:
            self.base += len(self._frames.pop(0))

    def slice(self, start: int, end: int | None = None) -> np.ndarray:
        start = max(start, self.base)
        end = self.end if end is None else min(end, self.end)
        if not self._frames or end <= start:
            return np.zeros(0, dtype=np.float32)
        audio = np.concatenate(self._frames)
        return audio[start - self.base : end - self.base]


class TurnTaking:
    """Feed participant audio with `push` (on the loop, cheap); committed turns go to the handler."""

    def __init__(
        self,
        vad: VAD,
        detector: TurnDetector | None,
        asr: ASR | None,
        settings: EngineSettings,
        clock: Clock,
        handler: TurnHandler,
    ) -> None:
        self.vad, self.detector, self.asr = vad, detector, asr
        self.settings, self.clock, self.handler = settings, clock, handler
        self.rate = vad.sample_rate
        self._audio = _AudioBuffer(int(settings.max_turn_s * self.rate))
        self.turn: UserTurn | None = None  # the turn being listened to / decided
        self._decision: asyncio.Task | None = None
        self._early: tuple[int, asyncio.Event] | None = None  # (candidate end sample, VAD confirmed) of _decision
        self._tasks: set[asyncio.Task] = set()
        self.enabled = True  # False: audio is ignored (no participant / shutting down)
        self._last_loud = 0  # sample index after the last loud frame (barge-in speech length)

    # --------------------------------------------------------------- input
    def push(self, pcm: np.ndarray) -> None:
        """One frame of participant audio (float32 16 kHz). Runs the VAD inline (< 1 ms per frame)."""
        if not self.enabled:
            return
        try:
            events = self.vad.push(pcm)
        except StageError as exc:
            self.handler.stage_failed("vad", exc)
            return
        pre = int(self.settings.preroll_ms * self.rate / 1000)
        pin = None if self.turn is None else self.turn.start_sample - pre
        self._audio.append(np.asarray(pcm, dtype=np.float32), pin)
        for ev in events:
            if ev.kind == "speech_start":
                self._speech_start(ev.sample)
            else:
                self._speech_end(ev.sample)
        self._early_start()
        if self.turn is not None and self.vad.speaking:
            # The VAD stays "speaking" through its min silence: count speech up to the last frame with sound,
            # so a short word plus the silence after it does not pass for a long barge-in.
            x = np.asarray(pcm, dtype=np.float32)
            if len(x) and float(np.mean(x * x)) > LOUD_POWER:
                self._last_loud = self._audio.end
            # A turn begun over the replica counts all its speech: "Wait, ... stop" pauses at the comma and the
            # VAD may end a segment there; counting only the current segment restarted the barge-in count (seen
            # live: decisions at ~1.1 s instead of ~0.5 s). A turn begun in silence counts the current segment
            # (resuming after a pause must not count as talking over the answer being prepared).
            spoken = max(0, self._last_loud - self.turn.segment_start)
            if self.turn.overlapped:
                spoken += self.turn.speech_samples
            self.handler.user_speech(self.turn, spoken / self.rate)

    def _wall_time_of(self, sample: int) -> float:
        """Map a VAD sample index to the clock: the frame just pushed ends now."""
        return self.clock.monotonic() - (self._audio.end - sample) / self.rate

    def _early_start(self) -> None:
        """Start (or cancel) the decision at the VAD's candidate end, before its min silence has run out."""
        if self.asr is None or self.turn is None or not self.vad.speaking:
            return
        end = self.vad.pending_end
        if self._early is not None and self._early[0] != end:  # speech went on: that end was not the end
            self._cancel_decision()
        if end is None or self._early is not None or self._decision is not None:
            return
        s, turn = self.settings, self.turn
        if s.early_decision_ms is None or self._audio.end - end < s.early_decision_ms * self.rate / 1000:
            return
        if turn.segments == 0 and end - turn.segment_start < s.min_turn_ms * self.rate / 1000:
            return  # would be dropped as a click at speech_end
        pre = int(s.preroll_ms * self.rate / 1000)
        confirmed = asyncio.Event()
        self._early = (end, confirmed)
        turn.latency.turn_decision = turn.latency.asr_final = None
        turn.latency.extra["early_start_ms"] = round((self._audio.end - end) * 1000 / self.rate, 1)
        self._decision = self._spawn(self._decide(turn, self._audio.slice(turn.start_sample - pre, end), confirmed))

    def _cancel_decision(self) -> None:
        if self._decision is not None:
            self._decision.cancel()
        self._decision, self._early = None, None

    def _speech_start(self, sample: int) -> None:
        new = self.turn is None
        if new:
            self.turn = UserTurn(start_sample=sample, latency=TurnLatency(turn_idx=-1))
        elif self._decision is not None:
            self._cancel_decision()  # the participant went on: decide again at the next pause
            self.turn.extra["resumed"] = self.turn.extra.get("resumed", 0) + 1
        self.turn.segment_start = sample
        self.turn.end_sample = None
        self.handler.user_started(self.turn, new)

    def _speech_end(self, sample: int) -> None:
        turn = self.turn
        if turn is None:
            return
        turn.end_sample = sample
        turn.speech_samples += max(0, sample - turn.segment_start)
        turn.segments += 1
        self.handler.user_stopped(turn)
        lat = turn.latency
        lat.speech_end, lat.vad_end = self._wall_time_of(sample), self.clock.monotonic()
        if self._early is not None and self._early[0] == sample:
            self._early[1].set()  # the early decision ran on exactly this audio: it goes on
            self._early = None
            return
        self._cancel_decision()
        lat.turn_decision = lat.asr_final = None
        if turn.speech_samples < self.settings.min_turn_ms * self.rate / 1000 and turn.segments == 1:
            self.turn = None  # a click or a cough: not a turn
            return
        if self.asr is None:
            self.turn = None  # echo mode: nobody transcribes, the segment only drove the events
            return
        pre = int(self.settings.preroll_ms * self.rate / 1000)
        audio = self._audio.slice(turn.start_sample - pre, sample)
        self._decision = self._spawn(self._decide(turn, audio))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --------------------------------------------------------------- decision
    async def _decide(self, turn: UserTurn, audio: np.ndarray, confirmed: asyncio.Event | None = None) -> None:
        """ASR and end-of-turn in parallel; commit when complete (or out of patience). `confirmed`: an early
        decision (started at the VAD's candidate end) commits nothing before the VAD has ended the segment;
        meanwhile the engine prepares the answer to the transcript (held until the commit)."""
        s, lat = self.settings, turn.latency
        priority = turn_priority()  # this call's model work now goes before any later turn's, of any call
        serve(priority, "turn", lat)
        asr_task = asyncio.ensure_future(self._transcribe(turn, audio, priority))
        try:
            prob = 0.0  # no detector: the pause alone ends the turn, after the full patience
            if self.detector is not None and s.use_turn_detector:
                silence_s = s.vad_min_silence_ms / 1000.0
                try:
                    prob = await self.detector.predict(audio, self.rate, silence_s)
                except StageError as exc:  # a broken detector must not stall the call: fall back to patience
                    self.handler.stage_failed("turn", exc)
                lat.extra["turn_prob"] = round(float(prob), 3)
            tentative = False  # the engine was handed the transcript to prepare an answer
            if confirmed is not None and not confirmed.is_set():
                transcript = await asr_task
                if transcript is not None and not confirmed.is_set():
                    self.handler.turn_tentative(turn, transcript)
                    tentative = True
                await confirmed.wait()
            if prob < s.turn_threshold:
                await self._patience(turn, asr_task, tentative)
                lat.extra["turn_by_patience"] = True
            elif s.unfinished_text_patience_ms is not None:
                heard = await asr_task
                if heard is not None and reads_finished(heard.text, s.unfinished_last_words) is False:
                    # the detector heard an end but the words hang ("I'd like to..."): wait as for an unfinished turn
                    lat.extra["turn_overruled_by_text"] = True
                    await self._patience(turn, asr_task, tentative)
                    lat.extra["turn_by_patience"] = True
            lat.turn_decision = self.clock.monotonic()
            transcript = await asr_task
        except BaseException:
            asr_task.cancel()
            self.handler.turn_abandoned(turn)
            raise
        if self.turn is turn:
            self.turn = None
            self._decision = self._early = None
        if transcript is None:
            return
        await self.handler.turn_complete(turn, transcript)

    async def _patience(self, turn: UserTurn, asr_task: asyncio.Future, tentative: bool) -> None:
        """Wait out the patience on a turn the detector judged unfinished. The transcript is handed over as soon
        as it exists, so the engine prepares the answer (held until the commit, dropped if speech resumes). The
        words then set the wait (`reads_finished`): a finished sentence shortens it to `finished_text_patience_ms`,
        one left hanging ("I'd like to ...") lengthens it to `unfinished_text_patience_ms`: the detector hears
        prosody, the words tell a question from a pause for thought."""
        s = self.settings
        t0 = self.clock.monotonic()
        timer = asyncio.ensure_future(clock_sleep(self.clock, (s.max_patience_ms - s.vad_min_silence_ms) / 1000.0))
        try:
            done, _ = await asyncio.wait({asr_task, timer}, return_when=asyncio.FIRST_COMPLETED)
            transcript = asr_task.result() if asr_task in done else None
            if transcript is not None and not timer.done():
                if not tentative:
                    self.handler.turn_tentative(turn, transcript)
                finished = reads_finished(transcript.text, s.unfinished_last_words)
                if finished is not None:  # the words tell: shorten, or (a sentence left hanging) lengthen the wait
                    wait_ms = s.finished_text_patience_ms if finished else s.unfinished_text_patience_ms
                    if wait_ms is not None:
                        turn.latency.extra["patience_by_text"] = "finished" if finished else "unfinished"
                        since = turn.latency.vad_end if turn.latency.vad_end is not None else t0
                        left = (wait_ms - s.vad_min_silence_ms) / 1000.0 - (self.clock.monotonic() - since)
                        await clock_sleep(self.clock, left)
                        return
            await timer
        finally:
            timer.cancel()

    async def _transcribe(self, turn: UserTurn, audio: np.ndarray, priority: float) -> Transcript | None:
        serve(priority, "asr", turn.latency)
        t0 = self.clock.monotonic()
        try:
            transcript = await self.asr.transcribe(audio, self.rate, self.settings.language_code)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any ASR failure: report, drop the turn, keep the call
            self.handler.stage_failed("asr", exc)
            return None
        turn.latency.asr_final = self.clock.monotonic()
        turn.latency.extra["asr_s"] = round(turn.latency.asr_final - t0, 3)
        turn.latency.extra["user_audio_s"] = round(len(audio) / self.rate, 2)
        return transcript

    # --------------------------------------------------------------- control
    def drop_turn(self) -> None:
        """Forget the turn in progress (e.g. the engine decided it was a backchannel)."""
        self._cancel_decision()
        self.turn = None

    async def close(self) -> None:
        self.enabled = False
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
