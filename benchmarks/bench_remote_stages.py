"""`make bench-remote`: what one hop to a model server adds, per stage. The same stage configs run embedded (in
this process) and behind `cvi-lab model-server` (its own process, on loopback) through asr, tts and llm
`openai_compatible`; each measurement alternates the two, after both are warm.

Measured per stage: ASR, the time to a transcript (jfk.flac, 11 s of real speech, and a 2 s spoken question);
TTS, the time to the first audio and to the whole answer (two sentences, spoken one by one); LLM, the time to
the first token and to the whole answer (24 tokens). Writes benchmarks/results/remote_stages.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np
from hydra.utils import instantiate

from benchmarks.live_call import RESULTS, machine, stats
from cvi_lab.audio import load_audio, resample
from cvi_lab.config import load_group
from cvi_lab.stages.base import ChatMessage, LLMStats

ROOT = Path(__file__).resolve().parents[1]
JFK = ROOT.parent / "shared" / "data" / "jfk.flac"
QUESTION = "What is the weather like in Lisbon in the spring?"
ANSWER = "The weather in Lisbon is sunny and mild in the spring. Bring a light jacket for the evenings."
PROMPT = [ChatMessage("system", "You are a helpful assistant. Answer briefly."),
          ChatMessage("user", "What should I pack for a trip to Lisbon?")]
EMBEDDED = {"asr": "faster_whisper_tiny_en", "tts": "piper", "llm": "ct2_causal"}  # model-server's defaults


def start_model_server() -> tuple[subprocess.Popen, str]:
    """`cvi-lab model-server` on a free loopback port; returns the process and its base URL once it serves."""
    cmd = [sys.executable, "-m", "cvi_lab", "model-server", "model_server.port=0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in proc.stdout:
        print(line, end="", flush=True)
        if " at http://" in line and "serving" in line:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain: a full pipe would stall it
            return proc, line.rsplit(" at ", 1)[1].strip()
    raise RuntimeError(f"the model server exited with {proc.wait()} before serving")


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return (time.perf_counter() - t0) * 1000


async def tts_times(tts) -> tuple[float, float]:
    t0 = time.perf_counter()
    first = None
    async for _ in tts.stream(ANSWER):
        first = first if first is not None else (time.perf_counter() - t0) * 1000
    return first, (time.perf_counter() - t0) * 1000


async def llm_times(llm) -> tuple[float, float]:
    st = LLMStats()
    t0 = time.perf_counter()
    async for _ in llm.stream(PROMPT, max_tokens=24, stats=st):
        pass
    return st.first_token_s * 1000, (time.perf_counter() - t0) * 1000


async def measure(url: str, reps: int) -> dict:
    both = {}
    for group, name in EMBEDDED.items():
        embedded = instantiate(load_group(group, name))
        remote = instantiate(load_group(group, "openai_compatible"), base_url=url, model=name)
        for stage in (embedded, remote):
            await stage.warmup()
        both[group] = {"embedded": embedded, "remote": remote}
    tts = both["tts"]["embedded"]
    spoken = [c async for c in tts.stream(QUESTION)]
    question = resample(np.concatenate([c.samples for c in spoken]), tts.sample_rate, 16_000)
    clips = {"question (2 s)": question}
    if JFK.is_file():
        clips["jfk.flac (11 s)"] = load_audio(JFK)[0]
    raw: dict[str, dict[str, list[float]]] = {}

    def add(key: str, where: str, value: float) -> None:
        raw.setdefault(key, {"embedded": [], "remote": []})[where].append(value)

    for _ in range(reps):
        for where in ("embedded", "remote"):
            for clip, audio in clips.items():
                asr = both["asr"][where]
                add(f"asr: transcript of {clip}", where, await timed(lambda: asr.transcribe(audio)))
            first, total = await tts_times(both["tts"][where])
            add("tts: first audio", where, first)
            add("tts: whole answer (2 sentences)", where, total)
            first, total = await llm_times(both["llm"][where])
            add("llm: first token", where, first)
            add("llm: 24-token answer", where, total)
    for pair in both.values():
        await pair["remote"].aclose()
    out = {}
    for key, values in raw.items():
        e, r = stats(values["embedded"]), stats(values["remote"])
        added = [b - a for a, b in zip(values["embedded"], values["remote"])]
        out[key] = {"embedded": e, "remote": r, "added": stats(added)}
    return out


def markdown(results: dict, reps: int) -> str:
    lines = ["# One hop to a model server: remote vs embedded stages on loopback", "",
             f"- machine: {machine().get('cpu_model', '')}, {os.cpu_count()} cores, no GPU; `cvi-lab model-server` "
             "in its own process on 127.0.0.1; the same configs (tiny.en, Piper joe, SmolLM2 ct2) both ways",
             f"- {reps} alternating repetitions after warm-up; \"added\" = remote - embedded of the same repetition", "",
             "| what | embedded p50 | remote p50 | added p50 | added p95 |", "|---|---|---|---|---|"]
    for key, row in results.items():
        lines.append(f"| {key} | {row['embedded']['p50']:.0f} ms | {row['remote']['p50']:.0f} ms | "
                     f"{row['added']['p50']:+.0f} ms | {row['added']['p95']:+.0f} ms |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_remote_stages", description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=8)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    proc, url = start_model_server()
    try:
        results = asyncio.run(measure(url, args.reps))
    finally:
        proc.terminate()
        proc.wait(30)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "remote_stages.json").write_text(json.dumps({"machine": machine(), "reps": args.reps, "results": results},
                                                       indent=2))
    md = markdown(results, args.reps)
    (out / "remote_stages.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
