"""Stage benchmarks: real-time factor, first-output latency and peak memory of every stage backend.

`make bench-stages` (= `python -m benchmarks.bench_stages`) instantiates every `cvi_lab/conf/<stage>/*.yaml` of
vad, turn, asr, llm and tts, each in a FRESH subprocess so that peak RSS is that backend's own, runs it on
real speech (`../shared/data/jfk.flac`, else Piper-synthesized speech) and writes
`benchmarks/results/stages.json` and `benchmarks/results/stages.md`. Backends that need weights or a
server that is not here are listed as skipped with the reason. Not a test: numbers depend on the machine
and its load (recorded in the JSON).

Measures (median of `--repeats` runs after warmup):
- vad:  push 20 ms frames through the whole clip: ms per frame (per call), RTF = processing / audio time.
- turn: one predict on the user's turn (last 8 s): ms per call; RTF over the audio it looked at.
- asr:  one transcribe of the clip: first output = the final transcript (no streaming partials); RTF.
- llm:  one short answer: time to first token, tokens/s.
- tts:  one two-sentence reply: time to first audio chunk; RTF = synthesis time / audio duration.

Usage: python -m benchmarks.bench_stages [--stages vad,asr] [--only asr/faster_whisper_base] [--repeats 3]
(a partial run updates its rows in the existing results and keeps the others)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cvi_lab.config import group_options
from cvi_lab.domain.conversation import DEFAULT_GREETING

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STAGES = ("vad", "turn", "asr", "llm", "tts")
JFK = ROOT.parent / "shared" / "data" / "jfk.flac"
JFK_PHRASES = ("my fellow americans", "your country", "do for you")
LLM_PROMPT = "In one sentence: why is the sky blue?"
TTS_TEXT = DEFAULT_GREETING  # what every call says first


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def speech_clip() -> tuple[np.ndarray, str]:
    """16 kHz mono real speech: jfk.flac if present, else Piper-synthesized."""
    from cvi_lab.audio import load_audio

    if JFK.exists():
        return load_audio(JFK, 16_000)[0], "jfk.flac (11 s, real voice)"
    from piper import PiperVoice, SynthesisConfig

    from cvi_lab import assets
    from cvi_lab.audio import resample

    voice = PiperVoice.load(str(assets.locate("piper_joe_onnx")), str(assets.locate("piper_joe_json")))
    text = "And so, my fellow Americans: ask not what your country can do for you, ask what you can do for your country."
    parts = [resample(c.audio_float_array, c.sample_rate, 16_000) for c in voice.synthesize(text, SynthesisConfig(noise_scale=0, noise_w_scale=0))]
    return (0.5 * np.concatenate(parts)).astype(np.float32), "piper-synthesized (jfk.flac absent)"


def _norm(text: str) -> str:
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


# ---------------------------------------------------------------- one backend (child process)
async def bench_vad(stage, audio, repeats):
    frame = 320
    runs, per_frame = [], []
    for _ in range(repeats):
        stage.reset()
        costs, events = [], []
        for i in range(0, len(audio) - frame + 1, frame):
            t = time.perf_counter()
            events += stage.push(audio[i : i + frame])
            costs.append(time.perf_counter() - t)
        runs.append(sum(costs))
        per_frame.append(statistics.median(costs))
    dur = len(audio) / 16_000
    return {
        "rtf": statistics.median(runs) / dur,
        "per_call_ms": statistics.median(per_frame) * 1000,
        "per_call_p95_ms": float(np.percentile(costs, 95) * 1000),
        "first_output_ms": statistics.median(per_frame) * 1000,
        "detail": f"{sum(e.kind == 'speech_start' for e in events)} speech segments; per call = one 20 ms frame",
    }


async def bench_turn(stage, audio, repeats):
    turn = audio[: 16_000 * 8]
    times = []
    for _ in range(max(5, repeats * 3)):
        t = time.perf_counter()
        p = await stage.predict(turn, 16_000, silence_s=0.3)
        times.append(time.perf_counter() - t)
    ms = statistics.median(times) * 1000
    return {"rtf": ms / 1000 / (len(turn) / 16_000), "per_call_ms": ms, "first_output_ms": ms,
            "detail": f"per call = one prediction on {len(turn) / 16_000:.1f} s of turn audio (p={p:.2f})"}  # fmt: skip


async def bench_asr(stage, audio, repeats):
    times, text = [], ""
    for _ in range(repeats):
        t = time.perf_counter()
        tr = await stage.transcribe(audio, 16_000)
        times.append(time.perf_counter() - t)
        text = tr.text
    short = audio[: 16_000 * 3]
    t = time.perf_counter()
    await stage.transcribe(short, 16_000)
    short_ms = (time.perf_counter() - t) * 1000
    s = statistics.median(times)
    hits = sum(p in _norm(text) for p in JFK_PHRASES)
    return {"rtf": s / (len(audio) / 16_000), "per_call_ms": s * 1000, "first_output_ms": s * 1000,
            "short_utterance_ms": short_ms, "transcript": text, "language": tr.language,
            "detail": f"final transcript of {len(audio) / 16_000:.1f} s; 3 s utterance: {short_ms:.0f} ms; "
                      f"jfk phrases found {hits}/3"}  # fmt: skip


async def bench_llm(stage, audio, repeats):
    from cvi_lab.stages.base import ChatMessage, LLMStats

    msgs = [ChatMessage("system", "You are a friendly assistant on a video call. Answer briefly."), ChatMessage("user", LLM_PROMPT)]
    ttfts, totals, ntoks, text = [], [], [], ""
    for _ in range(repeats):
        stats = LLMStats()
        t = time.perf_counter()
        first, pieces = None, []
        async for piece in stage.stream(msgs, max_tokens=48, stats=stats):
            first = first or time.perf_counter() - t
            pieces.append(piece)
        totals.append(time.perf_counter() - t)
        ttfts.append(first or totals[-1])
        ntoks.append(stats.completion_tokens or len(pieces))
        text = "".join(pieces)
    tps = statistics.median(n / max(tt - f, 1e-9) for n, tt, f in zip(ntoks, totals, ttfts))
    return {"rtf": None, "per_call_ms": statistics.median(totals) * 1000, "first_output_ms": statistics.median(ttfts) * 1000,
            "tokens_per_s": tps, "transcript": text[:200],
            "detail": f"time to first token; {statistics.median(ntoks)} tokens at {tps:.1f} tok/s"}  # fmt: skip


async def bench_tts(stage, audio, repeats):
    ttfas, totals, durs = [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        first, dur = None, 0.0
        async for chunk in stage.stream(TTS_TEXT):
            first = first or time.perf_counter() - t
            dur += len(chunk.samples) / chunk.sample_rate
        totals.append(time.perf_counter() - t)
        ttfas.append(first or totals[-1])
        durs.append(dur)
    total, dur = statistics.median(totals), statistics.median(durs)
    return {"rtf": total / dur if dur else None, "per_call_ms": total * 1000, "first_output_ms": statistics.median(ttfas) * 1000,
            "detail": f"time to first audio chunk; {dur:.1f} s of audio at {stage.sample_rate} Hz"}  # fmt: skip


BENCH = {"vad": bench_vad, "turn": bench_turn, "asr": bench_asr, "llm": bench_llm, "tts": bench_tts}


async def run_child(stage_name: str, conf_name: str, repeats: int) -> dict:
    from hydra.utils import instantiate
    from cvi_lab.config import load_group

    out = {"stage": stage_name, "backend": conf_name, "status": "ok"}
    audio, source = speech_clip()
    out["audio"] = source
    out["rss_before_mb"] = peak_rss_mb()
    try:
        cfg = load_group(stage_name, conf_name)
        t = time.perf_counter()
        stage = instantiate(cfg)
        await stage.warmup()
        out["load_s"] = time.perf_counter() - t
    except Exception as exc:  # a backend that needs weights / a server that is not here
        out.update(status="skipped", note=f"{type(exc).__name__}: {str(exc)[:300]}")
        return out
    out.update(await BENCH[stage_name](stage, audio, repeats))
    out["peak_rss_mb"] = peak_rss_mb()
    out["load_avg_1m"] = os.getloadavg()[0]  # the machine may be shared: read numbers with this in mind
    return out


# ---------------------------------------------------------------- driver
def machine() -> dict:
    import psutil

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "load_avg_at_start": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}  # fmt: skip


def configs(stages, only) -> list[tuple[str, str]]:
    found = []
    for stage in stages:
        for name in group_options(stage):
            if not only or f"{stage}/{name}" in only:
                found.append((stage, name))
    return found


def run_one(stage: str, name: str, repeats: int, timeout: int) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "benchmarks.bench_stages", "--child", stage, name, "--repeats", str(repeats)]
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"stage": stage, "backend": name, "status": "skipped", "note": f"timed out after {timeout} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"stage": stage, "backend": name, "status": "failed", "note": (p.stderr or p.stdout).strip()[-400:]}


def fmt(v, spec=".0f"):
    return "–" if v is None else format(v, spec)


def markdown(results: list[dict], info: dict) -> str:
    lines = [
        "# Stage benchmarks",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB; Python {info['python']}; "
        f"load average at start {', '.join(f'{x:.1f}' for x in info['load_avg_at_start'])} (shared machine: "
        f"numbers are upper bounds); {info['date']}. Regenerate with `make bench-stages`.",
        "",
        "RTF = processing time / audio time (lower is faster; < 1 is faster than real time). First output: VAD = one "
        "20 ms frame, turn = one prediction, ASR = final transcript of the clip, LLM = first token, TTS = first audio "
        "chunk. Peak RSS is the whole benchmark process (Python + libraries + model), one fresh process per backend.",
        "",
        "| stage | backend | RTF | first output (ms) | per call (ms) | load + warmup (s) | peak RSS (MB) | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['stage']} | {r['backend']} | – | – | – | – | – | {r['status']}: {r.get('note', '')[:160]} |")
            continue
        load = f"; load avg {r['load_avg_1m']:.1f}" if "load_avg_1m" in r else ""
        rtf = fmt(r.get("rtf"), ".4f" if (r.get("rtf") or 1) < 0.01 else ".3f")
        per_call = fmt(r["per_call_ms"], ".3f" if r["per_call_ms"] < 1 else ".0f")
        first = fmt(r["first_output_ms"], ".3f" if r["first_output_ms"] < 1 else ".0f")
        lines.append(
            f"| {r['stage']} | {r['backend']} | {rtf} | {first} | {per_call} | {fmt(r.get('load_s'), '.2f')} | "
            f"{fmt(r.get('peak_rss_mb'))} | {r.get('detail', '')}{load} |"
        )
    return "\n".join(lines) + "\n"


def merge(path: Path, fresh: list[dict]) -> list[dict]:
    """A partial run (--stages / --only) updates its rows in the existing results and keeps the others."""
    try:
        old = json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError):
        return fresh
    rows = {(r["stage"], r["backend"]): r for r in old}
    rows.update({(r["stage"], r["backend"]): r for r in fresh})
    return sorted(rows.values(), key=lambda r: (STAGES.index(r["stage"]) if r["stage"] in STAGES else 99, r["backend"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--only", default="", help="comma list of stage/name, e.g. asr/faster_whisper_base")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per backend")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--child", nargs=2, metavar=("STAGE", "NAME"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(run_child(*args.child, repeats=args.repeats)), default=float))
        return 0
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    info = machine()
    results = []
    for stage, name in configs([s.strip() for s in args.stages.split(",") if s.strip()], only):
        print(f"... {stage}/{name}", file=sys.stderr, flush=True)
        results.append(run_one(stage, name, args.repeats, args.timeout))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = merge(out / "stages.json", results) if (only or args.stages != ",".join(STAGES)) else results
    (out / "stages.json").write_text(json.dumps({"machine": info, "results": results}, indent=2, default=float) + "\n")
    table = markdown(results, info)
    (out / "stages.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
