"""`make bench-asr-window`: whisper tiny.en on Whisper's full 30 s window vs the window fitted to the utterance
(cvi_lab/stages/asr/fitted_window.py): time per utterance and the words it gets, on the same audio.

Audio: the 24 sentences of the Piper -> tiny.en round trip (tests/stages/test_roundtrip_tts_asr.py, scored
with its normalization), the latency benchmark's 20 questions spoken by espeak-ng, and jfk.flac (real speech;
the three phrases openai/whisper's tests look for). Writes benchmarks/results/asr_window.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import jiwer
import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf

from benchmarks.bench_latency import QUESTIONS
from benchmarks.live_call import RESULTS, machine
from cvi_lab.audio import load_audio, resample
from cvi_lab.config import load_group
from cvi_lab.harness.voice import speak
from tests.stages.test_roundtrip_tts_asr import SENTENCES, normalize

JFK = Path(__file__).resolve().parents[2] / "shared" / "data" / "jfk.flac"
JFK_PHRASES = ("my fellow americans", "your country", "do for you")
VARIANTS = {"full 30 s window": {"fitted_window_pad_s": None}, "fitted window (+5 s)": {}}


async def corpus() -> dict[str, list[tuple[str, np.ndarray]]]:
    tts = instantiate(load_group("tts", "piper"))
    piper = []
    for text in SENTENCES:
        chunks = [c async for c in tts.stream(text)]
        piper.append((text, resample(np.concatenate([c.samples for c in chunks]), tts.sample_rate, 16_000)))
    out = {"piper round trip (24)": piper, "espeak questions (20)": [(q, speak(q, voice="espeak")) for q in QUESTIONS]}
    if JFK.exists():
        out["jfk.flac"] = [(" ".join(JFK_PHRASES), load_audio(JFK)[0].astype(np.float32))]
    return out


async def run() -> dict:
    sets = await corpus()
    results = {}
    for name, over in VARIANTS.items():
        asr = instantiate(OmegaConf.merge(load_group("asr", "faster_whisper_tiny_en"), over))
        await asr.warmup()
        row = {}
        for set_name, items in sets.items():
            times, refs, hyps = [], [], []
            for ref, audio in items:
                t0 = time.perf_counter()
                text = (await asr.transcribe(audio, 16_000, "en")).text
                times.append((time.perf_counter() - t0) * 1000)
                refs.append(normalize(ref))
                hyps.append(normalize(text))
            entry = {"p50_ms": round(statistics.median(times), 1), "mean_ms": round(float(np.mean(times)), 1)}
            if set_name == "jfk.flac":
                entry.update(phrases=sum(p in hyps[0] for p in JFK_PHRASES), transcript=hyps[0])
            else:
                entry["wer"] = round(jiwer.wer(refs, hyps), 4)
            row[set_name] = entry
        results[name] = row
    return results


def markdown(results: dict) -> str:
    sets = list(next(iter(results.values())))
    lines = ["# whisper tiny.en: full vs fitted encoder window", "", f"- machine: {machine().get('cpu_model', '')}, "
             "2 threads, int8, greedy; the same audio for both; WER after the round-trip test's normalization", "",
             "| window | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for name, row in results.items():
        cells = []
        for s in sets:
            e = row[s]
            quality = f"{e['phrases']}/3 phrases" if "phrases" in e else f"WER {e['wer']:.1%}"
            cells.append(f"{quality}, p50 {e['p50_ms']:.0f} ms")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_asr_window", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    results = asyncio.run(run())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "asr_window.json").write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    md = markdown(results)
    (out / "asr_window.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
