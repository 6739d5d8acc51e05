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


def test_swept_values_are_columns_and_named_markers_pick_the_table(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = tracking.setup(uri, "turn_sweep", tmp_path / "mlruns")
    for sens, lat, cut in (("low", 1500.0, 0.1), ("high", 900.0, 0.4)):
        tags = {"choice.turn": "smart_turn_v3", "overrides": f"experiment=turn_sweep participant.pause_sensitivity={sens} "
                f"tracking.uri={uri}"}
        with tracking.tracked_run(exp, f"s={sens}", {}, tags):
            mlflow.log_metrics({"response_latency_p50_ms": lat, "false_cutoff_rate": cut})
    mlflow.set_tracking_uri(None)
    readme = tmp_path / "README.md"
    other = f"{compare.markers('asr_sweep')[0]}\nkeep\n{compare.markers('asr_sweep')[1]}\n"
    readme.write_text(f"{other}{compare.markers('turn_sweep')[0]}\nold\n{compare.markers('turn_sweep')[1]}\n")
    out = tmp_path / "p"
    assert compare.main(["-e", "turn_sweep", "--tracking-uri", uri, "--out", str(out), "--update-readme", str(readme)]) == 0
    printed = capsys.readouterr().out
    assert "| run | participant.pause_sensitivity | latency p50 ms |" in printed  # the swept value, not tracking.uri
    text = readme.read_text()
    assert "keep" in text and "old" not in text and "| s=low | low | 1500 |" in text
    table = (out / "table.md").read_text()
    assert table.strip() in text and table.split("\n\n", 1)[1].strip() in printed  # exactly what was printed
    assert (out / "latency_vs_false_cutoff_rate.png").stat().st_size > 1000


def test_trade_off_front():
    from cvi_lab.lab.plots import pareto_front

    pts = [(900, 0.4), (1500, 0.1), (1600, 0.3), (1000, 0.45), (2000, 0.1)]
    assert pareto_front(pts, "lower") == [(900, 0.4), (1500, 0.1)]
    assert pareto_front([(900, 3.0), (1200, 4.0), (1300, 3.5)], "higher") == [(900, 3.0), (1200, 4.0)]


def test_chosen_metrics_are_the_columns_in_order(store, tmp_path, capsys):
    argv = ["-e", "sweep", "--tracking-uri", store, "--out", str(tmp_path / "p")]
    assert compare.main([*argv, "--metrics", "asr_wer,response_latency_p50_ms"]) == 0
    assert "| run | asr | ASR WER | latency p50 ms |" in capsys.readouterr().out
    assert compare.main([*argv, "--metrics", "asr_wer,colour"]) == 2
    assert "unknown --metrics colour" in capsys.readouterr().err
