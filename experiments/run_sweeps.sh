#!/usr/bin/env bash
# Run the lab's sweeps one after another into one tracking store, recording the machine load around each,
# then draw each sweep's table and plots with `cvi-lab compare` (experiments/README.md).
#   experiments/run_sweeps.sh [SWEEP[:EXTRA_OVERRIDES]]...   e.g.  asr_sweep "turn_sweep:participant.pause_sensitivity=medium"
# Environment: PY (python, default .venv/bin/python), SWEEPS_HOME (store + logs, default /tmp/cvi-lab-sweeps).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
HOME_DIR=${SWEEPS_HOME:-/tmp/cvi-lab-sweeps}
mkdir -p "$HOME_DIR"
URI="sqlite:///$HOME_DIR/mlflow.db"
for spec in "$@"; do
  sweep=${spec%%:*}; extra=""; [[ "$spec" == *:* ]] && extra=${spec#*:}
  log="$HOME_DIR/$sweep${extra:+-$(printf %s "$extra" | tr -c 'A-Za-z0-9_.=-' _)}.log"
  {
    echo "== $sweep $extra  start $(date -u +%FT%TZ)  cores $(nproc)  loadavg $(cat /proc/loadavg)"
    # shellcheck disable=SC2086
    "$PY" -m cvi_lab experiment -m "experiment=$sweep" $extra "tracking.uri=$URI" \
      "tracking.artifact_root=$HOME_DIR/mlruns"
    echo "== $sweep rc $?  end $(date -u +%FT%TZ)  cores $(nproc)  loadavg $(cat /proc/loadavg)"
  } >"$log" 2>&1
done
