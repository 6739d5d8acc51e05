"""The interactions SPEC §5 adds, with scripted stand-in stages: tool_result closes a tool call,
set_emotion changes the avatar's expression and the voice's style, utterance.streaming carries seq /
content_index / final / is_interrupted. (The real-model tool round trip is in test_tool_result_real.py.)"""

from __future__ import annotations

import pytest

from cvi_lab.engine.offline import Join, Pause, Send, WaitFor, WaitQuiet, run_script
from cvi_lab.engine.tools import PendingToolCalls, ToolCall
from cvi_lab.stages.avatar.expression import Expression
from cvi_lab.stages.tts.style import VoiceStyle
from tests.engine.standins import BlankAvatar, ScriptedLLM, ScriptedTTS
from tests.engine.test_engine_unit import CID, make, run, settings, utterances

WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
BASE = {"message_type": "conversation", "conversation_id": CID}


def msg(event_type, **props):
    return {**BASE, "event_type": event_type, "properties": props}


class RepliesLLM(ScriptedLLM):
    """One scripted reply per call, in order (the last one repeats)."""

    def __init__(self, *replies: str) -> None:
        super().__init__(replies[0])
        self.replies = list(replies)

    async def stream(self, messages, max_tokens=None, stats=None):
        self.reply = self.replies[min(len(self.prompts), len(self.replies) - 1)]
        async for piece in super().stream(messages, max_tokens, stats):
            yield piece


async def test_tool_result_enters_the_prompt_and_is_answered():
    sets = settings(tools=WEATHER)
    llm = RepliesLLM('{"name": "get_weather", "arguments": {"city": "Paris"}}', "It is 31 degrees in Paris.")
    eng = make(llm=llm, sets=sets, greeting="Hi!")
    calls: list[dict] = []

    def tool_result(_engine):  # built once the tool call came (its id is known only then)
        return msg("conversation.tool_result", tool_call_id=calls[0]["tool_call_id"], result={"celsius": 31})

    await eng.start()
    try:
        eng.subscribe(lambda e: calls.append(e["properties"]) if e["event_type"] == "conversation.tool_call" else None)
        res = await run_script(eng, [Join(), WaitQuiet(), Send(msg("conversation.respond", text="Weather in Paris?")),
                                     WaitFor("conversation.tool_call")])
        call = calls[0]
        assert call["tool_call_id"].startswith("call_") and call["name"] == "get_weather"
        res2 = await run_script(eng, [Send(tool_result(eng)), WaitFor("conversation.replica.stopped_speaking"),
                                      WaitQuiet()])
        # the same call cannot be closed twice
        error = await eng.handle_interaction(msg("conversation.tool_result", tool_call_id=call["tool_call_id"],
                                                 result="again"))
    finally:
        await eng.stop()
    assert res.of_type("conversation.tool_call")[0]["properties"] == call
    last_prompt = llm.prompts[-1]
    assert last_prompt[-1].role == "user"
    assert last_prompt[-1].content.startswith("Weather in Paris?")
    assert 'The get_weather tool returned: {"celsius": 31}' in last_prompt[-1].content
    assert utterances(res2, "replica") == ["It is 31 degrees in Paris."]
    assert utterances(res2, "user") == []  # the tool's result is not the participant's utterance
    assert eng.stages.tts.texts[0] == "Hi!" and " ".join(eng.stages.tts.texts[1:]) == "It is 31 degrees in Paris."
    assert "no pending tool call" in error and "pending: none" in error


async def test_tool_result_by_name_and_its_errors():
    sets = settings(tools=WEATHER)
    eng = make(llm=RepliesLLM('{"name": "get_weather", "arguments": {}}', "Sunny."), sets=sets, greeting="Hi!")
    await eng.start()
    try:
        assert "give 'tool_call_id'" in await eng.handle_interaction(msg("conversation.tool_result", result="x"))
        assert "'result' is required" in await eng.handle_interaction(msg("conversation.tool_result", name="get_weather"))
        assert "no pending tool call with name 'get_weather'" in await eng.handle_interaction(
            msg("conversation.tool_result", name="get_weather", result="x"))
        await run_script(eng, [Join(), WaitQuiet(), Send(msg("conversation.respond", text="Weather?")),
                               WaitFor("conversation.tool_call")])
        assert await eng.handle_interaction(msg("conversation.tool_result", name="get_weather", result="sun")) is None
        errors = [e for e in eng.recorded if e[0] == "conversation.error"]
        assert len(errors) == 3  # every refusal was also an error event
    finally:
        await eng.stop()


def test_pending_tool_calls_match_by_id_or_latest_name():
    pending = PendingToolCalls()
    a, b = ToolCall("f", "{}"), ToolCall("f", '{"x": 1}')
    pending.add(a)
    pending.add(b)
    assert a.tool_call_id != b.tool_call_id
    with pytest.raises(ValueError, match="is a call of 'f', not 'g'"):
        pending.take(a.tool_call_id, "g")
    assert pending.take(None, "f") is b
    assert pending.take(a.tool_call_id, None) is a
    with pytest.raises(ValueError, match="pending: none"):
        pending.take(None, "f")


class ExpressiveBlank(BlankAvatar):
    def __init__(self) -> None:
        super().__init__()
        self.expressions: list[Expression] = []

    def set_expression(self, expression: Expression) -> None:
        self.expressions.append(expression)


class StyledScriptedTTS(ScriptedTTS):
    def __init__(self) -> None:
        super().__init__()
        self.styles: list[tuple[str, VoiceStyle]] = []

    async def stream_styled(self, text, style):
        self.styles.append((text, style))
        async for chunk in self.stream(text):
            yield chunk


async def test_set_emotion_reaches_the_expression_and_the_voice():
    eng = make(tts=StyledScriptedTTS(), greeting="Hi!")
    eng.stages.avatar = avatar = ExpressiveBlank()
    await eng.start()
    try:
        assert "accepted: neutral, happy, sad" in await eng.handle_interaction(
            msg("conversation.set_emotion", emotion="gleeful"))
        assert await eng.handle_interaction(msg("conversation.set_emotion", emotion="sad")) is None
        await run_script(eng, [Join(), WaitQuiet(), Send(msg("conversation.respond", text="How are you?")),
                               WaitFor("conversation.replica.stopped_speaking"), WaitQuiet()])
    finally:
        await eng.stop()
    sad_face, sad_voice = eng.emotions.get("sad")
    assert avatar.expressions == [sad_face] and sad_face.lid_drop > 0
    # the greeting and the answer were both spoken after the emotion was set: all in the sad style
    assert [style for _, style in eng.stages.tts.styles] == [sad_voice] * len(eng.stages.tts.styles)
    assert sad_voice.speed < 1 and len(eng.stages.tts.styles) >= 2


async def test_a_plain_tts_and_avatar_take_an_emotion_unchanged():
    eng = make(greeting="Hi!")
    await eng.start()
    try:
        assert await eng.handle_interaction(msg("conversation.set_emotion", emotion="happy")) is None
    finally:
        await eng.stop()


async def test_streaming_events_number_the_utterance_and_close_it():
    eng = make(greeting="Hi there. Nice to meet you, my friend.", llm=ScriptedLLM("Sure. It is easy."))
    res = await run(eng, [Join(), WaitQuiet(), Send(msg("conversation.respond", text="Help?")),
                          WaitFor("conversation.replica.stopped_speaking"), WaitQuiet()])
    by_speech: dict[str, list[dict]] = {}
    for e in res.of_type("conversation.utterance.streaming"):
        by_speech.setdefault(e["inference_id"], []).append(e["properties"])
    assert len(by_speech) == 2
    for stream in by_speech.values():
        assert [p["seq"] for p in stream] == list(range(len(stream)))
        assert [p["final"] for p in stream] == [False] * (len(stream) - 1) + [True]
        assert [p["content_index"] for p in stream[:-1]] == list(range(len(stream) - 1))
        assert stream[-1]["content_index"] == len(stream) - 1 and not stream[-1]["is_interrupted"]
    answer = next(s for s in by_speech.values() if s[-1]["speech"] == "Sure. It is easy.")
    assert "".join(p["delta"] for p in answer[:-1]).replace(" ", "") == "Sure.Itiseasy."


async def test_an_interrupted_utterance_stream_ends_interrupted():
    eng = make(greeting="Hi!", llm=ScriptedLLM("one two three four five six seven eight nine ten eleven twelve."),
               tts=ScriptedTTS(per_word=0.3))
    res = await run(eng, [Join(), WaitQuiet(), Send(msg("conversation.respond", text="Count.")),
                          WaitFor("conversation.replica.started_speaking"), Pause(1.0),
                          Send(msg("conversation.interrupt")), WaitFor("conversation.replica.stopped_speaking"),
                          WaitQuiet()])
    cut = res.of_type("conversation.replica_interrupted")[0]["inference_id"]
    stream = [e["properties"] for e in res.of_type("conversation.utterance.streaming") if e["inference_id"] == cut]
    assert stream[-1]["final"] and stream[-1]["is_interrupted"]
    heard = utterances(res, "replica")[-1]
    assert stream[-1]["speech"] == heard and heard.startswith("one")
    assert len(heard.split()) < 12  # cut: less than the whole utterance was heard
