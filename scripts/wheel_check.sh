#!/usr/bin/env bash
# `make wheel-check`: what a new user gets. Builds the wheel from a clean copy of the sources, installs the lock
# files into a fresh venv (`--require-hashes`) and the wheel with `--no-deps`, then from an empty directory,
# away from the repo, runs `cvi-lab --help`, `cvi-lab serve` (until /health answers 200), `cvi-lab demo` and
# `cvi-lab experiment experiment=smoke`. Heavy (a full venv, ~8 GB, and real models): minutes.
# KEEP=1 keeps the work folder (printed) for a look afterwards.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
work=$(mktemp -d "${TMPDIR:-/tmp}/cvi-lab-wheel-check.XXXXXX")
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "[wheel-check] kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
step() { echo "[wheel-check] $*"; }

step "sources -> $work/src"
mkdir -p "$work/src" "$work/empty" "$work/home"
cp -r pyproject.toml README.md cvi_lab "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +

step "fresh venv from requirements.lock + requirements-nodeps.lock"
started=$SECONDS
"$PY" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --progress-bar off --require-hashes -r requirements.lock
"$work/venv/bin/pip" install -q --progress-bar off --require-hashes --no-deps -r requirements-nodeps.lock
step "venv built in $((SECONDS - started)) s"

step "wheel"
"$work/venv/bin/pip" wheel -q --no-deps --no-build-isolation --no-index -w "$work/dist" "$work/src"
wheel=$(ls "$work"/dist/cvi_lab-*.whl)
"$work/venv/bin/python" - "$wheel" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["cvi_lab/conf/serve.yaml", "cvi_lab/conf/lab.yaml", "cvi_lab/transport/static/meeting.html"]
missing = [n for n in need if n not in names]
sys.exit(f"[wheel-check] missing from the wheel: {missing}" if missing else 0)
EOF
"$work/venv/bin/pip" install -q --no-deps --no-index "$wheel"

# Away from the repo: an empty directory, no PYTHONPATH (the Makefile exports one), the venv's own bin first.
cd "$work/empty"
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
export PATH="$work/venv/bin:$PATH" CVI_LAB_HOME="$work/home" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
where=$(python -c "import cvi_lab; print(cvi_lab.__file__)")
case "$where" in "$work/venv/"*) ;; *) echo "[wheel-check] cvi_lab imported from $where, not the wheel"; exit 1 ;; esac

step "cvi-lab --help"
cvi-lab --help >/dev/null

port=$(python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
step "cvi-lab serve server.port=$port"
cvi-lab serve server.port="$port" >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 600); do
  curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { tail -n 40 "$work/serve.log"; echo "[wheel-check] serve exited"; exit 1; }
  sleep 0.5
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/health" || { tail -n 40 "$work/serve.log"; exit 1; }
kill -INT "$server_pid"
wait "$server_pid" || true
server_pid=

step "cvi-lab demo"
timeout 1200 cvi-lab demo
step "cvi-lab experiment experiment=smoke"
timeout 1800 cvi-lab experiment experiment=smoke
step "passed: $(basename "$wheel") serves, demos and runs the smoke experiment from an empty directory"
