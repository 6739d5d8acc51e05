"""The scenarios dataset: the phenomena that break calls, each line saying what should happen."""

import json

import numpy as np
import pytest

from cvi_lab.lab import dataset as D
from cvi_lab.lab import scenarios as SC

SCENARIOS = D.SHIPPED / "scenarios/scenarios.jsonl"


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CVI_LAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_shipped_scenarios_cover_the_phenomena_over_personas():
    utts = D.read_utterances(SCENARIOS)
    scripts = D.group_scripts(utts)
    assert len(utts) >= 60 and len({s.persona for s in scripts}) >= 5
    assert set(SC.PHENOMENA) - {"plain"} <= {u.phenomenon for u in utts}
    paused = [u for u in utts if u.phenomenon == "mid_pause"]
    assert {u.pause_ms for u in paused} >= {400, 800, 1200} and all(400 <= u.pause_ms <= 1200 for u in paused)
    assert all(u.expect.hold and u.expect.take_turn for u in paused)
    for u in utts:
        if u.phenomenon in ("backchannel", "cough", "noise_burst"):
            assert not u.expect.take_turn
        if u.barge_in_after_s is not None:
            assert u.expect.replica_stops is (u.phenomenon in ("interruption", "quick_follow_up"))
    assert any(u.expect.answer for u in utts)


def test_a_line_spoken_over_the_replica_follows_a_line_it_answers():
    """The offline driver waits for the replica to start answering the previous line before a barge-in."""
    for s in D.group_scripts(D.read_utterances(SCENARIOS)):
        for prev, u in zip(s.utterances, s.utterances[1:]):
            if u.barge_in_after_s is not None:
                assert prev.expect.take_turn, (s.id, u.turn)


def test_pauses_are_exact_between_trimmed_speech():
    def speak(text):  # a stand-in voice: 0.2 s of tone per word, with silence around it as espeak leaves
        n = int(0.2 * SC.SAMPLE_RATE) * len(text.split())
        tone = 0.3 * np.sin(np.arange(n) * 2 * np.pi * 200 / SC.SAMPLE_RATE)
        pad = np.zeros(SC.SAMPLE_RATE // 4)
        return np.concatenate([pad, tone, pad]).astype(np.float32)

    pcm = SC.render("I'd like to ... book a table", 800, None, "x", speak)
    frames = np.abs(pcm[: len(pcm) // 160 * 160]).reshape(-1, 160).max(axis=1)  # 10 ms frames
    silent = frames == 0
    longest, run = 0, 0
    for s in silent:
        run = run + 1 if s else 0
        longest = max(longest, run)
    assert longest * 0.01 == pytest.approx(0.8, abs=0.03)
    assert len(pcm) / SC.SAMPLE_RATE == pytest.approx(0.2 * 3 + 0.8 + 0.2 * 3, abs=0.05)  # edge silence trimmed


def test_sounds_are_deterministic_and_distinct():
    a, b = SC.render("", None, "cough", "clinic__06", None), SC.render("", None, "cough", "clinic__06", None)
    assert np.array_equal(a, b) and 0.3 < len(a) / SC.SAMPLE_RATE < 1.0
    assert not np.array_equal(a, SC.render("", None, "cough", "other__01", None))
    noise = SC.render("", None, "noise", "x", None)
    assert np.max(np.abs(noise)) > 0.1


@pytest.mark.parametrize("row, message", [
    ({"phenomenon": "mumble"}, "phenomenon"),
    ({"pause_ms": 800}, "no '...'"),
    ({"text": "a ... b", "pause_ms": "800"}, "pause_ms"),
    ({"sound": "sneeze"}, "sound"),
    ({"expect": {"take_turn": "yes"}}, "expect.take_turn"),
    ({"expect": {"stop": True}}, "unknown key"),
])
def test_bad_scenario_fields_are_named(tmp_path, row, message):
    line = {"script": "s", "turn": 0, "text": "hello", **row}
    (tmp_path / "bad.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(D.DatasetError, match=message):
        D.read_utterances(tmp_path / "bad.jsonl")


@pytest.mark.skipif(not D.shutil.which("espeak-ng"), reason="espeak-ng absent")
def test_paused_line_synthesizes_longer_than_its_unpaused_text(cache):
    ds = D.load_dataset({"path": str(SCENARIOS), "scripts": ["restaurant-booking"], "max_turns": 2})
    paused = ds.utterances[1]
    assert paused.pause_ms == 800
    whole = SC.trim(D._espeak(paused.text.replace("...", ""), ds.voice))
    assert len(ds.audio(paused)) - len(whole) > 0.5 * SC.SAMPLE_RATE
