"""Stage widgets and the stage lab: bad input is a message under the widget (no model is loaded for it);
backends are named by their conf files."""

from __future__ import annotations

import numpy as np
import pytest

from cvi_lab.notebook.stagelab import StageLab, StageLabError, options, parse_spec


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = StageLab(tmp_path_factory.mktemp("clips"))
    yield lab
    lab.close()


def test_options_are_the_conf_files():
    assert "piper" in options("tts") and "faster_whisper_tiny_en" in options("asr") and "hf_causal" in options("llm")
    assert options("no_such_group") == []


def test_parse_spec():
    assert parse_spec("piper length_scale=1.3") == ("piper", ["length_scale=1.3"])
    with pytest.raises(StageLabError, match="not key=value"):
        parse_spec("piper fast")
    with pytest.raises(StageLabError, match="empty backend"):
        parse_spec("  ")


def test_unknown_backend_lists_the_available_ones(lab):
    with pytest.raises(StageLabError, match="unknown asr backend 'nope'; available: .*faster_whisper_tiny_en"):
        lab.stage("asr", "nope")
    with pytest.raises(StageLabError, match="tts 'piper no_such_key=1'"):
        lab.config("tts", "piper no_such_key=1")
    assert lab.loaded == []


def test_bad_inputs_are_refused_before_any_model_loads(lab, tmp_path):
    with pytest.raises(StageLabError, match="text: empty"):
        lab.speak("   ")
    with pytest.raises(StageLabError, match="message: empty"):
        lab.chat(" ")
    with pytest.raises(StageLabError, match="max_tokens: 0 is not accepted; use 1..4096"):
        lab.chat("hi", max_tokens=0)
    with pytest.raises(StageLabError, match="does not exist"):
        lab.transcribe(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(StageLabError, match="cannot read audio file"):
        lab.transcribe(bad)
    with pytest.raises(StageLabError, match="non-empty mono array"):
        lab.transcribe(np.zeros((2, 10), np.float32))
    assert lab.loaded == []


def test_widgets_show_messages_not_tracebacks(lab, tmp_path):
    from cvi_lab.notebook.stages import ChatWidget, CompareWidget, SpeakWidget, TranscribeWidget

    speak = SpeakWidget(lab, text=" ")
    speak.run()
    assert "text: empty" in speak.message.value and speak.result.value == "" and not speak.button.disabled

    chat = ChatWidget(lab)
    chat.run()
    assert "message: empty" in chat.message.value and chat.history == []
    chat.input.value, chat.max_tokens.value = "hello", 0
    chat.run()
    assert "max_tokens: 0 is not accepted" in chat.message.value and chat.history == []  # rolled back

    heard = TranscribeWidget(lab)
    heard.path.value = str(tmp_path / "nothing.flac")
    heard.run()
    assert "does not exist" in heard.message.value

    compare = CompareWidget(lab, group="asr")
    compare.a.value = "whisper_huge"
    compare.run()
    assert "unknown asr backend &#x27;whisper_huge&#x27;" in compare.message.value
    compare.group.value = "tts"
    assert (compare.a.value, compare.b.value) == ("piper", "piper length_scale=1.3")
    assert lab.loaded == []
