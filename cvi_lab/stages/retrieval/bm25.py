"""Lexical retrieval with Okapi BM25: offline, no model, sub-millisecond on a few hundred passages.

Why BM25: a participant's question and the passage that answers it share their rare words (names, numbers,
terms), which BM25 weighs by inverse document frequency; it needs no download and no GPU.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Mapping, Sequence

from cvi_lab.stages.retrieval import Limits, Passage, within_limits

_WORD = re.compile(r"[a-z0-9]+")


def terms(text: str) -> list[str]:
    """Lowercase words, a plural 's' dropped (so "codes" finds "code")."""
    out = []
    for word in _WORD.findall(text.lower()):
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


class BM25Index:
    def __init__(self, passages: Sequence[Passage], k1: float, b: float) -> None:
        self.passages, self.k1, self.b = list(passages), k1, b
        self.tf = [Counter(terms(p.text)) for p in self.passages]
        self.lengths = [sum(tf.values()) for tf in self.tf]
        self.avg_len = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        self.postings: dict[str, list[int]] = {}  # term -> the passages that hold it: a turn scores only those
        for i, tf in enumerate(self.tf):
            for term in tf:
                self.postings.setdefault(term, []).append(i)
        n = len(self.passages)
        self.idf = {t: math.log(1.0 + (n - len(ps) + 0.5) / (len(ps) + 0.5)) for t, ps in self.postings.items()}

    def score(self, query_terms: Sequence[str], i: int) -> float:
        tf, norm = self.tf[i], self.k1 * (1 - self.b + self.b * self.lengths[i] / (self.avg_len or 1.0))
        return sum(self.idf[t] * tf[t] * (self.k1 + 1) / (tf[t] + norm) for t in query_terms if t in tf)

    def search(self, query: str, limits: Limits) -> list[Passage]:
        query_terms = list(dict.fromkeys(terms(query)))
        # Candidates: passages holding a query term that at most half the passages hold ("what", "the" would
        # make every passage one); those common terms still count in the score of each candidate.
        half = len(self.passages) / 2
        rare = [t for t in query_terms if 0 < len(self.postings.get(t, ())) <= half]
        candidates = {i for t in (rare or query_terms) for i in self.postings.get(t, ())}
        ranked = sorted(((self.score(query_terms, i), i) for i in candidates), key=lambda s: (-s[0], s[1]))
        return within_limits([self.passages[i] for _, i in ranked], limits)


class BM25Retriever:
    def __init__(self, k1: float, b: float, heading: str, strategies: Mapping[str, Mapping[str, Any]]) -> None:
        self.k1, self.b, self.heading = float(k1), float(b), heading
        self.strategies = {name: Limits(int(v["passages"]), int(v["max_chars"])) for name, v in strategies.items()}

    async def warmup(self) -> None:
        return None

    def index(self, passages: Sequence[Passage]) -> BM25Index:
        return BM25Index(passages, self.k1, self.b)

    def limits(self, strategy: str) -> Limits:
        if strategy not in self.strategies:
            raise KeyError(f"retrieval strategy {strategy!r} is not configured; known: {', '.join(self.strategies)}")
        return self.strategies[strategy]
