"""Scripted participants: the shipped scripts, the cached synthesis, and the recordings format."""

import json
import os

import numpy as np
import pytest

from cvi_lab.audio import write_wav
from cvi_lab.lab import dataset as D

DEFAULT = D.SHIPPED / "default/scripts.jsonl"


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CVI_LAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_default_scripts_are_multi_turn_over_personas():
    utts = D.read_utterances(DEFAULT)
    scripts = D.group_scripts(utts)
    assert len(utts) >= 30
    assert len({s.persona for s in scripts}) >= 3
    assert all(len(s.utterances) >= 2 for s in scripts)
    assert any(u.barge_in_after_s is not None for u in utts)


@pytest.mark.skipif(not D.shutil.which("espeak-ng"), reason="espeak-ng absent")
def test_synthesis_is_cached_and_content_hashed(cache):
    cfg = {"path": str(DEFAULT), "scripts": ["cook-pasta"], "max_turns": 2}
    a = D.load_dataset(cfg)
    assert a.kind == "synthesized" and len(a.utterances) == 2
    wav = a.audio_files[a.utterances[0].uid]
    assert wav.is_relative_to(cache / "datasets")
    pcm = a.audio(a.utterances[0])
    assert pcm.dtype == np.float32 and len(pcm) > 16_000 * 0.5
    mtime = wav.stat().st_mtime_ns
    b = D.load_dataset(cfg)
    assert b.hash == a.hash and b.audio_files[b.utterances[0].uid].stat().st_mtime_ns == mtime
    other = D.load_dataset({**cfg, "voice": {"voice": "en-gb"}})
    assert other.hash != a.hash and other.audio_files[other.utterances[0].uid].parent != wav.parent


def test_replica_voice_is_refused(cache):
    with pytest.raises(D.DatasetError, match="replica"):
        D.load_dataset({"path": str(DEFAULT), "voice": {"voice": "piper"}})


SCENARIOS = D.SHIPPED / "scenarios/scenarios.jsonl"


def test_scenario_personas_speak_with_their_own_voices_never_the_replicas():
    utts = D.read_utterances(SCENARIOS)
    by_persona = {}
    for u in utts:
        by_persona.setdefault(u.persona, set()).add(u.voice)
    assert all(len(v) == 1 and None not in v for v in by_persona.values()), by_persona  # one voice a persona
    assert len({next(iter(v)) for v in by_persona.values()}) == len(by_persona)  # a different one each
    assert not any(D._is_replica_voice(next(iter(v))) for v in by_persona.values())


@pytest.mark.skipif(not D.shutil.which("espeak-ng"), reason="espeak-ng absent")
def test_a_scripts_voice_speaks_all_its_lines_and_changes_the_audio(tmp_path, cache):
    lines = [{"script": "a", "turn": 0, "text": "hello there", "voice": "en-gb+m3"},
             {"script": "a", "turn": 1, "text": "hello there"},
             {"script": "b", "turn": 0, "text": "hello there"}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    ds = D.load_dataset({"path": str(path), "voice": {"voice": "en-us+f3"}})
    a0, a1, b0 = ds.utterances
    assert a0.voice == a1.voice == "en-gb+m3" and b0.voice is None  # b speaks with dataset.voice
    pcm = [ds.audio(u) for u in (a0, a1, b0)]
    assert np.array_equal(pcm[0], pcm[1]) and not np.array_equal(pcm[0][: len(pcm[2])], pcm[2][: len(pcm[0])])


@pytest.mark.parametrize("voice", ["piper", "joe+m3", ""])
def test_a_lines_voice_must_be_an_espeak_voice_not_the_replicas(tmp_path, voice):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"script": "s", "turn": 0, "text": "hi", "voice": voice}) + "\n")
    with pytest.raises(D.DatasetError, match="voice") as err:
        D.read_utterances(path)
    assert f"{path}:1" in str(err.value)


def test_recordings_format(tmp_path, cache):
    rate = 22_050
    tone = (0.1 * np.sin(np.arange(rate) * 2 * np.pi * 220 / rate)).astype(np.float32)
    write_wav(tmp_path / "a.wav", tone, rate)
    write_wav(tmp_path / "b.wav", tone[: rate // 2], rate)
    lines = [{"script": "rec", "turn": 0, "text": "hello there", "audio": "a.wav", "persona": "me"},
             {"script": "rec", "turn": 1, "text": "goodbye", "audio": "b.wav"}]
    (tmp_path / "transcript.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    ds = D.load_dataset({"path": str(tmp_path / "transcript.jsonl")})
    assert ds.kind == "recorded"
    assert abs(len(ds.audio(ds.utterances[0])) - 16_000) < 10  # resampled to 16 kHz
    before = ds.hash
    write_wav(tmp_path / "b.wav", tone[: rate // 3], rate)  # a changed recording changes the hash
    assert D.load_dataset({"path": str(tmp_path / "transcript.jsonl")}).hash != before


@pytest.mark.parametrize("content, match", [
    ('{"script": "s", "turn": 0}\n', "'text' is required"),
    ('{"script": "s", "turn": 0, "text": "hi", "colour": 1}\n', "unknown field"),
    ('not json\n', "not valid JSON"),
    ('{"script": "s", "turn": 0, "text": "hi", "audio": "gone.wav"}\n', "gone.wav does not exist"),
    ('{"script": "s", "turn": 0, "text": "a"}\n{"script": "s", "turn": 0, "text": "b"}\n', "appears twice"),
])
def test_bad_dataset_lines_name_file_and_line(tmp_path, content, match):
    path = tmp_path / "d.jsonl"
    path.write_text(content)
    with pytest.raises(D.DatasetError, match=match) as err:
        D.read_utterances(path)
    assert str(path) in str(err.value)


def test_missing_dataset_file_and_unknown_script(tmp_path):
    with pytest.raises(D.DatasetError, match="does not exist"):
        D.read_utterances(tmp_path / "nope.jsonl")
    with pytest.raises(D.DatasetError, match="unknown script id"):
        D.load_dataset({"path": str(DEFAULT), "scripts": ["no-such-script"]})
