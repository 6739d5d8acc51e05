"""`make bench-barge-in`: how fast the replica yields when the participant talks over it, as the participant hears it.

The server runs in-process with the embedded defaults (cvi_lab/conf/serve.yaml), one participant client joins over
loopback WebRTC with a storyteller persona (every answer is long), and per trial (a fresh call each): ask for a
story, let the replica talk for 1.5 s, talk over it (Piper, a different speaking rate from the replica's), and measure
- decision_ms: our first voiced sample sent → the engine's `conversation.replica_interrupted` (SPEC §3: the
  interruption event) — dominated by `barge_in_min_ms` (how much speech over the replica interrupts it);
- silent_after_ms: that decision → the end of the last voiced sample the participant received (target ≤ 150 ms:
  what is already in flight or buffered when the replica is cut).
Writes p50/p95/max to benchmarks/results/barge_in.json and a Markdown table to benchmarks/results/barge_in.md.

    python -m benchmarks.bench_barge_in [--trials 10] [hydra overrides ...]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from benchmarks.live_call import cli, condition_lines, conditions, ms, stats
from cvi_lab.loop_lag import LoopLagProbe
from cvi_lab.harness.call import barge_in, join, spoken_turn, wait_greeting
from cvi_lab.harness.server import private_server
from cvi_lab.harness.voice import speak

TARGET_SILENT_MS = 150
STORYTELLER = ("You are a storyteller in a live video call. Whatever you are asked, answer with a long story of at "
               "least eight sentences.")
TOPICS = ["a brave little dragon", "a lighthouse keeper", "a lost kitten", "a robot who learns to paint",
          "a sailor and a whale", "a baker in a small town", "a girl who finds a map", "an old clock",
          "a fox in the snow", "a boy who builds a kite"]
INTERRUPTIONS = ["Wait, stop please, I want to ask you something else instead.",
                 "Sorry to cut in, could we talk about something different now?",
                 "Hold on a second, that is not what I meant to ask you."]


async def _trial(srv, persona_id: str, ask, cut) -> dict:
    """One fresh call: greeting, a story request, 1.5 s of story, our interruption. A fresh call per trial keeps
    trials independent (a long history of cut-off stories teaches the 135M model to tell short ones)."""
    conv = await srv.api("POST", "/v2/conversations", {
        "persona_id": persona_id, "conversation_name": "bench barge-in",
        "properties": {"participant_left_timeout": 0, "max_call_duration": 600}})
    cid = conv["conversation_id"]
    row: dict = {"conversation_id": cid}
    client = await join(conv, timeout=120)
    try:
        await wait_greeting(client, timeout=180)
        turn = await spoken_turn(client, ask, timeout=90, wait_done=False)
        row["answered"] = turn["first_voiced"] is not None
        if row["answered"]:
            await client.wait_for(lambda: time.monotonic() > turn["first_voiced"] + 1.5, 5)
            row["still_speaking"] = not client.events("conversation.replica.stopped_speaking",
                                                      since=turn["first_voiced"])
            if row["still_speaking"]:
                res = await barge_in(client, cut)
                row |= {k: res[k] for k in ("decision_ms", "spoke_before", "silent_after_ms")}
    finally:
        row["outbound_audio"] = srv.outbound_audio(cid)
        await srv.api("POST", f"/v2/conversations/{cid}/end")
        await client.leave()
    await srv.wait_status(cid, "ended", 30)
    row["interrupted_turn_record"] = any(m["metrics"].get("interrupted") for m in srv.turn_metrics(cid))
    return row


async def run(cfg, trials: int) -> dict:
    from cvi_lab.domain.ids import DEFAULT_REPLICA_ID

    # synthesize what the participant says up front: Piper on the shared event loop would block it (~0.8 s)
    asks = [speak(f"Tell me a long story about {TOPICS[i % len(TOPICS)]}.", length_scale=1.15) for i in range(trials)]
    cuts = [speak(INTERRUPTIONS[i % len(INTERRUPTIONS)], length_scale=1.15) for i in range(trials)]
    load_before = os.getloadavg()
    rows = []
    async with private_server(cfg) as srv, LoopLagProbe() as lag:
        persona = await srv.api("POST", "/v2/personas", {"persona_name": "bench barge-in", "system_prompt": STORYTELLER,
                                                         "default_replica_id": DEFAULT_REPLICA_ID})
        for i in range(trials):
            row = {"trial": i + 1} | await _trial(srv, persona["persona_id"], asks[i], cuts[i])
            rows.append(row)
            print(f"trial {i + 1:2d}/{trials}: {row}", flush=True)
    outbound = {k: round(sum(r["outbound_audio"][k] for r in rows), 1) for k in rows[0]["outbound_audio"]} if rows else {}
    return {"rows": rows, "interrupted_turn_records": sum(1 for r in rows if r.get("interrupted_turn_record")),
            "load_before": load_before, "load_after": os.getloadavg(), "outbound_audio": outbound,
            "loop_lag": lag.summary(worst=5)}


def report(result: dict, wall_s: float) -> tuple[dict, str]:
    rows = result["rows"]
    measured = [r for r in rows if r.get("silent_after_ms") is not None]
    summary = {k: stats([r[k] for r in measured]) | {"max": max((r[k] for r in measured if r[k] is not None),
                                                                default=None)}
               for k in ("decision_ms", "silent_after_ms")}
    data = conditions(result) | {
            "trials": len(rows), "measured": len(measured),
            "interrupted_turn_records": result["interrupted_turn_records"], "wall_s": round(wall_s, 1),
            "target": {"silent_after_ms": TARGET_SILENT_MS},
            "within_target": sum(1 for r in measured if r["silent_after_ms"] <= TARGET_SILENT_MS),
            "summary": summary, "per_trial": rows}

    f = ms
    lines = ["# Barge-in (live call over loopback WebRTC)", "", *condition_lines(data),
             f"- {data['measured']}/{data['trials']} trials measured (the replica was still talking 1.5 s into its "
             f"answer and the engine decided to yield; one fresh call per trial); wall {data['wall_s']} s",
             f"- silent within {TARGET_SILENT_MS} ms of the decision: {data['within_target']}/{data['measured']}", "",
             "| figure | n | p50 ms | p95 ms | max ms |", "|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['n']} | {f(s['p50'])} | {f(s['p95'])} | {f(s['max'])} |")
    lines += ["", "decision_ms: our first voiced sample sent → `conversation.replica_interrupted`; silent_after_ms: "
              "that decision → end of the last voiced sample received (0 = nothing more arrived)."]
    return data, "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    def measure(cfg, args):
        t0 = time.monotonic()
        result = asyncio.run(run(cfg, args.trials))
        return report(result, time.monotonic() - t0)

    data = cli(argv, name="barge_in", doc=__doc__,
               add_arguments=lambda p: p.add_argument("--trials", type=int, default=10), measure=measure)
    return 0 if data["measured"] else 1


if __name__ == "__main__":
    sys.exit(main())
