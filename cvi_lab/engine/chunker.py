"""Clause chunker: cut the LLM's token stream into pieces the TTS can start speaking at once.

Why: waiting for a whole first sentence from a slow decoder costs seconds; the first clause ("Sure, ...")
is complete a few tokens in. The first piece is emitted at the first clause punctuation once it has
`first_min_words` (or at a word boundary after `first_max_words`); later pieces, which are not on the
latency path, wait for a sentence end (or a clause of `min_words`, or `max_words`) so prosody stays natural.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = ".!?…"
_CLAUSE_END = ",;:—–"
_CLOSERS = "\"')]}”’»"
# Tokens ending with "." that do not end a sentence.
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "a.m", "p.m", "approx"}
_MARKUP = re.compile(r"[*#`_~]+|<\|[^|>]*\|>")
_SPACES = re.compile(r"\s+")


def speakable(text: str) -> str:
    """Drop markdown/control markup the TTS would read aloud, collapse whitespace."""
    return _SPACES.sub(" ", _MARKUP.sub("", text)).strip()


def _has_words(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


@dataclass
class ChunkerSettings:
    """Where clauses are cut (values: `engine.chunker` in cvi_lab/conf/engine/default.yaml)."""

    first_min_words: int
    first_max_words: int
    min_words: int
    max_words: int


class ClauseChunker:
    """Feed text pieces with `push`; collect speakable clauses; call `flush` at the end of the stream."""

    def __init__(self, settings: ChunkerSettings) -> None:
        self.settings = settings
        self._buf = ""
        self.emitted = 0  # clauses emitted so far

    def push(self, piece: str) -> list[str]:
        self._buf += piece
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            clause, self._buf = self._buf[:cut], self._buf[cut:].lstrip()
            clause = speakable(clause)
            if _has_words(clause):
                out.append(clause)
                self.emitted += 1
        return out

    def flush(self) -> list[str]:
        clause, self._buf = speakable(self._buf), ""
        if _has_words(clause):
            self.emitted += 1
            return [clause]
        return []

    # ------------------------------------------------------------------ rules
    def _find_cut(self) -> int | None:
        """Index just after the first acceptable boundary in the buffer, or None to wait for more text."""
        buf = self._buf
        first = self.emitted == 0
        min_words = self.settings.first_min_words if first else self.settings.min_words
        max_words = self.settings.first_max_words if first else self.settings.max_words
        for i, ch in enumerate(buf):
            if ch == "\n" and _has_words(buf[:i]):
                return i + 1
            if ch not in _SENTENCE_END and ch not in _CLAUSE_END:
                continue
            end = self._boundary_end(buf, i)
            if end is None:
                if i + 1 >= len(buf):
                    return None  # undecidable until the next piece arrives
                continue
            if ch in _SENTENCE_END or len(buf[:end].split()) >= min_words:
                return end
        # no usable punctuation: cut after `max_words` complete words (a word is complete once a space follows)
        for n, match in enumerate(re.finditer(r"\S+\s", buf), start=1):
            if n >= max_words:
                return match.end()
        return None

    @staticmethod
    def _boundary_end(buf: str, i: int) -> int | None:
        """If buf[i] ends a clause, the index after it (and any closing quotes); None if not (yet) one."""
        ch = buf[i]
        j = i + 1
        while j < len(buf) and (buf[j] in _CLOSERS or buf[j] in _SENTENCE_END):
            j += 1
        if j >= len(buf):
            # Punctuation at the very end: "!?;—" are safe to cut at once; "." "," ":" wait for the next
            # piece (decimals 3.5, thousands 1,000, times 10:30, abbreviations, ellipses).
            prev = buf[i - 1] if i > 0 else ""
            if ch in "!?;—–…" or (ch in ",:" and not prev.isdigit()):
                return j
            return None
        nxt = buf[j]
        if not nxt.isspace():
            return None  # 3.5, 1,000, e.g., U.S.
        if ch == ".":
            word = buf[:i].split()[-1].lower() if buf[:i].split() else ""
            if word.strip("".join(_CLOSERS) + "(") in _ABBREVIATIONS:
                return None
        return j
