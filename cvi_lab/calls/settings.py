"""Plain-dict views of the composed Hydra config, so the lifecycle code never depends on OmegaConf."""

from __future__ import annotations

from typing import Any


def plain(node: Any) -> Any:
    """A DictConfig/ListConfig (resolved) or a mapping -> plain dicts and lists."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(node, (DictConfig, ListConfig)):
            return OmegaConf.to_container(node, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(v) for v in node]
    return node


def server_settings(cfg: Any) -> dict[str, Any]:
    """`{"server": {...}, "languages": {...}}`: the parts of the config this layer reads."""
    return {"server": plain(cfg["server"]), "languages": plain(cfg["languages"])}
