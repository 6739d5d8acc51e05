"""`cvi-lab experiment` bad input: clear one-line messages, nothing left RUNNING in MLflow."""

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from cvi_lab.lab import app


def test_unknown_group_value_lists_options(capsys):
    assert app.main(["asr=no_such_asr"]) == 2
    err = capsys.readouterr().err
    assert "unknown asr choice 'no_such_asr'" in err and "faster_whisper_tiny_en" in err
    assert "Traceback" not in err


def test_unknown_group_or_key_lists_groups(capsys):
    assert app.main(["speaker=x"]) == 2
    err = capsys.readouterr().err
    assert "unknown config group or key 'speaker'" in err and "asr" in err and "dataset" in err


def test_unknown_value_inside_a_sweep(capsys):
    assert app.main(["-m", "asr=faster_whisper_base,nope"]) == 2
    assert "unknown asr choice 'nope'" in capsys.readouterr().err


def test_missing_dataset_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = app.main([f"dataset.path={tmp_path}/missing.jsonl", f"tracking.uri=sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err
    assert code == 1 and "missing.jsonl does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "m.db").exists()  # refused before any run was started


def test_unreachable_tracking_uri(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert app.main(["tracking.uri=http://127.0.0.1:9", "tracking.probe_timeout_s=1"]) == 1
    err = capsys.readouterr().err
    assert "http://127.0.0.1:9 is unreachable" in err and "Traceback" not in err


def test_failed_run_is_marked_failed(tmp_path, capsys, monkeypatch):
    """A run whose ASR model does not exist fails inside the run: FAILED in MLflow, with the error, and the
    sweep it belongs to exits 1."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/m.db"
    # as a sweep (-m, one point): the failed point fails the sweep in any launcher (app.SweepPointFailed)
    code = app.main(["-m", "experiment=smoke", f"tracking.uri={uri}", "asr.model=/no/such/whisper-model",
                     "metrics.intelligibility=false"])
    err = capsys.readouterr().err
    assert code == 1 and "run failed" in err and "marked FAILED" in err and "SweepPointFailed" in err
    mlflow.set_tracking_uri(None)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert runs[0].data.tags["error"]
    assert runs[0].data.tags["dataset.hash"] and runs[0].data.tags["choice.asr"] == "faster_whisper_tiny_en"


def test_a_user_config_dir_adds_experiments_and_stage_choices(tmp_path, capsys, monkeypatch):
    """`--config-dir` (cvi-lab's, also Hydra's spelling) puts a user dir on the search path: its experiment
    and stage files are accepted choices, composed with the shipped ones."""
    from cvi_lab import config

    monkeypatch.setenv(config.USER_DIRS_ENV, "")  # restored after the test: --config-dir writes to it
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\nname: mine\ndataset:\n  max_turns: 1\n")
    (tmp_path / "asr").mkdir()
    (tmp_path / "asr" / "my_asr.yaml").write_text("defaults: [faster_whisper_base, _self_]\nbeam_size: 4\n")
    assert app.main(["--config-dir", str(tmp_path), "experiment=mine", "asr=my_asr", "--cfg", "job"]) == 0
    out = capsys.readouterr().out
    assert "name: mine" in out and "max_turns: 1" in out and "beam_size: 4" in out and "model: base" in out
    assert app.main(["experiment=not_mine"]) == 2
    assert "mine" in capsys.readouterr().err  # the user's experiment is listed among the options
