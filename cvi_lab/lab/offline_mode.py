"""Offline mode: the real engine (real models) fed the participant's audio by `cvi_lab.engine.offline`.

Why: no WebRTC, no real-time microphone (frames are fed `participant.speed` times faster than real time;
the replica's own frames stay paced by the avatar), so quality metrics are reproducible: the same config
and seed give the same transcripts. Latency here is the driver's: from the end of the participant's speech
to the first audible replica frame leaving the engine, with the engine's per-stage marks as detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cvi_lab.lab.dataset import Dataset, Script
from cvi_lab.lab.metrics import TurnResult
from cvi_lab.lab.runner import RunResult, apply_engine_record, participant_audio, stage_layers

log = logging.getLogger("cvi_lab.lab")
AUDIBLE_DBFS = -45.0
VIDEO_MAX_S = 40.0


@runtime_checkable
class CountsSamples(Protocol):
    """A VAD that tells how many samples it was fed (Silero, which scores fixed windows); others need no aligning."""

    @property
    def samples_seen(self) -> int: ...


class ReplicaTooSlow(RuntimeError):
    """The replica had not finished answering within `participant.max_reply_s`: the run would not be repeatable."""


ALIGN_SAMPLES = 2560  # lcm(320-sample mic frames, 512-sample Silero windows)


async def run(cfg: Any, data: Dataset, out_dir: Path) -> RunResult:
    from tqdm import tqdm

    from cvi_lab.engine.stage_pool import StagePool
    from cvi_lab.lab.app import hydra_context

    choices = hydra_context().get("choices", {})
    pool = StagePool()
    result = RunResult()
    bar = tqdm(total=len(data.utterances), desc="offline turns", unit="turn")
    for i, script in enumerate(data.scripts):
        record = i == 0 and (cfg.metrics.sample_video or cfg.metrics.lipsync)
        await _call(cfg, data, script, pool, choices, result, out_dir, record, bar)
    bar.close()
    await pool.aclose()
    return result


def _segments(cfg: Any, data: Dataset, script: Script) -> list[list]:
    """The script as driver steps, cut before each utterance so its start can be aligned (see `_align`)."""
    from cvi_lab.engine import offline as O

    max_reply = float(cfg.participant.max_reply_s)
    # the greeting is spoken on join and cannot be interrupted: wait it out (not a measured turn)
    segments: list[list] = [[O.Join("participant"), O.WaitQuiet(quiet_s=0.6, timeout=max_reply)]]
    utts = script.utterances
    for i, utt in enumerate(utts):
        seg: list = [O.Say(participant_audio(cfg, data, utt), label=utt.uid)]
        nxt = utts[i + 1] if i + 1 < len(utts) else None
        if nxt is not None and nxt.barge_in_after_s is not None:
            seg += [O.WaitFor("conversation.replica.started_speaking", timeout=max_reply), O.Pause(nxt.barge_in_after_s)]
        else:
            seg.append(O.WaitQuiet(quiet_s=0.8, timeout=max_reply))
        segments.append(seg)
    segments.append([O.Leave("participant")])
    return segments


def _align(engine) -> list:
    """Silence so the next utterance starts at a multiple of ALIGN_SAMPLES fed samples.

    Why: waiting for the replica feeds a timing-dependent amount of silence; a VAD scoring fixed windows
    (Silero: 512 samples, fed 320 at a time) would then cut the same speech at slightly different samples,
    and the ASR could hear it differently. Aligned, the same config and seed give the same transcripts."""
    from cvi_lab.engine import offline as O

    if not isinstance(engine.stages.vad, CountsSamples):
        return []
    seen = engine.stages.vad.samples_seen
    frame = int(O.FRAME_S * O.MIC_RATE)
    if seen % frame:
        return []
    frames = (-(seen // frame)) % (ALIGN_SAMPLES // frame)
    return [O.Pause(frames * O.FRAME_S)] if frames else []


async def _drive(engine, segments: list[list], speed: float):
    """Run the segments one after another on the engine; one merged result on one time base."""
    import time

    from cvi_lab.engine import offline as O

    merged = O.OfflineResult()
    t_first = None
    for seg in segments:
        steps = (_align(engine) if isinstance(seg[0], O.Say) else []) + seg
        base = time.monotonic()
        t_first = base if t_first is None else t_first
        part = await O.run_script(engine, steps, speed=speed)
        if isinstance(seg[-1], O.WaitQuiet) and not engine.idle:
            # Why an error: the driver's WaitQuiet gives up at its timeout and the script goes on, so the next
            # utterance would talk over a replica still answering (seen on a starved 2-core machine: one of two
            # identical runs had its answer "interrupted" at 90 s, a shorter history, different later turns).
            # A run whose outcome depends on how loaded the machine was must fail, not differ.
            pending = "a participant turn still being decided" if engine.listener.turn is not None else "speech playing"
            raise ReplicaTooSlow(f"the engine was not done {seg[-1].timeout:.0f} s after the participant's turn "
                                 f"(participant.max_reply_s): {pending}, {len(part.frame_times)} replica frames in "
                                 f"{part.wall_s:.0f} s (real time: {engine.stages.avatar.fps}/s); the machine is "
                                 "too loaded for this run, or raise participant.max_reply_s")
        off = base - t_first
        merged.events += [{**e, "_t": e["_t"] + off} for e in part.events]
        merged.frame_times += [t + off for t in part.frame_times]
        merged.frame_speaking += part.frame_speaking
        merged.frame_audio += part.frame_audio
        merged.audio_rate = part.audio_rate or merged.audio_rate
        merged.says += [{**sd, "start": sd["start"] + off, "end": sd["end"] + off, "speech_end": sd["speech_end"] + off}
                        for sd in part.says]
        merged.latencies = part.latencies
        merged.loop_lag_max_ms = max(merged.loop_lag_max_ms, part.loop_lag_max_ms)
        merged.wall_s = off + part.wall_s
    return merged


async def _call(cfg: Any, data: Dataset, script: Script, pool, choices: dict, result: RunResult,
                out_dir: Path, record: bool, bar) -> None:
    from cvi_lab.domain.persona import DEFAULT_PERSONA
    from cvi_lab.engine.engine import ConversationSpec
    from cvi_lab.engine.factory import create_engine

    spec = ConversationSpec(conversation_id=f"lab-{script.id}", system_prompt=DEFAULT_PERSONA.get("system_prompt") or "",
                            persona_context=DEFAULT_PERSONA.get("context") or "",
                            conversational_context=script.context or "")
    engine = await create_engine(cfg, spec, layers=stage_layers(choices, cfg.participant), pool=pool, seed=int(cfg.seed),
                                 language=script.language or str(cfg.participant.language))
    images: list[np.ndarray] = []
    frame_audio: list[np.ndarray] = []
    fps = float(engine.stages.avatar.fps)

    async def grab() -> None:
        async for frame in engine.frames():
            if len(images) < VIDEO_MAX_S * fps:
                images.append(frame.image[::2, ::2].copy())
                frame_audio.append(frame.audio)

    await engine.start()
    grabber = asyncio.ensure_future(grab()) if record else None
    try:
        res = await _drive(engine, _segments(cfg, data, script), float(cfg.participant.speed))
    finally:
        await engine.stop("end_conversation_endpoint_hit")
        if grabber is not None:
            grabber.cancel()
            with contextlib.suppress(BaseException):
                await grabber
    bar.update(len(script.utterances))
    result.events += [{"script": script.id, **e} for e in res.events]
    result.extra_metrics["loop_lag_max_ms"] = max(result.extra_metrics.get("loop_lag_max_ms", 0.0), res.loop_lag_max_ms)
    _collect(script, res, result, float(cfg.participant.lead_silence_s) / float(cfg.participant.speed))
    if script is data.scripts[0] and cfg.metrics.turn_views:  # per-turn pictures of the first call
        from cvi_lab.lab.turn_view import call_views

        fed = {u.uid: participant_audio(cfg, data, u) for u in script.utterances}
        result.artifacts += call_views(result.turns[-len(script.utterances):], res, fed, float(cfg.participant.speed),
                                       out_dir, int(cfg.metrics.turn_views))
    if record and images:
        rate = res.audio_rate or 22_050
        result.frames.append((images, frame_audio, fps))
        if cfg.metrics.sample_video:
            from cvi_lab.lab.video import write_call_video
            from cvi_lab.media import VideoFrame

            frames = [VideoFrame(img, i / fps, a, rate) for i, (img, a) in enumerate(zip(images, frame_audio))]
            path = write_call_video(frames, out_dir / f"call_{script.id}.mp4", fps=int(fps))
            if path:
                result.artifacts.append(path)


def _collect(script: Script, res, result: RunResult, lead_s: float) -> None:
    """Per-utterance results: user/replica utterance events matched to each `Say` by arrival time."""
    from cvi_lab.audio import rms_dbfs
    from cvi_lab.lab.turn_metrics import cut_after, drop_untimed_latency, observe, still_speaking

    says = {s["label"]: s for s in res.says}
    latencies = dict(zip((s["label"] for s in res.says), res.response_latencies()))
    records = {m.get("turn_idx"): m for m in res.latencies}
    utts = script.utterances
    audible = [(t, rms_dbfs(a) > AUDIBLE_DBFS if len(a) else False) for t, a in zip(res.frame_times, res.frame_audio)]
    audible_at = [t for t, loud in audible if loud]
    for i, utt in enumerate(utts):
        t = TurnResult(script.id, utt.turn, utt.text)
        say = says.get(utt.uid)
        if say is None:
            t.error = "not spoken (the script stopped early)"
            result.turns.append(t)
            continue
        nxt = says.get(utts[i + 1].uid) if i + 1 < len(utts) else None
        end = nxt["start"] if nxt else float("inf")
        users = [e for e in res.events if e["event_type"] == "conversation.utterance"
                 and e["properties"].get("role") == "user" and say["start"] <= e["_t"] < end]
        turn_ids = [e.get("turn_idx") for e in users]
        t.heard = " ".join(e["properties"].get("speech", "") for e in users)
        replies = [e for e in res.events if e["event_type"] == "conversation.utterance"
                   and e["properties"].get("role") == "replica" and e.get("turn_idx") in turn_ids]
        t.replica_text = " ".join(e["properties"].get("speech", "") for e in replies)
        for tid in turn_ids:  # the record of the committed turn (the last one if VAD split it)
            if tid in records:
                apply_engine_record(t, records[tid])
        heard_at = say["speech_end"] + latencies[utt.uid] if latencies.get(utt.uid) is not None else None
        timed = heard_at is not None and heard_at < end and not still_speaking(audible_at, say["speech_end"])
        # as the participant hears it (never the engine's own figure, nor the next line's answer)
        t.response_latency_s = latencies[utt.uid] if timed else None
        if not users and utt.expect.take_turn:
            t.error = t.error or "the replica did not take this turn"
        observe(t, utt, say["start"] + lead_s, say["speech_end"], end, res.events, len(users))
        if utt.barge_in_after_s is not None:
            t.barge_in = True
            start = say["start"] + lead_s
            t.barge_in_stop_s = _stop_after(audible, start)
            if t.barge_in_stop_s is None and t.replica_interrupted:  # it was quiet between clauses: the cut
                t.barge_in_stop_s = cut_after(res.events, start, say["speech_end"], end)
        drop_untimed_latency(t)
        if t.replica_text and not t.interrupted and latencies.get(utt.uid) is not None:
            pcm = _spoken_audio(res, say["speech_end"], end)
            if len(pcm):
                result.replica_audio[(script.id, utt.turn)] = (pcm, res.audio_rate)
        result.turns.append(t)


def _spoken_audio(res, start: float, end: float) -> np.ndarray:
    """The replica's answer between `start` and `end`: the frames that carried TTS audio, joined.

    Why by the avatar's own `speaking` flag: cutting by arrival time around the first and last loud frame
    took in one frame more or less of the quiet onset and decay depending on a few ms of pacing jitter, so
    the judge ASR heard different audio from identical runs. The replica is silent at both bounds (the
    driver waits for quiet before the next utterance), so the flag alone says which frames are the answer."""
    parts = [a for t, a, speaking in zip(res.frame_times, res.frame_audio, res.frame_speaking)
             if speaking and start <= t < end]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _stop_after(audible: list[tuple[float, bool]], start: float, quiet_s: float = 0.3) -> float | None:
    """Seconds from `start` (participant begins talking over the replica) to the replica's audio stopping
    for good (`quiet_s` of inaudible frames); None if the replica was not speaking then, or had gone quiet
    at `start` and stayed so (its audio then says nothing of when it was stopped)."""
    speaking_then = any(a for t, a in audible if start - 0.2 <= t < start + 0.1)
    if not speaking_then:
        return None
    last_loud = None
    for t, loud in audible:
        if t < start:
            continue
        if loud:
            last_loud = t
        elif last_loud is not None and t - last_loud >= quiet_s:
            return last_loud - start
        elif last_loud is None and t - start >= quiet_s:
            break
    return None
