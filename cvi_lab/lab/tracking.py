"""MLflow bookkeeping for one lab run: where to log, what identifies the run, and failure marking.

Why its own module: the runner produces results; this module alone decides how they are stored, so a run
that crashes is always ended FAILED with its error (never left RUNNING), and the tracking URI is checked
before any model loads (an unreachable server costs seconds, not a whole run).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as md
import json
import os
import platform
import socket
import subprocess
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Mapping

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("torch", "transformers", "faster-whisper", "ctranslate2", "piper-tts", "onnxruntime", "aiortc",
            "mlflow", "hydra-core")
PARAM_VALUE_LIMIT = 6000
LOCK_FILES = ("requirements.lock", "requirements-nodeps.lock")  # the environment `make setup` builds, by hash


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message says which URI and how to fix it."""


def default_uri(base: Path | None = None) -> str:
    """sqlite:///<repo>/mlflow.db: the local default (a database backend, so `compare` queries are fast)."""
    return f"sqlite:///{(base or Path.cwd()).resolve() / 'mlflow.db'}"


def default_artifact_root(base: Path | None = None) -> Path:
    return (base or Path.cwd()).resolve() / "mlruns"


def check_uri(uri: str, timeout_s: float = 3.0) -> None:
    """Fail fast with a clear message if the tracking store cannot be reached or created."""
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - user-given URI
                if resp.status >= 400:
                    raise TrackingError(f"tracking server {uri} answered HTTP {resp.status} on /health")
        except urllib.error.HTTPError as exc:
            raise TrackingError(f"tracking server {uri} answered HTTP {exc.code} on /health; is it an MLflow server?") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"tracking server {uri} is unreachable ({reason}); start one with "
                f"`mlflow server --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000`, "
                f"or log locally with tracking.uri={default_uri()}"
            ) from None
    elif uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not db.parent.is_dir():
            raise TrackingError(f"tracking database folder {db.parent} does not exist (tracking.uri={uri}); create it or choose another path")
        if not os.access(db.parent, os.W_OK):
            raise TrackingError(f"tracking database folder {db.parent} is not writable (tracking.uri={uri})")
    elif "://" in uri and not uri.startswith(("file://", "databricks", "postgresql", "mysql", "mssql")):
        raise TrackingError(f"tracking.uri {uri!r} is not a supported scheme; accepted: sqlite:///PATH, http(s)://HOST:PORT, "
                            "postgresql://..., mysql://..., file:///PATH")


def setup(uri: str, experiment: str, artifact_root: Path | str | None = None) -> str:
    """Point MLflow at `uri` and return the id of `experiment` (created with artifacts under `artifact_root`)."""
    import mlflow

    check_uri(uri)
    mlflow.set_tracking_uri(uri)
    try:
        with _sqlite_setup_lock(uri):
            return _experiment_id(mlflow, uri, experiment, artifact_root)
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad store
        raise TrackingError(f"cannot open MLflow experiment {experiment!r} at {uri}: {exc}") from None


@contextlib.contextmanager
def _sqlite_setup_lock(uri: str) -> Iterator[None]:
    """Sweep points run as parallel processes (submitit, joblib n_jobs > 1) open a new `mlflow.db` at once, and
    MLflow's table creation races ("table ... already exists"): they take turns on a lock file beside it."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    db = Path(uri[len("sqlite:///"):])  # its folder exists: check_uri said so
    with open(db.with_name(db.name + ".setup.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _experiment_id(mlflow: Any, uri: str, experiment: str, artifact_root: Path | str | None) -> str:
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        location = None
        if artifact_root is not None and not uri.startswith(("http://", "https://")):
            location = (Path(artifact_root).resolve() / experiment).as_uri()
        return mlflow.create_experiment(experiment, artifact_location=location)
    return exp.experiment_id


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {'asr.model': '...'} with values as strings (MLflow params)."""
    out: dict[str, str] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            text = json.dumps(value) if isinstance(value, (list, tuple, bool)) or value is None else str(value)
            out[name] = text if len(text) <= PARAM_VALUE_LIMIT else text[: PARAM_VALUE_LIMIT - 3] + "..."
    return out


def git_commit(repo: Path = REPO_ROOT) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def lock_hash(root: Path = REPO_ROOT) -> str:
    """sha256 (16 hex) over the lock files that define the venv, each named; 'absent' outside a checkout
    (an installed wheel: then `env.packages_hash` alone identifies the environment)."""
    files = [root / name for name in LOCK_FILES]
    if not all(f.is_file() for f in files):
        return "absent"
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def packages_hash() -> str:
    """sha256 (16 hex) of every installed distribution as name==version, sorted: what actually ran, even
    when the venv drifted from the lock files (or there are none)."""
    pins = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in md.distributions()})
    return hashlib.sha256("\n".join(pins).encode()).hexdigest()[:16]


def environment_identity() -> dict[str, str]:
    """What must match for two runs to be comparable bit for bit: locks, installed packages, python,
    platform, commit. Logged as tags and as `environment.json` on every run."""
    return {"env.lock_hash": lock_hash(), "env.packages_hash": packages_hash(),
            "env.python": f"{platform.python_implementation()} {platform.python_version()}",
            "env.platform": platform.platform(), "git.commit": git_commit()}


def environment_tags() -> dict[str, str]:
    """The environment identity, package versions and the machine: what a reader needs to trust a number."""
    tags = environment_identity()
    for pkg in PACKAGES:
        try:
            tags[f"version.{pkg}"] = md.version(pkg)
        except md.PackageNotFoundError:
            tags[f"version.{pkg}"] = "absent"
    tags.update({
        "machine.platform": platform.platform(),
        "machine.processor": platform.processor() or platform.machine(),
        "machine.cpu_count": str(os.cpu_count()),
        "machine.hostname": socket.gethostname(),
        "machine.python": platform.python_version(),
    })
    try:
        import psutil

        tags["machine.memory_gb"] = f"{psutil.virtual_memory().total / 2**30:.1f}"
    except Exception:  # noqa: BLE001
        pass
    return tags


@contextlib.contextmanager
def tracked_run(experiment_id: str, run_name: str, params: Mapping[str, str], tags: Mapping[str, str]) -> Iterator[Any]:
    """An MLflow run that ends FINISHED on success and FAILED (with an `error` tag and traceback) otherwise."""
    import mlflow

    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags))
    try:
        items = list(params.items())
        for i in range(0, len(items), 100):
            mlflow.log_params(dict(items[i: i + 100]))
        yield run
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        message = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            mlflow.set_tag("error", message[:5000])
            mlflow.log_text("".join(traceback.format_exception(exc)), "error.txt")
        mlflow.end_run(status=status)
        raise
    else:
        mlflow.end_run(status="FINISHED")
