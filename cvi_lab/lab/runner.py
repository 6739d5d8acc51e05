"""Drive scripted participants through calls and collect what happened, in two modes.

- offline: the engine's offline driver (`cvi_lab/engine/offline.py`) is fed the participant audio directly,
  faster than real time; latency comes from the engine's own per-turn records.
- live: the API server runs in-process on a free loopback port and `ParticipantClient` joins each call over
  real WebRTC, speaking in real time; latency is measured at the participant (last voiced 10 ms sent → first
  voiced 10 ms received), as SPEC §4 defines it.

Both return the same `RunResult`, so metrics, MLflow logging and plots do not care which mode ran. Quality
checks that need models of their own (TTS intelligibility, lip-sync) run after the calls, off the latency path.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cvi_lab.lab.dataset import SAMPLE_RATE, Dataset
from cvi_lab.lab.metrics import TurnResult

log = logging.getLogger("cvi_lab.lab")
MIN_LIPSYNC_CORR = 0.3  # below this the cross-correlation peak says nothing about the offset


class ModeUnavailable(NotImplementedError):
    """A mode's building blocks (engine offline driver, server wiring) are not installed."""


@dataclass
class RunResult:
    turns: list[TurnResult] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    extra_metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)
    # (script, turn) -> (float32 pcm, rate): the replica's audio for that turn (intelligibility)
    replica_audio: dict[tuple[str, int], tuple[np.ndarray, int]] = field(default_factory=dict, repr=False)
    # (images, audio per frame, fps) per call with collected frames (lip-sync)
    frames: list[tuple[list[np.ndarray], list[np.ndarray], float]] = field(default_factory=list, repr=False)


def run(cfg: Any, data: Dataset, out_dir: Path) -> RunResult:
    """Run every script of `data` as one call each, then the post-call quality checks."""
    if cfg.mode == "offline":
        from cvi_lab.lab import offline_mode as mode
    elif cfg.mode == "live":
        from cvi_lab.lab import live_mode as mode
    else:  # pragma: no cover - checked by the app
        raise ValueError(f"mode={cfg.mode!r}; use offline or live")
    result = asyncio.run(mode.run(cfg, data, out_dir))
    if cfg.metrics.intelligibility:
        asyncio.run(add_intelligibility(cfg, result))
    if cfg.metrics.lipsync:
        add_lipsync(result)
    if cfg.metrics.judge:
        from cvi_lab.lab.judge import add_judge

        asyncio.run(add_judge(cfg, result.turns, result.extra_metrics))
    return result


def participant_audio(cfg: Any, data: Dataset, utt) -> np.ndarray:
    """The utterance with the configured lead and trail silence, float32 16 kHz."""
    lead = np.zeros(int(float(cfg.participant.lead_silence_s) * SAMPLE_RATE), np.float32)
    trail = np.zeros(int(float(cfg.participant.trail_silence_s) * SAMPLE_RATE), np.float32)
    return np.concatenate([lead, data.audio(utt), trail])


def stage_layers(choices: dict[str, str], participant: Any = None) -> dict[str, dict]:
    """Persona layers that pin the swept ASR/TTS choice: the engine's language route would otherwise pick
    its own per-language ASR/TTS (languages/default.yaml), silently ignoring `asr=...`/`tts=...` overrides.
    With `participant` (the config node), its sensitivity words become the persona's stt layer words, so a
    sweep sets them as a customer would (participant_pause_sensitivity=high)."""
    layers: dict[str, dict] = {}
    if choices.get("asr"):
        layers["stt"] = {"stt_engine": choices["asr"]}
    if choices.get("tts"):
        layers["tts"] = {"tts_engine": choices["tts"]}
    for key in ("pause_sensitivity", "interrupt_sensitivity"):
        if participant is not None and participant[key] is not None:
            layers.setdefault("stt", {})[f"participant_{key}"] = str(participant[key])
    return layers


def collapse_digital_silence(pcm: Any, rate: int, keep_s: float = 0.2, min_run_s: float = 0.002) -> Any:
    """The replica's speech as the TTS made it, whatever the timing: every run of exact-zero samples at least
    `min_run_s` long becomes exactly `keep_s`, and such runs at either end are dropped.

    Why (the cause of two identical offline runs hearing the replica differently): the avatar plays queued
    TTS audio frame by frame and pads with zeros whenever its queue is empty, so how much digital silence
    sits before, between and inside the clauses depends on how fast the LLM and TTS ran that time (a partial
    frame, plus a whole idle frame per 40 ms of waiting). Whisper heard those different gaps as different
    audio and now and then spelled a word differently ("dunassa"/"denassa"). Speech itself never holds 2 ms
    of exact zeros, so normalising every such run leaves only what the TTS said: same config + seed -> the
    same samples -> the same intelligibility transcript."""
    import numpy as np

    x = np.asarray(pcm, dtype=np.float32)
    if len(x) == 0:
        return x
    zero = x == 0.0
    edges = np.flatnonzero(np.diff(zero.astype(np.int8))) + 1
    bounds = np.concatenate(([0], edges, [len(x)]))
    keep, min_run = int(keep_s * rate), max(1, int(min_run_s * rate))
    gap = np.zeros(keep, np.float32)
    parts = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if not zero[a] or b - a < min_run:
            parts.append(x[a:b])
        elif 0 < a and b < len(x):  # a gap inside the speech, at a fixed length; none at the ends
            parts.append(gap)
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


async def add_intelligibility(cfg: Any, result: RunResult) -> None:
    """ASR of the replica's own audio (a fixed judge ASR, `metrics.intelligibility_asr`, so TTS numbers stay
    comparable across ASR sweeps), WER against what the replica meant to say (done in metrics.aggregate)."""
    todo = [t for t in result.turns if (t.script, t.turn) in result.replica_audio and (t.replica_spoken_text or t.replica_text)]
    if not todo:
        return
    asr = await _judge_asr(cfg)
    from cvi_lab.audio import resample
    from tqdm import tqdm

    for t in tqdm(todo, desc="intelligibility (ASR of replica audio)", unit="turn"):
        pcm, rate = result.replica_audio[(t.script, t.turn)]
        pcm16 = resample(collapse_digital_silence(pcm, rate), rate, SAMPLE_RATE)
        if len(pcm16) < SAMPLE_RATE // 10:
            t.intelligibility_heard = ""
            continue
        lang = (list(asr.languages) or ["en"])[0]  # ASR declares `languages`
        tr = await asr.transcribe(pcm16, SAMPLE_RATE, None if lang == "*" else "en")
        t.intelligibility_heard = tr.text


async def _judge_asr(cfg: Any):
    from hydra.utils import instantiate

    from cvi_lab.config import load_group, recorded

    name = cfg.metrics.get("intelligibility_asr")
    node = cfg.asr if not name else load_group("asr", str(name), list(recorded(cfg).searchpath))
    asr = instantiate(node)
    await asr.warmup()
    return asr


def add_lipsync(result: RunResult) -> None:
    """Lip-sync offset per call with collected frames, from the frames and their audio only."""
    from cvi_lab.metrics.lipsync import lipsync_report

    offsets, corrs = [], []
    for images, audio, fps in result.frames:
        if len(images) < 3 * fps:
            continue
        try:
            rep = lipsync_report(images, audio, fps)
        except ValueError as exc:  # no face found, silent clip: not measurable, say so
            log.warning("lip-sync not measurable: %s", exc)
            continue
        corrs.append(rep.peak_corr)
        if rep.peak_corr >= MIN_LIPSYNC_CORR:
            offsets.append(rep.offset_ms)
        else:
            log.warning("lip-sync offset not reported: mouth/audio correlation %.2f < %.2f (no reliable peak)",
                        rep.peak_corr, MIN_LIPSYNC_CORR)
    if corrs:
        result.extra_metrics["lipsync_peak_corr_mean"] = float(np.mean(corrs))
    if offsets:
        result.extra_metrics["lipsync_offset_mean_ms"] = float(np.mean(offsets))
        result.extra_metrics["lipsync_offset_abs_max_ms"] = float(np.max(np.abs(offsets)))


def apply_engine_record(t: TurnResult, m: dict) -> None:
    """Fill a turn's latency, stage times, spans and LLM counts from the engine's record
    (`TurnLatency.as_metrics()`: marks in ms after the participant's speech end, plus extras)."""
    def s(key: str) -> float | None:
        v = m.get(key)
        return None if v is None else float(v) / 1000.0

    if m.get("response_latency_ms") is not None:
        t.response_latency_s = s("response_latency_ms")
    vad, decision, asr_final = s("vad_end_ms"), s("turn_decision_ms"), s("asr_final_ms")
    llm_first, clause, tts_first, frame = s("llm_first_token_ms"), s("first_clause_ms"), s("tts_first_audio_ms"), s("first_frame_sent_ms")
    asr_s = m.get("asr_s")
    spans = []
    if vad is not None:
        spans.append(("vad", 0.0, vad))
    if asr_final is not None and asr_s is not None:
        spans.append(("asr", asr_final - float(asr_s), asr_final))
    if vad is not None and decision is not None:
        spans.append(("turn", vad, decision))
    llm_start = max(x for x in (decision, asr_final, 0.0) if x is not None)
    for name, a, b in (("llm", llm_start, llm_first), ("chunker", llm_first, clause), ("tts", clause, tts_first),
                       ("avatar", tts_first, frame)):
        if a is not None and b is not None:
            spans.append((name, a, b))
    t.spans = spans
    t.end_of_turn_s = decision
    stages = {"vad_delay_s": s("vad_delay_ms"), "asr_s": None if asr_s is None else float(asr_s),
              "turn_s": (decision - vad) if decision is not None and vad is not None else None,
              "llm_ttfb_s": s("llm_ttft_ms"),
              "tts_ttfb_s": (tts_first - clause) if tts_first is not None and clause is not None else None,
              "avatar_s": s("avatar_ms")}
    t.stages = {k: v for k, v in stages.items() if v is not None}
    if asr_s is not None and m.get("user_audio_s"):
        t.rtf["asr"] = float(asr_s) / float(m["user_audio_s"])
    if m.get("tts_s") is not None and m.get("tts_audio_s"):
        t.rtf["tts"] = float(m["tts_s"]) / float(m["tts_audio_s"])
    t.llm_tokens = int(m.get("completion_tokens") or 0)
    if m.get("llm_s"):
        t.llm_s = float(m["llm_s"])
    t.interrupted = bool(m.get("interrupted"))
    if m.get("error"):
        t.error = str(m["error"])
