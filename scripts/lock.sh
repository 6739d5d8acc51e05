#!/usr/bin/env bash
# Regenerate the lock files from pyproject.toml (every extra), requirements-nodeps.txt and the peer benchmark's
# benchmarks/peer/requirements-pipecat.txt (Pipecat's own venv, scripts/ensure_pipecat_venv.sh), with hashes, for
# CPython 3.11 on Linux x86_64 (the machines this project runs on). uv keeps the versions already in the lock
# files and resolves only what changed; `scripts/lock.sh --upgrade` moves everything to the newest allowed
# versions, `scripts/lock.sh --upgrade-package NAME` one package. Extra arguments go to `uv pip compile`
# (e.g. `-c constraints.txt`). The venv (scripts/ensure_venv.sh) is built from, and keyed by, these files.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
[ -x "$uv" ] || uv=uv
common=(--generate-hashes --python-version 3.11.7 --python-platform x86_64-manylinux_2_28
        --index-url https://pypi.org/simple --custom-compile-command "scripts/lock.sh" --quiet)
"$uv" pip compile pyproject.toml --all-extras "${common[@]}" -o requirements.lock "$@"
"$uv" pip compile requirements-nodeps.txt --no-deps "${common[@]}" -o requirements-nodeps.lock "$@"
"$uv" pip compile benchmarks/peer/requirements-pipecat.txt "${common[@]}" -o benchmarks/peer/requirements-pipecat.lock "$@"
