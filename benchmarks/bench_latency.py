"""`make bench-latency`: response latency of the live pipeline, measured where SPEC §4 defines it.

The server runs in-process with the embedded defaults (cvi_lab/conf/serve.yaml: silero VAD, smart-turn v3, whisper
tiny.en, SmolLM2, piper, portrait avatar), one participant client joins over loopback WebRTC and holds 20
scripted turns (short varied questions, spoken by espeak-ng: a different voice from the replica's), waiting
for each answer to finish before the next. Per turn: the client-measured response latency (end of our speech →
first voiced received sample of the reply) and the engine's stored per-turn timestamps. Writes p50/p95/mean per
figure to benchmarks/results/latency.json and a Markdown table to benchmarks/results/latency.md.

    python -m benchmarks.bench_latency [--voice espeak|piper] [--turns 20] [hydra overrides ...]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import numpy as np

from benchmarks.floor import measure_floor
from benchmarks.live_call import cli, condition_lines, conditions, ms, stats
from cvi_lab.loop_lag import LoopLagProbe
from cvi_lab.harness.call import join, spoken_turn, wait_greeting
from cvi_lab.harness.server import private_server
from cvi_lab.harness.turns import HOPS, latency_rows
from cvi_lab.harness.voice import speak
from cvi_lab.engine.latency import MARKS

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What color is the sky?",
    "Can you name a famous painter?",
    "What is two plus two?",
    "Where do penguins live?",
    "What is the tallest mountain in the world?",
    "How many days are in a week?",
    "What do bees make?",
    "Which planet is closest to the sun?",
    "What language is spoken in Spain?",
    "How many hours are in a day?",
    "What is the largest ocean?",
    "Who wrote Romeo and Juliet?",
    "What is frozen water called?",
    "How many continents are there?",
    "What animal says moo?",
    "What is the opposite of hot?",
    "Which fruit is yellow and curved?",
    "What do you use to write on paper?",
]


def figures(rows: list[dict]) -> dict[str, list[float | None]]:
    """Per-turn series: client latency, each engine mark (ms after speech end), each hop of the critical path."""
    out: dict[str, list] = {"client_response_latency_ms": [r["client_latency_ms"] for r in rows]}
    for m in MARKS[1:]:
        out[f"{m}_ms"] = [r["engine"].get(f"{m}_ms") for r in rows]
    for a, b in HOPS:
        out[f"hop {a}->{b}_ms"] = [None if r["engine"].get(f"{a}_ms") is None or r["engine"].get(f"{b}_ms") is None
                                   else r["engine"][f"{b}_ms"] - r["engine"][f"{a}_ms"] for r in rows]
    out["network+playout (first_frame_sent->client)_ms"] = [
        None if r["client_latency_ms"] is None or r["engine"].get("first_frame_sent_ms") is None
        else r["client_latency_ms"] - r["engine"]["first_frame_sent_ms"] for r in rows]
    for k in ("asr_ms", "turn_ms", "llm_ttft_ms", "tts_ttfb_ms"):
        out[f"span {k}"] = [r["engine"].get(k) for r in rows]
    out["asr duration (in call)_ms"] = [None if r["engine"].get("asr_s") is None else r["engine"]["asr_s"] * 1000 for r in rows]
    out["llm prompt tokens prefilled"] = [None if r["engine"].get("prompt_tokens") is None else
                                          r["engine"]["prompt_tokens"] - (r["engine"].get("cached_prompt_tokens") or 0)
                                          for r in rows]
    return out


# Which stage-alone floor (benchmarks/floor.py) belongs beside which in-call figure.
FLOOR_OF = {"hop speech_end->vad_end_ms": "vad", "asr duration (in call)_ms": "asr",
            "span llm_ttft_ms": "llm_ttft", "hop asr_final->llm_first_token_ms": "llm_ttft",
            "hop llm_first_token->first_clause_ms": "llm_first_clause",
            "hop first_clause->tts_first_audio_ms": "tts_first_audio", "span tts_ttfb_ms": "tts_first_audio"}


def long_call(rows: list[dict]) -> dict | None:
    """Do long calls stay fast: mean latency of the last five turns over turns 2-6 (target <= 1.1)."""
    lat = [r["client_latency_ms"] for r in rows]
    if len(lat) < 11 or any(v is None for v in lat[1:6] + lat[-5:]):
        return None
    early, late = float(np.mean(lat[1:6])), float(np.mean(lat[-5:]))
    return {"turns_2_6_mean_ms": round(early, 1), "last_5_mean_ms": round(late, 1), "ratio": round(late / early, 3),
            "target_ratio": 1.1}


async def run(cfg, n_turns: int, voice: str) -> dict:
    from cvi_lab.domain.persona import DEFAULT_PERSONA

    questions = (QUESTIONS * ((n_turns + len(QUESTIONS) - 1) // len(QUESTIONS)))[:n_turns]
    audio = [speak(q, voice=voice) for q in questions]
    floor = await measure_floor(cfg, QUESTIONS[: min(len(QUESTIONS), 10)], audio[:10], DEFAULT_PERSONA["system_prompt"])
    load_before = os.getloadavg()
    async with private_server(cfg) as srv, LoopLagProbe() as lag:
        conv = await srv.api("POST", "/v2/conversations", {  # the default persona with the default replica
            "replica_id": _default_replica(), "conversation_name": "bench latency",
            "properties": {"participant_left_timeout": 0, "max_call_duration": 1800}})
        cid = conv["conversation_id"]
        client = await join(conv, timeout=120)
        turns = []
        try:
            await wait_greeting(client, timeout=180)
            for i, (q, pcm) in enumerate(zip(questions, audio)):
                turn = await spoken_turn(client, pcm, timeout=90)
                turn["text"] = q
                turns.append(turn)
                print(f"turn {i + 1:2d}/{n_turns}: {turn['client_latency_ms']} ms  ({q})", flush=True)
            await asyncio.sleep(0.5)
        finally:
            outbound = srv.outbound_audio(cid)
            await srv.api("POST", f"/v2/conversations/{cid}/end")
            await client.leave()
        await srv.wait_status(cid, "ended", 30)
        rows = latency_rows(client, turns, srv.turn_metrics(cid))
    return {"rows": rows, "load_before": load_before, "load_after": os.getloadavg(), "outbound_audio": outbound,
            "loop_lag": lag.summary(worst=5), "floor": floor, "vad_min_silence_ms": cfg.engine.vad_min_silence_ms}


def _default_replica() -> str:
    from cvi_lab.domain.ids import DEFAULT_REPLICA_ID

    return DEFAULT_REPLICA_ID


def report(result: dict, voice: str, wall_s: float) -> tuple[dict, str]:
    rows = result["rows"]
    figs = figures(rows)
    summary = {name: stats(vals) for name, vals in figs.items()}
    floors = {k: stats(v) for k, v in result["floor"].items()} | {"vad": stats([result["vad_min_silence_ms"]])}
    hops = {k: v for k, v in summary.items() if (k.startswith("hop ") or k.startswith("network")) and v["mean"] is not None}
    dominant = max(hops, key=lambda k: hops[k]["mean"]) if hops else None
    data = conditions(result) | {
            "participant_voice": voice, "turns": len(rows),
            "answered": sum(1 for r in rows if r["client_latency_ms"] is not None), "wall_s": round(wall_s, 1),
            "target": {"p50_ms": 600, "p95_ms": 900}, "summary": summary, "dominant_hop": dominant,
            "floor": floors, "long_call": long_call(rows),
            "per_turn": [{k: r[k] for k in ("turn", "question", "heard", "answer", "turn_idx", "client_latency_ms")}
                         | {"engine": r["engine"]} for r in rows]}

    f = ms
    lines = ["# Response latency (live call over loopback WebRTC)", "", *condition_lines(data),
             f"- {data['answered']}/{data['turns']} turns answered; participant voice: {voice}; wall {data['wall_s']} s",
             "- engine marks are ms after the participant's speech end (the engine's VAD-based estimate); the client "
             "latency is end of our sent speech → first voiced received sample (SPEC §4); target p50 ≤ 600, p95 ≤ 900", "",
             "- floor: the same stage alone (benchmarks/floor.py: in-process, before the call, on these questions); "
             "in-call minus floor is what the other work on the 2 cores costs", "",
             "| figure | n | p50 ms | p95 ms | mean ms | floor p50 ms |", "|---|---|---|---|---|---|"]
    for name, s in summary.items():
        fl = floors.get(FLOOR_OF.get(name) or "", {}).get("p50")
        lines.append(f"| {name} | {s['n']} | {f(s['p50'])} | {f(s['p95'])} | {f(s['mean'])} | {f(fl)} |")
    lc = data["long_call"]
    if lc:
        lines += ["", f"Long call: last five turns {lc['last_5_mean_ms']:.0f} ms vs turns 2-6 {lc['turns_2_6_mean_ms']:.0f} ms "
                  f"(ratio {lc['ratio']:.2f}, target <= {lc['target_ratio']}); prompt tokens prefilled per turn: "
                  + ", ".join(ms(v) for v in figs["llm prompt tokens prefilled"]) + "."]
    if dominant:
        lines += ["", f"Dominant hop on the critical path: **{dominant}** (mean {hops[dominant]['mean']:.0f} ms)."]
    lines += ["", "## Turns", "", "| # | asked | heard (ASR) | answer | client ms |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['turn']} | {r['question']} | {r['heard']} | {r['answer']} | {f(r['client_latency_ms'])} |")
    return data, "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    def add_arguments(p):
        p.add_argument("--turns", type=int, default=20)
        p.add_argument("--voice", default="espeak", choices=["espeak", "piper"])

    def measure(cfg, args):
        t0 = time.monotonic()
        result = asyncio.run(run(cfg, args.turns, args.voice))
        return report(result, args.voice, time.monotonic() - t0)

    data = cli(argv, name="latency", doc=__doc__, add_arguments=add_arguments, measure=measure)
    return 0 if data["answered"] == data["turns"] else 1


if __name__ == "__main__":
    sys.exit(main())
