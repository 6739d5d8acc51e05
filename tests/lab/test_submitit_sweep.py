"""Sweeps on Hydra's submitit launcher: `hydra/launcher=submitit_local` runs every sweep point as a submitit job
(what `hydra/launcher=slurm` does on a cluster), each one logged to MLflow; joblib (one job at a time) stays
the default; the SLURM config composes with the resources a cluster needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from cvi_lab import config

ROOT = Path(__file__).resolve().parents[2]


def launcher(*overrides: str):
    config.register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=config.PACKAGE, version_base=config.VERSION_BASE):
        return compose(config_name=config.LAB_ROOT, overrides=list(overrides), return_hydra_config=True).hydra.launcher


def test_joblib_one_job_at_a_time_stays_the_default_and_the_submitit_configs_compose():
    default = launcher()
    assert default._target_.endswith("JoblibLauncher") and default.n_jobs == 1
    assert launcher("hydra.launcher.n_jobs=2").n_jobs == 2  # quality-only sweeps in parallel, as before
    local = launcher("hydra/launcher=submitit_local")
    assert local._target_.endswith("submitit_launcher.LocalLauncher") and "n_jobs" not in local
    slurm = launcher("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1")
    assert slurm._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (slurm.partition, slurm.gpus_per_node, slurm.cpus_per_task, slurm.mem_gb, slurm.timeout_min) == ("gpu", 1, 4, 16, 60)
    with pytest.raises(Exception, match="partitio"):  # a typo is refused by the plugin's schema
        launcher("hydra/launcher=slurm", "hydra.launcher.partitio=gpu")


@pytest.mark.slow
def test_a_two_point_sweep_runs_through_submitit_local_and_logs_both_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # the jobs run at once: two processes creating a fresh sqlite store race ("table ... already exists"), so
    # the store and the experiment exist before the sweep, as on a shared MLflow server
    MlflowClient(uri).create_experiment("asr_sweep", artifact_location=f"{tmp_path}/mlruns")
    cmd = [sys.executable, "-m", "cvi_lab", "experiment", "-m", "experiment=asr_sweep", "hydra/launcher=submitit_local",
           "asr=faster_whisper_tiny_en,pocketsphinx_en",
           "dataset.max_scripts=1", "dataset.max_turns=1", "engine.max_tokens=16", "participant.max_reply_s=300",
           "metrics.intelligibility=false", "metrics.sample_video=false", "metrics.turn_views=0",
           f"tracking.uri={uri}", f"tracking.artifact_root={tmp_path}/mlruns", f"hydra.sweep.dir={tmp_path}/sweep"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl"))) == 2  # both ran as submitit jobs
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("asr_sweep").experiment_id])
    assert sorted(r.data.tags["choice.asr"] for r in runs) == ["faster_whisper_tiny_en", "pocketsphinx_en"]
    assert all(r.info.status == "FINISHED" and "response_latency_p50_ms" in r.data.metrics for r in runs)
