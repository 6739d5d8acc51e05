"""Scenario metrics on small REAL offline calls whose right outcome is known (real models; heavy, slow).

A cough in silence has no response time but its own reply's; a sentence with an 800 ms pause after "I'd like
to" must be heard as one turn and answered after its end;
a short "Yeah." spoken over the replica's answer must not stop it; a real interruption must, and is
answered. The scenario suite's one command runs them (`cvi-lab experiment experiment=scenarios`, on
tests/lab/known_calls.jsonl, which test_live_mode.py plays live) and logs the metrics to MLflow.
"""

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cvi_lab.lab import app

pytestmark = pytest.mark.slow

KNOWN_CALLS = Path(__file__).with_name("known_calls.jsonl")  # the paused line and the backchannel, with their expectations


def test_paused_line_is_not_cut_and_backchannel_does_not_interrupt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = KNOWN_CALLS
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "run"
    code = app.main(["experiment=scenarios", f"dataset.path={data}", f"tracking.uri={uri}",
                     f"tracking.artifact_root={tmp_path}/mlruns", f"hydra.run.dir={out}", "metrics.judge=false",
                     "metrics.intelligibility=false", "metrics.lipsync=false", "metrics.sample_video=false"])
    assert code == 0
    turns = {(t["script"], t["turn"]): t for t in map(json.loads, (out / "transcripts.jsonl").read_text().splitlines())}
    cough = turns[("paused", 0)]  # a cough in silence before the paused line: its time is its own reply's, if any,
    assert cough["replica_text"] or cough["response_latency_s"] is None, cough  # never the next line's answer
    paused = turns[("paused", 1)]
    assert paused["user_turns"] == 1 and not paused["replica_started_early"], paused
    assert paused["replica_text"] and "table" in paused["heard"].lower()
    assert paused["end_of_turn_s"] is not None and paused["end_of_turn_s"] > 0
    yeah = turns[("backchannel", 1)]
    assert yeah["barge_in"] and not yeah["replica_interrupted"], yeah
    assert yeah["response_latency_s"] is None  # the replica talked on over it: no response to time
    assert turns[("backchannel", 0)]["replica_text"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["false_cutoff_rate_mid_pause"] == 0.0 and metrics["false_barge_in_rate"] == 0.0
    # every line to answer was answered (missed_turn_rate adds "within 3 s": a speed, not asserted here, since
    # a loaded 2-core machine answers later; it is logged and the sweeps compare it)
    assert all(turns[k]["replica_text"] for k in (("paused", 1), ("backchannel", 0), ("interrupt", 0), ("interrupt", 1)))
    assert "missed_turn_rate" in metrics and "end_of_turn_delay_p50_ms" in metrics
    stop = turns[("interrupt", 1)]  # a real interruption must stop the replica, and is answered
    assert stop["barge_in"] and stop["replica_interrupted"] and stop["replica_text"], stop
    assert metrics["barge_in_success_rate"] == 1.0 and metrics["barge_in_success_stop_p50_ms"] > 0

    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("scenarios").experiment_id])[0]
    for key in ("false_cutoff_rate", "missed_turn_rate", "false_barge_in_rate", "end_of_turn_delay_p50_ms",
                "response_latency_p95_ms", "distinct_2"):
        assert key in run.data.metrics, key


def test_a_real_recording_is_a_scenario_line_like_a_synthesized_one(tmp_path, monkeypatch, jfk_path):
    """The recordings format end to end: a real voice (44.1 kHz stereo FLAC beside its transcript.jsonl, as
    README "Real recordings" says) is resampled, spoken into a real call and scored by the same expectations:
    heard by the replica's ASR, answered, and its turn-taking observed."""
    import shutil

    monkeypatch.chdir(tmp_path)
    rec = tmp_path / "my_recordings"
    rec.mkdir()
    shutil.copy(jfk_path, rec / "jfk.flac")
    text = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
    (rec / "transcript.jsonl").write_text(json.dumps(
        {"script": "inaugural", "persona": "president", "turn": 0, "text": text, "audio": "jfk.flac",
         "phenomenon": "mid_pause", "expect": {"take_turn": True, "hold": True}}) + "\n")
    out = tmp_path / "run"
    code = app.main(["experiment=scenarios", f"dataset.path={rec / 'transcript.jsonl'}", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                     f"tracking.artifact_root={tmp_path}/mlruns", f"hydra.run.dir={out}", "metrics.judge=false",
                     "metrics.intelligibility=false", "metrics.lipsync=false", "metrics.sample_video=false"])
    assert code == 0
    (line,) = map(json.loads, (out / "transcripts.jsonl").read_text().splitlines())
    assert "your country" in line["heard"].lower() and line["replica_text"], line
    assert line["phenomenon"] == "mid_pause" and line["user_turns"] >= 1 and line["end_of_turn_s"] is not None
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["asr_wer"] < 0.3, metrics["asr_wer"]
    # the speech has two natural pauses ("Americans, ... ask not ... for you, ... ask"); the defaults commit a
    # turn at them (3 user turns on this machine, 2026-12-01): whatever they do, the metric says what happened
    cut = line["user_turns"] > 1 or line["replica_started_early"]
    assert metrics["false_cutoff_rate"] == metrics["false_cutoff_rate_mid_pause"] == float(cut), (metrics, line)
    assert "missed_turn_rate" in metrics
