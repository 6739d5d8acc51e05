"""`cvi-lab` command line: a small dispatcher over serve / demo / replica / experiment / compare.

Configuration is composed with Hydra by `cvi_lab.config` (shipped in the package), so every key can be
overridden as `key=value`, e.g. `cvi-lab serve server.port=9000 server.api_keys='[secret]'`, and
`--config-dir DIR` adds your own config directory (see `cvi_lab.config`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from cvi_lab.config import SERVE_ROOT, ConfigError, take_config_dir_flags
from cvi_lab.config import compose as compose_config  # kept importable here for callers of the CLI's composer

USAGE = """usage: cvi-lab [--config-dir DIR] COMMAND [options] [key=value ...]

commands:
  serve [overrides]                    start the API server (serve.yaml), e.g. server.port=9000
  demo [overrides]                     start a server, hold a 3-turn spoken call, print transcript + latency
  replica create PATH [--name N]       build a replica offline from a face video/image, print its record
  replica preview ...                  render a preview of a replica (see `cvi-lab replica preview --help`)
  experiment experiment=NAME [...]     run an experiment (Hydra app over lab.yaml; -m for sweeps)
  compare [--experiment NAME]          compare MLflow runs: table + plots (latency vs quality)
  model-server [overrides]             serve our asr/tts/llm stages over OpenAI's HTTP API (model_server.yaml)

Overrides are Hydra key=value pairs over serve.yaml: server.host, server.port, server.api_keys,
server.home, server.store.path, server.limits.max_concurrent_conversations, stage choices (asr=..., tts=...),
engine.* settings, ...
--config-dir DIR (or CVI_LAB_CONFIG_DIR=DIR) adds DIR to the config search path: DIR/asr/my_asr.yaml makes
`asr=my_asr` a choice. Hydra's `hydra.searchpath=[file:///DIR]` override works too.
"""


class ConfigProblem(Exception):
    """The command's config does not compose; printed as Hydra's message (it names the file and the choices)."""


def serve_config(overrides: Sequence[str], root: str = SERVE_ROOT) -> Any:
    """The config of a command (root `serve`, or `model_server`), or ConfigProblem with Hydra's message."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose_config(overrides=overrides, config_name=root)
    except (HydraException, OmegaConfBaseException, ConfigError) as exc:
        raise ConfigProblem(str(exc)) from None


def _serve(args: list[str]) -> int:
    from cvi_lab.api.app import run_server

    return run_server(serve_config(args))


def _demo(args: list[str]) -> int:
    from cvi_lab.demo import main as demo_main

    return demo_main(serve_config(args))


def _replica(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    sub, rest = args[0], args[1:]
    if sub == "preview":
        from cvi_lab.stages.avatar.preview import main as preview_main

        return int(preview_main(rest) or 0)
    if sub == "create":
        parser = argparse.ArgumentParser(prog="cvi-lab replica create")
        parser.add_argument("path", help="face video or image (local path, file:// or http(s) URL)")
        parser.add_argument("--name", default=None, help="replica_name")
        parser.add_argument("overrides", nargs="*", help="Hydra key=value overrides")
        ns = parser.parse_intermixed_args(rest)
        from cvi_lab.calls.replica_build import build_replica_offline

        record = build_replica_offline(serve_config(ns.overrides), ns.path, ns.name)
        print(json.dumps(record, indent=2))
        return 0 if record.get("status") == "completed" else 1
    print(f"unknown replica command {sub!r}\n\n{USAGE}", file=sys.stderr)
    return 2


def _experiment(args: list[str]) -> int:
    from cvi_lab.lab.app import main as experiment_main

    return int(experiment_main(args) or 0)


def _compare(args: list[str]) -> int:
    from cvi_lab.lab.compare import main as compare_main

    return int(compare_main(args) or 0)


def _model_server(args: list[str]) -> int:
    from cvi_lab.model_server.app import run

    return run(serve_config(args, "model_server"))


COMMANDS = {"serve": _serve, "demo": _demo, "replica": _replica, "experiment": _experiment, "compare": _compare,
            "model-server": _model_server}
OWN_HELP = ("replica", "experiment", "compare")  # these print their own --help


def main(argv: Sequence[str] | None = None) -> None:
    try:
        args = take_config_dir_flags(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as exc:
        print(f"cvi-lab: {exc}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        sys.exit(0 if args else 2)
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"unknown command {args[0]!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    if any(a in ("-h", "--help") for a in args[1:]) and args[0] not in OWN_HELP:
        print(USAGE)
        sys.exit(0)
    try:
        sys.exit(command(args[1:]))
    except ConfigProblem as exc:
        print(f"cvi-lab {args[0]}: config error: {exc}", file=sys.stderr)
        sys.exit(2)
