"""Persona layers + language + Hydra defaults -> stage configs and engine settings (no models loaded)."""

import pytest
from omegaconf import OmegaConf

from cvi_lab.engine.pipeline_config import CONF_DIR, PipelineConfigError, build_plan, load_engine_settings

GROUPS = ("vad", "turn", "asr", "llm", "tts", "avatar")


def cfg(**over):
    """A root config as Hydra composes it: the default file of each group, plus overrides."""
    base = {g: OmegaConf.load(CONF_DIR / g / f"{name}.yaml") for g, name in
            dict(vad="silero", turn="smart_turn_v3", asr="faster_whisper_tiny_en", llm="hf_causal", tts="piper",
                 avatar="portrait").items() if (CONF_DIR / g / f"{name}.yaml").exists()}
    base["languages"] = OmegaConf.load(CONF_DIR / "languages" / "default.yaml")
    c = OmegaConf.create(base)
    for k, v in over.items():
        OmegaConf.update(c, k, v)
    return c


def needs(*paths):
    missing = [p for p in paths if not (CONF_DIR / p).exists()]
    return pytest.mark.skipif(bool(missing), reason=f"stage configs not installed yet: {missing}")


@needs("llm/hf_causal.yaml", "tts/piper.yaml", "asr/faster_whisper_tiny_en.yaml", "turn/smart_turn_v3.yaml")
def test_defaults_keep_command_line_overrides():
    plan = build_plan(cfg(**{"llm.temperature": 0.7}))
    assert set(plan.stages) == set(GROUPS)
    assert plan.stages["llm"].temperature == 0.7  # cfg.llm kept, not re-read from the file
    assert plan.stages["vad"].min_silence_ms == plan.settings.vad_min_silence_ms == 200
    assert plan.settings.language_code == "en" and plan.settings.use_turn_detector
    assert plan.warnings == []


@needs("llm/hf_causal.yaml", "tts/piper.yaml")
def test_sensitivity_words_map_to_thresholds_and_flow_wins():
    layers = {"stt": {"participant_pause_sensitivity": "high", "participant_interrupt_sensitivity": "low"},
              "conversational_flow": {"replica_interruptibility": "high"}}
    s = build_plan(cfg(), layers).settings
    assert s.vad_min_silence_ms == 150 and s.turn_threshold == 0.35
    assert s.barge_in_min_ms == 250  # replica_interruptibility (flow) applied after the stt layer
    s = build_plan(cfg(), {"conversational_flow": {"turn_taking_patience": "high"}}).settings
    assert s.max_patience_ms == 2500
    with pytest.raises(PipelineConfigError, match="superlow"):
        load_engine_settings().with_sensitivity(pause_sensitivity="ultra")


@needs("llm/openai_compatible.yaml")
def test_base_url_switches_to_the_openai_compatible_llm():
    plan = build_plan(cfg(), {"llm": {"base_url": "http://127.0.0.1:9/v1", "model": "gpt-x", "api_key": "k",
                                      "tools": [{"type": "function", "function": {"name": "f"}}]}})
    assert plan.choices["llm"] == "openai_compatible"
    assert plan.stages["llm"].base_url == "http://127.0.0.1:9/v1" and plan.stages["llm"].model == "gpt-x"
    assert plan.settings.tools[0]["function"]["name"] == "f"


@needs("llm/hf_causal.yaml", "tts/piper.yaml")
def test_unknown_engines_are_clear_errors_and_unknown_settings_warnings():
    with pytest.raises(PipelineConfigError, match="available: .*piper"):
        build_plan(cfg(), {"tts": {"tts_engine": "cartesia"}})
    with pytest.raises(PipelineConfigError, match="faster_whisper_tiny_en"):
        build_plan(cfg(), {"stt": {"stt_engine": "deepgram"}})
    plan = build_plan(cfg(), {"tts": {"voice": "nova"}, "llm": {"model": "tavus-llama"}, "avatar": {"fps": 20, "bogus": 1}})
    assert plan.stages["avatar"].fps == 20
    assert any("voice" in w for w in plan.warnings) or "voice" in plan.stages["tts"]
    assert any("tavus-llama" in w for w in plan.warnings)
    assert any("bogus" in w for w in plan.warnings)


@needs("llm/hf_causal.yaml", "tts/piper.yaml")
def test_echo_mode_and_turn_detection_off_skip_stages():
    plan = build_plan(cfg(), pipeline_mode="echo")
    assert set(plan.stages) == {"vad", "tts", "avatar"}
    plan = build_plan(cfg(), {"stt": {"smart_turn_detection": False}, "conversational_flow": {}})
    assert "turn" not in plan.stages and not plan.settings.use_turn_detector
    plan = build_plan(cfg(), {"conversational_flow": {"turn_detection_model": "silence"}})
    assert plan.choices["turn"] == "silence" and plan.settings.use_turn_detector


@needs("asr/faster_whisper_base.yaml", "llm/hf_causal.yaml")
def test_language_route_picks_asr_and_tts():
    if not (CONF_DIR / "tts" / "espeak.yaml").exists():
        pytest.skip("espeak tts config not installed yet")
    plan = build_plan(cfg(), language="spanish")
    assert plan.choices["asr"] == "faster_whisper_base" and plan.choices["tts"] == "espeak"
    assert plan.settings.language_code == "es"
    assert plan.stages["tts"].voice == "es"
    with pytest.raises(ValueError, match="supported"):
        build_plan(cfg(), language="klingon")


def test_engine_settings_from_yaml_and_cfg_engine():
    s = load_engine_settings({"engine": {"barge_in_min_ms": 123, "chunker": {"first_min_words": 2}}})
    assert s.barge_in_min_ms == 123 and s.chunker.first_min_words == 2 and s.chunker.max_words == 30
    assert s.greeting.startswith("Hey there")
    with pytest.raises(PipelineConfigError, match="not known"):
        load_engine_settings({"engine": {"barge_in": 1}})


def chose(group, name, **over):
    """cfg() as Hydra composes it with `<group>=<name>` on the command line (+ dotted overrides)."""
    c = cfg()
    c[group] = OmegaConf.load(CONF_DIR / group / f"{name}.yaml")
    for k, v in over.items():
        OmegaConf.update(c, k, v)
    return c


@needs("asr/faster_whisper_base.yaml", "asr/faster_whisper_tiny_en.yaml", "tts/piper.yaml")
def test_explicit_hydra_choice_wins_over_the_language_route_when_it_serves_the_language():
    plan = build_plan(chose("asr", "faster_whisper_base", **{"asr.beam_size": 3}), language="english")
    assert plan.choices["asr"] == "faster_whisper_base"
    assert plan.stages["asr"].model == "base" and plan.stages["asr"].beam_size == 3  # cfg.asr, overrides kept
    # the root default is not an explicit choice: the route still picks for each language
    assert build_plan(cfg(), language="english").choices["asr"] == "faster_whisper_tiny_en"
    assert build_plan(cfg(), language="spanish").choices["asr"] == "faster_whisper_base"


@needs("asr/faster_whisper_base.yaml", "asr/pocketsphinx_en.yaml", "tts/espeak.yaml", "tts/piper.yaml")
def test_explicit_choice_that_cannot_serve_the_language_yields_to_the_route():
    plan = build_plan(chose("asr", "pocketsphinx_en"), language="spanish")  # English-only model
    assert plan.choices["asr"] == "faster_whisper_base"
    plan = build_plan(chose("asr", "pocketsphinx_en"), language="english")
    assert plan.choices["asr"] == "pocketsphinx_en"
    plan = build_plan(chose("tts", "espeak"), language="english")  # espeak speaks English too
    assert plan.choices["tts"] == "espeak"
    plan = build_plan(chose("tts", "espeak"), language="french")
    assert plan.choices["tts"] == "espeak" and plan.stages["tts"].voice == "fr-fr"  # route's voice applies


@needs("asr/faster_whisper_base.yaml", "asr/pocketsphinx_en.yaml", "tts/espeak.yaml", "tts/piper.yaml")
def test_persona_layers_win_over_an_explicit_hydra_choice():
    c = chose("asr", "faster_whisper_base")
    c["tts"] = OmegaConf.load(CONF_DIR / "tts" / "espeak.yaml")
    plan = build_plan(c, {"stt": {"stt_engine": "pocketsphinx_en"}, "tts": {"tts_engine": "piper"}}, language="english")
    assert plan.choices["asr"] == "pocketsphinx_en" and plan.choices["tts"] == "piper"


@needs("avatar/portrait.yaml", "avatar/portrait_256.yaml")
def test_stage_file_with_a_defaults_list_is_composed():
    plan = build_plan(cfg(), {"avatar": {"model": "portrait_256"}})
    portrait = OmegaConf.load(CONF_DIR / "avatar" / "portrait.yaml")
    avatar = plan.stages["avatar"]
    assert plan.choices["avatar"] == "portrait_256" and "defaults" not in avatar
    assert avatar._target_ == portrait._target_ and avatar.width == avatar.height == 256
    assert set(avatar) == set(portrait)
    from hydra.utils import get_class

    get_class(avatar._target_)  # instantiable target


def test_stage_defaults_list_errors_are_clear(tmp_path):
    from cvi_lab.engine.pipeline_config import load_stage_file

    (tmp_path / "avatar").mkdir()
    (tmp_path / "avatar" / "a.yaml").write_text("defaults: [b]\nx: 1\n")
    (tmp_path / "avatar" / "b.yaml").write_text("defaults: [a]\ny: 2\n")
    with pytest.raises(PipelineConfigError, match="loops"):
        load_stage_file("avatar", "a", tmp_path)
    (tmp_path / "avatar" / "c.yaml").write_text("defaults: [missing]\n")
    with pytest.raises(PipelineConfigError, match="available"):
        load_stage_file("avatar", "c", tmp_path)
