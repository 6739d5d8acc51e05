"""A conversation's pipeline: stage configs and engine settings from the Hydra defaults + the persona.

Why one function: the persona's `layers` (SPEC §2), the conversation's language route and the Hydra defaults
all pick or tweak the same six stage configs; doing it in one place keeps precedence visible:
root defaults < language route < explicit Hydra choices (e.g. `asr=faster_whisper_base`) that can serve the
language < persona layers. Stage configs other than the chosen one of their group are read from
`conf/<group>/<name>.yaml`. Sensitivity words map to thresholds through the tables in
`conf/engine/default.yaml` (engine defaults).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from cvi_lab.domain.languages import LanguageRoute, LanguageTable
from cvi_lab.engine.chunker import ChunkerSettings

STAGE_GROUPS = ("vad", "turn", "asr", "llm", "tts", "avatar")
SENSITIVITY_LEVELS = ("superlow", "verylow", "low", "medium", "high")
DEFAULTS_FILE = Path(__file__).resolve().parents[2] / "conf" / "engine" / "default.yaml"
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


class PipelineConfigError(ValueError):
    """A persona layer or language names something we cannot build; the message lists what is accepted."""


@dataclass
class EngineSettings:
    """Knobs of one conversation's engine (defaults: conf/engine/default.yaml, then cfg.engine, then the persona)."""

    greeting: str = "Hey there, how's it going? What can I do for you today?"
    apology: str = "Sorry, I ran into a problem on my side. Could you say that again?"
    max_tokens: int = 96
    chunker: ChunkerSettings = field(default_factory=ChunkerSettings)
    vad_min_silence_ms: float = 200
    turn_threshold: float = 0.5
    max_patience_ms: float = 1200
    barge_in_min_ms: float = 500
    min_turn_ms: float = 150
    preroll_ms: float = 300
    max_turn_s: float = 30
    pause_llm_until_first_audio: bool = True
    echo_idle_flush_ms: float = 700
    history_max_messages: int = 40
    history_trim_block: int = 8
    system_prompt_default: str = ""
    trim_leading_silence_dbfs: float | None = -50.0
    speculative_answer: bool = True
    early_decision_ms: float | None = 50
    finished_text_patience_ms: float | None = 500
    unfinished_text_patience_ms: float | None = 2000
    unfinished_last_words: list[str] = field(default_factory=list)
    stage_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    use_turn_detector: bool = True
    language_code: str | None = "en"  # ASR language; None = detect per utterance (multilingual)
    tools: list[dict] = field(default_factory=list)
    # the word -> threshold tables, kept so `conversation.sensitivity` can re-map at run time
    tables: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict, repr=False)

    def with_sensitivity(self, **levels: str | None) -> "EngineSettings":
        """A copy with sensitivity words applied, e.g. pause_sensitivity="high", replica_interruptibility="low".

        Keys: pause_sensitivity, interrupt_sensitivity, turn_taking_patience, replica_interruptibility
        (applied in that order, so conversational_flow wins over stt)."""
        out = dataclasses.replace(self)
        for key in ("pause_sensitivity", "interrupt_sensitivity", "turn_taking_patience", "replica_interruptibility"):
            level = levels.get(key)
            if level is None:
                continue
            table = self.tables.get(key, {})
            level = str(level).strip().lower()
            if level not in table:
                raise PipelineConfigError(f"{key} {level!r} is not accepted; use one of: {', '.join(table)}")
            for name, value in table[level].items():
                setattr(out, name, value)
        return out


def load_engine_settings(cfg: Mapping | DictConfig | None = None) -> EngineSettings:
    """conf/engine/default.yaml overlaid with cfg.engine (if the root config has an `engine` group)."""
    raw = OmegaConf.to_container(OmegaConf.load(DEFAULTS_FILE), resolve=True)
    over = (cfg or {}).get("engine") if cfg is not None else None
    if over:
        raw = OmegaConf.to_container(OmegaConf.merge(raw, over), resolve=True)
    tables = {k: raw.pop(k) for k in ("pause_sensitivity", "interrupt_sensitivity", "replica_interruptibility", "turn_taking_patience")}
    known = {f.name for f in dataclasses.fields(EngineSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PipelineConfigError(f"engine settings {unknown} are not known; accepted: {sorted(known)}")
    raw["chunker"] = ChunkerSettings(**raw.get("chunker", {}))
    return EngineSettings(**raw, tables=tables)


@dataclass
class PipelinePlan:
    """What to build for one conversation."""

    stages: dict[str, DictConfig]  # group -> config with `_target_`; echo mode has no asr/llm/turn
    settings: EngineSettings
    route: LanguageRoute
    pipeline_mode: str = "full"
    choices: dict[str, str] = field(default_factory=dict)  # group -> conf file name (or "<default>")
    warnings: list[str] = field(default_factory=list)


def default_choices(conf_dir: Path = CONF_DIR, cfg: Mapping | None = None) -> dict[str, str]:
    """The group -> name choices `cfg.<group>` was built from: Hydra's runtime choices under @hydra.main; with
    the compose API (no runtime record) the conf file each `cfg.<group>` matches best; else the root file's
    defaults list."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return {k: str(v) for k, v in HydraConfig.get().runtime.choices.items() if k in STAGE_GROUPS}
    except Exception:  # noqa: BLE001 - hydra absent or not initialised: read the file instead
        pass
    out = file_defaults(conf_dir)
    for group in STAGE_GROUPS:
        if cfg is not None and group in cfg and cfg[group] is not None:
            out[group] = _closest_file(group, cfg[group], conf_dir, out.get(group, ""))
    return out


def _closest_file(group: str, node: Any, conf_dir: Path, fallback: str) -> str:
    """The conf/<group>/*.yaml (same `_target_`) that differs from `node` in the fewest values; ties and
    no match keep `fallback` (the root default), so a default with command-line tweaks stays the default."""
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    best, best_score = fallback, None
    for path in sorted((conf_dir / group).glob("*.yaml")):
        try:
            other = OmegaConf.to_container(load_stage_file(group, path.stem, conf_dir), resolve=True)
        except Exception:  # noqa: BLE001 - a file needing interpolation/defaults: not comparable here
            continue
        if not isinstance(other, dict) or other.get("_target_") != data.get("_target_"):
            continue
        score = sum(data.get(k) != other.get(k) for k in set(data) | set(other))
        if best_score is None or score < best_score or (score == best_score and path.stem == fallback):
            best, best_score = path.stem, score
    return best


def file_defaults(conf_dir: Path = CONF_DIR) -> dict[str, str]:
    """The stage choices of the root file's defaults list (conf/serve.yaml), i.e. what nobody chose."""
    serve = conf_dir / "serve.yaml"
    out: dict[str, str] = {}
    if serve.exists():
        for item in OmegaConf.load(serve).get("defaults", []):
            if isinstance(item, (dict, DictConfig)):
                for k, v in item.items():
                    if k in STAGE_GROUPS:
                        out[str(k)] = str(v)
    return out


def available(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _load_stage(group: str, name: str, cfg: Mapping | None, choices: dict[str, str], conf_dir: Path) -> DictConfig:
    """cfg.<group> when `name` is the group's default (keeps command-line overrides), else the conf file."""
    if cfg is not None and group in cfg and choices.get(group) == name:
        return copy.deepcopy(cfg[group]) if isinstance(cfg[group], DictConfig) else OmegaConf.create(dict(cfg[group]))
    return load_stage_file(group, name, conf_dir)


def load_stage_file(group: str, name: str, conf_dir: Path = CONF_DIR, _seen: tuple[str, ...] = ()) -> DictConfig:
    """conf/<group>/<name>.yaml with its `defaults:` list applied the way Hydra composes a group file
    (entries are files of the same group, merged in order; `_self_` marks where the file's own keys go,
    last if absent). Why not OmegaConf.load: it ignores the list, so `portrait_256` lost its `_target_`."""
    path = conf_dir / group / f"{name}.yaml"
    if not path.exists():
        raise PipelineConfigError(f"{group} {name!r} is not available; available: {', '.join(available(group, conf_dir)) or 'none'}")
    if name in _seen:
        raise PipelineConfigError(f"{group} {name!r}: its defaults list loops ({' -> '.join(_seen + (name,))})")
    own = OmegaConf.load(path)
    entries = own.pop("defaults", None) if isinstance(own, DictConfig) else None
    if not entries:
        return own
    entries = list(entries) if "_self_" in list(entries) else list(entries) + ["_self_"]
    out = OmegaConf.create({})
    for entry in entries:
        if entry == "_self_":
            out = OmegaConf.merge(out, own)
        elif isinstance(entry, str):
            out = OmegaConf.merge(out, load_stage_file(group, entry, conf_dir, _seen + (name,)))
        else:
            raise PipelineConfigError(f"{group} {name!r}: defaults entry {entry!r} not supported; list names of "
                                      f"conf/{group}/ files and _self_")
    return out


def serves(group: str, stage: Mapping[str, Any], code: str | None) -> bool:
    """Whether a stage config can serve a language code (None: detect per utterance), judged from the config
    alone (no model loaded): declared `languages`, a pinned `language`, English-only models."""
    target = str(stage.get("_target_", "")).lower()
    if group == "asr":
        langs = stage.get("languages")
        if langs:
            langs = [str(x).lower() for x in langs]
            return "*" in langs or (code is not None and code in langs)
        model = str(stage.get("model") or "").lower()
        english_only = "pocketsphinx" in target or model.endswith(("_en", ".en"))
        pinned = stage.get("language")
        if code is None:
            return not english_only and not pinned
        return code == (pinned or ("en" if english_only else code))
    if group == "tts":
        if code is None or "espeak" in target:
            return True
        if "piper" in target:
            model = stage.get("model")
            name = Path(str(model)).name.lower() if model else "en_us"  # null = the shipped en_US voice
            return name.startswith((f"{code}_", f"{code}-"))
        return True  # unknown backend: the explicit choice is trusted
    return True


def _set_known(stage: DictConfig, values: Mapping[str, Any], where: str, warnings: list[str]) -> None:
    """Set keys the stage config declares; others are reported (instantiate would reject them)."""
    for key, value in values.items():
        if value is None:
            continue
        if key in stage:
            stage[key] = value
        else:
            warnings.append(f"{where}: {key!r} ignored; {stage.get('_target_', 'stage')} has no such setting")


def build_plan(
    cfg: Mapping | DictConfig | None,
    layers: Mapping[str, Any] | None = None,
    language: str = "english",
    pipeline_mode: str = "full",
    conf_dir: Path | str | None = None,
) -> PipelinePlan:
    """Resolve the stage configs and engine settings of one conversation."""
    conf_dir = Path(conf_dir) if conf_dir else CONF_DIR
    layers = {k: dict(v or {}) for k, v in (layers or {}).items()}
    if pipeline_mode not in ("full", "echo"):
        raise PipelineConfigError(f"pipeline_mode {pipeline_mode!r} is not accepted; use 'full' or 'echo'")
    choices = default_choices(conf_dir, cfg)
    unchosen = file_defaults(conf_dir)
    for group in STAGE_GROUPS:
        if cfg is None or group not in cfg:
            choices.setdefault(group, "")
    langs = (cfg or {}).get("languages") if cfg is not None else None
    if not langs:
        langs = OmegaConf.load(conf_dir / "languages" / "default.yaml")
    route = LanguageTable(OmegaConf.to_container(langs, resolve=True) if isinstance(langs, DictConfig) else langs).resolve(language)
    settings = load_engine_settings(cfg)
    settings.language_code = route.code
    warnings: list[str] = []

    llm, tts, stt = layers.get("llm", {}), layers.get("tts", {}), layers.get("stt", {})
    flow, avatar = layers.get("conversational_flow", {}), layers.get("avatar", {})
    names = dict(choices)
    # An explicit Hydra choice (not the root default) wins over the language route when it can serve the
    # language; the route fills in otherwise; persona layers win over both.
    for group, routed in (("asr", route.asr), ("tts", route.tts)):
        chosen = choices.get(group, "")
        explicit = bool(chosen) and chosen != unchosen.get(group) and cfg is not None and group in cfg
        if routed and not (explicit and serves(group, cfg[group], route.code)):
            names[group] = routed
    names["asr"] = stt.get("stt_engine") or names.get("asr") or route.asr
    names["tts"] = tts.get("tts_engine") or names.get("tts") or ""
    if llm.get("base_url"):
        names["llm"] = "openai_compatible"
    elif llm.get("model") and (conf_dir / "llm" / f"{llm['model']}.yaml").exists():
        names["llm"] = str(llm["model"])
    elif llm.get("model"):
        warnings.append(f"llm.model {llm['model']!r} ignored: no base_url and no conf/llm/{llm['model']}.yaml")
    turn_model = str(flow.get("turn_detection_model") or "").strip()
    if turn_model.lower() in ("none", "off") or stt.get("smart_turn_detection") is False:
        settings.use_turn_detector = False  # end of turn = VAD pause + patience only
    elif turn_model:
        names["turn"] = turn_model
    if avatar.get("model"):
        names["avatar"] = str(avatar.pop("model"))

    needed = ["vad", "tts", "avatar"] + (["turn", "asr", "llm"] if pipeline_mode == "full" else [])
    if not settings.use_turn_detector and "turn" in needed:
        needed.remove("turn")
    stages = {group: _load_stage(group, names[group], cfg, choices, conf_dir) for group in needed}

    if "llm" in stages and llm.get("base_url"):
        _set_known(stages["llm"], {k: llm.get(k) for k in ("base_url", "model", "api_key")}, "layers.llm", warnings)
    if llm.get("tools"):
        settings.tools = list(llm["tools"])
    if route.tts and names["tts"] == route.tts and route.tts_overrides:
        _set_known(stages["tts"], route.tts_overrides, f"language {route.name}", warnings)
    _set_known(stages["tts"], {k: v for k, v in tts.items() if k != "tts_engine"}, "layers.tts", warnings)
    if "asr" in stages and stt.get("hotwords"):
        hot = stt["hotwords"]
        _set_known(stages["asr"], {"hotwords": " ".join(hot) if isinstance(hot, (list, tuple)) else str(hot)},
                   "layers.stt", warnings)
    _set_known(stages["avatar"], avatar, "layers.avatar", warnings)

    settings = settings.with_sensitivity(
        pause_sensitivity=stt.get("participant_pause_sensitivity"),
        interrupt_sensitivity=stt.get("participant_interrupt_sensitivity"),
        turn_taking_patience=flow.get("turn_taking_patience"),
        replica_interruptibility=flow.get("replica_interruptibility"),
    )
    for group, values in settings.stage_overrides.items():
        if group in stages:
            _set_known(stages[group], values, "engine.stage_overrides", warnings)
    if "min_silence_ms" in stages["vad"]:
        stages["vad"]["min_silence_ms"] = settings.vad_min_silence_ms
    return PipelinePlan(stages, settings, route, pipeline_mode, {g: names[g] for g in needed}, warnings)
