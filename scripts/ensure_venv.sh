#!/usr/bin/env bash
# Make ./.venv point at a complete virtual environment for the current dependency set.
# The environment is ~8 GB, so it is built once per hash of the dependency files under
# $CVI_LAB_VENV_CACHE (default ~/.cache/cvi-lab/venvs) and shared by every clone; a fresh machine
# builds it from nothing. The project itself is (re)installed editable into it on every call (seconds).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
key=$(cat requirements.txt requirements-nodeps.txt scripts/ensure_venv.sh | sha256sum | cut -c1-16)
cache=${CVI_LAB_VENV_CACHE:-$HOME/.cache/cvi-lab/venvs}
venv="$cache/$key"
mkdir -p "$cache"
exec 9>"$cache/$key.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "[cvi-lab] building virtual environment $venv (first time for this dependency set, ~3-5 min)"
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install --progress-bar off -r requirements.txt
  "$venv/bin/pip" install --progress-bar off --no-deps -r requirements-nodeps.txt
  touch "$venv/.complete"
  # Keep the disk bounded: drop environments of older dependency sets beyond the 2 most recent.
  # (only cvi-lab's own environments, named by a 16-hex-digit hash; the peer benchmark's pipecat-* stays)
  ls -1dt "$cache"/????????????????/ 2>/dev/null | grep -E '/[0-9a-f]{16}/$' | tail -n +3 | while read -r old; do
    [ "${old%/}" != "$venv" ] && [ -f "${old%/}/.complete" ] && rm -rf "${old%/}" "${old%/}.lock"
  done
fi
touch "$venv/.complete"
if [ -L .venv ] || [ ! -e .venv ]; then
  ln -sfn "$venv" .venv
fi
# Editable install of this clone (points the shared venv at this checkout's sources).
.venv/bin/pip install -q --no-deps --no-build-isolation -e . >/dev/null
flock -u 9
