"""Persona layers + language + Hydra's choices -> stage configs and engine settings (no models loaded)."""

import dataclasses

import pytest
from omegaconf import OmegaConf, open_dict

from cvi_lab import config
from cvi_lab.engine.pipeline_config import (EngineSettings, PipelineConfigError, build_plan, load_engine_settings,
                                            load_stage_config)

GROUPS = ("vad", "turn", "asr", "llm", "tts", "avatar", "retrieval")


def cfg(*overrides):
    """The serve config as the CLI composes it (with the hf_causal LLM), plus overrides."""
    return config.compose(overrides=["llm=hf_causal", *overrides])


def test_defaults_keep_command_line_overrides():
    plan = build_plan(cfg("llm.temperature=0.7"))
    assert set(plan.stages) == set(GROUPS)
    assert plan.stages["llm"].temperature == 0.7  # cfg.llm kept, not re-read from the file
    assert plan.stages["vad"].min_silence_ms == plan.settings.vad_min_silence_ms == 200
    assert plan.settings.language_code == "en" and plan.settings.use_turn_detector
    assert plan.warnings == []


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


def test_base_url_switches_to_the_openai_compatible_llm():
    plan = build_plan(cfg(), {"llm": {"base_url": "http://127.0.0.1:9/v1", "model": "gpt-x", "api_key": "k",
                                      "tools": [{"type": "function", "function": {"name": "f"}}]}})
    assert plan.choices["llm"] == "openai_compatible"
    assert plan.stages["llm"].base_url == "http://127.0.0.1:9/v1" and plan.stages["llm"].model == "gpt-x"
    assert plan.settings.tools[0]["function"]["name"] == "f"


def test_llm_model_naming_a_config_picks_it():
    assert build_plan(cfg(), {"llm": {"model": "ct2_causal"}}).choices["llm"] == "ct2_causal"


def test_unknown_engines_are_clear_errors_and_unknown_settings_warnings():
    with pytest.raises(PipelineConfigError, match="available: .*piper"):
        build_plan(cfg(), {"tts": {"tts_engine": "cartesia"}})
    with pytest.raises(PipelineConfigError, match="faster_whisper_tiny_en"):
        build_plan(cfg(), {"stt": {"stt_engine": "deepgram"}})
    plan = build_plan(cfg(), {"tts": {"voice": "nova"}, "llm": {"model": "tavus-llama"}, "avatar": {"fps": 20, "bogus": 1}})
    assert plan.stages["avatar"].fps == 20
    assert "voice" not in plan.stages["tts"] and any("'voice' ignored" in w for w in plan.warnings)  # piper: no voice key
    assert any("tavus-llama" in w for w in plan.warnings)
    assert any("bogus" in w for w in plan.warnings)


def test_echo_mode_and_turn_detection_off_skip_stages():
    plan = build_plan(cfg(), pipeline_mode="echo")
    assert set(plan.stages) == {"vad", "tts", "avatar"}
    plan = build_plan(cfg(), {"stt": {"smart_turn_detection": False}, "conversational_flow": {}})
    assert "turn" not in plan.stages and not plan.settings.use_turn_detector
    plan = build_plan(cfg(), {"conversational_flow": {"turn_detection_model": "silence"}})
    assert plan.choices["turn"] == "silence" and plan.settings.use_turn_detector


def test_language_route_picks_asr_and_tts():
    plan = build_plan(cfg(), language="spanish")
    assert plan.choices["asr"] == "faster_whisper_base" and plan.choices["tts"] == "espeak"
    assert plan.settings.language_code == "es"
    assert plan.stages["tts"].voice == "es"
    with pytest.raises(ValueError, match="supported"):
        build_plan(cfg(), language="klingon")


def test_engine_settings_from_yaml_and_cfg_engine():
    s = load_engine_settings({"engine": {"barge_in_min_ms": 123, "chunker": {"first_min_words": 2}}})
    assert s.barge_in_min_ms == 123 and s.chunker.first_min_words == 2 and s.chunker.max_words == 30
    with pytest.raises(PipelineConfigError, match="'barge_in' not in 'EngineSettings'"):
        load_engine_settings({"engine": {"barge_in": 1}})
    with pytest.raises(PipelineConfigError, match="max_tokens"):
        load_engine_settings({"engine": {"max_tokens": "many"}})


def test_engine_settings_defaults_live_only_in_the_yaml():
    """The dataclass is the schema (no defaults restated); the YAML sets every field, and the YAML's values win."""
    fields = dataclasses.fields(EngineSettings)
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in fields)
    with pytest.raises(TypeError):
        EngineSettings()  # type: ignore[call-arg]
    yaml = config.load_group("engine", "default")
    assert set(yaml) == {f.name for f in fields}
    s = load_engine_settings()
    assert (s.history_max_messages, s.history_trim_block, s.early_decision_ms) == (4, 2, 0)
    assert s.stage_overrides == {"llm": {"threads": 1}}


def test_engine_schema_rejects_a_typo_or_a_wrong_type_when_composing():
    with pytest.raises(Exception, match="barge_in_min"):
        config.compose(overrides=["engine.barge_in_min=1"])
    with pytest.raises(Exception, match="max_tokens"):
        config.compose(overrides=["engine.max_tokens=many"])


def test_explicit_hydra_choice_wins_over_the_language_route_when_it_serves_the_language():
    c = cfg("asr=faster_whisper_base", "asr.beam_size=3")
    assert c.composed.choices.asr == "faster_whisper_base" and list(c.composed.explicit) == ["asr", "llm"]
    plan = build_plan(c, language="english")
    assert plan.choices["asr"] == "faster_whisper_base"
    assert plan.stages["asr"].model == "base" and plan.stages["asr"].beam_size == 3  # cfg.asr, overrides kept
    # the defaults list's choice is not an explicit one: the route still picks for each language
    assert build_plan(cfg(), language="english").choices["asr"] == "faster_whisper_tiny_en"
    assert build_plan(cfg(), language="spanish").choices["asr"] == "faster_whisper_base"


def test_explicit_choice_that_cannot_serve_the_language_yields_to_the_route():
    plan = build_plan(cfg("asr=pocketsphinx_en"), language="spanish")  # English-only model
    assert plan.choices["asr"] == "faster_whisper_base"
    plan = build_plan(cfg("asr=pocketsphinx_en"), language="english")
    assert plan.choices["asr"] == "pocketsphinx_en"
    plan = build_plan(cfg("tts=espeak"), language="english")  # espeak speaks English too
    assert plan.choices["tts"] == "espeak"
    plan = build_plan(cfg("tts=espeak"), language="french")
    assert plan.choices["tts"] == "espeak" and plan.stages["tts"].voice == "fr-fr"  # route's voice applies


def test_persona_layers_win_over_an_explicit_hydra_choice():
    c = cfg("asr=faster_whisper_base", "tts=espeak")
    plan = build_plan(c, {"stt": {"stt_engine": "pocketsphinx_en"}, "tts": {"tts_engine": "piper"}}, language="english")
    assert plan.choices["asr"] == "pocketsphinx_en" and plan.choices["tts"] == "piper"


def test_stage_file_with_a_defaults_list_is_composed():
    plan = build_plan(cfg(), {"avatar": {"model": "portrait_256"}})
    portrait = config.load_group("avatar", "portrait")
    avatar = plan.stages["avatar"]
    assert plan.choices["avatar"] == "portrait_256" and "defaults" not in avatar
    assert avatar._target_ == portrait._target_ and avatar.width == avatar.height == 256
    assert set(avatar) == set(portrait)
    from hydra.utils import get_class

    get_class(avatar._target_)  # instantiable target


def test_a_config_without_recorded_choices_is_refused():
    hand_made = OmegaConf.create({g: config.load_group(g, n) for g, n in (("vad", "silero"), ("tts", "piper"))})
    with pytest.raises(config.ConfigError, match="cvi_lab.config.compose"):
        build_plan(hand_made)


def user_dir(tmp_path):
    (tmp_path / "asr").mkdir()
    (tmp_path / "asr" / "my_asr.yaml").write_text("defaults: [faster_whisper_base, _self_]\nbeam_size: 4\n")
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "typo.yaml").write_text("defaults: [default, _self_]\nbarge_in_minms: 100\n")
    (tmp_path / "tts").mkdir()
    (tmp_path / "tts" / "broken.yaml").write_text("defaults: [no_such_voice]\n")
    return tmp_path


def test_a_user_config_dir_adds_choices(tmp_path, monkeypatch):
    """CVI_LAB_CONFIG_DIR (and hydra.searchpath) put a user dir on the search path; its files are choices,
    composed with the shipped ones (here a defaults list naming a shipped ASR), also when a persona picks one."""
    mine = user_dir(tmp_path)
    monkeypatch.setenv(config.USER_DIRS_ENV, str(mine))
    c = config.compose(overrides=["asr=my_asr"])
    assert c.asr.model == "base" and c.asr.beam_size == 4 and c.composed.choices.asr == "my_asr"
    assert list(c.composed.searchpath) == [f"file://{mine}"]
    assert "my_asr" in config.group_options("asr")
    monkeypatch.delenv(config.USER_DIRS_ENV)
    plain = config.compose()
    plan = build_plan(config.compose(overrides=[f"hydra.searchpath=[file://{mine}]"]), {"stt": {"stt_engine": "my_asr"}})
    assert plan.choices["asr"] == "my_asr" and plan.stages["asr"].beam_size == 4  # looked up on the recorded path
    with pytest.raises(PipelineConfigError, match="available: .*faster_whisper_base"):
        build_plan(plain, {"stt": {"stt_engine": "my_asr"}})  # not on the shipped search path


def test_user_config_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv(config.USER_DIRS_ENV, str(user_dir(tmp_path)))
    with pytest.raises(Exception, match="barge_in_minms"):
        config.compose(overrides=["engine=typo"])  # the schema catches the typo
    with pytest.raises(Exception, match="no_such_voice"):
        load_stage_config("tts", "broken")


def test_composes_from_any_working_directory(tmp_path):
    """The config is package data found through pkg://cvi_lab.conf, not a path next to the checkout."""
    import subprocess
    import sys

    code = ("from cvi_lab import config; c = config.compose(); "
            "print(c.composed.choices.asr, c.server.port, config.group_options('tts'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["faster_whisper_tiny_en", "8765"] and "'espeak'" in out.stdout


def test_a_stage_node_set_in_the_config_by_code_is_used_as_given():
    """Tests put stand-in stages into a composed config with the stage groups left out: no Hydra choice to
    read, so the node itself is the choice (named as such), and it wins over the language route."""
    c = config.compose(overrides=["~asr", "~tts"])
    with open_dict(c):
        c.asr = {"_target_": "tests.engine.standins.ScriptedASR"}
        c.tts = {"_target_": "tests.engine.standins.ScriptedTTS"}
    plan = build_plan(c, language="spanish")
    assert plan.choices["asr"] == plan.choices["tts"] == "<set in cfg>"
    assert plan.stages["asr"]._target_ == "tests.engine.standins.ScriptedASR"
    assert plan.choices["llm"] == "ct2_causal"  # the others: Hydra's choices


def test_engine_settings_from_a_plain_copy_of_the_composed_config():
    """The harness hands the engine a plain (untyped) copy of the composed config; every setting must survive
    the merge into the schema (an empty emotion mapping once broke it: OmegaConf's AnyNode error)."""
    from cvi_lab.config import compose

    composed = compose([])
    plain = OmegaConf.create(OmegaConf.to_container(composed, resolve=False))
    assert load_engine_settings(plain) == load_engine_settings(composed)
