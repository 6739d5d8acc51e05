"""`make bench-answers`: do the replica's answers make sense over a whole call, per LLM configuration?

Each configuration holds the same 10-question scripted call through the real engine (offline driver; the
questions arrive as `conversation.respond` so the ASR does not blur what is judged) with the embedded
defaults for everything else. Per run:
- repeated openers: answers whose first five words equal an earlier answer's (target 0), and distinct first
  three words;
- relevance, judged by rule (no LLM judge): an answer is *correct* when it contains one of the expected
  words for its question (e.g. "Paris" for the capital of France; the list is below), and *on topic* when it
  shares a content word with the question; the relevance figure is the share of correct answers;
- English: the share of answers without French/Spanish function words (SmolLM2-135M drifts into French);
- length: words per answer (speakable: <= 40).
Writes benchmarks/results/answers.json and answers.md.

    python -m benchmarks.bench_answers [--config NAME=OVERRIDES ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import unicodedata
from pathlib import Path

from benchmarks.live_call import RESULTS, machine

SCRIPT = [
    ("What is the capital of France?", ["paris"]),
    ("How many legs does a spider have?", ["eight", "8"]),
    ("What color is the sky?", ["blue"]),
    ("Can you name a famous painter?", ["van gogh", "picasso", "monet", "da vinci", "rembrandt", "dali", "michelangelo",
                                        "vermeer", "renoir", "cezanne", "matisse", "warhol", "leonardo"]),
    ("What is two plus two?", ["four", "4"]),
    ("Where do penguins live?", ["antarctic", "south", "cold", "ice"]),
    ("What is the tallest mountain in the world?", ["everest"]),
    ("How many days are in a week?", ["seven", "7"]),
    ("What do bees make?", ["honey"]),
    ("Which planet is closest to the sun?", ["mercury"]),
]
CONFIGS = {  # name -> Hydra overrides over cvi_lab/conf/serve.yaml
    "ct2_causal (default)": [],
    "ct2_causal + static-prompt cache": ["llm.prefix_cache=true"],
    "ct2_causal, no opener guard": ["llm.opener_guard_words=0"],
    "hf_causal (transformers)": ["llm=hf_causal"],
}
FOREIGN = re.compile(r"\b(le|la|les|est|une|des|il|sont|du|bien|sûr|el|los|las|es|y|muy)\b", re.I)
STOP = {"what", "is", "the", "of", "a", "an", "how", "many", "does", "do", "have", "in", "are", "can", "you", "which",
        "to", "where", "who", "name", "world"}


def plain(text: str) -> str:
    """Lowercase without accents ("Dalí" -> "dali")."""
    return unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", plain(text))


def judge(answers: list[str]) -> dict:
    openers5 = [tuple(words(a)[:5]) for a in answers]
    openers3 = [tuple(words(a)[:3]) for a in answers]
    per = []
    for (q, expected), a in zip(SCRIPT, answers):
        low = plain(a)
        per.append({"question": q, "answer": a, "correct": any(e in low for e in expected),
                    "on_topic": bool((set(words(q)) - STOP) & set(words(a))),
                    "english": len(FOREIGN.findall(a)) < 2, "words": len(words(a))})
    n = max(1, len(per))
    return {"answers": len(per), "repeated_openers_5": sum(1 for i, o in enumerate(openers5) if o in openers5[:i]),
            "distinct_openers_3": len(set(openers3)), "relevance_correct": round(sum(p["correct"] for p in per) / n, 2),
            "on_topic": round(sum(p["on_topic"] for p in per) / n, 2), "english": round(sum(p["english"] for p in per) / n, 2),
            "mean_words": round(sum(p["words"] for p in per) / n, 1), "max_words": max((p["words"] for p in per), default=0),
            "per_answer": per}


async def run_config(overrides: list[str]) -> list[str]:
    from cvi_lab.cli import compose_config
    from cvi_lab.engine.engine import ConversationSpec
    from cvi_lab.engine.factory import create_engine
    from cvi_lab.engine.offline import Join, Send, WaitFor, WaitQuiet, run_script
    from cvi_lab.domain.persona import DEFAULT_PERSONA

    cfg = compose_config(overrides)
    eng = await create_engine(cfg, ConversationSpec("c-answers", system_prompt=DEFAULT_PERSONA["system_prompt"]))
    await eng.start()
    script = [Join(), WaitFor("conversation.replica.stopped_speaking", timeout=60), WaitQuiet()]
    for q, _ in SCRIPT:
        script += [Send({"message_type": "conversation", "event_type": "conversation.respond", "properties": {"text": q}}),
                   WaitFor("conversation.replica.stopped_speaking", timeout=60), WaitQuiet(timeout=30)]
    try:
        res = await run_script(eng, script)
    finally:
        await eng.stop()
    return [e["properties"]["speech"] for e in res.of_type("conversation.utterance") if e["properties"]["role"] == "replica"][1:]


def report(results: dict[str, dict]) -> str:
    lines = ["# Answer quality over a 10-question call", "",
             f"- machine: {machine().get('cpu_model', '')}; the real engine (offline driver), questions sent as "
             "`conversation.respond`; embedded defaults except the LLM settings named", "- relevance judged by rule: "
             "correct = contains an expected word (Paris, eight, blue, a painter's name, four, Antarctic/south/cold/ice, "
             "Everest, seven, honey, Mercury); on topic = shares a content word with the question; English = fewer "
             "than two French/Spanish function words", "",
             "| LLM config | repeated openers (5 words) | distinct openers (3 words) | correct | on topic | English | "
             "mean / max words |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['repeated_openers_5']} | {r['distinct_openers_3']}/{r['answers']} | "
                     f"{r['relevance_correct']:.0%} | {r['on_topic']:.0%} | {r['english']:.0%} | {r['mean_words']} / {r['max_words']} |")
    for name, r in results.items():
        lines += ["", f"## {name}", "", "| question | answer | correct |", "|---|---|---|"]
        lines += [f"| {p['question']} | {p['answer']} | {'yes' if p['correct'] else 'no'} |" for p in r["per_answer"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import logging

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_answers", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--only", nargs="*", help="config names to run (default: all)")
    p.add_argument("--rejudge", action="store_true", help="score the answers stored in answers.json again (no calls)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    stored = json.loads((Path(args.out) / "answers.json").read_text())["results"] if args.rejudge else {}
    results = {}
    for name, overrides in CONFIGS.items():
        if args.only and name not in args.only or args.rejudge and name not in stored:
            continue
        answers = [a["answer"] for a in stored[name]["per_answer"]] if args.rejudge else asyncio.run(run_config(overrides))
        results[name] = judge(answers)
        print(name, {k: v for k, v in results[name].items() if k != "per_answer"}, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "answers.json").write_text(json.dumps({"machine": machine(), "configs": CONFIGS, "results": results}, indent=2))
    md = report(results)
    (out / "answers.md").write_text(md)
    print(md)
    return 0 if results and all(r["repeated_openers_5"] == 0 for n, r in results.items() if "default" in n) else 1


if __name__ == "__main__":
    sys.exit(main())
