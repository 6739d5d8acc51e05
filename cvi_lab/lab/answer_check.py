"""Answer correctness without a judge: does the answer state the line's expected key fact (`expect.answer`)?

Why: an LLM judge is only as good as its agreement with people, and the embedded 135M judge agrees with the
hand labels no better than chance; a reference check is deterministic and model-free, so it measures answer
quality on any machine. It is narrow by design: only lines with an `expect.answer` count, and a key fact is
stated when the answer holds its numbers (a key with digits or a number word: "366", "seven", "100 degrees
Celsius" -> 100), otherwise its first content word, the name ("the Pacific Ocean" -> pacific), both after
`metrics.normalize` (so "7" and "seven" are one word).
"""

from __future__ import annotations

from cvi_lab.lab.metrics import NUMBER_WORDS, TurnResult, normalize

FILLER = frozenset({"the", "a", "an", "of", "degrees", "is", "it"})


def key_words(key: str) -> set[str]:
    """The words an answer must contain to state `key`: its numbers if it has any, else its first content word."""
    words = normalize(key).split()
    numbers = {w for w in words if w.isdigit() or w in NUMBER_WORDS}
    content = [w for w in words if w not in FILLER]
    return numbers or set(content[:1])


def states(answer: str, key: str) -> bool:
    need = key_words(key)
    return bool(need) and need <= set(normalize(answer).split())


def answer_metrics(turns: list[TurnResult]) -> dict[str, float]:
    """`answer_correct_rate`: of the lines with an expected answer that the replica should answer, the share
    whose answer states it (an unanswered line counts as wrong); absent when no line has one."""
    graded = [t for t in turns if t.expect.answer and t.expect.take_turn and not t.error]
    if not graded:
        return {}
    return {"answer_correct_rate": sum(states(t.replica_text, t.expect.answer) for t in graded) / len(graded),
            "answer_graded_turns": float(len(graded))}
