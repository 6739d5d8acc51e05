"""Charts and words of the panel: hop order, empty states, PNG bytes, escaping, summaries."""

from cvi_lab.notebook import charts, present
from cvi_lab.notebook.session import Caption, LiveState, Snapshot, snapshot_from

TURN = {"turn_idx": 2, "speech_end_ms": 0.0, "vad_end_ms": 200.0, "asr_final_ms": 380.0, "turn_decision_ms": 350.0,
        "llm_first_token_ms": 900.0, "first_clause_ms": None, "tts_first_audio_ms": 1300.0,
        "first_frame_sent_ms": 1400.0, "response_latency_ms": 1400.0}


def test_hops_follow_the_timeline():
    hops = charts.hops(TURN)
    assert [h[0] for h in hops] == ["vad_end", "turn_decision", "asr_final", "llm_first_token", "tts_first_audio",
                                    "first_frame_sent"]
    assert hops[0][1:] == (0.0, 200.0) and hops[-1][1:] == (1300.0, 1400.0)
    assert all(a <= b for _, a, b in hops)
    assert charts.response_ms({"speech_end_ms": 0, "first_frame_sent_ms": 812}) == 812.0


def test_figures_render_to_png():
    png = b"\x89PNG\r\n\x1a\n"
    assert charts.figure_png(charts.latency_figure([])).startswith(png)
    assert charts.figure_png(charts.latency_figure([TURN, {"turn_idx": 3, "response_latency_ms": 700}])).startswith(png)
    runs = [{"metrics": {"response_latency_p50_ms": 900, "response_latency_p95_ms": 1100, "asr_p50_ms": 300}},
            {"metrics": {"response_latency_p50_ms": 700}}]
    assert charts.figure_png(charts.runs_figure(runs, ["asr=a", "asr=b"])).startswith(png)


def test_snapshot_from_a_verbose_record():
    record = {"conversation_id": "c1", "status": "active", "usage_seconds": 3.2, "conversation_url": "u", "events": [
        {"event_type": "system.replica_joined", "properties": {}},
        {"event_type": "system.participant_joined", "properties": {}},
        {"event_type": "conversation.utterance", "properties": {"role": "replica", "speech": "Hi", "turn_idx": 0}},
        {"event_type": "conversation.error", "properties": {"message": "LLM down"}},
    ]}
    live = LiveState()
    live({"event_type": "conversation.user.started_speaking", "properties": {}})
    snap = snapshot_from(record, [TURN], live)
    assert snap.replica_joined and snap.participants == 1 and snap.user_speaking and not snap.replica_speaking
    assert snap.captions == [Caption("replica", "Hi", 0, "")] and snap.errors == ["LLM down"]
    assert "participant: speaking" in present.speaking_html(snap)
    assert present.status_text(snap) == "active: replica in the room, 1 participant, 3 s"
    assert "median response latency 1400 ms" in present.summary(snap) and "error: LLM down" in present.summary(snap)
    ended = snapshot_from({**record, "status": "ended", "shutdown_reason": "max_call_duration reached"}, None, live)
    assert ended.participants == 0 and ended.user_speaking is False and not ended.turns_available
    assert present.summary(ended).startswith("ended: max_call_duration reached; usage 3.2 s")


def test_everything_typed_is_escaped():
    snap = Snapshot("c1", captions=[Caption("user", "<img src=x onerror=alert(1)>")])
    html = present.captions_html(snap)
    assert "<img" not in html and "&lt;img" in html
    assert present.message_html("<b>bad</b>") .count("<b>") == 0
    assert present.turn_rows([TURN])[0]["response_latency_ms"] == 1400.0
