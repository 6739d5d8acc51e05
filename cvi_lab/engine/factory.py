"""Build a ready `ConversationEngine` for one conversation from the root config and the persona.

The calls layer's one entry point:

    pool = StagePool()                       # one per server: loaded models are shared
    engine = await create_engine(cfg, spec, layers=persona.layers, language="english", pool=pool,
                                 sinks=Sinks(record_event=..., record_turn=...))
    await engine.start()
    ...
    await engine.stop("participant_left_timeout reached")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from cvi_lab.clock import Clock
from cvi_lab.engine.engine import ConversationEngine, ConversationSpec, Sinks, Stages
from cvi_lab.engine.pipeline_config import PipelinePlan, build_plan
from cvi_lab.engine.stage_pool import StagePool


async def create_engine(
    cfg: Mapping | DictConfig | None,
    spec: ConversationSpec,
    layers: Mapping[str, Any] | None = None,
    language: str = "english",
    pool: StagePool | None = None,
    sinks: Sinks | None = None,
    clock: Clock | None = None,
    replica_dir: str | Path | None = None,
    apply_greenscreen: bool = False,
    seed: int | None = None,
    plan: PipelinePlan | None = None,
    audio_only: bool = False,
) -> ConversationEngine:
    """Resolve the pipeline, load (or reuse) its stages, return an engine (not started yet). `audio_only`: the
    avatar renders no image (see `build_plan`)."""
    plan = plan or build_plan(cfg, layers, language, spec.pipeline_mode, audio_only=audio_only)
    avatar_kwargs: dict[str, Any] = {"replica_dir": str(replica_dir) if replica_dir else None,
                                     "apply_greenscreen": bool(apply_greenscreen)}
    if seed is not None:
        avatar_kwargs["seed"] = int(seed)
    pool = pool or StagePool()
    seen = len(pool.warnings)
    loaded = await pool.get_all(plan.stages, avatar_kwargs)
    stages = Stages(**loaded)
    engine = ConversationEngine(spec, stages, plan.settings, clock=clock, sinks=sinks)
    engine.plan = plan
    if plan.route.detect and cfg is not None and "languages" in cfg:
        engine.voice_for_language = _voice_resolver(cfg, pool)
    # reported as error events once the engine starts (e.g. the LLM endpoint is down)
    engine.startup_warnings = [f"{g} warm-up failed: {m}" for g, m in pool.warnings[seen:]]
    return engine


def _voice_resolver(cfg: Any, pool: StagePool):
    """code -> the TTS of that language's route (languages/default.yaml), loaded once through the shared pool."""
    from cvi_lab.config import recorded
    from cvi_lab.domain.languages import LanguageTable
    from cvi_lab.engine.pipeline_config import load_stage_config

    langs = cfg["languages"]
    table = LanguageTable(OmegaConf.to_container(langs, resolve=True) if isinstance(langs, DictConfig) else langs)
    searchpath = list(recorded(cfg).searchpath)

    async def voice(code: str):
        route = table.for_code(code)  # a route with a voice (english when the code has none)
        stage = load_stage_config("tts", route.tts, searchpath)
        for key, value in route.tts_overrides.items():
            if key in stage:
                stage[key] = value
        return await pool.get("tts", stage)

    return voice
