"""Clause chunker: the first clause leaves early, later ones at natural boundaries, nothing is lost."""

from dataclasses import replace

import pytest

from cvi_lab.engine.chunker import ChunkerSettings, ClauseChunker, speakable

# fixed values, so these cases do not move when the shipped config is retuned
BASE = ChunkerSettings(first_min_words=3, first_max_words=10, min_words=6, max_words=30)


def feed(pieces, settings=None):
    """Push pieces one by one; return [(index of the piece that completed it, clause)] and the flush."""
    ch = ClauseChunker(settings or BASE)
    out = []
    for i, p in enumerate(pieces):
        out += [(i, c) for c in ch.push(p)]
    out += [(len(pieces), c) for c in ch.flush()]
    return out


def tokens(text):
    """Rough LLM-like tokenization: words with their leading space, punctuation separate."""
    import re

    return re.findall(r" ?[A-Za-z0-9']+| ?[^A-Za-z0-9' ]", text)


def test_first_clause_leaves_at_first_comma_with_enough_words():
    pieces = tokens("Well, I think that is great, and I would love to help you with that today.")
    out = feed(pieces)
    assert out[0][1] == "Well, I think that is great,"
    # emitted as soon as the comma arrived, not at the sentence end
    assert pieces[out[0][0]] == ","
    assert out[0][0] < len(pieces) - 5
    assert " ".join(c for _, c in out) == "Well, I think that is great, and I would love to help you with that today."


def test_short_leading_clause_waits_for_min_words():
    out = feed(tokens("Sure, I can do that for you."))
    assert [c for _, c in out] == ["Sure, I can do that for you."]


def test_sentence_end_always_cuts_even_if_short():
    out = feed(tokens("Hi! How are you doing today, my friend?"))
    assert [c for _, c in out] == ["Hi!", "How are you doing today, my friend?"]


def test_first_clause_emitted_without_waiting_for_next_token_on_safe_punctuation():
    ch = ClauseChunker(replace(BASE, first_min_words=3))
    assert ch.push("Oh my goodness") == []
    assert ch.push("!") == ["Oh my goodness!"]
    ch = ClauseChunker(replace(BASE, first_min_words=3))
    assert ch.push("Let me think about it") == []
    assert ch.push(",") == ["Let me think about it,"]


def test_period_waits_for_lookahead_then_cuts():
    ch = ClauseChunker(replace(BASE, first_min_words=3))
    assert ch.push("It costs about 3") == []
    assert ch.push(".") == []
    assert ch.push("5 dollars") == []
    assert ch.push(".") == []
    assert ch.push(" Anything") == ["It costs about 3.5 dollars."]
    assert ch.flush() == ["Anything"]


def test_numbers_times_and_abbreviations_are_not_boundaries():
    out = feed(tokens("We meet at 10:30 with Dr. Smith, who paid 1,000 dollars for it. Then we go home."))
    assert [c for _, c in out] == [
        "We meet at 10:30 with Dr. Smith,",
        "who paid 1,000 dollars for it.",
        "Then we go home.",
    ]


def test_later_clauses_need_min_words_at_commas():
    s = replace(BASE, first_min_words=2, min_words=6, max_words=30)
    out = feed(tokens("Yes, sure. First, open it, then look inside the box carefully, and close it."), s)
    assert [c for _, c in out] == ["Yes, sure.", "First, open it, then look inside the box carefully,", "and close it."]


def test_max_words_fallback_without_punctuation():
    s = replace(BASE, first_min_words=3, first_max_words=5, min_words=6, max_words=8)
    out = feed(tokens("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"), s)
    clauses = [c for _, c in out]
    assert clauses[0] == "one two three four five"
    assert clauses[1] == "six seven eight nine ten eleven twelve thirteen"
    assert " ".join(clauses).split() == "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen".split()


def test_max_words_never_cuts_inside_a_word():
    s = replace(BASE, first_min_words=3, first_max_words=3)
    ch = ClauseChunker(s)
    assert ch.push("alpha beta gam") == []
    assert ch.push("ma") == []
    assert ch.push(" delta") == ["alpha beta gamma"]


def test_markup_and_empty_pieces_are_not_spoken():
    out = feed(["**Sure", "**", "!", " ", "*", " ", "###", " Here", " it", " is", "."])
    assert [c for _, c in out] == ["Sure!", "Here it is."]
    assert feed(["...", "!!", " "]) == []
    assert speakable("  `code`  and\n\n  *bold* ") == "code and bold"


def test_closing_quotes_stay_with_their_clause():
    out = feed(['He said "stop', ' right', ' there!"', ' and', ' then', ' we', ' left', '.'])
    assert out[0][1] == 'He said "stop right there!"'


def test_newline_is_a_boundary():
    out = feed(["First item", "\n", "Second item", "\n"])
    assert [c for _, c in out] == ["First item", "Second item"]


@pytest.mark.parametrize(
    "text",
    [
        "A simple sentence.",
        "Well, well, well; what do we have here? A cat! A dog... and 3.14 pies, e.g. apple.",
        "no punctuation at all in this rather long piece of text that goes on and on and on and on and on forever",
        "Numbers 1,2,3 and a.b.c. then end",
    ],
)
def test_no_text_is_lost_or_duplicated(text):
    out = feed(tokens(text))
    assert "".join(" ".join(c for _, c in out).split()) == "".join(speakable(text).split())
