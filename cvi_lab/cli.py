"""`cvi-lab` command line: a small dispatcher over serve / demo / replica.

Configuration is composed with Hydra from the repo's conf/ (next to the cvi_lab package), so every key can
be overridden as `key=value`, e.g. `cvi-lab serve server.port=9000 server.api_keys='[secret]'`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from typing import Any, Sequence

CONF_DIR = pathlib.Path(__file__).resolve().parent.parent / "conf"
STAGE_GROUPS = ("vad", "turn", "asr", "llm", "tts", "avatar")

USAGE = """usage: cvi-lab COMMAND [options] [key=value ...]

commands:
  serve [overrides]                    start the API server (conf/serve.yaml), e.g. server.port=9000
  demo [overrides]                     start a server, hold a 3-turn spoken call, print transcript + latency
  replica create PATH [--name N]       build a replica offline from a face video/image, print its record
  replica preview ...                  render a preview of a replica (see `cvi-lab replica preview --help`)
  experiment experiment=NAME [...]     run an experiment (Hydra app over conf/lab.yaml; -m for sweeps)
  compare [--experiment NAME]          compare MLflow runs: table + plots (latency vs quality)

Overrides are Hydra key=value pairs over conf/serve.yaml: server.host, server.port, server.api_keys,
server.home, server.store.path, server.limits.max_concurrent_conversations, ...
"""


def compose_config(overrides: Sequence[str] = (), config_name: str = "serve") -> Any:
    """The composed config. Stage groups whose configs are not installed yet are dropped with a warning
    (the API does not need them), so the server runs while the stage layers are being built."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import MissingConfigException

    overrides = list(overrides)
    dropped: list[str] = []
    while True:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="cvi-lab"):
            try:
                cfg = compose(config_name=config_name, overrides=overrides + [f"~{g}" for g in dropped])
                break
            except MissingConfigException as exc:
                match = re.search(r"Could not find '(\w+)/", str(exc))
                group = match.group(1) if match else None
                if group not in STAGE_GROUPS or group in dropped or any(o.startswith(f"{group}=") for o in overrides):
                    raise
                dropped.append(group)
    if dropped:
        print(f"[cvi-lab] note: stage configs not installed yet, left out: {', '.join(dropped)}", file=sys.stderr)
    return cfg


def _serve(args: list[str]) -> int:
    from cvi_lab.api.app import run_server

    return run_server(compose_config(args))


def _demo(args: list[str]) -> int:
    from cvi_lab.demo import main as demo_main

    return demo_main(compose_config(args))


def _replica(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    sub, rest = args[0], args[1:]
    if sub == "preview":
        try:
            from cvi_lab.stages.avatar.preview import main as preview_main
        except ImportError as exc:
            print(f"cvi-lab replica preview is not available yet (cvi_lab.stages.avatar.preview: {exc})",
                  file=sys.stderr)
            return 2
        return int(preview_main(rest) or 0)
    if sub == "create":
        parser = argparse.ArgumentParser(prog="cvi-lab replica create")
        parser.add_argument("path", help="face video or image (local path, file:// or http(s) URL)")
        parser.add_argument("--name", default=None, help="replica_name")
        parser.add_argument("overrides", nargs="*", help="Hydra key=value overrides")
        ns = parser.parse_intermixed_args(rest)
        from cvi_lab.calls.offline import build_replica_offline

        record = build_replica_offline(compose_config(ns.overrides), ns.path, ns.name)
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


COMMANDS = {"serve": _serve, "demo": _demo, "replica": _replica, "experiment": _experiment, "compare": _compare}
OWN_HELP = ("replica", "experiment", "compare")  # these print their own --help


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
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
    sys.exit(command(args[1:]))
