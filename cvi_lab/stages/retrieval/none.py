"""No retrieval: documents are accepted and stored but never reach the prompt (the baseline to compare to)."""

from __future__ import annotations

from typing import Sequence

from cvi_lab.stages.retrieval import Limits, Passage


class _Empty:
    def search(self, query: str, limits: Limits) -> list[Passage]:
        return []


class NoRetriever:
    heading = ""

    async def warmup(self) -> None:
        return None

    def index(self, passages: Sequence[Passage]) -> _Empty:
        return _Empty()

    def limits(self, strategy: str) -> Limits:
        return Limits(passages=0, max_chars=0)
