"""Engine logic with scripted stand-in stages (see standins.py): turn taking, greeting, barge-in history,
echo, respond, failures, interaction validation. Real-model behaviour is in test_engine_integration.py."""

from __future__ import annotations

import base64

import pytest

from cvi_lab.domain.persona import DEFAULT_PERSONA
from cvi_lab.engine.engine import ConversationEngine, ConversationSpec, Sinks, Stages
from cvi_lab.engine.offline import Join, Pause, Say, Send, WaitFor, WaitQuiet, run_script
from cvi_lab.engine.pipeline_config import load_engine_settings
from tests.engine.standins import BlankAvatar, ScriptedASR, ScriptedLLM, ScriptedTTS, ScriptedTurn, energy_vad, tone

CID = "c0123"


def settings(**over):
    s = load_engine_settings()
    s.max_patience_ms = 400
    s.vad_min_silence_ms = 200
    s.barge_in_min_ms = 300
    for k, v in over.items():
        setattr(s, k, v)
    return s


def make(llm=None, asr=None, turn=None, tts=None, mode="full", greeting="Hi there friend!", sets=None, **spec_fields):
    recorded, turns = [], []
    stages = Stages(vad=energy_vad(), tts=tts or ScriptedTTS(), avatar=BlankAvatar(),
                    turn=turn or ScriptedTurn(), asr=asr or ScriptedASR(), llm=llm or ScriptedLLM())
    spec = ConversationSpec(CID, custom_greeting=greeting, pipeline_mode=mode,
                            **{"system_prompt": "You are a test.", **spec_fields})
    eng = ConversationEngine(spec, stages, sets or settings(),
                             sinks=Sinks(record_event=lambda t, p: recorded.append((t, p)),
                                         record_turn=lambda i, m: turns.append((i, m))))
    eng.recorded, eng.turn_records = recorded, turns
    return eng


def types(res):
    return [e["event_type"] for e in res.events]


def utterances(res, role):
    return [e["properties"]["speech"] for e in res.of_type("conversation.utterance") if e["properties"]["role"] == role]


async def run(eng, script):
    await eng.start()
    try:
        return await run_script(eng, script)
    finally:
        await eng.stop("test over")


async def test_greeting_then_a_turn_is_answered_and_recorded():
    eng = make()
    res = await run(eng, [Join(), WaitQuiet(), Say(tone(0.6), "q1"), WaitFor("conversation.replica.stopped_speaking"), WaitQuiet()])
    assert utterances(res, "replica") == ["Hi there friend!", "Sure, I can help you with that. It is easy."]
    assert utterances(res, "user") == ["hello there"]
    # every outgoing event has the envelope, a monotonic seq and a turn index
    seqs = [e["seq"] for e in res.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for e in res.events:
        assert e["conversation_id"] == CID and "timestamp" in e and "turn_idx" in e and "properties" in e
    ut = [e for e in res.of_type("conversation.utterance")]
    assert [e["turn_idx"] for e in ut] == [0, 1, 1]
    # the prompt: system first, then the greeting, then the user's words
    prompt = eng.stages.llm.prompts[0]
    assert [m.role for m in prompt] == ["system", "assistant", "user"]
    assert prompt[0].content.startswith("You are a test.")
    # the history keeps the full answer; transcript events were recorded
    assert eng.history[-1].content == "Sure, I can help you with that. It is easy."
    assert [t for t, _ in eng.recorded].count("conversation.utterance") == 3
    # a latency record with every mark on the critical path
    (idx, m), = eng.turn_records
    assert idx == 1
    for key in ("vad_end_ms", "turn_decision_ms", "asr_final_ms", "llm_first_token_ms", "first_clause_ms",
                "tts_first_audio_ms", "first_frame_sent_ms", "response_latency_ms"):
        assert m[key] is not None, key
    assert m["first_frame_sent_ms"] >= m["tts_first_audio_ms"] >= m["first_clause_ms"] >= m["llm_first_token_ms"]
    # the first clause went to the TTS on its own, before the LLM had finished
    # the first clause leaves after three words (first audio early); later ones at sentence ends
    assert eng.stages.tts.texts == ["Hi there friend!", "Sure, I can", "help you with that.", "It is easy."]
    assert "conversation.replica.started_speaking" in types(res)
    stopped = res.of_type("conversation.replica.stopped_speaking")
    assert all(e["properties"]["interrupted"] is False for e in stopped)
    assert stopped[-1]["properties"]["duration"] == pytest.approx(0.9, abs=0.1)  # 9 words x 0.1 s


async def test_turn_record_has_llm_and_tts_figures_for_tokens_per_s_and_rtf():
    eng = make()
    await run(eng, [Join(), WaitQuiet(), Say(tone(0.6), "q1"), WaitFor("conversation.replica.stopped_speaking"), WaitQuiet()])
    (_, m), = eng.turn_records
    assert m["llm_tokens"] == m["completion_tokens"] == 10  # the scripted reply: 10 words, one piece each
    assert m["llm_s"] is not None and m["llm_s"] >= 10 * 0.01 * 0.9  # 10 ms per piece
    assert m["tts_audio_s"] == pytest.approx(1.0, abs=1e-3)  # 10 words x 0.1 s synthesized
    assert m["tts_s"] is not None and 0.0 < m["tts_s"] < 5.0  # the TTS's own wall time, not the playback's


async def test_incomplete_turn_waits_and_resumed_speech_is_one_turn():
    asr = ScriptedASR(["first half", "first half and the rest"])
    turn = ScriptedTurn([0.1, 0.9])  # the first pause sounds unfinished
    eng = make(asr=asr, turn=turn, greeting="Hi!")
    res = await run(eng, [Join(), WaitQuiet(), Say(tone(0.5)), Pause(0.25), Say(tone(0.5)),
                          WaitFor("conversation.replica.stopped_speaking"), WaitQuiet()])
    assert utterances(res, "user") == ["first half and the rest"]
    assert turn.calls == 2
    # an answer to "first half" was prepared during the pause (speculation), then dropped unheard
    assert [p[-1].content for p in eng.stages.llm.prompts] == ["first half", "first half and the rest"]
    assert len(utterances(res, "replica")) == 2 and len(res.of_type("conversation.replica.started_speaking")) == 2
    assert len(eng.turn_records) == 1


async def test_patience_commits_an_incomplete_turn():
    eng = make(turn=ScriptedTurn([0.0]), greeting="Hi!")
    res = await run(eng, [Join(), WaitQuiet(), Say(tone(0.5)), WaitFor("conversation.replica.stopped_speaking")])
    assert utterances(res, "user") == ["hello there"]
    m = eng.turn_records[0][1]
    assert m["turn_by_patience"] is True
    # the answer was prepared while the patience ran, and held until the commit
    assert m["speculative"] is True and m["llm_first_token_ms"] < m["turn_decision_ms"] < m["first_frame_sent_ms"]
    assert len(eng.stages.llm.prompts) == 1


async def test_barge_in_stops_audio_and_history_keeps_only_heard_words():
    long_reply = " ".join(f"word{i}" for i in range(40)) + "."
    eng = make(llm=ScriptedLLM(long_reply), tts=ScriptedTTS(per_word=0.1), greeting="Hi!")
    res = await run(eng, [Join(), WaitQuiet(), Say(tone(0.5)), WaitFor("conversation.replica.started_speaking"),
                          Pause(1.0), Say(tone(0.8)), WaitFor("conversation.replica_interrupted"),
                          WaitQuiet(timeout=10)])
    assert "conversation.replica_interrupted" in types(res)
    stopped = [e for e in res.of_type("conversation.replica.stopped_speaking") if e["properties"]["interrupted"]]
    assert len(stopped) == 1
    heard = utterances(res, "replica")[1]
    n = len(heard.split())
    assert 3 <= n < 40  # about 1 s + barge-in time of 0.1 s words, not the whole answer
    assert long_reply.startswith(heard)
    assert stopped[0]["properties"]["duration"] == pytest.approx(n * 0.1, abs=0.15)
    # the history keeps the heard part only; the barge-in speech became the next user turn
    assistant = [m.content for m in eng.history if m.role == "assistant"]
    assert assistant[1] == heard
    assert utterances(res, "user") == ["hello there", "hello there"]
    # no replica audio after the barge-in decision (+ one frame in flight)
    cut = res.of_type("conversation.replica_interrupted")[0]["_t"]
    resumed = [e["_t"] for e in res.of_type("conversation.replica.started_speaking") if e["_t"] > cut][0]
    late = [t for t in res.audible_times() if cut + 0.15 < t < resumed]
    assert late == []


async def test_greeting_cannot_be_interrupted():
    eng = make(greeting=" ".join(["hello"] * 20) + ".", tts=ScriptedTTS(per_word=0.1))
    res = await run(eng, [Join(), WaitFor("conversation.replica.started_speaking"), Say(tone(0.8)),
                          Send({"message_type": "conversation", "event_type": "conversation.interrupt"}), WaitQuiet()])
    assert "conversation.replica_interrupted" not in types(res)
    greeting_stop = res.of_type("conversation.replica.stopped_speaking")[0]
    assert greeting_stop["properties"]["interrupted"] is False
    assert greeting_stop["properties"]["duration"] == pytest.approx(2.0, abs=0.1)


async def test_short_speech_over_the_replica_is_a_backchannel():
    reply = " ".join(f"w{i}" for i in range(25)) + "."
    eng = make(llm=ScriptedLLM(reply), greeting="Hi!", sets=settings(barge_in_min_ms=1500))
    res = await run(eng, [Join(), WaitQuiet(), Say(tone(0.5)), WaitFor("conversation.replica.started_speaking"),
                          Say(tone(0.3)), WaitFor("conversation.replica.stopped_speaking"), WaitQuiet()])
    assert "conversation.replica_interrupted" not in types(res)
    assert utterances(res, "user") == ["hello there"]
    assert utterances(res, "replica")[-1] == reply


async def test_barge_in_counts_the_turns_speech_across_a_short_pause():
    """ "Wait, ... stop please": two bursts, each shorter than barge_in_min_ms, with a pause the VAD ends a
    segment on but the turn goes on through; together they are long enough to interrupt."""
    reply = " ".join(f"w{i}" for i in range(40)) + "."
    eng = make(llm=ScriptedLLM(reply), tts=ScriptedTTS(per_word=0.1), greeting="Hi!",
               turn=ScriptedTurn([0.9, 0.1, 0.9]), sets=settings(barge_in_min_ms=600))
    res = await run(eng, [Join(), WaitQuiet(), Say(tone(0.5)), WaitFor("conversation.replica.started_speaking"),
                          Pause(0.5), Say(tone(0.4)), Pause(0.25), Say(tone(0.4)),
                          WaitFor("conversation.replica_interrupted"), WaitQuiet(timeout=10)])
    assert "conversation.replica_interrupted" in types(res)
    assert utterances(res, "user")[:2] == ["hello there", "hello there"]


async def test_speech_that_outlasts_the_replica_is_a_turn_not_a_backchannel():
    """Seen live: the participant starts a question in the replica's last words; the replica ends on its own
    before the speech is long enough to barge in. The question is a turn (answered), not a backchannel."""
    eng = make(llm=ScriptedLLM("Short answer here."), greeting="Hi!", sets=settings(barge_in_min_ms=1500))
    res = await run(eng, [Join(), WaitQuiet(), Say(tone(0.5)), WaitFor("conversation.replica.started_speaking"),
                          Pause(0.1), Say(tone(2.0)), WaitFor("conversation.replica.stopped_speaking"), WaitQuiet(),
                          WaitFor("conversation.replica.stopped_speaking"), WaitQuiet()])
    assert "conversation.replica_interrupted" not in types(res)  # nothing was left to interrupt
    assert utterances(res, "user") == ["hello there", "hello there"]
    assert utterances(res, "replica") == ["Hi!", "Short answer here.", "Short answer here."]


async def test_llm_failure_apologises_and_the_call_goes_on():
    llm = ScriptedLLM("Fine, then I will keep talking.", fail_after=0, fail_calls=1)
    eng = make(llm=llm, greeting="Hi!")
    res = await run(eng, [Join(), WaitQuiet(), Say(tone(0.5)), WaitFor("conversation.error"), WaitQuiet(),
                          Say(tone(0.5)), WaitFor("conversation.replica.stopped_speaking"), WaitQuiet()])
    errors = res.of_type("conversation.error")
    assert len(errors) == 1 and errors[0]["properties"]["stage"] == "llm"
    assert "endpoint down" in errors[0]["properties"]["error"]
    assert "conversation.error" in [t for t, _ in eng.recorded]
    # the apology was said, and the call went on: the next turn got a real answer
    assert utterances(res, "replica")[1:] == [eng.settings.apology, "Fine, then I will keep talking."]


async def test_tts_failure_reports_error_without_crash():
    eng = make(tts=ScriptedTTS(fail=True), greeting="Hi!")
    res = await run(eng, [Join(), Send({"message_type": "conversation", "event_type": "conversation.respond",
                                        "properties": {"text": "hi"}}), Pause(0.5)])
    stages = [e["properties"].get("stage") for e in res.of_type("conversation.error")]
    assert "tts" in stages
    assert eng.running is False


async def test_echo_mode_says_exactly_the_echoed_text_in_chunks():
    eng = make(mode="echo", greeting="Hi!")
    msgs = [{"message_type": "conversation", "event_type": "conversation.echo", "conversation_id": CID,
             "properties": {"modality": "text", "text": t, "inference_id": "inf1", "done": d}}
            for t, d in (("Hello from the", False), (" application, how are", False), (" you?", True))]
    res = await run(eng, [Join(), WaitQuiet(), *[Send(m) for m in msgs], WaitFor("conversation.replica.stopped_speaking"),
                          Say(tone(0.5)), Pause(0.8)])
    assert utterances(res, "replica")[-1] == "Hello from the application, how are you?"
    assert eng.stages.tts.texts[-2:] == ["Hello from the application,", "how are you?"]
    assert eng.stages.llm.prompts == [] and eng.stages.asr.calls == 0  # echo mode: no ASR/LLM
    assert "conversation.user.started_speaking" in types(res)  # the VAD still drives the user events
    ev = res.of_type("conversation.replica.started_speaking")[-1]
    assert ev["inference_id"] == "inf1"


async def test_echo_audio_goes_straight_to_the_avatar():
    eng = make(mode="echo", greeting="Hi!")
    pcm = (tone(0.5, rate=24_000) * 32767).astype("<i2").tobytes()
    msg = {"message_type": "conversation", "event_type": "conversation.echo",
           "properties": {"modality": "audio", "audio": base64.b64encode(pcm).decode(), "sample_rate": 24000,
                          "inference_id": "a1", "done": True}}
    res = await run(eng, [Join(), WaitQuiet(), Send(msg), WaitFor("conversation.replica.stopped_speaking")])
    stop = res.of_type("conversation.replica.stopped_speaking")[-1]
    assert stop["properties"]["duration"] == pytest.approx(0.5, abs=0.05)


async def test_respond_interrupt_and_context_messages():
    reply = " ".join(f"w{i}" for i in range(30)) + "."
    eng = make(llm=ScriptedLLM(reply), greeting="Hi!")
    base = {"message_type": "conversation", "conversation_id": CID}
    res = await run(eng, [
        Join(), WaitQuiet(),
        Send({**base, "event_type": "conversation.overwrite_llm_context", "properties": {"context": "The user is Ada."}}),
        Send({**base, "event_type": "conversation.append_llm_context", "properties": {"context": "She likes tea."}}),
        Send({**base, "event_type": "conversation.respond", "properties": {"text": "What do I like?"}}),
        WaitFor("conversation.replica.started_speaking"), Pause(0.3),
        Send({**base, "event_type": "conversation.interrupt", "properties": {}}),
        WaitFor("conversation.replica.stopped_speaking"), WaitQuiet(),
    ])
    system = eng.stages.llm.prompts[0][0].content
    assert system.endswith("The user is Ada. She likes tea.")
    assert utterances(res, "user") == ["What do I like?"]
    assert "conversation.replica_interrupted" in types(res)
    heard = utterances(res, "replica")[-1]
    assert 0 < len(heard.split()) < 30


@pytest.mark.parametrize(
    "message, fragment",
    [
        ("not json", "not JSON"),
        ([1, 2], "JSON object"),
        ({"message_type": "system", "event_type": "conversation.echo"}, "message_type"),
        ({"message_type": "conversation", "event_type": "conversation.dance"}, "conversation.dance"),
        ({"message_type": "conversation", "event_type": "conversation.echo", "conversation_id": "cOther"}, "does not match"),
        ({"message_type": "conversation", "event_type": "conversation.echo", "properties": "x"}, "properties must be"),
        ({"message_type": "conversation", "event_type": "conversation.echo", "properties": {"modality": "smell"}}, "modality"),
        ({"message_type": "conversation", "event_type": "conversation.echo", "properties": {"modality": "audio", "audio": "%%%"}}, "base64"),
        ({"message_type": "conversation", "event_type": "conversation.respond", "properties": {"text": "  "}}, "'text'"),
        ({"message_type": "conversation", "event_type": "conversation.append_llm_context", "properties": {}}, "'context'"),
        ({"message_type": "conversation", "event_type": "conversation.sensitivity", "properties": {"participant_pause_sensitivity": "extreme"}}, "extreme"),
        ({"message_type": "conversation", "event_type": "conversation.sensitivity", "properties": {"volume": 3}}, "volume"),
    ],
)
async def test_malformed_interactions_get_an_error_event_and_the_call_goes_on(message, fragment):
    eng = make(greeting="Hi!")
    events = []
    eng.subscribe(events.append)
    await eng.start()
    try:
        await eng.handle_interaction(message)
        err = [e for e in events if e["event_type"] == "conversation.error"]
        assert len(err) == 1 and fragment in err[0]["properties"]["error"]
        assert err[0]["properties"]["source"] == "interaction"
        await eng.handle_interaction({"message_type": "conversation", "event_type": "conversation.echo",
                                      "properties": {"text": "still here"}})
        assert eng.running
    finally:
        await eng.stop()


async def test_sensitivity_message_changes_thresholds_at_run_time():
    eng = make()
    await eng.start()
    try:
        await eng.handle_interaction({"message_type": "conversation", "event_type": "conversation.sensitivity",
                                      "properties": {"participant_pause_sensitivity": "high",
                                                     "participant_interrupt_sensitivity": "superlow"}})
        assert eng.settings.max_patience_ms == 800 and eng.settings.barge_in_min_ms == 1500
        assert eng.listener.settings is eng.settings
    finally:
        await eng.stop()


async def test_tool_call_convention_becomes_an_event():
    sets = settings()
    sets.tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    eng = make(llm=ScriptedLLM('{"name": "get_weather", "arguments": {"city": "Paris"}}'), sets=sets, greeting="Hi!")
    res = await run(eng, [Join(), WaitQuiet(), Send({"message_type": "conversation", "event_type": "conversation.respond",
                                                     "properties": {"text": "weather?"}}),
                          WaitFor("conversation.tool_call")])
    call = res.of_type("conversation.tool_call")[0]["properties"]
    assert call["name"] == "get_weather" and '"Paris"' in call["arguments"]
    assert "get_weather" in eng.stages.llm.prompts[0][0].content
    assert eng.stages.tts.texts == ["Hi!"]  # nothing of the JSON was spoken


async def test_system_message_is_what_the_llm_saw_on_the_latest_turn():
    """The stored transcript takes `system_message()`: it must be the prompt's system message, with the default
    prompt, the persona context, the context as changed during the call and the tool block."""
    sets = settings()
    sets.tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    eng = make(llm=ScriptedLLM("Sure."), sets=sets, greeting="Hi!", system_prompt="",
               persona_context="Ada sells rocks.", conversational_context="Talking to Michael.")
    default = DEFAULT_PERSONA["system_prompt"]  # the persona has no prompt: the default persona's is used
    before = eng.system_message()  # no turn yet: what the LLM would see now
    assert before.startswith(default) and "get_weather" in before
    base = {"message_type": "conversation", "conversation_id": CID}
    respond = {**base, "event_type": "conversation.respond"}
    await run(eng, [
        Join(), WaitQuiet(),
        Send({**respond, "properties": {"text": "Hello?"}}), WaitQuiet(),
        Send({**base, "event_type": "conversation.overwrite_llm_context", "properties": {"context": "The user is Ada."}}),
        Send({**base, "event_type": "conversation.append_llm_context", "properties": {"context": "She likes tea."}}),
        Send({**respond, "properties": {"text": "What do I like?"}}), WaitQuiet(),
        Send({**base, "event_type": "conversation.overwrite_llm_context", "properties": {"context": "Never sent."}}),
    ])
    prompts = eng.stages.llm.prompts
    assert len(prompts) == 2 and [p[0].role for p in prompts] == ["system", "system"]
    assert prompts[0][0].content == before and "Talking to Michael." in before
    seen = prompts[-1][0].content
    assert eng.system_message() == seen
    assert seen.startswith(default)
    for part in ("Ada sells rocks.", "The user is Ada. She likes tea.", "get_weather"):
        assert part in seen, part
    assert "Talking to Michael." not in seen and "Never sent." not in seen
