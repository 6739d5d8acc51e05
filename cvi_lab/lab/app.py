"""`cvi-lab experiment`: the Hydra app that runs scripted participants through calls and logs to MLflow.

Why Hydra: the same override syntax selects stages everywhere (`asr=faster_whisper_base`), `-m` sweeps them
(locally through the joblib launcher, on SLURM through the submitit launcher), and every run gets a resolved
config and an output folder under `outputs/`. One run = one MLflow run; a crash inside a run ends it FAILED
with its error, and the command exits non-zero with a one-line message instead of a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any, Sequence

from cvi_lab import config

# the config groups an `experiment` command line may choose from (each checked against its options)
CHOOSABLE_GROUPS = (*config.PIPELINE_GROUPS, "server", "experiment")
log = logging.getLogger("cvi_lab.lab")

_FAILED: list[str] = []  # errors of runs in this process (single run or sequential sweep)


class LabError(RuntimeError):
    """Bad input to the lab (config, dataset, tracking); printed as one line, no traceback."""


# ----------------------------------------------------------------- argument checks before Hydra
def check_overrides(argv: Sequence[str]) -> str | None:
    """A clear message for an unknown config group or value (Hydra's own says less), else None."""
    top = set(config.root_keys(config.LAB_ROOT))
    groups = list(CHOOSABLE_GROUPS)
    searchpath = config.searchpath_entries(argv)
    options_of = {g: config.group_options(g, searchpath) for g in groups}
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        if key.startswith(("+", "~")) or key.startswith("hydra") or "." in key or "/" in key:
            continue
        if key in groups:
            options = options_of[key]
            values = [v.strip() for v in value.strip().strip("[]").split(",")] if value else []
            for v in values:
                if v not in options and not v.startswith(("range(", "choice(", "glob(")):
                    return f"unknown {key} choice {v!r}; available: {', '.join(options) or 'none'}"
        elif key not in top:
            return (f"unknown config group or key {key!r}; groups: {', '.join(groups)}; "
                    f"settings: {', '.join(sorted(top))} (nested ones as e.g. dataset.max_turns=2)")
    return None


# ----------------------------------------------------------------- one run
def seed_everything(seed: int) -> None:
    """Same seed, same sampling everywhere the stages might draw random numbers."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    import numpy as np

    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def hydra_context() -> dict[str, Any]:
    """Choices, overrides, output dir and sweep id of the current Hydra job (empty outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except Exception:  # noqa: BLE001 - not running under Hydra (e.g. a test calling run_experiment)
        return {"choices": {}, "overrides": [], "output_dir": None, "sweep_id": None, "job_num": None}
    multirun = str(hc.mode) == "RunMode.MULTIRUN"
    return {
        "choices": {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra") and v is not None},
        "overrides": list(hc.overrides.task),
        "output_dir": hc.runtime.output_dir,
        # the job folder's parent, fixed at launch (re-resolving sweep.dir's ${now:} in a job could differ)
        "sweep_id": os.path.relpath(Path(hc.runtime.output_dir).parent, hc.runtime.cwd) if multirun else None,
        "job_num": hc.job.num if multirun else None,
    }


def run_experiment(cfg: Any, context: dict[str, Any] | None = None) -> dict[str, float]:
    """Run the configured experiment once, log it to MLflow and return its metrics.

    Bad input raises LabError before an MLflow run is started; anything failing after that ends the run
    FAILED (with the error) and is re-raised."""
    from omegaconf import OmegaConf

    from cvi_lab.lab import dataset as D
    from cvi_lab.lab import tracking as T

    ctx = context or hydra_context()
    if cfg.mode not in ("offline", "live"):
        raise LabError(f"mode={cfg.mode!r} is not accepted; use mode=offline or mode=live")
    uri = cfg.tracking.uri or T.default_uri()
    try:
        T.check_uri(uri, float(cfg.tracking.probe_timeout_s))
    except T.TrackingError as exc:
        raise LabError(str(exc)) from None
    try:
        data = D.load_dataset(OmegaConf.to_container(cfg.dataset, resolve=True))
    except D.DatasetError as exc:
        raise LabError(f"dataset: {exc}") from None
    try:
        exp_id = T.setup(uri, str(cfg.tracking.experiment), cfg.tracking.artifact_root or T.default_artifact_root())
    except T.TrackingError as exc:
        raise LabError(str(exc)) from None

    out_dir = Path(ctx.get("output_dir") or Path("outputs") / "adhoc")
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    overrides = [o for o in ctx.get("overrides", []) if not o.startswith("hydra")]
    run_name = ",".join(o for o in overrides if not o.startswith(("experiment=", "tracking.", "hydra"))) or "defaults"
    tags = {
        **T.environment_tags(),
        "dataset.name": data.name, "dataset.hash": data.hash, "dataset.kind": data.kind,
        "dataset.utterances": str(len(data.utterances)), "mode": str(cfg.mode), "seed": str(cfg.seed),
        "overrides": " ".join(overrides)[:5000],
        **{f"choice.{k}": str(v) for k, v in ctx.get("choices", {}).items()},
    }
    if ctx.get("sweep_id"):
        tags["sweep.id"] = str(ctx["sweep_id"])
        tags["sweep.job"] = str(ctx.get("job_num"))
    seed_everything(int(cfg.seed))

    import mlflow

    from cvi_lab.lab import metrics as M
    from cvi_lab.lab import plots as P
    from cvi_lab.lab import runner as R

    with T.tracked_run(exp_id, run_name, T.flatten(resolved), tags) as run:
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        mlflow.log_artifact(str(out_dir / "config.yaml"))
        identity = {k: v for k, v in tags.items() if k.startswith(("env.", "git.", "version.", "machine."))}
        (out_dir / "environment.json").write_text(json.dumps(identity, indent=1, sort_keys=True))
        mlflow.log_artifact(str(out_dir / "environment.json"))
        with M.ResourceMonitor() as res:
            result = R.run(cfg, data, out_dir)
        metrics = {**M.aggregate(result.turns), **res.result, **result.extra_metrics}
        mlflow.log_metrics(metrics)
        transcripts = out_dir / "transcripts.jsonl"
        transcripts.write_text("".join(json.dumps(t.to_dict(), default=str) + "\n" for t in result.turns))
        mlflow.log_artifact(str(transcripts))
        (out_dir / "events.jsonl").write_text("".join(json.dumps(e, default=str) + "\n" for e in result.events))
        mlflow.log_artifact(str(out_dir / "events.jsonl"))
        png = P.waterfall(result.turns, out_dir / "latency_waterfall.png", title=f"{cfg.name}: {run_name}")
        mlflow.log_artifact(str(png))
        for extra in result.artifacts:
            mlflow.log_artifact(str(extra))
        if cfg.metrics.sample_video and not any(a.suffix == ".mp4" for a in result.artifacts):
            log.warning("no sample call video for this run: the first call produced no replica frames")
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
        log.info("run %s finished: %s", run.info.run_id, {k: round(v, 3) for k, v in metrics.items() if "latency" in k or "wer" in k})
    return metrics


# ----------------------------------------------------------------- Hydra entry
def _task(cfg: Any) -> float | None:
    from cvi_lab.lab.tracking import TrackingError

    config.record_job(cfg)
    try:
        metrics = run_experiment(cfg)
    except LabError as exc:
        _report_failure(f"cvi-lab experiment: {exc}")
        return None
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - the run is already marked FAILED in MLflow; say why in one line
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        hint = "" if isinstance(exc, TrackingError) else " (run marked FAILED in MLflow; HYDRA_FULL_ERROR=1 shows the traceback)"
        _report_failure(f"cvi-lab experiment: run failed: {type(exc).__name__}: {exc}{hint}")
        return None
    return metrics.get("response_latency_p50_ms")


class SweepPointFailed(RuntimeError):
    """One point of a sweep failed (already reported). Raised so that Hydra's sweeper, which reads every job's
    result, fails the sweep: a launcher that runs jobs in other processes (submitit, joblib n_jobs > 1) cannot
    see this process's `_FAILED`, and a sweep with a failed point must not exit 0."""


def _report_failure(message: str) -> None:
    _FAILED.append(message)
    print(message, file=sys.stderr, flush=True)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN":
        raise SweepPointFailed(message)


def main(argv: Sequence[str] | None = None) -> int:
    """`cvi-lab experiment [-m] experiment=NAME [overrides]`; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        args = config.take_config_dir_flags(args)
    except config.ConfigError as exc:
        print(f"cvi-lab experiment: {exc}", file=sys.stderr)
        return 2
    problem = check_overrides(args)
    if problem:
        print(f"cvi-lab experiment: {problem}", file=sys.stderr)
        return 2
    _FAILED.clear()
    entry = config.main_entry(config.LAB_ROOT, _task)
    saved = sys.argv
    sys.argv = ["cvi-lab experiment", *args]
    try:
        entry()
    except SystemExit as exc:  # Hydra exits 1 after printing a config error; --help/--cfg exit 0
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return code if code else (1 if _FAILED else 0)
    finally:
        sys.argv = saved
    return 1 if _FAILED else 0


if __name__ == "__main__":
    raise SystemExit(main())
