"""`make demo` end to end: the in-process server, a real 3-turn spoken conversation over loopback WebRTC."""

from __future__ import annotations

import pytest

from cvi_lab.cli import CONF_DIR

pytestmark = pytest.mark.slow


def test_demo_holds_three_spoken_turns(tmp_path, capsys):
    if not (CONF_DIR / "llm" / "hf_causal.yaml").exists():
        pytest.skip("default stage configs not installed")
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
    if summary["recording"]:  # enable_recording: the file the record points at exists
        from pathlib import Path

        assert Path(summary["recording"]).is_file(), summary["recording"]
    assert "== transcript" in out and "| turn | client latency" in out and "recording:" in out
