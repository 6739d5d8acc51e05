"""`make demo` end to end, as the command line runs it: the in-process server and a real 3-turn spoken
conversation over loopback WebRTC, checked from what it prints (one run: each costs ~1-2 min)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cvi_lab.demo import DEMO_QUESTIONS
from tests.helpers.server_process import REPO, env

pytestmark = pytest.mark.slow


def test_demo_holds_three_spoken_turns(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cvi_lab", "demo", f"server.home={tmp_path}"], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=400)
    out = proc.stdout
    # exit status 0 = every turn was answered (cvi_lab.demo.main)
    assert proc.returncode == 0, out + proc.stderr
    assert "/meet/c" in out and "shutdown_reason: end_conversation_endpoint_hit" in out
    transcript = out.split("== transcript", 1)[1].split("== latency", 1)[0]
    roles = re.findall(r"^\s+(user|replica): ", transcript, flags=re.M)
    assert roles.count("user") >= len(DEMO_QUESTIONS) and roles.count("replica") >= len(DEMO_QUESTIONS) + 1, transcript
    table = out.split("== latency", 1)[1].split("shutdown_reason:", 1)[0]
    rows = [line for line in table.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) == len(DEMO_QUESTIONS), table
    for row in rows:  # every turn: the client's latency, and the engine's stored record (its marks, not all "-")
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] != "-" and any(c != "-" for c in cells[2:]), f"latency or engine record missing: {row}"
    # enable_recording: the file it points at exists, or the recorder could not start ("not available")
    recording = re.search(r"^recording: (.+)$", out, flags=re.M).group(1)
    assert recording == "not available" or Path(recording).is_file(), recording
