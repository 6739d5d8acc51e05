"""Aggregation of collected per-turn data into run metrics."""

import pytest

from cvi_lab.lab.metrics import ResourceMonitor, TurnResult, aggregate, normalize, wer


def test_normalize_ignores_case_punctuation_contractions():
    assert normalize("Hi, I'm planning a trip!") == normalize("hi i am planning a trip")
    assert normalize("It’s 2 o'clock.") == "it is two o'clock"


def test_wer_is_corpus_level():
    assert wer(["a b c d", "e f"], ["a b c d", "e"]) == pytest.approx(1 / 6)
    assert wer(["", ""], ["x", "y"]) is None


def test_aggregate_from_turns():
    turns = [
        TurnResult("s", 0, "hello there", heard="hello there", replica_text="Hi!", response_latency_s=0.5,
                   stages={"asr_s": 0.1, "llm_ttfb_s": 0.2}, rtf={"asr": 0.05}, llm_tokens=10, llm_s=0.5,
                   intelligibility_heard="hi"),
        TurnResult("s", 1, "how are you", heard="how are", replica_text="Fine thanks.", response_latency_s=1.5,
                   stages={"asr_s": 0.3}, llm_tokens=10, llm_s=1.5, barge_in=True, barge_in_stop_s=0.12,
                   intelligibility_heard="fine thanks"),
    ]
    m = aggregate(turns)
    assert m["response_latency_p50_ms"] == pytest.approx(1000)
    assert m["response_latency_mean_ms"] == pytest.approx(1000)
    assert m["response_latency_p95_ms"] == pytest.approx(1450)
    assert m["asr_wer"] == pytest.approx(1 / 5)
    assert m["tts_intelligibility_wer"] == pytest.approx(0.0)
    assert m["asr_mean_ms"] == pytest.approx(200) and m["llm_ttfb_mean_ms"] == pytest.approx(200)
    assert m["asr_rtf_mean"] == pytest.approx(0.05)
    assert m["llm_tokens_per_s"] == pytest.approx(10.0)
    assert m["barge_in_stop_mean_ms"] == pytest.approx(120)
    assert "lipsync_offset_mean_ms" not in m  # no data -> no metric, never a fake 0


def test_resource_monitor_measures_this_process():
    with ResourceMonitor(interval_s=0.01) as mon:
        sum(i * i for i in range(300_000))
    assert mon.result["cpu_seconds"] > 0 and mon.result["peak_rss_mb"] > 10
