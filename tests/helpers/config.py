"""Composed test configs: the real serve.yaml (stage groups left out) with a private home per test."""

from __future__ import annotations

import functools
import pathlib
from typing import Any

from omegaconf import OmegaConf

STANDIN_BUILDER = "tests.helpers.standin_builder.build_replica"


@functools.lru_cache(maxsize=1)
def _base() -> Any:
    from cvi_lab.config import STAGE_GROUPS, compose

    return compose(overrides=[f"~{g}" for g in STAGE_GROUPS])


def make_cfg(home: pathlib.Path, **server: Any) -> Any:
    """serve.yaml with server.home=home, no runtimes/installers, the stand-in builder, and `server` keys merged (dotted keys ok)."""
    cfg = OmegaConf.merge(_base(), {"server": {"home": str(home), "replica_builder": STANDIN_BUILDER,
                                               "webhooks": {"grace_s": 0.2},
                                               # API-level tests: no engine, no WebRTC unless a test adds them
                                               "runtimes": [], "installers": [],
                                               # so a call costs no CPU here, and API tests hold several at once;
                                               # the shipped limit has its own test (test_capacity_limit.py)
                                               "limits": {"max_concurrent_conversations": 16}}})
    for key, value in server.items():
        OmegaConf.update(cfg, f"server.{key}", value, merge=True)
    return cfg
