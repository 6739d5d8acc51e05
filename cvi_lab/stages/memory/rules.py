"""Rule-based memory extraction: the participant's own statements about themselves and the decisions they state.

What it keeps, and why: a sentence of the participant (never the replica's, which may be wrong or invented) that
is not a question, has at least `min_words` words, and matches one of the `facts` patterns (first-person
statements: "my name is…", "I live in…", "I'm allergic to…", "call me…") or of the `decisions` patterns
("let's…", "we decided…", "I'll…"), after leading fillers ("well, so, okay…") are dropped; small talk (`ignore`,
e.g. "I'm fine") is not kept. Such sentences are what a later call needs to not ask again, and they are quoted as
said, so nothing the participant did not say enters a later prompt. Deterministic: the same call, the same memories.
"""

from __future__ import annotations

import re
from typing import Sequence

from cvi_lab.stages.memory import Remembered, Utterance

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class RuleExtractor:
    def __init__(self, facts: Sequence[str], decisions: Sequence[str], ignore: Sequence[str], fillers: str,
                 min_words: int, max_chars: int) -> None:
        self.facts = [re.compile(p, re.IGNORECASE) for p in facts]
        self.decisions = [re.compile(p, re.IGNORECASE) for p in decisions]
        self.ignore = [re.compile(p, re.IGNORECASE) for p in ignore]
        self.fillers = re.compile(fillers, re.IGNORECASE)
        self.min_words, self.max_chars = int(min_words), int(max_chars)

    def extract(self, utterances: Sequence[Utterance]) -> list[Remembered]:
        out: list[Remembered] = []
        seen: set[str] = set()
        for utterance in utterances:
            if utterance.role != "user":
                continue
            for sentence in _SENTENCE_END.split(utterance.text.strip()):
                kept = self._kept(sentence)
                if kept is not None and kept.text.casefold() not in seen:
                    seen.add(kept.text.casefold())
                    out.append(kept)
        return out

    def _kept(self, sentence: str) -> Remembered | None:
        text = " ".join(sentence.split())
        while True:  # "Well, so, my name is Ada." -> "my name is Ada."
            stripped = self.fillers.sub("", text, count=1)
            if stripped == text:
                break
            text = stripped
        if not text or text.endswith("?") or len(text.split()) < self.min_words or len(text) > self.max_chars:
            return None
        if any(p.search(text) for p in self.ignore):
            return None
        text = text[0].upper() + text[1:]
        if not text.endswith((".", "!")):
            text += "."
        for kind, patterns in (("decision", self.decisions), ("fact", self.facts)):
            if any(p.match(text) for p in patterns):
                return Remembered(kind, text)
        return None
