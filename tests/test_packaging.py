"""The wheel is the product: built from the repo and installed away from it, it must carry its config, the
meeting page and the store's files, and `cvi-lab` must run from an empty directory.

The installed copy lives in a throwaway venv that sees the dev venv's third-party packages (a .pth naming the
dev venv's site-packages: its own .pth files, among them the editable cvi_lab finder, are not processed) but
not the repo. `make wheel-check` (scripts/wheel_check.sh) does the same from the lock files into a fresh venv.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "cvi_lab"
# What the sdist-less build needs from the repo; everything else (tests, conf of a checkout, notebooks) stays out.
BUILD_INPUTS = ("pyproject.toml", "README.md", "cvi_lab")
ROOT_CONFIGS = ("cvi_lab/conf/serve.yaml", "cvi_lab/conf/lab.yaml")
SERVE_READY_S = 300  # generous: the server may warm its stages before it listens
STOP_GRACE_S = 60


def _env_away_from_repo() -> dict[str, str]:
    """This environment without what leads Python back to the repo (the Makefile exports PYTHONPATH)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("env", _env_away_from_repo())
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a clean copy of the sources (no build/ or egg-info left over from earlier builds)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    out = root / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                  "-q", "-w", str(out), str(src)], timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = out.glob("cvi_lab-*.whl")
    return found


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def _package_files(pattern: str) -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob(pattern) if "__pycache__" not in p.parts}


def test_wheel_carries_the_config_inside_the_package(wheel):
    names = _names(wheel)
    missing_roots = [c for c in ROOT_CONFIGS if c not in names]
    assert not missing_roots, f"root configs missing from the wheel: {missing_roots}"
    yaml_files = _package_files("*.yaml")
    assert yaml_files - names == set(), f"config files missing from the wheel: {sorted(yaml_files - names)}"
    groups = {n.split("/")[2] for n in names if n.startswith("cvi_lab/conf/") and n.count("/") == 3}
    for group in ("vad", "turn", "asr", "llm", "tts", "avatar", "engine", "server"):
        assert group in groups, f"config group cvi_lab/conf/{group}/ missing from the wheel (has: {sorted(groups)})"


def test_wheel_carries_the_meeting_page_and_store_files(wheel):
    names = _names(wheel)
    static = {p.relative_to(REPO).as_posix() for p in (PACKAGE / "transport" / "static").iterdir() if p.is_file()}
    assert {"cvi_lab/transport/static/meeting.html", "cvi_lab/transport/static/meeting.js"} <= static
    assert static - names == set(), f"static files missing from the wheel: {sorted(static - names)}"
    sql = _package_files("*.sql")
    assert sql - names == set(), f"SQL files missing from the wheel: {sorted(sql - names)}"


def test_wheel_holds_only_the_package_and_declares_the_command(wheel):
    names = _names(wheel)
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"cvi_lab"}, f"unexpected top-level entries: {tops}"
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(wheel) as zf:
        assert "cvi-lab = cvi_lab.cli:main" in zf.read(entry_points).decode()


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A venv holding only the wheel (no deps), seeing the dev venv's third-party packages; returns its bin/."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    made = _run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    python = venv / "bin" / "python"
    # Installed before the .pth exists, so pip sees an empty environment (and never the dev venv's cvi-lab).
    inst = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                 str(wheel)], timeout=600)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    dev_sites = dict.fromkeys(str(Path(sysconfig.get_path(k)).resolve()) for k in ("purelib", "platlib"))
    (site / "_cvi_lab_dev_venv.pth").write_text("".join(f"{p}\n" for p in dev_sites))
    return venv / "bin"


@pytest.fixture
def away(tmp_path) -> tuple[Path, dict[str, str]]:
    """An empty working directory and an environment that does not lead back to the repo."""
    cwd = tmp_path / "empty"
    cwd.mkdir()
    env = _env_away_from_repo()
    env["CVI_LAB_HOME"] = str(tmp_path / "home")
    env["HF_HUB_OFFLINE"] = env["TRANSFORMERS_OFFLINE"] = "1"
    return cwd, env


def test_installed_package_is_the_wheel_not_the_repo(installed, away):
    cwd, env = away
    code = "import cvi_lab, json, sys; print(json.dumps([cvi_lab.__file__, sys.path]))"
    probe = _run([str(installed / "python"), "-c", code], cwd=cwd, env=env, timeout=120)
    assert probe.returncode == 0, probe.stderr
    location, path = json.loads(probe.stdout)
    assert Path(location).is_relative_to(installed.parent), f"cvi_lab imported from {location}, not the wheel"
    assert REPO not in {Path(entry).resolve() for entry in path if entry}, f"the repo is on sys.path: {path}"


def test_cli_help_from_an_empty_directory(installed, away):
    cwd, env = away
    shown = _run([str(installed / "cvi-lab"), "--help"], cwd=cwd, env=env, timeout=120)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "serve" in shown.stdout and "experiment" in shown.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_200(url: str, proc: subprocess.Popen, deadline_s: float) -> int | None:
    """Poll `url` until it answers 200 (returns 200), the server exits, or the deadline passes (None)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    return None


def test_serve_from_an_empty_directory(installed, away):
    cwd, env = away
    port = _free_port()
    log = cwd.parent / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(installed / "cvi-lab"), "serve", f"server.port={port}"], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            status = _wait_for_200(f"http://127.0.0.1:{port}/health", proc, SERVE_READY_S)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert status == 200, f"`cvi-lab serve` never answered /health (exit code {proc.returncode}):\n{log.read_text()[-4000:]}"


@pytest.mark.slow
def test_experiment_smoke_from_an_empty_directory(installed, away):
    cwd, env = away
    ran = _run([str(installed / "cvi-lab"), "experiment", "experiment=smoke"], cwd=cwd, env=env, timeout=1800)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-4000:]
