"""Where the configuration lives and how it is composed: the one module that knows.

The shipped config is package data (`cvi_lab/conf`), loaded through Hydra's package search path
`pkg://cvi_lab.conf`, so an installed wheel composes the same config from any working directory. The
roots `serve.yaml` (`cvi-lab serve`/`demo`) and `lab.yaml` (`cvi-lab experiment`) share one defaults list,
`pipeline.yaml` (the stage groups, languages, engine).

Your own config directory, laid out like `cvi_lab/conf` (e.g. `/my/conf/asr/my_asr.yaml`, then `asr=my_asr`):
- `CVI_LAB_CONFIG_DIR=/my/conf` (several: joined with `:`), read by every command and every composition
  in the process (and inherited by sweep workers);
- `cvi-lab --config-dir /my/conf COMMAND ...` (anywhere on the line) sets that variable for the command;
- Hydra's own `hydra.searchpath=[file:///my/conf]` override, on any command (for `cvi-lab experiment` it
  replaces the directories above; the roots set `hydra.searchpath: ${cvi_lab.config_dirs:}`).
Shipped files come first on the search path: a user file adds a choice, it does not shadow a shipped one.

What Hydra chose is recorded in the composed config under `composed` (not a setting; do not set it):
`choices` (group -> config name, Hydra's `runtime.choices`), `explicit` (groups chosen by an override,
not by the defaults list) and `searchpath` (where the other files of a group are looked up, e.g. the TTS a
persona or a language route picks). The engine's plan is built from it, never guessed.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

PACKAGE = "cvi_lab.conf"
VERSION_BASE = "1.3"
SERVE_ROOT, LAB_ROOT = "serve", "lab"
STAGE_GROUPS = ("vad", "turn", "asr", "llm", "tts", "avatar", "retrieval")
PIPELINE_GROUPS = (*STAGE_GROUPS, "languages", "engine", "memory")  # what pipeline.yaml's defaults list picks
USER_DIRS_ENV = "CVI_LAB_CONFIG_DIR"
DIRS_RESOLVER = "cvi_lab.config_dirs"
RECORD_KEY = "composed"
ENGINE_SCHEMA = "schema"  # engine/schema in Hydra's ConfigStore: EngineSettings; engine/default.yaml uses it
_SHIPPED_PROVIDERS = ("hydra", "main", "schema")


class ConfigError(ValueError):
    """A config name that does not exist or a setting that does not validate; says what is accepted."""


# ----------------------------------------------------------------- search path
def user_dirs() -> list[str]:
    """The user's config directories from CVI_LAB_CONFIG_DIR, as Hydra search-path entries."""
    raw = os.environ.get(USER_DIRS_ENV, "")
    return [f"file://{Path(d).expanduser().resolve()}" for d in raw.split(os.pathsep) if d.strip()]


def add_user_dir(path: str | Path) -> None:
    """Put a user config directory on the search path of this process (and its children)."""
    dirs = [d for d in os.environ.get(USER_DIRS_ENV, "").split(os.pathsep) if d.strip()]
    os.environ[USER_DIRS_ENV] = os.pathsep.join([*dirs, str(Path(path).expanduser().resolve())])


def searchpath_override(entries: Sequence[str]) -> str:
    """`hydra.searchpath=[...]` with each entry quoted for Hydra's override grammar."""
    quoted = ",".join("'" + e.replace("\\", "\\\\").replace("'", "\\'") + "'" for e in entries)
    return f"hydra.searchpath=[{quoted}]"


def searchpath_entries(overrides: Sequence[str]) -> list[str]:
    """The user's directories, then the entries of any `hydra.searchpath=[...]` among `overrides`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [str(v) for text in overrides if _is_searchpath(text)
             for v in OverridesParser.create().parse_override(text).value()]
    return list(dict.fromkeys(user_dirs() + given))


def with_user_dirs(overrides: Sequence[str]) -> list[str]:
    """`overrides` with one `hydra.searchpath` override: the user's directories, then any given one's."""
    entries = searchpath_entries(overrides)
    rest = [text for text in overrides if not _is_searchpath(text)]
    return rest + [searchpath_override(entries)] if entries else rest


def _is_searchpath(text: str) -> bool:
    return text.split("=", 1)[0].lstrip("+") == "hydra.searchpath"


def take_config_dir_flags(args: Sequence[str]) -> list[str]:
    """`args` without `--config-dir DIR` / `--config-dir=DIR` (also Hydra's `-cd DIR`), each DIR put on the
    search path with `add_user_dir`, so every composition of the command (and its sweep jobs) sees it."""
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        if arg in ("--config-dir", "-cd"):
            path = next(it, None)
            if path is None:
                raise ConfigError(f"{arg} needs a directory")
            add_user_dir(path)
        elif arg.startswith("--config-dir="):
            add_user_dir(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return rest


@contextlib.contextmanager
def _hydra() -> Iterator[None]:
    """Hydra initialised on the shipped package; an enclosing Hydra app (a lab job) is restored after."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    register_schemas()
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=PACKAGE, version_base=VERSION_BASE, job_name="cvi-lab"):
            yield
    finally:
        restore_gh_from_backup(backup)


@functools.cache
def register_schemas() -> None:
    """Structured configs the YAML validates against (Hydra's ConfigStore); before any composition."""
    from hydra.core.config_store import ConfigStore

    from cvi_lab.engine.pipeline_config import EngineSettings

    ConfigStore.instance().store(group="engine", name=ENGINE_SCHEMA, node=EngineSettings)


# The roots' `hydra.searchpath: ${cvi_lab.config_dirs:}`: the user's directories, for compose and hydra.main alike
OmegaConf.register_new_resolver(DIRS_RESOLVER, user_dirs, replace=True)


# ----------------------------------------------------------------- composing
def compose(overrides: Sequence[str] = (), config_name: str = SERVE_ROOT) -> DictConfig:
    """The composed root config (`serve` or `lab`) with Hydra's choices recorded under `composed`.

    A missing config is an error naming it and the accepted choices (Hydra's message)."""
    from hydra import compose as hydra_compose

    with _hydra():
        cfg = hydra_compose(config_name=config_name, overrides=with_user_dirs(overrides), return_hydra_config=True)
    hydra_node = cfg.hydra
    with open_dict(cfg):
        del cfg["hydra"]
    record(cfg, hydra_node)
    return cfg


def record(cfg: DictConfig, hydra_node: Any) -> DictConfig:
    """Write what Hydra chose (`hydra_node`: a composed `hydra` node, or `HydraConfig.get()` in a
    `hydra.main` job) into `cfg.composed`."""
    choices = {str(k): str(v) for k, v in hydra_node.runtime.choices.items()
               if not str(k).startswith("hydra") and v is not None}
    explicit = sorted({_override_group(o) for o in hydra_node.overrides.task} & set(choices))
    searchpath = [f"{s.schema}://{s.path}" for s in hydra_node.runtime.config_sources
                  if s.provider not in _SHIPPED_PROVIDERS]
    with open_dict(cfg):
        cfg[RECORD_KEY] = {"choices": choices, "explicit": explicit, "searchpath": searchpath}
    return cfg


def _override_group(text: str) -> str:
    return str(text).split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def record_job(cfg: DictConfig) -> DictConfig:
    """In a `hydra.main` job: record the running job's choices into `cfg` (see `record`)."""
    from hydra.core.hydra_config import HydraConfig

    return record(cfg, HydraConfig.get())


def recorded(cfg: Any) -> DictConfig:
    """`cfg.composed`; a config composed some other way is an error saying how to compose it."""
    node = cfg.get(RECORD_KEY) if cfg is not None else None
    if node is None:
        raise ConfigError("this config does not record Hydra's choices: compose it with cvi_lab.config.compose() "
                          "(or cvi_lab.config.record_job(cfg) in a hydra.main app)")
    return node


def main_entry(config_name: str, task: Any) -> Any:
    """`task` as a `hydra.main` app over the shipped root `config_name` (run it with `sys.argv` set; take the
    `--config-dir` flags off first with `take_config_dir_flags`)."""
    import hydra

    register_schemas()
    return hydra.main(config_path=f"pkg://{PACKAGE}", config_name=config_name, version_base=VERSION_BASE)(task)


# ----------------------------------------------------------------- single group files
def group_options(group: str, searchpath: Sequence[str] = ()) -> list[str]:
    """The config names of `group` on the search path (shipped + user directories)."""
    from hydra.core.global_hydra import GlobalHydra

    with _hydra():
        loader = GlobalHydra.instance().config_loader()
        return sorted(loader.get_group_options(group, overrides=with_user_dirs([searchpath_override(searchpath)])))


def root_keys(config_name: str) -> list[str]:
    """The settings a root config file declares itself (not its groups)."""
    with _hydra():
        from hydra.core.global_hydra import GlobalHydra

        source = next(s for s in GlobalHydra.instance().config_loader().get_sources() if s.provider == "main")
        own = source.load_config(f"{config_name}.yaml").config
    return sorted(str(k) for k in own if k not in ("defaults", "hydra"))


def load_group(group: str, name: str, searchpath: Sequence[str] = ()) -> DictConfig:
    """`<group>/<name>` composed by Hydra on its own (its defaults list and schema applied), as a fresh copy."""
    return OmegaConf.create(_load_group_yaml(group, name, tuple(searchpath), tuple(user_dirs())))


@functools.lru_cache(maxsize=64)
def _load_group_yaml(group: str, name: str, searchpath: tuple[str, ...], _user_dirs: tuple[str, ...]) -> str:
    """Cached per search path (the user's directories are part of the key): a conversation start composes no
    file twice."""
    from hydra import compose as hydra_compose
    from hydra.errors import MissingConfigException

    # added to an empty primary config: a primary config cannot come from hydra.searchpath, a group choice can
    overrides = with_user_dirs([f"+{group}={name}", *([searchpath_override(searchpath)] if searchpath else [])])
    try:
        with _hydra():
            node = hydra_compose(config_name=None, overrides=overrides)
    except MissingConfigException as exc:
        options = group_options(group, searchpath)
        if name in options:  # it exists, something it names does not: Hydra's message says what
            raise ConfigError(f"{group} {name!r}: {exc}") from None
        raise ConfigError(f"{group} {name!r} is not available; available: {', '.join(options) or 'none'}") from None
    return OmegaConf.to_yaml(OmegaConf.select(node, group.replace("/", ".")))
