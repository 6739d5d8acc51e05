"""The control panel against a real server on loopback: bad input becomes a message, a call is created and
followed (captions, speaking state, latency chart), End shows the shutdown reason and usage, a timeout seen
by the polling thread ends the panel's call too."""

from __future__ import annotations

import time

import pytest

from cvi_lab.notebook.panel import ControlPanel


def _live(server) -> int:
    return server.client().list_conversations(status="active")["total_count"]


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_lists_are_filled_from_the_server(server):
    panel = ControlPanel(server)
    assert panel.persona.value == "pdefa0017"
    assert ("the persona's default replica", "") in panel.replica.options
    assert any(v == "rdefa0017" for _, v in panel.replica.options)
    assert "english" in panel.language.options and "multilingual" in panel.language.options


@pytest.mark.parametrize("field, value, words", [
    ("max_call_duration", "ten minutes", "max call duration: 'ten minutes' is not a number"),
    ("participant_absent_timeout", "0", "participant absent timeout: 0 s is not accepted"),
    ("participant_left_timeout", "-1", "participant left timeout: -1 s is not accepted"),
    ("participant_absent_timeout", "2.5", "not a whole number"),
])
def test_invalid_timeout_is_a_message_not_a_traceback(server, field, value, words):
    panel = ControlPanel(server)
    getattr(panel, field).value = value
    assert panel.create() is None
    assert words.replace("'", "&#x27;") in panel.message.value and "Traceback" not in panel.message.value
    assert _live(server) == 0 and panel.meeting.value == "" and not panel.create_button.disabled


def test_server_refusals_are_shown_in_its_words(server):
    panel = ControlPanel(server)
    panel.language.value = "klingon"
    assert panel.create() is None
    assert "the server refused the call" in panel.message.value
    assert "supported: " in panel.message.value and "english" in panel.message.value
    panel.language.value = "english"
    panel.max_call_duration.value = "999999"  # above server.limits.max_call_duration_s
    assert panel.create() is None and "86400" in panel.message.value
    assert _live(server) == 0


def test_create_follow_and_end(make_server, event_runtimes):
    server = make_server(with_runtime=True)
    panel = ControlPanel(server, poll_s=0.1)
    panel.greeting.value = "Hello <b>there</b>"
    panel.greenscreen.value = True
    session = panel.create()
    assert session is not None, panel.message.value
    cid = session.conversation_id
    record = server.client().get_conversation(cid)
    assert record["status"] == "active" and record["properties"]["apply_greenscreen"] is True
    assert record["custom_greeting"] == "Hello <b>there</b>"
    assert f'src="{record["conversation_url"]}"' in panel.meeting.value
    assert 'allow="microphone' in panel.meeting.value and record["conversation_url"].startswith("http://127.0.0.1:")
    assert panel.end_button.disabled is False and panel.create_button.disabled is True
    assert "replica: listening" in panel.speaking.value  # the runtime's live events are subscribed
    first_chart = panel.chart.value
    assert first_chart[:8] == b"\x89PNG\r\n\x1a\n"

    # a second call while this one runs is refused with a message
    assert panel.create() is None and "already running" in panel.message.value

    runtime = event_runtimes[-1]
    call = runtime.call
    runtime.emit("conversation.replica.started_speaking", {})
    runtime.emit("conversation.utterance.streaming", {"role": "replica", "speech": "Hi, how"})
    server._loop.call(call.add_event, "conversation.utterance", {"role": "user", "speech": "what is <script>?",
                                                                 "turn_idx": 1})
    assert _wait(lambda: "what is &lt;script&gt;?" in panel.captions.value)  # the polling thread drew it
    assert _wait(lambda: "replica: speaking" in panel.speaking.value)
    assert "Hi, how" in panel.captions.value
    runtime.emit("conversation.replica.stopped_speaking", {"duration": 1.0, "interrupted": False})
    server._loop.call(call.add_event, "conversation.utterance", {"role": "replica", "speech": "A replica.",
                                                                 "turn_idx": 1})
    server._loop.call(call.add_turn_metrics, 1, {
        "turn_idx": 1, "source": "voice", "speech_end_ms": 0.0, "vad_end_ms": 210.0, "asr_final_ms": 380.0,
        "turn_decision_ms": 400.0, "llm_first_token_ms": 900.0, "first_clause_ms": 1100.0,
        "tts_first_audio_ms": 1350.0, "first_frame_sent_ms": 1420.0, "response_latency_ms": 1420.0})
    assert _wait(lambda: panel.snapshot is not None and len(panel.snapshot.turns) == 1)
    assert _wait(lambda: panel.chart.value != first_chart)  # redrawn with the new turn
    assert "replica: listening" in panel.speaking.value and "<b>replica</b>: A replica." in panel.captions.value

    snap = panel.end()
    assert snap is not None and snap.ended and snap.shutdown_reason == "end_conversation_endpoint_hit"
    assert snap.usage_seconds > 0
    assert "end_conversation_endpoint_hit" in panel.summary.value and "usage" in panel.summary.value
    assert "median response latency 1420 ms" in panel.summary.value
    assert "The call ended" in panel.meeting.value
    assert panel.end_button.disabled and not panel.create_button.disabled
    assert _live(server) == 0 and runtime.subscribers == []  # the panel let go of the live events
    assert panel.end().ended  # idempotent


def test_the_polling_thread_sees_a_timeout_end_the_call(server):
    panel = ControlPanel(server, poll_s=0.1)
    panel.participant_absent_timeout.value = "1"
    assert panel.create() is not None
    assert "speaking state unknown: no engine is attached" in panel.speaking.value
    snap = panel.wait_until_ended(15)
    assert snap is not None and snap.shutdown_reason == "participant_absent_timeout reached"
    assert _wait(lambda: "participant_absent_timeout reached" in panel.summary.value)
    assert not panel.create_button.disabled


def test_end_without_a_call_and_attach_unknown(server):
    panel = ControlPanel(server)
    assert panel.end() is None and "no call to end" in panel.message.value
    assert panel.attach("c000000") is None and "not found" in panel.message.value


def test_attach_to_a_conversation_created_from_python(server):
    api = server.client()
    created = api.create_conversation({"persona_id": "pdefa0017", "properties": {"max_call_duration": 60}})
    panel = ControlPanel(server)
    assert panel.attach(created["conversation_id"]) is not None
    assert created["conversation_url"] in panel.meeting.value
    assert panel.end().shutdown_reason == "end_conversation_endpoint_hit"


def test_remote_server_serves_turns_over_http(server):
    """A server started elsewhere: per-turn records come from GET /v2/conversations/{id}/turns."""
    from cvi_lab.notebook.server import connect

    remote = connect(server.url)
    panel = ControlPanel(remote)
    assert panel.create() is not None
    snap = panel.end()
    assert snap.turns_available is True and snap.turns == []
    assert "per-turn latency not offered by this server" not in panel.summary.value


def test_unreachable_server_is_a_clear_error():
    from cvi_lab.notebook.client import ApiError
    from cvi_lab.notebook.server import connect
    from tests.helpers.server_process import free_port

    with pytest.raises(ApiError, match="cannot reach http://127.0.0.1:.*is the server running"):
        connect(f"http://127.0.0.1:{free_port()}")


def test_start_server_reuses_the_kernel_server(tmp_path, monkeypatch):
    from cvi_lab.notebook import server as S

    monkeypatch.setenv("CVI_LAB_HOME", str(tmp_path))
    monkeypatch.setattr(S, "_CURRENT", None)
    first = S.start_server("~vad", "~turn", "~asr", "~llm", "~tts", "~avatar", live=False)
    try:
        assert S.start_server() is first and first.url.startswith("http://127.0.0.1:")
        assert first.store.path.parent == tmp_path.resolve()
    finally:
        first.stop()
        first.stop()  # idempotent
    assert not first.running and S._CURRENT is None
