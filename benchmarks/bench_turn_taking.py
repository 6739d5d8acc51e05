"""`make bench-turn-taking`: does the replica wait for a speaker who pauses mid-sentence, and how soon does it
decide once the speaker is done?

The real engine (offline driver, embedded defaults) hears sentences spoken by espeak-ng (not the replica's
voice) with a pause of 400-1200 ms in the middle, and whole sentences with no pause. Per item: a *false
cut-off* is the replica starting to speak before the speaker finished, or the sentence split into two user
turns; for the finished turns, the end-of-turn decision time after the speech end (the engine's
turn_decision mark). Writes benchmarks/results/turn_taking.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.live_call import RESULTS, machine, stats

PAUSED = [("I'd like to", "book a table for two people tonight."), ("Can you tell me", "where the train station is?"),
          ("My favorite color is", "blue, but I like green too."), ("I was wondering if", "you could help me with something.")]
PAUSES_MS = [400, 800, 1200]
WHOLE = ["What is the capital of France?", "How many legs does a spider have?", "Where do penguins live?",
         "What time does the last bus leave?"]


async def one(cfg, pool, parts: tuple[str, ...], pause_ms: int) -> dict:
    from cvi_lab.harness.voice import speak
    from cvi_lab.engine.engine import ConversationSpec
    from cvi_lab.engine.factory import create_engine
    from cvi_lab.engine.offline import Join, Say, WaitFor, WaitQuiet, run_script

    clips = [speak(p, voice="espeak") for p in parts]
    gap = np.zeros(int(max(0, pause_ms - 600) * 16), np.float32)  # speak() pads 0.3 s of silence on each side
    audio = np.concatenate([clips[0]] + [x for c in clips[1:] for x in (gap, c)])
    eng = await create_engine(cfg, ConversationSpec("c-turns"), pool=pool)
    await eng.start()
    try:
        res = await run_script(eng, [Join(), WaitFor("conversation.replica.stopped_speaking", timeout=60), WaitQuiet(),
                                     Say(audio, "speaker"), WaitFor("conversation.replica.started_speaking", timeout=30),
                                     WaitQuiet(timeout=30)])
    finally:
        await eng.stop()
    users = [e["properties"]["speech"] for e in res.of_type("conversation.utterance") if e["properties"]["role"] == "user"]
    spoken_until = next(s["speech_end"] for s in res.says if s["label"] == "speaker")
    started = [e["_t"] for e in res.of_type("conversation.replica.started_speaking")][1:]
    early = bool(started) and min(started) < spoken_until
    decision = next((m.get("turn_decision_ms") for m in res.latencies if m.get("kind") == "response"), None)
    return {"text": " ... ".join(parts), "pause_ms": pause_ms, "user_turns": users, "answered": bool(started),
            "false_cut_off": early or len(users) > 1, "turn_decision_ms": decision}


async def run(overrides: list[str]) -> list[dict]:
    from cvi_lab.cli import compose_config
    from cvi_lab.engine.stage_pool import StagePool

    cfg, pool, out = compose_config(overrides), StagePool(), []
    for parts in PAUSED:
        for pause in PAUSES_MS:
            out.append(await one(cfg, pool, parts, pause))
            print(out[-1], flush=True)
    for text in WHOLE:
        out.append(await one(cfg, pool, (text,), 0))
        print(out[-1], flush=True)
    return out


def markdown(items: list[dict], overrides: list[str]) -> str:
    paused = [i for i in items if i["pause_ms"]]
    whole = [i for i in items if not i["pause_ms"]]
    dec = stats([i["turn_decision_ms"] for i in items if not i["false_cut_off"]])
    lines = ["# Turn taking: pauses mid-sentence and the end-of-turn decision", "",
             f"- machine: {machine().get('cpu_model', '')}; real engine, embedded defaults{' + ' + ' '.join(overrides) if overrides else ''}; "
             "espeak-ng speaker", f"- false cut-offs on paused sentences: **{sum(i['false_cut_off'] for i in paused)}/{len(paused)}** "
             f"(pauses {', '.join(map(str, PAUSES_MS))} ms); whole sentences answered: {sum(i['answered'] for i in whole)}/{len(whole)}",
             f"- end-of-turn decision after the speech end (turns not cut off): p50 {dec['p50']} ms, p95 {dec['p95']} ms", "",
             "| sentence | pause ms | user turns heard | false cut-off | decision ms |", "|---|---|---|---|---|"]
    for i in items:
        lines.append(f"| {i['text']} | {i['pause_ms']} | {' / '.join(i['user_turns'])} | {'YES' if i['false_cut_off'] else 'no'} | "
                     f"{i['turn_decision_ms']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_turn_taking", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("overrides", nargs="*", help="Hydra key=value overrides over cvi_lab/conf/serve.yaml")
    args = p.parse_args(argv)
    items = asyncio.run(run(args.overrides))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "turn_taking.json").write_text(json.dumps({"machine": machine(), "overrides": args.overrides, "items": items}, indent=2))
    md = markdown(items, args.overrides)
    (out / "turn_taking.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
