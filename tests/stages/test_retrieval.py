"""The retrieval stage: documents → passages, BM25 ranking, strategies, and the passages reaching the LLM's
prompt on a user turn (engine with scripted stand-in stages; the real model's answer is in tests/e2e)."""

from __future__ import annotations

import pytest

from cvi_lab.config import load_group
from cvi_lab.domain.documents import knowledge_scope
from cvi_lab.engine.engine import ConversationEngine, ConversationSpec, Sinks, Stages
from cvi_lab.engine.offline import Join, Send, WaitFor, WaitQuiet, run_script
from cvi_lab.engine.pipeline_config import load_engine_settings
from cvi_lab.engine.prompt import with_passages
from cvi_lab.engine.stage_pool import instantiate
from cvi_lab.stages.base import ChatMessage
from cvi_lab.stages.retrieval import Knowledge, Limits, Passage, Retriever
from cvi_lab.stages.retrieval.bm25 import BM25Retriever, terms
from cvi_lab.stages.retrieval.none import NoRetriever
from cvi_lab.stages.retrieval.text import UnsupportedDocument, detect_format, passages, to_text
from tests.engine.standins import BlankAvatar, ScriptedASR, ScriptedLLM, ScriptedTTS, ScriptedTurn, energy_vad

FACTS = [
    "The lab's espresso machine is called Marvin and lives on the third floor.",
    "Visitors park in lot C, next to the loading dock.",
    "The Wi-Fi password for guests is tangerine-42.",
    "Lunch is served at noon in the atrium on weekdays.",
    "Marvin needs descaling every two weeks.",
]


def bm25() -> BM25Retriever:
    return instantiate(load_group("retrieval", "bm25"))


def as_passages(texts) -> list[Passage]:
    return [Passage("d1", i, t) for i, t in enumerate(texts)]


# ------------------------------------------------------------ documents → text → passages
def test_html_loses_tags_scripts_and_styles():
    page = b"<!DOCTYPE html><html><head><title>T</title><style>p{}</style></head><body><h1>Parking</h1>" \
           b"<p>Visitors park in <b>lot C</b> &amp; walk.</p><script>alert(1)</script></body></html>"
    fmt = detect_format("https://x/page", "text/html; charset=utf-8", page)
    text = to_text(page, fmt)
    assert fmt == "html" and "Visitors park in lot C & walk." in text
    assert "alert" not in text and "p{}" not in text and "<" not in text


def test_markdown_loses_its_markup():
    source = "# Guide\n\n- **Wi-Fi**: the password is `tangerine-42`\n- see [the map](https://x/map)\n"
    text = to_text(source.encode(), detect_format("guide.md", None, source.encode()))
    assert "Guide" in text and "Wi-Fi: the password is tangerine-42" in text and "see the map" in text
    assert "#" not in text and "**" not in text and "https://x/map" not in text


@pytest.mark.parametrize("body,words", [
    (b"%PDF-1.7 ...", "the PDF could not be read"),
    (b"\xff\xfe\x00\x01binary", "not UTF-8 text; accepted formats: text, markdown, html, pdf"),
])
def test_unreadable_documents_say_what_is_accepted(body, words):
    with pytest.raises(UnsupportedDocument) as err:
        to_text(body, detect_format("f.bin", None, body))
    assert words in str(err.value)


def test_passages_keep_sentences_whole_and_paragraphs_apart():
    text = "One two three. Four five six. Seven eight.\n\nNew paragraph here."
    assert passages(text, 6) == ["One two three. Four five six.", "Seven eight.", "New paragraph here."]
    assert passages("a " * 13, 5) == ["a a a a a", "a a a a a", "a a a"]


# ------------------------------------------------------------ ranking and strategies
def test_bm25_finds_the_passage_that_answers():
    index = bm25().index(as_passages(FACTS))
    best = index.search("What is the guest wifi password?", Limits(1, 1000))
    assert [p.idx for p in best] == [2]
    both = index.search("Tell me about Marvin", Limits(3, 1000))
    assert {p.idx for p in both} == {0, 4}  # only the passages that share a word with the question


def test_a_question_that_shares_nothing_gets_no_passages():
    assert bm25().index(as_passages(FACTS)).search("hello", Limits(4, 4000)) == []


def test_strategies_trade_passages_for_a_shorter_prompt():
    retriever, query = bm25(), "Marvin lunch visitors park password weekdays"
    index = retriever.index(as_passages(FACTS))
    found = {s: index.search(query, retriever.limits(s)) for s in ("speed", "balanced", "quality")}
    assert len(found["speed"]) < len(found["balanced"]) < len(found["quality"])
    assert all(sum(len(p.text) for p in ps) <= retriever.limits(s).max_chars for s, ps in found.items())
    with pytest.raises(KeyError, match="known: speed, balanced, quality"):
        retriever.limits("thorough")


def test_terms_fold_case_and_plurals():
    assert terms("Codes, CODE and glass") == ["code", "code", "and", "glass"]


def test_none_retrieves_nothing_and_both_backends_are_retrievers():
    assert NoRetriever().index(as_passages(FACTS)).search("Marvin", Limits(4, 4000)) == []
    assert isinstance(instantiate(load_group("retrieval", "none")), Retriever)
    assert isinstance(bm25(), Retriever)


def test_a_call_without_passages_or_retriever_has_no_knowledge():
    assert Knowledge.of_call(bm25(), [], "balanced") is None
    assert Knowledge.of_call(None, as_passages(FACTS), "balanced") is None


def test_scope_joins_conversation_and_persona_and_picks_the_strategy():
    conv = {"document_ids": ["d1"], "document_tags": ["faq"], "document_retrieval_strategy": None}
    persona = {"document_ids": ["d2", "d1"], "document_tags": None, "document_retrieval_strategy": "quality"}
    assert knowledge_scope(conv, persona) == (["d1", "d2"], ["faq"], "quality")
    assert knowledge_scope({}, {}) == ([], [], "balanced")


def test_passages_go_ahead_of_the_latest_user_message_only():
    messages = [ChatMessage("system", "S"), ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello"),
                ChatMessage("user", "Wi-Fi?")]
    out = with_passages(messages, "Facts:", ["The password is tangerine-42."])
    assert out[:3] == messages[:3]
    assert out[3] == ChatMessage("user", "Facts:\n- The password is tangerine-42.\n\nWi-Fi?")
    assert with_passages(messages, "Facts:", []) == messages


# ------------------------------------------------------------ a user turn of a call
async def test_a_user_turn_carries_the_best_passages_and_records_the_retrieval_time():
    llm, turns = ScriptedLLM("It is tangerine-42."), []
    stages = Stages(vad=energy_vad(), tts=ScriptedTTS(), avatar=BlankAvatar(), turn=ScriptedTurn(),
                    asr=ScriptedASR(), llm=llm, retrieval=bm25())
    spec = ConversationSpec("c0123", system_prompt="You are a test.", custom_greeting="Hi!",
                            passages=tuple(as_passages(FACTS)), retrieval_strategy="speed")
    eng = ConversationEngine(spec, stages, load_engine_settings(),
                             sinks=Sinks(record_event=lambda t, p: None, record_turn=lambda i, m: turns.append(m)))
    await eng.start()
    try:
        await run_script(eng, [Join(), WaitQuiet(), Send({
            "message_type": "conversation", "conversation_id": "c0123", "event_type": "conversation.respond",
            "properties": {"text": "What is the guest Wi-Fi password?"}}),
            WaitFor("conversation.replica.stopped_speaking"), WaitQuiet()])
    finally:
        await eng.stop("test over")
    [prompt] = [p for p in llm.prompts if p[-1].role == "user"]
    assert prompt[0].content == eng.dialogue.system_message()  # the system message is left alone (prompt cache)
    assert prompt[-1].content.endswith("\n\nWhat is the guest Wi-Fi password?")
    assert "- The Wi-Fi password for guests is tangerine-42." in prompt[-1].content
    assert "Marvin" not in prompt[-1].content  # speed: one passage
    assert eng.dialogue.history[-2].content == "What is the guest Wi-Fi password?"  # the history keeps the words
    [answer] = [m for m in turns if m.get("source") == "respond"]
    assert answer["retrieval_ms"] is not None and answer["retrieval_ms"] >= 0 and answer["retrieval_passages"] == 1


PARAPHRASED = [
    "The parking lot is behind the building, next to the bakery.",
    "Doors are unlocked at nine every morning and we close at six.",
    "Our founder grew up in Lisbon and loves sardines.",
]


@pytest.mark.slow
async def test_the_embedding_retriever_finds_what_is_said_in_other_words():
    """`retrieval=minilm` (all-MiniLM-L6-v2 from its pip package): a question that shares no word with its
    answer finds it, where BM25 finds nothing; an unrelated question gets no passage; the ranking repeats."""
    minilm = instantiate(load_group("retrieval", "minilm"))
    assert isinstance(minilm, Retriever)
    await minilm.warmup()
    index, lexical = minilm.index(as_passages(PARAPHRASED)), bm25().index(as_passages(PARAPHRASED))
    one = minilm.limits("speed")
    for question, answer in [("When do you open?", 1), ("Where do I park?", 0)]:
        assert [p.idx for p in index.search(question, one)] == [answer], question
        assert lexical.search(question, one) == [], question
    assert index.search("How tall is Mount Everest?", minilm.limits("quality")) == []
    again = minilm.index(as_passages(PARAPHRASED))
    assert (again.vectors == index.vectors).all()
