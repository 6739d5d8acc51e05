"""Same config + same seed → identical transcripts and quality metrics in offline mode (real models)."""

import json

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from cvi_lab.lab import app
from cvi_lab.lab.metrics import QUALITY_METRICS
from cvi_lab.lab.runner import collapse_digital_silence


def test_replica_audio_is_the_same_however_the_avatar_padded_it():
    """The avatar pads with zeros while its queue is empty: a partial frame, idle frames, more or fewer
    depending on how fast the TTS ran. What the judge ASR hears must not depend on that."""
    rate = 22_050
    rng = np.random.default_rng(0)
    a, b = (rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (5000, 7000))
    a[100:103] = 0.0  # a few exact zeros inside speech (a zero crossing) are speech, kept as they are
    frame = rate // 25

    def played(lead_frames: int, pad: int, idle_frames: int, tail_frames: int) -> np.ndarray:
        z = np.zeros
        return np.concatenate([z(lead_frames * frame), a, z(pad + idle_frames * frame), b, z(tail_frames * frame)])

    fast = collapse_digital_silence(played(1, 400, 0, 1), rate)
    slow = collapse_digital_silence(played(3, 400, 7, 5), rate)
    starved = collapse_digital_silence(played(0, 400, 30, 0), rate)
    assert np.array_equal(fast, slow) and np.array_equal(fast, starved)
    assert np.array_equal(fast, np.concatenate([a, np.zeros(int(0.2 * rate), np.float32), b]))
    # back to back (the next clause was queued in time): no gap is invented
    assert np.array_equal(collapse_digital_silence(np.concatenate([a, b]), rate), np.concatenate([a, b]))
    assert len(collapse_digital_silence(np.zeros(frame, np.float32), rate)) == 0


def _run(tmp_path, uri, name):
    out = tmp_path / name
    code = app.main(["experiment=smoke", f"tracking.uri={uri}", f"tracking.artifact_root={tmp_path}/mlruns",
                     f"hydra.run.dir={out}",
                     # Piper draws its noise inside the ONNX graph, out of reach of our seed: 0 = same audio
                     "tts.noise_scale=0", "tts.noise_w_scale=0",
                     # short answers, and time to finish them on a starved machine (else the run fails)
                     "engine.max_tokens=32", "participant.max_reply_s=300"])
    assert code == 0
    turns = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
    return turns, json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_offline_run_twice_is_identical(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    a_turns, a = _run(tmp_path, uri, "a")
    b_turns, b = _run(tmp_path, uri, "b")
    keys = ("script", "turn", "reference", "heard", "replica_text", "llm_tokens", "interrupted", "error",
            "intelligibility_heard")
    assert [{k: t[k] for k in keys} for t in a_turns] == [{k: t[k] for k in keys} for t in b_turns]
    assert all(t["heard"] and t["replica_text"] and t["intelligibility_heard"] for t in a_turns)  # real calls
    assert {k: a.get(k) for k in QUALITY_METRICS} == {k: b.get(k) for k in QUALITY_METRICS}
    assert a["tts_intelligibility_wer"] is not None
    assert a["asr_wer"] < 0.5 and "response_latency_p50_ms" in a

    mlflow.set_tracking_uri(None)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    run = runs[0]
    assert run.data.params["dataset.max_turns"] == "2" and run.data.params["seed"] == "1234"
    for tag in ("git.commit", "dataset.hash", "machine.hostname", "version.faster-whisper", "choice.asr"):
        assert run.data.tags[tag]
    assert runs[0].data.tags["dataset.hash"] == runs[1].data.tags["dataset.hash"]
    arts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "environment.json", "transcripts.jsonl", "latency_waterfall.png",
            "call_travel-lisbon.mp4", "turn_travel-lisbon__00.png", "turn_travel-lisbon__01.png"} <= arts
    # one sample call video per run, and the first call's per-turn views
    for tag in ("env.lock_hash", "env.packages_hash", "env.python", "env.platform"):
        assert runs[0].data.tags[tag] == runs[1].data.tags[tag] != "absent"
