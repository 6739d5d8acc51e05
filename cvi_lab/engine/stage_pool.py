"""Stage instances shared across conversations, keyed by their resolved config.

Why: loading SmolLM2, whisper, piper or smart-turn takes seconds and hundreds of MB; two conversations with
the same config can share one instance (their inference goes through `run_blocking`, so it is serialised by
the executor, not by us). Stages that keep per-call state get their own instance per conversation:
- VAD: streaming state (recurrent state, sample counter) -> per conversation, created from the config
  (cheap: silero's ONNX session loads in ~50 ms);
- avatar renderer: its audio queue and frame clock -> per conversation, a fresh instance built with the
  conversation's replica_dir / apply_greenscreen (the portrait loads in well under a second);
- turn detector, ASR, LLM, TTS: stateless between calls -> shared. An LLM's prefix cache lives in the shared
  instance; if it is `Forkable` each conversation gets its own fork (its own cache), else conversations
  share (and may evict) the cache.
Optional capabilities are declared as Protocols (`Forkable`, `Closable`), not probed with getattr.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol, runtime_checkable

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PER_CONVERSATION = ("vad", "avatar")
# A remote LLM endpoint may be down when a call starts and come back later: its warm-up failure is reported
# (engine error event), not fatal; the call starts and apologises on turns that fail.
SOFT_WARMUP = ("llm",)
FORKABLE = ("llm",)


@runtime_checkable
class Forkable(Protocol):
    """A shared stage that hands each conversation its own copy of its per-call state (an LLM's prefix cache)."""

    def fork(self) -> Any: ...


@runtime_checkable
class Closable(Protocol):
    """A shared stage holding something on the running event loop (e.g. an HTTP session to a remote LLM)."""

    async def aclose(self) -> None: ...


def config_key(group: str, cfg: DictConfig | dict) -> str:
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    return group + ":" + json.dumps(data, sort_keys=True, default=str)


def instantiate(cfg: DictConfig | dict, **kwargs: Any) -> Any:
    from hydra.utils import instantiate as hydra_instantiate

    return hydra_instantiate(cfg, _convert_="all", **kwargs)


class StagePool:
    """`await pool.get(group, cfg)` -> a warmed-up stage for one conversation (shared or its own)."""

    def __init__(self) -> None:
        self._shared: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.warnings: list[tuple[str, str]] = []  # (group, message) of soft warm-up failures

    async def _shared_instance(self, group: str, cfg: DictConfig | dict) -> Any:
        key = config_key(group, cfg)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._shared:
                stage = instantiate(cfg)
                try:
                    await stage.warmup()
                except Exception as exc:  # noqa: BLE001
                    if group not in SOFT_WARMUP:
                        raise
                    self.warnings.append((group, f"{type(exc).__name__}: {exc}"))
                self._shared[key] = stage
            return self._shared[key]

    async def get(self, group: str, cfg: DictConfig | dict, **kwargs: Any) -> Any:
        """A warmed-up stage; `kwargs` (per-conversation arguments, e.g. the avatar's replica_dir) imply
        a per-conversation instance."""
        if group in PER_CONVERSATION or kwargs:
            stage = instantiate(cfg, **kwargs)
            await stage.warmup()
            return stage
        shared = await self._shared_instance(group, cfg)
        if group in FORKABLE and isinstance(shared, Forkable):
            return shared.fork()
        return shared

    async def get_all(self, stages: dict[str, DictConfig], avatar_kwargs: dict | None = None) -> dict[str, Any]:
        """Load one after another: parallel loads only fight for the two cores."""
        out = {}
        for group, cfg in stages.items():
            out[group] = await self.get(group, cfg, **((avatar_kwargs or {}) if group == "avatar" else {}))
        return out

    async def aclose(self) -> None:
        """Release what shared stages hold on the running event loop (e.g. an HTTP session to a remote LLM);
        the models themselves stay loaded for the next server in this process."""
        for key, stage in list(self._shared.items()):
            if isinstance(stage, Closable):
                try:
                    await stage.aclose()
                except Exception:  # noqa: BLE001 - closing is best effort, never fatal at shutdown
                    log.warning("closing stage %s failed", key.split(":", 1)[0], exc_info=True)

    @property
    def loaded(self) -> list[str]:
        return [k.split(":", 1)[0] for k in self._shared]
