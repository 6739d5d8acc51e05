#!/usr/bin/env bash
# Build (once) Pipecat's own virtual environment for the peer benchmark (`make bench-peer`) and print its
# python. It is keyed by a hash of benchmarks/peer/requirements-pipecat.txt (every package pinned) and this
# script, under $CVI_LAB_VENV_CACHE (default ~/.cache/cvi-lab/venvs)/pipecat-<hash>, like scripts/ensure_venv.sh
# does for cvi-lab's own venv; Pipecat never enters cvi-lab's requirements. No torch (~400 MB, ~1-2 min).
# Only the last line of stdout is the path; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
req=benchmarks/peer/requirements-pipecat.txt
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
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q --progress-bar off -r "$req" >&2
  "$venv/bin/python" -c "import pipecat, aiortc, faster_whisper, piper, onnxruntime" >&2
  touch "$venv/.complete"
  # Keep the disk bounded: drop Pipecat environments of older pin sets beyond the 2 most recent.
  ls -1dt "$cache"/pipecat-*/ 2>/dev/null | tail -n +3 | while read -r old; do
    [ "${old%/}" != "$venv" ] && [ -f "${old%/}/.complete" ] && rm -rf "${old%/}" "${old%/}.lock"
  done
fi
# Marks it as recently used (ensure_venv.sh prunes the oldest entries of the shared cache folder).
touch "$venv"
flock -u 9
echo "$venv/bin/python"
