"""Drive an engine without WebRTC: a scripted participant speaks WAVs, pauses, sends interactions.

Why: tests and the experiment lab need the whole pipeline (real models) with the transport out of the way,
measured the way the participant experiences it. The driver feeds 20 ms microphone frames on a schedule
(`speed` > 1 feeds faster than real time; the replica's frames stay paced by the avatar), consumes the
engine's outgoing frames as the transport would, and records: events (with arrival times), the replica's
audio, speaking flags, latency records, and the event loop's worst lag (a heartbeat task).

Response latency "at the participant" = first audible replica frame received after the end of the
participant's speech (the last loud 20 ms frame of each `Say`) - that end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from cvi_lab.audio import load_audio, rms_dbfs, to_float32
from cvi_lab.engine.engine import ConversationEngine

FRAME_S = 0.02
MIC_RATE = 16_000
AUDIBLE_DBFS = -45.0


# ---------------------------------------------------------------- script steps
@dataclass
class Join:
    participant_id: str = "participant"


@dataclass
class Leave:
    participant_id: str = "participant"
    reason: str = "left"


@dataclass
class Say:
    """Participant speech (16 kHz mono); `label` names it in the result."""

    audio: np.ndarray
    label: str = ""

    @classmethod
    def file(cls, path, label: str = "") -> "Say":
        audio, _ = load_audio(path, MIC_RATE)
        return cls(audio, label or str(path))


@dataclass
class Pause:
    seconds: float


@dataclass
class Send:
    """A data-channel message from the participant."""

    message: Any


@dataclass
class WaitFor:
    """Keep the microphone silent until an event arrives, or time out. Events count from the start of the
    previous step (so "Say, then WaitFor the answer" sees an event that came while the Say was playing)."""

    event_type: str
    timeout: float = 15.0
    predicate: Callable[[dict], bool] | None = None


@dataclass
class WaitQuiet:
    """Keep the microphone silent until the engine is idle (no turn pending, nothing to say) and the replica
    has been silent for `quiet_s` (or time out)."""

    quiet_s: float = 0.6
    timeout: float = 15.0


Step = Join | Leave | Say | Pause | Send | WaitFor | WaitQuiet


# ---------------------------------------------------------------- result
@dataclass
class OfflineResult:
    events: list[dict] = field(default_factory=list)  # each with "_t": arrival time (s from start)
    frame_times: list[float] = field(default_factory=list)
    frame_speaking: list[bool] = field(default_factory=list)
    frame_audio: list[np.ndarray] = field(default_factory=list)
    audio_rate: int = 0
    says: list[dict] = field(default_factory=list)  # label, start, speech_end, end (s from start)
    latencies: list[dict] = field(default_factory=list)  # engine record_turn payloads
    loop_lag_max_ms: float = 0.0
    loop_lags_ms: list[float] = field(default_factory=list)  # every heartbeat's lateness
    wall_s: float = 0.0

    @property
    def loop_lag_p99_ms(self) -> float:
        return float(np.percentile(self.loop_lags_ms, 99)) if self.loop_lags_ms else 0.0

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.frame_audio) if self.frame_audio else np.zeros(0, np.float32)

    def of_type(self, event_type: str) -> list[dict]:
        return [e for e in self.events if e["event_type"] == event_type]

    def audible_times(self) -> list[float]:
        return [t for t, a in zip(self.frame_times, self.frame_audio) if len(a) and rms_dbfs(a) > AUDIBLE_DBFS]

    def replica_audio(self, start: float = 0.0, end: float = float("inf")) -> np.ndarray:
        parts = [a for t, a in zip(self.frame_times, self.frame_audio) if start <= t < end]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def response_latencies(self) -> list[float | None]:
        """Per `Say`: seconds from its speech end to the next audible replica frame (None if none came)."""
        audible = self.audible_times()
        out = []
        for say in self.says:
            nxt = next((t for t in audible if t > say["speech_end"]), None)
            out.append(None if nxt is None else nxt - say["speech_end"])
        return out


def speech_end_offset(audio: np.ndarray, rate: int = MIC_RATE) -> float:
    """Seconds from the start of `audio` to the end of its last loud 20 ms frame."""
    n = int(FRAME_S * rate)
    x = to_float32(audio)
    last = 0
    for i in range(0, len(x) - n + 1, n):
        if rms_dbfs(x[i : i + n]) > -40.0:
            last = i + n
    return last / rate


# ---------------------------------------------------------------- driver
async def run_script(engine: ConversationEngine, script: Sequence[Step], speed: float = 1.0,
                     keep_audio: bool = True) -> OfflineResult:
    """Run the script against a started engine; the engine keeps running afterwards (the caller stops it)."""
    res = OfflineResult()
    t0 = time.monotonic()

    def now() -> float:
        return time.monotonic() - t0

    def on_event(event: dict) -> None:
        res.events.append({**event, "_t": now()})

    unsubscribe = engine.subscribe(on_event)

    last_audible = -1.0  # arrival of the last audible replica frame, kept as frames arrive

    async def consume() -> None:
        nonlocal last_audible
        async for frame in engine.frames():
            t = now()
            kept = frame.audio if keep_audio else frame.audio[:0]
            res.frame_times.append(t)
            res.frame_speaking.append(bool(frame.speaking))
            res.audio_rate = frame.audio_rate
            res.frame_audio.append(kept)
            if len(kept) and rms_dbfs(kept) > AUDIBLE_DBFS:
                last_audible = t

    async def heartbeat() -> None:
        period = 0.01
        while True:
            t = time.monotonic()
            await asyncio.sleep(period)
            lag = (time.monotonic() - t - period) * 1000.0
            res.loop_lags_ms.append(lag)
            res.loop_lag_max_ms = max(res.loop_lag_max_ms, lag)

    consumer = asyncio.ensure_future(consume())
    beat = asyncio.ensure_future(heartbeat())
    mic_t = time.monotonic()  # when the next mic frame is due
    silent = np.zeros(int(FRAME_S * MIC_RATE), np.int16)

    async def feed(frame: np.ndarray) -> None:
        nonlocal mic_t
        delay = mic_t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        engine.push_audio(frame)
        mic_t += FRAME_S / speed

    def last_replica_sound() -> float:
        # Why not res.audible_times()[-1]: WaitQuiet asks every 20 ms mic frame, and rescanning every frame
        # of a long answer each time (683k RMS computations in one 40 s turn) starved the frame clock
        # on a loaded 2-core machine (2-5 frames/s instead of 25: every lab run failed ReplicaTooSlow).
        return last_audible

    prev_start = 0  # index in res.events where the previous step began
    try:
        for step in script:
            step_start = len(res.events)
            if isinstance(step, Join):
                await engine.participant_joined(step.participant_id)
            elif isinstance(step, Leave):
                await engine.participant_left(step.participant_id, step.reason)
            elif isinstance(step, Send):
                await engine.handle_interaction(step.message)
            elif isinstance(step, Pause):
                for _ in range(int(round(step.seconds / FRAME_S))):
                    await feed(silent)
            elif isinstance(step, Say):
                pcm = (np.clip(to_float32(step.audio), -1, 1) * 32767).astype(np.int16)
                n = int(FRAME_S * MIC_RATE)
                pcm = np.pad(pcm, (0, (-len(pcm)) % n))
                start = now()
                end_off = speech_end_offset(pcm)
                for i in range(0, len(pcm), n):
                    await feed(pcm[i : i + n])
                # the participant's speech ended when the frame holding its last loud sample was sent
                fed_s = len(pcm) / MIC_RATE / speed
                end = now()
                res.says.append({"label": step.label, "start": start, "end": end,
                                 "speech_end": end - (fed_s - end_off / speed)})
            elif isinstance(step, WaitFor):
                n0 = prev_start
                deadline = now() + step.timeout
                while now() < deadline:
                    if any(e["event_type"] == step.event_type and (step.predicate is None or step.predicate(e))
                           for e in res.events[n0:]):
                        break
                    await feed(silent)
                else:
                    raise TimeoutError(f"no {step.event_type} event within {step.timeout} s")
            elif isinstance(step, WaitQuiet):
                deadline = now() + step.timeout
                while now() < deadline:
                    if now() - max(last_replica_sound(), 0.0) >= step.quiet_s and engine.idle:
                        break
                    await feed(silent)
            else:
                raise TypeError(f"unknown script step {step!r}")
            prev_start = step_start
        res.latencies = list(engine.latencies)
    finally:
        unsubscribe()
        for task in (consumer, beat):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        res.wall_s = now()
    return res


# ---------------------------------------------------------------- command line
async def _measure(overrides: list[str], texts: list[str], turns: int, wav: str | None) -> dict:
    from cvi_lab.audio import resample
    from cvi_lab.cli import compose_config
    from cvi_lab.engine.engine import ConversationSpec
    from cvi_lab.engine.factory import create_engine
    from cvi_lab.engine.stage_pool import StagePool
    from cvi_lab.stages.avatar.streaming import StreamingAvatar

    cfg = compose_config(overrides)
    pool = StagePool()
    says = [Say.file(wav, "wav")] if wav else []
    if not wav:
        tts = await pool.get("tts", cfg.tts)  # the participant's voice: piper
        for text in texts:
            chunks = [c async for c in tts.stream(text)]
            says.append(Say(resample(np.concatenate([c.samples for c in chunks]), tts.sample_rate, MIC_RATE), text))
    spec = ConversationSpec("c-offline", system_prompt="You are a friendly assistant in a video call. "
                            "Answer in one or two short sentences.")
    engine = await create_engine(cfg, spec, pool=pool)
    await engine.start()
    script: list[Step] = [Join(), WaitFor("conversation.replica.stopped_speaking", timeout=60), WaitQuiet()]
    for i in range(turns):
        script += [says[i % len(says)], WaitFor("conversation.replica.stopped_speaking", timeout=90), WaitQuiet(timeout=60)]
    try:
        res = await run_script(engine, script)
    finally:
        await engine.stop()
    avatar = engine.stages.avatar
    render = list(avatar.render_ms) if isinstance(avatar, StreamingAvatar) else []  # its per-frame render times
    return {
        "turns": [m for m in res.latencies if m.get("kind") == "response"],
        "at_participant_s": res.response_latencies(),
        "loop_lag_max_ms": round(res.loop_lag_max_ms, 1),
        "loop_lag_p99_ms": round(res.loop_lag_p99_ms, 1),
        "avatar_render_ms_mean": round(float(np.mean(render)), 2) if render else None,
        "utterances": [(e["properties"]["role"], e["properties"]["speech"]) for e in res.of_type("conversation.utterance")],
    }


def main(argv: Sequence[str] | None = None) -> None:
    """python -m cvi_lab.engine.offline [--turns N] [--text "..." | --wav file] [hydra overrides...]"""
    import argparse
    import json

    p = argparse.ArgumentParser(description="Run spoken turns through an engine offline and print latency records.")
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--text", action="append", help="what the participant says (repeat for several; cycled)")
    p.add_argument("--wav", default=None)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    texts = args.text or ["What is the capital of France?", "Can you recommend a good book?", "How do I boil an egg?"]
    print(json.dumps(asyncio.run(_measure(args.overrides, texts, args.turns, args.wav)), indent=1))


if __name__ == "__main__":
    main()
