"""`cvi-lab compare` over runs in a temporary tracking store."""

import mlflow
import pytest

from cvi_lab.lab import compare, tracking


@pytest.fixture()
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = tracking.setup(uri, "sweep", tmp_path / "mlruns")
    for asr, lat, w in (("tiny", 800.0, 0.2), ("base", 1200.0, 0.1)):
        with tracking.tracked_run(exp, f"asr={asr}", {}, {"choice.asr": asr, "choice.tts": "piper", "sweep.id": "s1"}):
            mlflow.log_metrics({"response_latency_p50_ms": lat, "response_latency_p95_ms": lat * 1.5, "asr_wer": w})
    with pytest.raises(ValueError):
        with tracking.tracked_run(exp, "broken", {}, {"choice.asr": "x", "sweep.id": "s1"}):
            raise ValueError("broken on purpose")
    mlflow.set_tracking_uri(None)
    return uri


def test_table_and_plot(store, tmp_path, capsys):
    assert compare.main(["--experiment", "sweep", "--tracking-uri", store, "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "| run | asr | latency p50 ms" in out  # tts did not vary: not a column
    assert "| asr=tiny | tiny | 800 |" in out and "| asr=base | base | 1200 |" in out
    assert "broken" not in out.split("\n\n")[0] and "1 failed" in out
    assert (tmp_path / "p" / "latency_vs_asr_wer.png").stat().st_size > 1000


def test_update_readme_between_markers(store, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{compare.MARK_START}\nold\n{compare.MARK_END}\nend\n")
    argv = ["-e", "sweep", "--tracking-uri", store, "--sweep", "latest", "--out", str(tmp_path / "p"),
            "--update-readme", str(readme)]
    assert compare.main(argv) == 0
    text = readme.read_text()
    assert "old" not in text and "--sweep s1" in text and "| asr=tiny |" in text and text.endswith("end\n")


def test_unknown_experiment_and_empty_store(store, tmp_path, capsys):
    assert compare.main(["-e", "nope", "--tracking-uri", store]) == 2
    assert "existing: " in capsys.readouterr().err
    assert compare.main(["--tracking-uri", f"sqlite:///{tmp_path}/none.db"]) == 2
    assert "run an experiment first" in capsys.readouterr().err
