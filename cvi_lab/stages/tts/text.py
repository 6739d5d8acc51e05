"""Text preparation shared by TTS backends: validation and splitting into speakable pieces.

Why split before synthesis: a TTS returns audio only when a whole input is done, so speaking a long text
clause by clause gives the first audio after the first clause instead of after the whole sentence, and gives
the stream a point to stop at between pieces when it is cancelled.
"""

from __future__ import annotations

import re

from cvi_lab.stages.base import StageInputError

_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "a.m", "p.m", "no"}
# a boundary = punctuation (+ closing quotes/brackets) followed by whitespace
_SENTENCE = re.compile(r"([.!?…]+[\"')\]”’»]*)\s+")
_CLAUSE = re.compile(r"([,;:—–]+[\"')\]”’»]*)\s+")
_SPACES = re.compile(r"\s+")

CHUNKINGS = ("sentence", "clause")


def check_text(text: object, who: str) -> str:
    """Collapse whitespace; empty or word-less text is a StageInputError."""
    if not isinstance(text, str):
        raise StageInputError(f"{who}: text must be a string, got {type(text).__name__}")
    clean = _SPACES.sub(" ", text).strip()
    if not any(ch.isalnum() for ch in clean):
        raise StageInputError(f"{who}: text {text!r} has nothing to speak; give text with at least one word")
    return clean


def _split(text: str, pattern: re.Pattern[str]) -> list[str]:
    out, start = [], 0
    for m in pattern.finditer(text):
        if m.group(1).startswith("."):
            words = text[start : m.start()].split()
            if words and words[-1].lower().strip("(\"'") in _ABBREVIATIONS:
                continue
        out.append(text[start : m.end(1)])
        start = m.end()
    if start < len(text):
        out.append(text[start:])
    return [p.strip() for p in out if p.strip()]


def sentences(text: str) -> list[str]:
    return _split(text, _SENTENCE)


def split_text(text: str, chunking: str = "clause", min_words: int = 3) -> list[str]:
    """Sentences, or clauses of at least `min_words` words (shorter ones join the next piece)."""
    if chunking not in CHUNKINGS:
        raise StageInputError(f"chunking {chunking!r} is not accepted; use one of {', '.join(CHUNKINGS)}")
    pieces: list[str] = []
    for sentence in sentences(text):
        if chunking == "sentence":
            pieces.append(sentence)
            continue
        buf = ""
        for clause in _split(sentence, _CLAUSE):
            buf = f"{buf} {clause}".strip()
            if len(buf.split()) >= min_words:
                pieces.append(buf)
                buf = ""
        if buf:  # a short tail joins the clause before it, inside the same sentence
            if pieces and pieces[-1] and not pieces[-1].endswith(tuple(".!?…")) and sentence.endswith(buf):
                pieces[-1] = f"{pieces[-1]} {buf}"
            else:
                pieces.append(buf)
    return [p for p in pieces if any(ch.isalnum() for ch in p)]
