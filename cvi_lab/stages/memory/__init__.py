"""Memory extraction: what, of an ended call, is kept for its memory stores (SPEC §5 `memory_stores`).

Backends (`cvi_lab/conf/memory/*.yaml`, key `extractor`): `rules` (offline, deterministic, no model). An
extractor implements `MemoryExtractor`: it reads the call's utterances in order and returns the sentences to
remember, each a fact the participant gave about themselves or a decision taken in the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, Sequence


@dataclass(frozen=True)
class Utterance:
    role: Literal["user", "replica"]
    text: str


@dataclass(frozen=True)
class Remembered:
    kind: Literal["fact", "decision"]
    text: str


class MemoryExtractor(Protocol):
    def extract(self, utterances: Sequence[Utterance]) -> list[Remembered]:
        """What to remember of a call, in the order it was said (no duplicates)."""
        ...
