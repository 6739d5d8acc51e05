"""Property-based fuzzing of the served /openapi.json (schemathesis, every check, a bounded and deterministic
number of examples): no server error, and nowhere the document and the server disagree (a request the document
calls valid is accepted, one it calls invalid is refused with a 4xx, every status, header and body is the one
documented, a known path with a wrong method is a 405 with `Allow`)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from cvi_lab.harness.server import InProcessServer
from tests.helpers.config import make_cfg

KEY = "fuzz-key"
ROOT = str(Path(__file__).resolve().parents[2])  # the hooks module is tests.api.fuzz_hooks
EXAMPLES = 25  # per operation and phase: enough to cover every field's bounds, small enough for a 2-core CI
# 413 (a body over server.limits.max_body_bytes, which no schema can bound) is a rejection too; a 5xx never is.
# The one loosening, held tight by tests/api/fuzz_hooks.py (see there why): the spec's state-decided 400s
# (of creating a conversation, and of an app message to an ended one).
CONFIG = """
hooks = "tests.api.fuzz_hooks"

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]

[[operations]]
include-name = "POST /v2/conversations"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

[[operations]]
include-name = "POST /v2/conversations/{conversation_id}/send-app-message"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"""


@pytest.mark.slow  # minutes on a 2-core machine: `make test` runs it, `make test-fast` does not
async def test_the_server_does_what_its_openapi_document_says(tmp_path):
    cfg = make_cfg(tmp_path / "home", api_keys=[KEY], port=0)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    async with InProcessServer(cfg) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
            f"{server.local_url}/openapi.json",
            "--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(EXAMPLES), "--seed", "20260", "--generation-deterministic", "--workers", "1",
            "--header", f"x-api-key: {KEY}", "--no-color", "--continue-on-failure",
            # a loaded CI machine is slow, not wrong: no generation-speed health checks, a generous request timeout
            "--suppress-health-check", "all", "--request-timeout", "60",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}, cwd=tmp_path)
        out, _ = await proc.communicate()
        report = "\n".join(line[:400] for line in out.decode(errors="replace").splitlines())
        assert proc.returncode == 0, report[-30000:]
        print(report[report.rfind("SUMMARY"):])  # operations, phases, cases generated (shown with -s / -rP)
        assert server.app["stats"]["internal_errors"] == 0
