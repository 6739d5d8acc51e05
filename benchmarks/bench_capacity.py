"""`make bench-capacity`: how many concurrent calls this machine holds within the latency budget.

The server runs in-process with the embedded defaults (as bench_latency); for N = 1, 2, 3, ... N scripted
participants join over loopback WebRTC at once (staggered by `--stagger` s) and each speaks three turns,
waiting for each answer. Per N: client response latency p50/p95 over all turns, the longest gap between
received video frames of any call (a video stall), the replica's audio underruns, and each hop's wait for
the shared models (`<hop>_wait_ms` of the engine's turn records) beside its compute time. Capacity = the
largest N with p95 <= 1.5x the single-call p95, no video stall over 200 ms and no audio underrun; the search
stops at the first N over budget (but measures at least `--min-calls` levels, to show the trend). A machine
that breaks the budget with one call (overloaded, e.g. by other work) is reported as such, with capacity 1:
the server always takes one call. Before the calls: the shared LLM's decode throughput for 1, 2, 4 concurrent
answers, batched (`max_batch` of the config) vs one after another (`max_batch=1`).

Writes benchmarks/results/capacity.json + .md, with /proc/loadavg before and after each N (the machine may be
shared: a figure measured under others' load says so in its header).

    python -m benchmarks.bench_capacity [--max-calls 6] [--turns 3] [hydra overrides ...]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from benchmarks.live_call import cli, machine, ms, stats
from cvi_lab.harness.call import join, spoken_turn, wait_greeting
from cvi_lab.harness.server import private_server
from cvi_lab.harness.turns import latency_rows
from cvi_lab.harness.voice import speak

QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?", "Where do penguins live?",
             "What do bees make?", "Which planet is closest to the sun?", "What is the largest ocean?"]
BUDGET = {"p95_ratio": 1.5, "max_video_stall_ms": 200.0, "audio_underruns": 0}
HOPS = ("turn", "asr", "llm", "tts")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


async def llm_throughput(cfg) -> dict:
    """tok/s of the configured LLM for 1, 2, 4 concurrent answers: batched vs `max_batch=1` (serial)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from cvi_lab.stages.base import ChatMessage, LLMStats

    out: dict = {}
    if "max_batch" not in cfg.llm:
        return out
    system = ChatMessage("system", "You are a helpful assistant who answers in two sentences.")
    for label, max_batch in (("batched", int(cfg.llm.max_batch)), ("serial", 1)):
        llm = instantiate(OmegaConf.merge(cfg.llm, {"max_batch": max_batch}))
        await llm.warmup()
        for n in (1, 2, 4):
            all_stats = [LLMStats() for _ in range(n)]
            t0 = time.perf_counter()

            async def one(q: str, s: LLMStats) -> None:
                async for _ in llm.stream([system, ChatMessage("user", q)], 48, s):
                    pass

            await asyncio.gather(*[one(q, s) for q, s in zip(QUESTIONS, all_stats)])
            wall = time.perf_counter() - t0
            tokens = sum(s.completion_tokens for s in all_stats)
            out[f"{label} x{n}"] = {"tok_s": round(tokens / wall, 1), "tokens": tokens, "wall_s": round(wall, 2),
                                   "first_token_s_max": round(max(s.first_token_s or 0 for s in all_stats), 2)}
    return out


def max_gap_ms(arrivals: list[float], since: float, until: float) -> float:
    t = sorted(a for a in arrivals if since <= a <= until)
    return round(max((b - a for a, b in zip(t, t[1:])), default=0.0) * 1000.0, 1)


async def one_call(srv, replica_id: str, audio: list, questions: list[str], delay: float, timeout: float) -> dict:
    await asyncio.sleep(delay)
    conv = await srv.api("POST", "/v2/conversations", {
        "replica_id": replica_id, "conversation_name": "bench capacity",
        "properties": {"participant_left_timeout": 0, "max_call_duration": 1800}})
    cid = conv["conversation_id"]
    client = await join(conv, timeout=timeout)
    turns: list[dict] = []
    try:
        await wait_greeting(client, timeout=timeout)
        start = time.monotonic()
        for q, pcm in zip(questions, audio):
            turn = await spoken_turn(client, pcm, timeout=timeout)
            turn["text"] = q
            turns.append(turn)
        end = time.monotonic()
        outbound = srv.outbound_audio(cid)
    finally:
        await srv.api("POST", f"/v2/conversations/{cid}/end")
        await client.leave()
    await srv.wait_status(cid, "ended", 30)
    rows = latency_rows(client, turns, srv.turn_metrics(cid))
    return {"conversation_id": cid, "rows": rows, "outbound_audio": outbound,
            "max_video_stall_ms": max_gap_ms([v.arrival for v in client.rec.video], start, end),
            "video_fps": round(client.video_fps(since=start), 1)}


async def run_level(srv, replica_id: str, n: int, n_turns: int, audio: dict, stagger: float) -> dict:
    load_before = loadavg()
    outcomes = await asyncio.gather(*[
        one_call(srv, replica_id, [audio[q] for q in qs], qs, i * stagger, 180)
        for i, qs in enumerate([[QUESTIONS[(i + t) % len(QUESTIONS)] for t in range(n_turns)] for i in range(n)])],
        return_exceptions=True)  # a call whose connection dropped fails its level, not the benchmark
    calls = [c for c in outcomes if isinstance(c, dict)]
    dropped = [f"{type(c).__name__}: {c}" for c in outcomes if not isinstance(c, dict)]
    rows = [r for c in calls for r in c["rows"]]
    hop = {}
    for h in HOPS:
        hop[f"{h}_wait_ms"] = stats([r["engine"].get(f"{h}_wait_ms") for r in rows])
        hop[f"{h}_compute_ms"] = stats([r["engine"].get(f"{h}_compute_ms") for r in rows])
    hop["llm_ttft_ms"] = stats([r["engine"].get("llm_ttft_ms") for r in rows])
    return {"calls": n, "load_before": load_before, "load_after": loadavg(), "dropped_calls": dropped,
            "latency": stats([r["client_latency_ms"] for r in rows]),
            "answered": sum(r["client_latency_ms"] is not None for r in rows), "turns": n * n_turns,
            "max_video_stall_ms": max((c["max_video_stall_ms"] for c in calls), default=0.0),
            "min_video_fps": min((c["video_fps"] for c in calls), default=0.0),
            "audio_underruns": sum(c["outbound_audio"]["underruns"] for c in calls), "hops": hop,
            "per_call": [{k: c[k] for k in ("max_video_stall_ms", "video_fps", "outbound_audio")}
                         | {"latency_ms": [r["client_latency_ms"] for r in c["rows"]],
                            "answers": [r["answer"] for r in c["rows"]]} for c in calls]}


def within_budget(level: dict, single_p95: float | None) -> list[str]:
    """What of the budget `level` breaks (empty: within it)."""
    broken = [f"{len(level['dropped_calls'])} calls dropped"] if level["dropped_calls"] else []
    p95 = level["latency"]["p95"]
    if level["answered"] < level["turns"] or p95 is None or single_p95 is None:
        broken.append(f"{level['turns'] - level['answered']} turns unanswered")
    elif p95 > BUDGET["p95_ratio"] * single_p95:
        broken.append(f"p95 {p95:.0f} ms > {BUDGET['p95_ratio']}x single-call p95 {single_p95:.0f} ms")
    if level["max_video_stall_ms"] > BUDGET["max_video_stall_ms"]:
        broken.append(f"video stall {level['max_video_stall_ms']:.0f} ms > {BUDGET['max_video_stall_ms']:.0f} ms")
    if level["audio_underruns"] > BUDGET["audio_underruns"]:
        broken.append(f"{level['audio_underruns']} audio underruns")
    return broken


async def run(cfg, max_calls: int, min_calls: int, n_turns: int, stagger: float) -> dict:
    from cvi_lab.domain.ids import DEFAULT_REPLICA_ID

    audio = {q: speak(q, voice="espeak") for q in QUESTIONS}
    throughput = await llm_throughput(cfg)
    levels: list[dict] = []
    capacity = 0
    async with private_server(cfg, limits={"max_concurrent_conversations": max_calls}) as srv:
        for n in range(1, max_calls + 1):
            level = await run_level(srv, DEFAULT_REPLICA_ID, n, n_turns, audio, stagger)
            level["broken"] = within_budget(level, levels[0]["latency"]["p95"] if levels else level["latency"]["p95"])
            levels.append(level)
            print(f"N={n}: p50 {ms(level['latency']['p50'])} p95 {ms(level['latency']['p95'])} ms, stall "
                  f"{level['max_video_stall_ms']:.0f} ms, underruns {level['audio_underruns']}, load {level['load_after']}"
                  f" -> {'; '.join(level['broken']) or 'within budget'}", flush=True)
            if level["broken"] and n >= min_calls:
                break
            if not level["broken"] and capacity == n - 1:
                capacity = n
    overloaded = bool(levels[0]["broken"])
    return {"levels": levels, "capacity": max(1, capacity), "overloaded": overloaded, "llm_throughput": throughput}


def report(result: dict, wall_s: float, args) -> tuple[dict, str]:
    data = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), "budget": BUDGET,
            "turns_per_call": args.turns, "stagger_s": args.stagger, "wall_s": round(wall_s, 1), **result}
    m = data["machine"]
    lines = ["# Capacity: concurrent calls within the latency budget", "",
             f"- machine: {m.get('cpu_model', m['processor'])}, {m['cpus']} CPUs; created {data['created']}; wall {data['wall_s']} s",
             f"- each call: {args.turns} spoken turns (espeak participant), calls start {args.stagger} s apart; budget: "
             f"p95 <= {BUDGET['p95_ratio']}x the single-call p95, no video stall > {BUDGET['max_video_stall_ms']:.0f} ms, "
             "no audio underrun",
             f"- **capacity: {data['capacity']} concurrent calls** (server.limits.max_concurrent_conversations)"
             + (" — **one call alone broke the budget: the machine was overloaded** (see the load averages); "
                "the figure is the floor of 1, not a measurement" if data["overloaded"] else ""), "",
             "| N | p50 ms | p95 ms | max video stall ms | min fps | underruns | asr wait p95 | llm wait p95 | tts wait p95 | loadavg before → after | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for lv in data["levels"]:
        h = lv["hops"]
        lines.append(f"| {lv['calls']} | {ms(lv['latency']['p50'])} | {ms(lv['latency']['p95'])} | {lv['max_video_stall_ms']:.0f} "
                     f"| {lv['min_video_fps']} | {lv['audio_underruns']} | {ms(h['asr_wait_ms']['p95'])} | {ms(h['llm_wait_ms']['p95'])} "
                     f"| {ms(h['tts_wait_ms']['p95'])} | {lv['load_before'].split()[0]} → {lv['load_after'].split()[0]} "
                     f"| {'; '.join(lv['broken']) or 'within budget'} |")
    lines += ["", "Per hop (p50 / p95 ms over all turns of a level): wait for the shared model, then its compute.", "",
              "| N | " + " | ".join(f"{h} wait | {h} compute" for h in HOPS) + " |",
              "|---|" + "---|" * (2 * len(HOPS))]
    for lv in data["levels"]:
        h = lv["hops"]
        cells = [f"{ms(h[f'{x}_{k}_ms']['p50'])} / {ms(h[f'{x}_{k}_ms']['p95'])}" for x in HOPS for k in ("wait", "compute")]
        lines.append(f"| {lv['calls']} | " + " | ".join(cells) + " |")
    if data["llm_throughput"]:
        lines += ["", "Shared LLM alone (before the calls): decode throughput for concurrent answers of 48 tokens.", "",
                  "| answers at once | mode | tok/s | wall s | slowest first token s |", "|---|---|---|---|---|"]
        for key, v in data["llm_throughput"].items():
            mode, n = key.split(" x")
            lines.append(f"| {n} | {mode} | {v['tok_s']} | {v['wall_s']} | {v['first_token_s_max']} |")
    return data, "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    def add_arguments(p):
        p.add_argument("--max-calls", type=int, default=6)
        p.add_argument("--min-calls", type=int, default=2, help="levels measured even when one is over budget")
        p.add_argument("--turns", type=int, default=3)
        p.add_argument("--stagger", type=float, default=0.5, help="seconds between the calls' starts")

    def measure(cfg, args):
        t0 = time.monotonic()
        result = asyncio.run(run(cfg, args.max_calls, args.min_calls, args.turns, args.stagger))
        return report(result, time.monotonic() - t0, args)

    data = cli(argv, name="capacity", doc=__doc__, add_arguments=add_arguments, measure=measure)
    return 0 if data["capacity"] >= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
