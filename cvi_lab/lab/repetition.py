"""Repetition in the replica's answers: the same opener every turn, and few distinct n-grams.

Why: a small model's most noticeable tic in a call is "Sure! ..." on every answer or a looped phrase; these
are counted from the text the replica meant to say, after `metrics.normalize`.
"""

from __future__ import annotations

from typing import Iterable

from cvi_lab.lab.metrics import TurnResult, normalize

OPENER_WORDS = 2


def opener(text: str, words: int = OPENER_WORDS) -> str:
    return " ".join(normalize(text).split()[:words])


def repeated_opener_rate(answers_by_call: Iterable[list[str]], words: int = OPENER_WORDS) -> float | None:
    """Fraction of answers (after a call's first) that open with the same words as an earlier answer of the call."""
    flags = []
    for answers in answers_by_call:
        seen: set[str] = set()
        for i, a in enumerate(x for x in answers if normalize(x)):
            o = opener(a, words)
            if i:
                flags.append(o in seen)
            seen.add(o)
    return sum(flags) / len(flags) if flags else None


def distinct_n(answers: Iterable[str], n: int) -> float | None:
    """Distinct n-grams / all n-grams over the answers (1.0: nothing repeated); None with no n-gram."""
    grams = []
    for a in answers:
        w = normalize(a).split()
        grams += [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def repetition_metrics(turns: list[TurnResult]) -> dict[str, float]:
    by_call: dict[str, list[str]] = {}
    for t in turns:
        if t.replica_text:
            by_call.setdefault(t.script, []).append(t.replica_text)
    answers = [a for call in by_call.values() for a in call]
    m = {"repeated_opener_rate": repeated_opener_rate(by_call.values()),
         "distinct_1": distinct_n(answers, 1), "distinct_2": distinct_n(answers, 2)}
    return {k: float(v) for k, v in m.items() if v is not None}
