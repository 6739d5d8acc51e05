"""The sweeps are configs: each experiment file names its axes in hydra.sweeper.params, with real options."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cvi_lab import config
from cvi_lab.lab import app

EXPERIMENTS = Path(config.__file__).parent / "conf" / "experiment"
SWEEPS = {"turn_sweep": {"turn", "participant.pause_sensitivity"}, "llm_sweep": {"llm"}, "asr_sweep": {"asr"},
          "tts_sweep": {"tts"}}


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_sweep_axes_are_declared_and_exist(name):
    params = OmegaConf.load(EXPERIMENTS / f"{name}.yaml").hydra.sweeper.params
    assert set(params) == SWEEPS[name]
    for axis, values in params.items():
        values = [v.strip() for v in str(values).split(",")]
        assert len(values) >= 2
        if axis in config.PIPELINE_GROUPS:
            assert set(values) <= set(config.group_options(axis)), axis
        else:  # a persona sensitivity word the engine's table knows
            table = config.compose([], config.LAB_ROOT).engine.tables.pause_sensitivity
            assert set(values) <= set(table), axis
        assert app.check_overrides([f"experiment={name}", f"{axis}={values[0]}"]) is None


def test_pause_sensitivity_reaches_the_persona_stt_layer():
    from cvi_lab.engine.pipeline_config import build_plan
    from cvi_lab.lab.runner import stage_layers

    cfg = config.compose(["experiment=turn_sweep", "participant.pause_sensitivity=high"], config.LAB_ROOT)
    layers = stage_layers({"asr": "faster_whisper_tiny_en"}, cfg.participant)
    assert layers["stt"] == {"stt_engine": "faster_whisper_tiny_en", "participant_pause_sensitivity": "high"}
    plan = build_plan(cfg, layers, "english")
    high = cfg.engine.tables.pause_sensitivity.high
    assert plan.settings.max_patience_ms == high.max_patience_ms != cfg.engine.max_patience_ms
    assert stage_layers({}, config.compose([], config.LAB_ROOT).participant) == {}
