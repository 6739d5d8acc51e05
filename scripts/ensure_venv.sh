#!/usr/bin/env bash
# Make ./.venv point at a complete virtual environment built from the lock files.
# The environment is ~8 GB, so it is built once per hash of requirements.lock, requirements-nodeps.lock and
# this script, under $CVI_LAB_VENV_CACHE (default ~/.cache/cvi-lab/venvs), and shared by every clone; a fresh
# machine builds it from nothing, with exactly the locked versions (`--require-hashes`: a package that is not
# in the lock, or a file whose hash differs, stops the build). The project itself is (re)installed editable
# into it on every call (seconds); every extra's packages are in the lock, so this is `.[all]`.
# Regenerate the lock files with scripts/lock.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
key=$(cat requirements.lock requirements-nodeps.lock scripts/ensure_venv.sh | sha256sum | cut -c1-16)
cache=${CVI_LAB_VENV_CACHE:-$HOME/.cache/cvi-lab/venvs}
venv="$cache/$key"
mkdir -p "$cache"
exec 9>"$cache/$key.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "[cvi-lab] building virtual environment $venv from requirements.lock (first time for this lock, ~5-10 min)"
  started=$SECONDS
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  "$venv/bin/pip" install --progress-bar off --require-hashes -r requirements.lock
  "$venv/bin/pip" install --progress-bar off --require-hashes --no-deps -r requirements-nodeps.lock
  "$venv/bin/python" -c "import torch, torchaudio, ctranslate2, aiortc, librosa"
  touch "$venv/.complete"
  echo "[cvi-lab] built $venv in $((SECONDS - started)) s"
fi
# Marks it as in use: the cleanup below keeps every environment used in the last 24 hours.
touch "$venv/.complete"
# Keep the disk bounded: drop cvi-lab's own environments (named by a 16-hex-digit key; the peer benchmark's
# pipecat-* are not touched) that are beyond the 2 most recently used AND unused for 24 hours, and only when
# nobody holds their lock (no build or cleanup of that one is under way). Another clone whose .venv points at
# an old environment marks it on each `make`, so it is not deleted under that clone's feet.
ls -1t "$cache"/*/.complete 2>/dev/null | grep -E '/[0-9a-f]{16}/\.complete$' | tail -n +3 | while read -r mark; do
  old=${mark%/.complete}
  [ "$old" = "$venv" ] && continue
  [ -n "$(find "$mark" -mmin +1440 2>/dev/null)" ] || continue
  (
    flock -n 8 || exit 0
    rm -rf "$old"
  ) 8>"$old.lock"
done
if [ -L .venv ] || [ ! -e .venv ]; then
  ln -sfn "$venv" .venv
fi
# Editable install of this clone (points the shared venv at this checkout's sources).
.venv/bin/pip install -q --no-deps --no-build-isolation -e . >/dev/null
flock -u 9
