"""Turn the data a run collected into the numbers MLflow stores.

Why separate from the runner: every metric here is computed from what was collected (transcripts, audio,
per-turn timestamps), never from constants, and the same aggregation serves the offline and live modes. A
metric with no data (e.g. no barge-in turn in the script) is left out rather than reported as 0.
"""

from __future__ import annotations

import re
import resource
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

from cvi_lab.lab.scenarios import Expect

# ----------------------------------------------------------------- text normalization and WER
_CONTRACTIONS = {
    "i'm": "i am", "it's": "it is", "that's": "that is", "what's": "what is", "there's": "there is",
    "you're": "you are", "we're": "we are", "they're": "they are", "i've": "i have", "you've": "you have",
    "i'll": "i will", "you'll": "you will", "we'll": "we will", "it'll": "it will", "i'd": "i would",
    "you'd": "you would", "don't": "do not", "doesn't": "does not", "didn't": "did not", "can't": "cannot",
    "won't": "will not", "isn't": "is not", "aren't": "are not", "wasn't": "was not", "let's": "let us",
    "shouldn't": "should not", "couldn't": "could not", "wouldn't": "would not", "haven't": "have not",
    "ok": "okay", "alright": "all right",
}
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
            "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]


def normalize(text: str) -> str:
    """Lowercase, expand common contractions and small numbers, drop punctuation: WER counts words, not style."""
    t = (text or "").lower().replace("\u2019", "'")
    t = re.sub(r"[^\w'\s]", " ", t)
    words = []
    for w in t.split():
        w = w.strip("'")
        w = _CONTRACTIONS.get(w, w)
        if w.isdigit() and int(w) <= 20:
            w = NUMBER_WORDS[int(w)]
        if w:
            words.append(w)
    return " ".join(words)


def wer(references: Iterable[str], hypotheses: Iterable[str]) -> float | None:
    """Corpus WER (total edits / total reference words) after `normalize`; None if no reference words."""
    import jiwer

    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return None
    out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
    n = out.hits + out.substitutions + out.deletions
    return float((out.substitutions + out.deletions + out.insertions) / max(n, 1))


# ----------------------------------------------------------------- per-turn results
@dataclass
class TurnResult:
    """What one scripted turn produced, in engine-neutral terms (the runner fills it from engine records)."""

    script: str
    turn: int
    reference: str  # what the participant said (script text)
    heard: str = ""  # the replica's ASR transcript of it
    replica_text: str = ""  # what the replica meant to say (LLM output sent to TTS)
    replica_spoken_text: str | None = None  # what it said before an interruption, when known
    response_latency_s: float | None = None  # end of participant speech -> first replica audio
    stages: dict[str, float] = field(default_factory=dict)  # e.g. asr_s, llm_ttfb_s, tts_ttfb_s, avatar_ttfb_s
    rtf: dict[str, float] = field(default_factory=dict)  # stage -> compute time / audio time
    spans: list[tuple[str, float, float]] = field(default_factory=list)  # (stage, start, end) s from speech end
    llm_tokens: int = 0
    llm_s: float | None = None  # generation time for llm_tokens
    interrupted: bool = False
    barge_in: bool = False  # the participant talked over the replica in this turn
    barge_in_stop_s: float | None = None  # participant speech start -> replica audio stopped
    lipsync_offset_s: float | None = None
    intelligibility_heard: str | None = None  # ASR of the replica's own audio
    error: str | None = None
    # scenario observations (turn_metrics.observe): what the line expects and what the call did around it
    phenomenon: str = "plain"
    expect: Expect = field(default_factory=Expect)
    user_turns: int = 0  # user turns the engine made of this line (> 1: it was split at a pause)
    replica_started_early: bool = False  # the replica started speaking before the line's speech ended
    replica_interrupted: bool = False  # the engine cut the replica's speech while/just after the line
    end_of_turn_s: float | None = None  # the engine's turn decision after the speech end
    judge: dict[str, float] = field(default_factory=dict)  # rubric scores (judge.py), 1-5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Iterable[float], q: float) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return float(np.percentile(vals, q)) if vals else None


def aggregate(turns: list[TurnResult]) -> dict[str, float]:
    """Run-level metrics from per-turn results. Latencies in milliseconds; WER as a fraction."""
    m: dict[str, float | None] = {}
    lat = [t.response_latency_s * 1000 for t in turns if t.response_latency_s is not None]
    m["response_latency_p50_ms"] = percentile(lat, 50)
    m["response_latency_p95_ms"] = percentile(lat, 95)
    m["response_latency_mean_ms"] = float(np.mean(lat)) if lat else None
    m["turns"] = float(len(turns))
    m["turns_answered"] = float(sum(1 for t in turns if t.replica_text))
    m["turns_failed"] = float(sum(1 for t in turns if t.error))
    for key in sorted({k for t in turns for k in t.stages}):
        vals = [t.stages[key] * 1000 for t in turns if key in t.stages and t.stages[key] is not None]
        m[f"{_ms_name(key)}_mean_ms"] = float(np.mean(vals)) if vals else None
        m[f"{_ms_name(key)}_p50_ms"] = percentile(vals, 50)
    for key in sorted({k for t in turns for k in t.rtf}):
        vals = [t.rtf[key] for t in turns if key in t.rtf and t.rtf[key] is not None]
        m[f"{key}_rtf_mean"] = float(np.mean(vals)) if vals else None
    m["asr_wer"] = wer([t.reference for t in turns], [t.heard for t in turns])
    intel = [t for t in turns if t.intelligibility_heard is not None]
    m["tts_intelligibility_wer"] = wer([_spoken(t) for t in intel], [t.intelligibility_heard for t in intel])
    tokens = sum(t.llm_tokens for t in turns if t.llm_s)
    secs = sum(t.llm_s for t in turns if t.llm_s)
    m["llm_tokens_per_s"] = tokens / secs if secs > 0 else None
    m["llm_completion_tokens_mean"] = float(np.mean([t.llm_tokens for t in turns])) if any(t.llm_tokens for t in turns) else None
    stops = [t.barge_in_stop_s * 1000 for t in turns if t.barge_in and t.barge_in_stop_s is not None]
    m["barge_in_stop_mean_ms"] = float(np.mean(stops)) if stops else None
    m["barge_in_stop_max_ms"] = float(np.max(stops)) if stops else None
    m["barge_in_turns"] = float(sum(1 for t in turns if t.barge_in))
    offs = [t.lipsync_offset_s * 1000 for t in turns if t.lipsync_offset_s is not None]
    m["lipsync_offset_mean_ms"] = float(np.mean(offs)) if offs else None
    m["lipsync_offset_abs_max_ms"] = float(np.max(np.abs(offs))) if offs else None
    from cvi_lab.lab.answer_check import answer_metrics
    from cvi_lab.lab.repetition import repetition_metrics
    from cvi_lab.lab.turn_metrics import conversation_metrics

    m.update(conversation_metrics(turns))
    m.update(repetition_metrics(turns))
    m.update(answer_metrics(turns))
    for key in sorted({k for t in turns for k in t.judge}):
        m[f"judge_{key}_mean"] = float(np.mean([t.judge[key] for t in turns if key in t.judge]))
    return {k: float(v) for k, v in m.items() if v is not None}


def _spoken(t: TurnResult) -> str:
    return t.replica_spoken_text if t.replica_spoken_text is not None else t.replica_text


def _ms_name(key: str) -> str:
    return key[:-2] if key.endswith("_s") else key


# Which metrics are deterministic in offline mode (compared by the reproducibility test); the rest are timing.
QUALITY_METRICS = ("asr_wer", "tts_intelligibility_wer", "turns", "turns_answered", "turns_failed",
                   "llm_completion_tokens_mean", "barge_in_turns")


# ----------------------------------------------------------------- CPU and memory
class ResourceMonitor:
    """Process CPU use (% of one core, averaged over the run) and peak RSS, sampled in a thread."""

    def __init__(self, interval_s: float = 0.25) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self._peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="lab-resources")
        self.result: dict[str, float] = {}

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._peak = max(self._peak, self._proc.memory_info().rss)
            except Exception:  # noqa: BLE001 - sampling must never break a run
                return

    def __enter__(self) -> "ResourceMonitor":
        self._t0, self._cpu0 = time.monotonic(), self._proc.cpu_times()
        self._peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        wall = max(time.monotonic() - self._t0, 1e-9)
        cpu1 = self._proc.cpu_times()
        cpu = (cpu1.user - self._cpu0.user) + (cpu1.system - self._cpu0.system)
        peak = max(self._peak, self._proc.memory_info().rss)
        # ru_maxrss (KiB on Linux) also catches spikes between samples, but covers the whole process life.
        self.result = {
            "cpu_percent_mean": 100.0 * cpu / wall,
            "cpu_seconds": cpu,
            "wall_seconds": wall,
            "peak_rss_mb": peak / 2**20,
            "process_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        }
