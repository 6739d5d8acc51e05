#!/usr/bin/env bash
# Build (once) Pipecat's own virtual environment for the peer benchmark (`make bench-peer`) and print its
# python. It is built from, and keyed by a hash of, benchmarks/peer/requirements-pipecat.lock (every package
# pinned, with hashes; scripts/lock.sh makes it from requirements-pipecat.txt) and this
# script, under $CVI_LAB_VENV_CACHE (default ~/.cache/cvi-lab/venvs)/pipecat-<hash>, like scripts/ensure_venv.sh
# does for cvi-lab's own venv; Pipecat never enters cvi-lab's requirements. No torch (~400 MB, ~1-2 min).
# Only the last line of stdout is the path; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
req=benchmarks/peer/requirements-pipecat.lock
key=$(cat "$req" scripts/ensure_pipecat_venv.sh | sha256sum | cut -c1-16)
cache=${CVI_LAB_VENV_CACHE:-$HOME/.cache/cvi-lab/venvs}
venv="$cache/pipecat-$key"
mkdir -p "$cache"
exec 9>"$cache/pipecat-$key.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "[bench-peer] building Pipecat's virtual environment $venv (first time for this pin set, ~1-2 min)" >&2
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  "$venv/bin/pip" install -q --progress-bar off --require-hashes -r "$req" >&2
  "$venv/bin/python" -c "import pipecat, aiortc, faster_whisper, piper, onnxruntime" >&2
  touch "$venv/.complete"
fi
# Marks it as in use: the cleanup keeps every environment used in the last 24 hours.
touch "$venv/.complete"
# Keep the disk bounded: drop Pipecat environments beyond the 2 most recently used AND unused for 24 hours,
# and only when nobody holds their lock.
ls -1t "$cache"/pipecat-*/.complete 2>/dev/null | tail -n +3 | while read -r mark; do
  old=${mark%/.complete}
  [ "$old" = "$venv" ] && continue
  [ -n "$(find "$mark" -mmin +1440 2>/dev/null)" ] || continue
  (
    flock -n 8 || exit 0
    rm -rf "$old"
  ) 8>"$old.lock"
done
flock -u 9
echo "$venv/bin/python"
