"""`make demo` end to end: the in-process server, a real 3-turn spoken conversation over loopback WebRTC."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_demo_holds_three_spoken_turns(tmp_path, capsys):
    import asyncio

    from cvi_lab.cli import compose_config
    from cvi_lab.demo import run_demo

    summary = asyncio.run(run_demo(compose_config([]), home=tmp_path))
    out = capsys.readouterr().out
    assert len(summary["turns"]) == 3
    assert summary["answered"] == 3, summary["turns"]
    assert all(r["engine"] for r in summary["turns"]), "engine latency records missing"
    roles = [role for role, _ in summary["transcript"]]
    assert roles.count("user") >= 3 and roles.count("replica") >= 4, summary["transcript"]  # greeting + 3 answers
    # enable_recording: the file the record points at exists; None when the recorder could not start (it
    # leaves the call as is), which the printed "recording: not available" says
    if summary["recording"]:
        from pathlib import Path

        assert Path(summary["recording"]).is_file(), summary["recording"]
    assert "== transcript" in out and "| turn | client latency" in out and "recording:" in out
