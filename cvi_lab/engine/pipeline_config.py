"""A conversation's pipeline: stage configs and engine settings from the composed config + the persona.

Why one function: the persona's `layers` (SPEC §2), the conversation's language route and Hydra's choices
all pick or tweak the same six stage configs; doing it in one place keeps precedence visible:
defaults list < language route < explicit Hydra choices (e.g. `asr=faster_whisper_base`) that can serve the
language < persona layers. What Hydra chose is read from the config (`cfg.composed`, recorded by
`cvi_lab.config`), never guessed; configs other than the chosen one of a group are composed by Hydra from the
same search path. Sensitivity words map to thresholds through the tables in `engine/default.yaml`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cvi_lab import config
from cvi_lab.domain.languages import LanguageRoute, LanguageTable
from cvi_lab.engine.chunker import ChunkerSettings

GIVEN_NODE = "<set in cfg>"  # the choice name of a stage node set in the config by code, not by Hydra
SENSITIVITY_KEYS = ("pause_sensitivity", "interrupt_sensitivity", "turn_taking_patience", "replica_interruptibility")


class PipelineConfigError(config.ConfigError):
    """A persona layer, language or setting names something we cannot build; the message lists what is accepted."""


@dataclass
class EngineSettings:
    """Knobs of one conversation's engine. The Hydra schema of `engine/default.yaml`, which holds every default
    (so none here): the YAML is validated against these fields and types, then cfg.engine, then the persona."""

    apology: str
    max_tokens: int
    chunker: ChunkerSettings
    vad_min_silence_ms: float
    turn_threshold: float
    max_patience_ms: float
    barge_in_min_ms: float
    min_turn_ms: float
    preroll_ms: float
    max_turn_s: float
    pause_llm_until_first_audio: bool
    echo_idle_flush_ms: float
    history_max_messages: int
    history_trim_block: int
    trim_leading_silence_dbfs: Optional[float]
    speculative_answer: bool
    early_decision_ms: Optional[float]
    finished_text_patience_ms: Optional[float]
    unfinished_text_patience_ms: Optional[float]
    unfinished_last_words: List[str]
    stage_overrides: Dict[str, Dict[str, Any]]
    use_turn_detector: bool
    language_code: Optional[str]  # ASR language; None = detect per utterance (multilingual)
    tools: List[Any]
    audio_only_avatar: str  # the avatar config of audio_only conversations (no image rendered)
    avatar_render_niceness: int  # the avatar's render thread runs this much nicer than the models
    tool_result_template: str  # how a conversation.tool_result enters the dialogue ({name}, {arguments}, {result})
    # conversation.set_emotion: name -> {expression: stages/avatar/expression.py fields, voice: stages/tts/style.py}
    emotions: Dict[str, Dict[str, Any]] = field(repr=False)  # checked by engine/emotion.py (OmegaConf 2.3 cannot
    # merge an empty mapping into a Dict[str, float] of a merged node: "AnyNode is not a supported primitive type")
    # sensitivity key -> word -> {setting: value}, kept so `conversation.sensitivity` can re-map at run time
    tables: Dict[str, Dict[str, Dict[str, Any]]] = field(repr=False)

    def with_sensitivity(self, **levels: str | None) -> "EngineSettings":
        """A copy with sensitivity words applied, e.g. pause_sensitivity="high", replica_interruptibility="low".

        Keys: pause_sensitivity, interrupt_sensitivity, turn_taking_patience, replica_interruptibility
        (applied in that order, so conversational_flow wins over stt)."""
        out = dataclasses.replace(self)
        for key in SENSITIVITY_KEYS:
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


SETTING_NAMES = frozenset(f.name for f in dataclasses.fields(EngineSettings))


def load_engine_settings(cfg: Mapping | DictConfig | None = None) -> EngineSettings:
    """`engine/default.yaml` overlaid with cfg.engine (if the config has an `engine` group), validated.
    A composed cfg.engine is used as is: Hydra validated it against this schema and applied the overrides."""
    over = cfg.get("engine") if cfg is not None else None
    try:
        if isinstance(over, DictConfig) and OmegaConf.get_type(over) is EngineSettings:
            node = over
        else:
            node = OmegaConf.merge(OmegaConf.structured(EngineSettings), config.load_group("engine", "default"), over or {})
        settings = OmegaConf.to_object(node)
    except OmegaConfBaseException as exc:
        raise PipelineConfigError(f"engine settings: {str(exc).splitlines()[0]}; "
                                  f"accepted settings: {', '.join(sorted(SETTING_NAMES))}") from None
    for key, words in settings.tables.items():
        unknown = {name for values in words.values() for name in values} - SETTING_NAMES
        if key not in SENSITIVITY_KEYS or unknown:
            raise PipelineConfigError(f"engine.tables.{key}: {sorted(unknown) or 'unknown table'} not accepted; "
                                      f"tables: {', '.join(SENSITIVITY_KEYS)}")
    return settings


@dataclass
class PipelinePlan:
    """What to build for one conversation."""

    stages: dict[str, DictConfig]  # group -> config with `_target_`; echo mode has no asr/llm/turn
    settings: EngineSettings
    route: LanguageRoute
    pipeline_mode: str = "full"
    choices: dict[str, str] = field(default_factory=dict)  # group -> config name
    warnings: list[str] = field(default_factory=list)


def _load_stage(group: str, name: str, cfg: Mapping, choices: Mapping[str, str], searchpath: list[str]) -> DictConfig:
    """cfg.<group> when `name` is Hydra's choice for the group (keeps command-line overrides), else `<group>/<name>`
    composed by Hydra from the same search path."""
    if group in cfg and choices.get(group) == name:
        return copy.deepcopy(cfg[group])
    return load_stage_config(group, name, searchpath)


def load_stage_config(group: str, name: str, searchpath: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """`<group>/<name>` as Hydra composes it; an unknown name lists the available ones."""
    try:
        return config.load_group(group, name, searchpath)
    except config.ConfigError as exc:
        raise PipelineConfigError(str(exc)) from None


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
    audio_only: bool = False,
) -> PipelinePlan:
    """Resolve the stage configs and engine settings of one conversation (cfg: from `cvi_lab.config.compose`,
    or a lab job's config; None = the shipped serve config). `audio_only`: the avatar is
    `engine.audio_only_avatar` (no rendering) whatever the persona's avatar layer says."""
    cfg = config.compose() if cfg is None else cfg
    layers = {k: dict(v or {}) for k, v in (layers or {}).items()}
    if pipeline_mode not in ("full", "echo"):
        raise PipelineConfigError(f"pipeline_mode {pipeline_mode!r} is not accepted; use 'full' or 'echo'")
    composed = config.recorded(cfg)
    choices = {g: str(composed.choices[g]) for g in config.STAGE_GROUPS if g in composed.choices and g in cfg}
    # a group node set in cfg after composing (Hydra chose none) is used as given, like an explicit choice
    given = {g for g in config.STAGE_GROUPS if g in cfg and g not in choices}
    choices.update({g: GIVEN_NODE for g in given})
    explicit = set(composed.explicit) | given
    searchpath = list(composed.searchpath)
    langs = cfg["languages"]
    route = LanguageTable(OmegaConf.to_container(langs, resolve=True) if isinstance(langs, DictConfig) else langs).resolve(language)
    settings = load_engine_settings(cfg)
    settings.language_code = route.code
    warnings: list[str] = []

    llm, tts, stt = layers.get("llm", {}), layers.get("tts", {}), layers.get("stt", {})
    flow, avatar = layers.get("conversational_flow", {}), layers.get("avatar", {})
    names = {g: choices.get(g, "") for g in config.STAGE_GROUPS}
    # An explicit Hydra choice (an override, not the defaults list) wins over the language route when it can
    # serve the language; the route fills in otherwise; persona layers win over both.
    for group, routed in (("asr", route.asr), ("tts", route.tts)):
        chosen = group in explicit and group in choices
        if routed and not (chosen and serves(group, cfg[group], route.code)):
            names[group] = routed
    names["asr"] = stt.get("stt_engine") or names.get("asr") or route.asr
    names["tts"] = tts.get("tts_engine") or names.get("tts") or ""
    if llm.get("base_url"):
        names["llm"] = "openai_compatible"
    elif llm.get("model") and str(llm["model"]) in config.group_options("llm", searchpath):
        names["llm"] = str(llm["model"])
    elif llm.get("model"):
        warnings.append(f"llm.model {llm['model']!r} ignored: no base_url and no llm config {llm['model']!r}")
    turn_model = str(flow.get("turn_detection_model") or "").strip()
    if turn_model.lower() in ("none", "off") or stt.get("smart_turn_detection") is False:
        settings.use_turn_detector = False  # end of turn = VAD pause + patience only
    elif turn_model:
        names["turn"] = turn_model
    if avatar.get("model"):
        names["avatar"] = str(avatar.pop("model"))
    if audio_only:
        names["avatar"], avatar = settings.audio_only_avatar, {}

    needed = ["vad", "tts", "avatar"] + (["turn", "asr", "llm"] if pipeline_mode == "full" else [])
    if pipeline_mode == "full" and names["retrieval"]:  # a root without the group (~retrieval) retrieves nothing
        needed.append("retrieval")
    if not settings.use_turn_detector and "turn" in needed:
        needed.remove("turn")
    stages = {group: _load_stage(group, names[group], cfg, choices, searchpath) for group in needed}

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
