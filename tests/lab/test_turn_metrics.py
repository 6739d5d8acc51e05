"""Turn-taking and repetition metrics: the arithmetic of each, on turns whose right answer is written down."""

from types import SimpleNamespace

import pytest

from cvi_lab.lab import repetition as R
from cvi_lab.lab import turn_metrics as TM
from cvi_lab.lab.metrics import TurnResult, aggregate
from cvi_lab.lab.scenarios import Expect

HOLD = Expect(take_turn=True, hold=True)
KEEP = Expect(take_turn=False, replica_stops=False)
STOP = Expect(take_turn=True, replica_stops=True)


def turn(i, expect, phenomenon="plain", **kw):
    return TurnResult("s", i, "x", expect=expect, phenomenon=phenomenon, **kw)


def test_false_cut_off_counts_early_answers_and_split_turns():
    turns = [turn(0, HOLD, "mid_pause", replica_text="a", user_turns=1, response_latency_s=0.8),
             turn(1, HOLD, "mid_pause", replica_text="b", user_turns=2, response_latency_s=0.8),  # split
             turn(2, HOLD, "mid_pause", replica_text="c", user_turns=1, replica_started_early=True),
             turn(3, HOLD, replica_text="d", user_turns=1, response_latency_s=0.9)]
    m = TM.conversation_metrics(turns)
    assert m["false_cutoff_rate"] == pytest.approx(2 / 4)
    assert m["false_cutoff_rate_mid_pause"] == pytest.approx(2 / 3)


def test_missed_turn_is_no_answer_within_three_seconds():
    turns = [turn(0, HOLD, replica_text="a", response_latency_s=2.9),
             turn(1, HOLD, replica_text="b", response_latency_s=3.2),
             turn(2, HOLD, replica_text="", response_latency_s=None),
             turn(3, STOP, replica_text="c", barge_in=True, response_latency_s=0.0),  # answered over the old answer
             turn(4, KEEP, barge_in=True)]  # not a turn to take: not counted
    assert TM.conversation_metrics(turns)["missed_turn_rate"] == pytest.approx(2 / 4)


def test_end_of_turn_delay_only_on_answered_uncut_turns():
    turns = [turn(0, HOLD, replica_text="a", user_turns=1, response_latency_s=1.0, end_of_turn_s=0.4),
             turn(1, HOLD, replica_text="b", user_turns=1, response_latency_s=1.0, end_of_turn_s=0.6),
             turn(2, HOLD, replica_text="c", user_turns=2, response_latency_s=1.0, end_of_turn_s=0.05),  # cut off
             turn(3, HOLD, replica_text="", end_of_turn_s=2.0)]  # missed
    m = TM.conversation_metrics(turns)
    assert m["end_of_turn_delay_p50_ms"] == pytest.approx(500)
    assert m["end_of_turn_delay_mean_ms"] == pytest.approx(500)


def test_barge_in_false_success_stop_time_and_recovery():
    turns = [turn(0, KEEP, "backchannel", barge_in=True, replica_interrupted=True, response_latency_s=1.0),
             turn(1, KEEP, "cough", barge_in=True, replica_interrupted=True, response_latency_s=None),
             turn(2, KEEP, "backchannel", barge_in=True, replica_interrupted=False),
             turn(3, KEEP, "noise_burst", barge_in=True, replica_interrupted=False),
             turn(4, STOP, "interruption", barge_in=True, replica_interrupted=True, barge_in_stop_s=0.3, replica_text="a"),
             turn(5, STOP, "interruption", barge_in=True, replica_interrupted=True, barge_in_stop_s=0.5, replica_text="b"),
             turn(6, STOP, "quick_follow_up", barge_in=True, replica_interrupted=False, replica_text="c")]
    m = TM.conversation_metrics(turns)
    assert m["false_barge_in_rate"] == pytest.approx(2 / 4)
    assert m["false_barge_in_recovery_rate"] == pytest.approx(1 / 2)
    assert m["barge_in_success_rate"] == pytest.approx(2 / 3)
    assert m["barge_in_success_stop_p50_ms"] == pytest.approx(400)
    assert m["barge_in_success_stop_max_ms"] == pytest.approx(500)


def test_spurious_turn_and_absent_metrics():
    turns = [turn(0, Expect(take_turn=False), "cough", replica_text="Bless you!", user_turns=1),
             turn(1, Expect(take_turn=False), "noise_burst")]
    m = TM.conversation_metrics(turns)
    assert m["spurious_turn_rate"] == pytest.approx(0.5)
    assert "false_cutoff_rate" not in m and "barge_in_success_rate" not in m  # nothing to apply to: no fake 0


def test_observe_reads_the_events_around_a_line():
    utt = SimpleNamespace(phenomenon="mid_pause", expect=HOLD)
    events = [{"event_type": "conversation.replica.started_speaking", "_t": 0.9},  # before the start: ignored
              {"event_type": "conversation.replica.started_speaking", "_t": 2.5},  # inside the line: early
              {"event_type": "conversation.replica_interrupted", "_t": 7.5}]  # after end + 3 s: not this line's
    t = TurnResult("s", 0, "x")
    TM.observe(t, utt, speech_start=1.0, speech_end=4.0, window_end=float("inf"), events=events, user_turns=2)
    assert t.phenomenon == "mid_pause" and t.expect is HOLD and t.user_turns == 2
    assert t.replica_started_early and not t.replica_interrupted
    TM.observe(t, utt, 1.0, 4.0, 10.0, [{"event_type": "conversation.replica_interrupted", "_t": 6.5}], 1)
    assert t.replica_interrupted


def test_repeated_openers_and_distinct_ngrams():
    calls = [["Of course, Paris.", "Of course! Tokyo.", "Well, seven.", "Of course, the Pacific."],
             ["Hello there.", "Hello there again."]]  # openers are the first two words, per call
    assert R.repeated_opener_rate(calls) == pytest.approx(3 / 4)
    assert R.repeated_opener_rate([["Sure, Paris.", "Sure, Tokyo."]]) == pytest.approx(0.0)
    assert R.distinct_n(["a b a b", "c"], 1) == pytest.approx(3 / 5)
    assert R.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert R.distinct_n([""], 2) is None and R.repeated_opener_rate([["only one"]]) is None


def test_aggregate_includes_turn_taking_repetition_and_judge():
    turns = [turn(0, HOLD, replica_text="Sure thing, yes.", user_turns=1, response_latency_s=1.0, judge={"relevance": 4}),
             turn(1, HOLD, replica_text="Sure thing, no.", user_turns=2, response_latency_s=1.0, judge={"relevance": 2})]
    m = aggregate(turns)
    assert m["false_cutoff_rate"] == pytest.approx(0.5) and m["repeated_opener_rate"] == pytest.approx(1.0)
    assert m["judge_relevance_mean"] == pytest.approx(3.0)


def test_turn_view_draws_both_sides_with_the_marks(tmp_path):
    import numpy as np

    from cvi_lab.lab import turn_view as V

    t = TurnResult("s", 0, "hello", spans=[("vad", 0.0, 0.2), ("turn", 0.2, 0.45), ("llm", 0.45, 0.7), ("tts", 0.7, 0.9)],
                   response_latency_s=1.0)
    marks = V.marks_of(t, speech_end=2.0)
    assert marks == {"speech end": 2.0, "VAD end": 2.2, "turn decision": 2.45, "first token": 2.7,
                     "first audio (TTS)": 2.9, "heard by participant": 3.0}
    rng = np.random.default_rng(0)
    path = V.draw(0.1 * rng.standard_normal(16_000 * 2).astype(np.float32), 0.0, 16_000,
                  0.1 * rng.standard_normal(22_050).astype(np.float32), 3.0, 22_050, marks, tmp_path / "t.png", "x")
    assert path.stat().st_size > 10_000
    fast = V.draw(0.1 * rng.standard_normal(16_000).astype(np.float32), 0.0, 16_000, np.zeros(0, np.float32), 0.0,
                  22_050, marks, tmp_path / "f.png", speed=2.0)  # offline feeding at 2x: drawn over 0.5 s
    assert fast.stat().st_size > 10_000
    empty = V.draw(np.zeros(0, np.float32), 0.0, 16_000, np.zeros(0, np.float32), 0.0, 22_050, marks, tmp_path / "e.png")
    assert empty.exists()


def test_answer_check_needs_the_key_fact_of_the_line():
    from cvi_lab.lab import answer_check as A

    assert A.key_words("100 degrees Celsius") == {"100"} and A.key_words("the Pacific Ocean") == {"pacific"}
    assert A.states("Water boils at 100°C at sea level.", "100 degrees Celsius")
    assert A.states("A week has 7 days.", "seven") and A.states("It has seven days.", "seven")
    assert A.states("That would be the Pacific.", "the Pacific Ocean")
    assert not A.states("The Atlantic Ocean is the largest.", "the Pacific Ocean")
    assert not A.states("Water boils at 1000 degrees.", "100 degrees Celsius")
    turns = [turn(0, Expect(answer="Paris"), replica_text="Paris is the capital."),
             turn(1, Expect(answer="Tokyo"), replica_text="I am not sure."),
             turn(2, Expect(answer="366"), replica_text=""),  # unanswered: wrong
             turn(3, Expect(), replica_text="Hello!")]  # no key fact: not graded
    m = aggregate(turns)
    assert m["answer_correct_rate"] == pytest.approx(1 / 3) and m["answer_graded_turns"] == 3
    assert "answer_correct_rate" not in aggregate([turn(0, Expect(), replica_text="Hi")])


def test_audio_the_replica_was_still_speaking_is_no_response_and_a_cut_in_a_pause_is_the_stop():
    from cvi_lab.lab.offline_mode import _stop_after

    audible_at = [1.0, 1.02, 1.04, 2.5]
    assert TM.still_speaking(audible_at, 1.05) and not TM.still_speaking(audible_at, 1.3)
    events = [{"event_type": "conversation.replica.started_speaking", "_t": 0.9},
              {"event_type": "conversation.replica_interrupted", "_t": 1.7}]
    assert TM.cut_after(events, 1.2, 1.5, 4.0) == pytest.approx(0.5) and TM.cut_after(events, 1.8, 2.0, 4.0) is None
    assert TM.cut_after(events, 1.2, 1.5, 1.6) is None  # the next line began before the cut: not this line's
    frames = [(i * 0.02, i * 0.02 < 1.0) for i in range(100)]  # loud until 1.0 s, then quiet
    assert _stop_after(frames, 0.8) == pytest.approx(0.18)  # audible past the start: the audio says it
    assert _stop_after(frames, 1.05) is None  # already quiet (between clauses): the caller takes the cut
    early = turn(0, HOLD, "mid_pause", replica_text="a", replica_started_early=True)  # answered, too soon
    assert TM.is_cut_off(early) and not TM.is_missed(early)


def test_a_line_the_replica_talked_through_or_answered_early_has_no_response_time():
    talked_over = turn(0, KEEP, "backchannel", barge_in=True, replica_interrupted=False, response_latency_s=0.02)
    cut = turn(1, KEEP, "cough", barge_in=True, replica_interrupted=True, response_latency_s=1.2)  # recovery
    early = turn(2, HOLD, "mid_pause", replica_started_early=True, response_latency_s=0.05, replica_text="a")
    plain = turn(3, HOLD, response_latency_s=0.9, replica_text="b")
    for t in (talked_over, cut, early, plain):
        TM.drop_untimed_latency(t)
    assert [t.response_latency_s for t in (talked_over, cut, early, plain)] == [None, 1.2, None, 0.9]
