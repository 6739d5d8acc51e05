"""`cvi-lab` CLI: usage, the loopback rule at start, overrides, replica create/preview (`demo` end to end is
tests/test_demo.py)."""

from __future__ import annotations

import json
import sys
import types

import pytest

from cvi_lab import cli
from tests.helpers.config import STANDIN_BUILDER


def run_main(argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    return exc.value.code


def test_usage(capsys):
    assert run_main([]) == 2
    assert run_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "serve" in out and "demo" in out and "replica create PATH" in out and "server.port" in out
    assert run_main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_overrides_reach_the_config(tmp_path):
    cfg = cli.compose_config(["server.port=9000", f"server.home={tmp_path}", "server.api_keys=[a,b]"])
    assert cfg.server.port == 9000 and list(cfg.server.api_keys) == ["a", "b"]
    assert cfg.server.store.path == f"{tmp_path}/cvi-lab.db"
    assert "english" in cfg.languages


def test_serve_refuses_a_public_bind_without_keys(tmp_path, capsys):
    assert run_main(["serve", "server.host=0.0.0.0", f"server.home={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "refusing to start" in err and "server.api_keys" in err
    assert not (tmp_path / "cvi-lab.db").exists()  # refused before touching anything


def test_replica_create_offline(tmp_path, capsys):
    face = tmp_path / "face.png"
    face.write_bytes(b"png")
    common = [f"server.home={tmp_path}", f"server.replica_builder={STANDIN_BUILDER}"]
    assert run_main(["replica", "create", str(face), "--name", "me", *common]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "completed" and record["replica_name"] == "me"
    assert record["replica_id"].startswith("r") and record["training_progress"] == "100/100"
    bad = tmp_path / "noface.png"
    bad.write_bytes(b"png")
    assert run_main(["replica", "create", str(bad), *common]) == 1
    assert "no face found" in json.loads(capsys.readouterr().out)["error_message"]
    assert run_main(["replica", "create", str(tmp_path / "missing.png"), *common]) == 1


def test_replica_preview_delegates(monkeypatch):
    seen = []
    fake = types.ModuleType("cvi_lab.stages.avatar.preview")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "cvi_lab.stages.avatar.preview", fake)
    assert run_main(["replica", "preview", "rabc123", "--seconds", "2"]) == 0
    assert seen == [["rabc123", "--seconds", "2"]]


def test_a_missing_config_names_the_file_and_the_choices(tmp_path, capsys):
    assert run_main(["serve", "asr=no_such_asr", f"server.home={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "config error" in err and "asr/no_such_asr" in err and "faster_whisper_tiny_en" in err
    assert "Traceback" not in err and "not installed yet" not in err
    with pytest.raises(Exception, match="Could not find 'tts/nope'"):
        cli.compose_config(["tts=nope"])  # no group is left out quietly


def test_config_dir_flag_adds_a_user_config_dir(tmp_path, monkeypatch):
    from cvi_lab import config

    monkeypatch.setenv(config.USER_DIRS_ENV, "")  # restored after the test: --config-dir writes to it
    (tmp_path / "asr").mkdir()
    (tmp_path / "asr" / "my_asr.yaml").write_text("defaults: [faster_whisper_tiny_en, _self_]\nbeam_size: 5\n")
    seen = []
    monkeypatch.setitem(cli.COMMANDS, "serve", lambda args: seen.append(cli.serve_config(args)) or 0)
    assert run_main(["--config-dir", str(tmp_path), "serve", "asr=my_asr"]) == 0
    assert seen[0].asr.beam_size == 5 and seen[0].composed.choices.asr == "my_asr"
    assert run_main(["serve", "--config-dir"]) == 2
