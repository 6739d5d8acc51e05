"""Answer quality by an LLM judge: a written rubric (conf/judge), any `llm` stage as the grader.

Why through the `llm` stage interface: the same judge runs on the embedded model, an OpenAI-compatible
server (a local Ollama, vLLM) or a hosted API, chosen by config. A judge is only as good as its agreement
with people, so every run also grades a small hand-labelled set (`judge.labels`) and logs how often the
judge's scores are within one point of the hand scores: a low agreement says the scores are noise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from cvi_lab.lab.metrics import TurnResult

DIMENSIONS = ("relevance", "correctness", "speech")
_SCORE = re.compile(r"(?<![\d.])([1-5])(?!\d)(?!\.\d)")


class JudgeError(ValueError):
    """The hand-labelled set is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Label:
    """One hand-graded answer: what the user said, the answer, the expected fact (if any), the scores."""

    user: str
    answer: str
    expected: str | None
    scores: dict[str, float]


def prompt(rubric: Mapping[str, str], dimension: str, user: str, answer: str, expected: str | None) -> list:
    """The messages asking one rubric question about one answer."""
    from cvi_lab.stages.base import ChatMessage

    lines = [f"User said: {user}", f"Assistant answered: {answer}"]
    if expected:
        lines.append(f"Expected answer: {expected}")
    lines.append(f"{rubric[dimension]} Score (1-5):")
    return [ChatMessage("system", str(rubric["instructions"]).strip()), ChatMessage("user", "\n".join(lines))]


def parse(text: str) -> float | None:
    """The first score 1-5 in the judge's reply (a digit standing alone); None when there is none."""
    m = _SCORE.search(text or "")
    return float(m.group(1)) if m else None


async def grade(llm: Any, rubric: Mapping[str, str], user: str, answer: str, expected: str | None,
                max_tokens: int) -> dict[str, float]:
    """Scores of one answer; a dimension the judge gave no score for is left out (counted by the rates)."""
    scores = {}
    for dim in DIMENSIONS:
        if dim == "correctness" and not expected:
            continue  # nothing to be correct against: a score here would be made up
        pieces = [p async for p in llm.stream(prompt(rubric, dim, user, answer, expected), max_tokens=max_tokens)]
        score = parse("".join(pieces))
        if score is not None:
            scores[dim] = score
    return scores


def read_labels(path: Any) -> list[Label]:
    from cvi_lab.lab.dataset import resolve_path

    p = resolve_path(path)
    if not p.is_file():
        raise JudgeError(f"judge labels {p} do not exist; set judge.labels=<file.jsonl> (format: {__name__})")
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row.get("user"), str) or not isinstance(row.get("answer"), str):
            raise JudgeError(f"{p}:{n}: 'user' and 'answer' (strings) are required")
        scores = {d: float(row[d]) for d in DIMENSIONS if row.get(d) is not None}
        if not scores or any(not 1 <= v <= 5 for v in scores.values()):
            raise JudgeError(f"{p}:{n}: give hand scores 1-5 for some of {', '.join(DIMENSIONS)}")
        out.append(Label(row["user"], row["answer"], row.get("expected"), scores))
    return out


def agreement(pairs: Iterable[tuple[Mapping[str, float], Mapping[str, float]]]) -> dict[str, float]:
    """(judge scores, hand scores) per label -> within-one-point and exact agreement over the scores both
    gave, and how many labels the judge scored at all."""
    pairs = list(pairs)
    diffs = [abs(j[d] - h[d]) for j, h in pairs for d in h if d in j]
    m = {"judge_labels": float(len(pairs)),
         "judge_labels_scored_rate": float(np.mean([bool(set(j) & set(h)) for j, h in pairs])) if pairs else None,
         "judge_agreement_within1": float(np.mean([x <= 1 for x in diffs])) if diffs else None,
         "judge_agreement_exact": float(np.mean([x == 0 for x in diffs])) if diffs else None,
         "judge_mean_abs_error": float(np.mean(diffs)) if diffs else None}
    return {k: v for k, v in m.items() if v is not None}


def judge_llm_config(cfg: Any) -> Any:
    """The judge's llm node: `judge.llm` (a config name) or this run's llm, with the set (non-null)
    `judge.llm_settings` merged."""
    from omegaconf import OmegaConf

    from cvi_lab.config import load_group, recorded

    node = cfg.llm if cfg.judge.llm is None else load_group("llm", str(cfg.judge.llm), list(recorded(cfg).searchpath))
    settings = OmegaConf.to_container(cfg.judge.llm_settings, resolve=True)
    return OmegaConf.merge(node, {k: v for k, v in settings.items() if v is not None})


async def add_judge(cfg: Any, turns: list[TurnResult], extra: dict[str, float]) -> None:
    """Grade every answered line that should have been answered (into `turn.judge`), then the labels (into
    `extra`: the agreement metrics)."""
    from tqdm import tqdm

    from cvi_lab.engine.stage_pool import StagePool

    todo = [t for t in turns if t.replica_text and t.expect.take_turn]
    labels = read_labels(cfg.judge.labels)
    pool = StagePool()
    try:
        llm = await pool.get("llm", judge_llm_config(cfg))
        rubric, max_tokens = cfg.judge.rubric, int(cfg.judge.max_tokens)
        for t in tqdm(todo, desc="judge (answers)", unit="turn"):
            t.judge = await grade(llm, rubric, t.reference, t.replica_text, t.expect.answer, max_tokens)
        pairs = []
        for lab in tqdm(labels, desc="judge (hand labels)", unit="label"):
            pairs.append((await grade(llm, rubric, lab.user, lab.answer, lab.expected, max_tokens), lab.scores))
    finally:
        await pool.aclose()
    if todo:
        extra["judge_scored_rate"] = float(np.mean([bool(t.judge) for t in todo]))
    extra.update(agreement(pairs))


async def label_agreement(cfg: Any) -> dict[str, float]:
    """The judge of `cfg` on the hand labels only: its agreement metrics."""
    extra: dict[str, float] = {}
    await add_judge(cfg, [], extra)
    return extra


def main(argv: list[str] | None = None) -> int:
    """python -m cvi_lab.lab.judge [lab overrides, e.g. judge.llm=openai_compatible ...]: the judge's
    agreement with the hand labels, as JSON (no call is run)."""
    import asyncio
    import sys

    from cvi_lab import config

    cfg = config.compose(["experiment=scenarios", *(sys.argv[1:] if argv is None else argv)], config.LAB_ROOT)
    print(json.dumps(asyncio.run(label_agreement(cfg)), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
