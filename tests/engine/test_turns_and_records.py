"""Turn taking on an injected clock (no sleeping), heard-text truncation, latency records."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from cvi_lab.clock import FakeClock
from cvi_lab.engine.speech import Clause
from cvi_lab.engine.latency import TurnLatency
from cvi_lab.engine.pipeline_config import load_engine_settings
from cvi_lab.engine.turns import TurnTaking
from tests.engine.standins import ScriptedASR, ScriptedTurn, energy_vad, silence, tone


class Handler:
    def __init__(self):
        self.log, self.turns = [], []

    def user_started(self, turn, new_turn):
        self.log.append(("started", new_turn))

    def user_stopped(self, turn):
        self.log.append(("stopped",))

    def user_speech(self, turn, speech_s):
        turn.extra["longest"] = max(turn.extra.get("longest", 0.0), speech_s)

    async def turn_complete(self, turn, transcript):
        self.turns.append((transcript.text, turn))

    def stage_failed(self, stage, exc):
        self.log.append(("failed", stage))

    def turn_tentative(self, turn, transcript):
        self.log.append(("tentative", transcript.text))

    def turn_abandoned(self, turn):
        self.log.append(("abandoned",))


def feed(tt, audio):
    for i in range(0, len(audio), 320):
        tt.push(audio[i : i + 320])


async def settle():
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_incomplete_turn_waits_for_the_clock_then_commits():
    clock, h = FakeClock(), Handler()
    s = load_engine_settings()
    s.max_patience_ms, s.vad_min_silence_ms = 1200, 200
    # (no closing punctuation, no hanging last word: the words do not tell, the detector's "not done" stands)
    tt = TurnTaking(energy_vad(200), ScriptedTurn([0.1]), ScriptedASR(["so what I mean"]), s, clock, h)
    feed(tt, np.concatenate([silence(0.3), tone(0.8), silence(0.4)]))
    await settle()
    assert h.log == [("started", True), ("stopped",), ("tentative", "so what I mean")]
    assert h.turns == []  # the detector said "not done": waiting on the clock
    clock.advance(0.5)
    await settle()
    assert h.turns == []
    clock.advance(0.6)  # 0.2 s VAD silence + 1.0 s = the 1.2 s patience
    await settle()
    assert [t for t, _ in h.turns] == ["so what I mean"]
    turn = h.turns[0][1]
    assert turn.latency.extra["turn_by_patience"] is True
    assert abs(turn.extra["longest"] - 0.8) < 0.1  # speech length as the barge-in check saw it
    # VAD speech end mapped onto the clock: before the VAD fired, by its min silence (minus padding)
    assert 0.1 < turn.latency.vad_end - turn.latency.speech_end < 0.25
    await tt.close()


@pytest.mark.parametrize("text, commit_after_s, label", [
    ("What time is it?", 0.5, "finished"),  # a finished sentence: finished_text_patience_ms (0.5 s)
    ("I'd like to", 2.0, "unfinished"),  # left hanging: unfinished_text_patience_ms (2.0 s), past the 1.2 s
])
async def test_the_words_set_the_patience_when_the_detector_says_not_done(text, commit_after_s, label):
    clock, h = FakeClock(), Handler()
    s = load_engine_settings()
    s.max_patience_ms, s.vad_min_silence_ms = 1200, 200
    s.finished_text_patience_ms, s.unfinished_text_patience_ms = 500, 2000
    tt = TurnTaking(energy_vad(200), ScriptedTurn([0.1]), ScriptedASR([text]), s, clock, h)
    feed(tt, np.concatenate([silence(0.3), tone(0.8), silence(0.4)]))  # the VAD ends the segment 0.2 s in
    await settle()
    clock.advance(commit_after_s - 0.2 - 0.05)
    await settle()
    assert h.turns == []
    clock.advance(0.1)
    await settle()
    assert [t for t, _ in h.turns] == [text]
    assert h.turns[0][1].latency.extra["patience_by_text"] == label
    await tt.close()


async def test_speech_resuming_cancels_the_pending_decision():
    clock, h = FakeClock(), Handler()
    asr = ScriptedASR(["first", "first and second"])
    tt = TurnTaking(energy_vad(200), ScriptedTurn([0.1, 0.95]), asr, load_engine_settings(), clock, h)
    feed(tt, np.concatenate([tone(0.5), silence(0.3)]))
    await settle()
    feed(tt, np.concatenate([tone(0.5), silence(0.3)]))
    await settle()
    assert [t for t, _ in h.turns] == ["first and second"]
    assert h.log.count(("started", True)) == 1 and h.log.count(("started", False)) == 1
    assert ("tentative", "first") in h.log and ("abandoned",) in h.log
    assert h.turns[0][1].extra["resumed"] == 1
    await tt.close()


async def test_clicks_are_not_turns_and_asr_failure_is_reported():
    clock, h = FakeClock(), Handler()
    s = load_engine_settings()
    s.min_turn_ms = 300
    tt = TurnTaking(energy_vad(200), ScriptedTurn([0.9]), ScriptedASR(fail=True), s, clock, h)
    feed(tt, np.concatenate([tone(0.1), silence(0.4)]))
    await settle()
    assert tt.turn is None and h.turns == []
    feed(tt, np.concatenate([tone(0.6), silence(0.4)]))
    await settle()
    assert ("failed", "asr") in h.log and h.turns == []
    await tt.close()


def test_heard_text_follows_played_audio():
    c = Clause("one two three four five six seven eight", duration=2.0, played=1.0)
    assert c.heard() == "one two three four"  # no timings: words spread evenly, only whole ones
    c.words = [("one", 0.2), ("two", 0.9), ("three", 1.1)]
    assert c.heard() == "one two"  # with timings: words that ended before the cut
    assert Clause("x y", duration=1.0, played=1.0).heard() == "x y"
    assert Clause("x y", duration=1.0, played=0.0).heard() == ""


def test_latency_record_is_relative_to_speech_end():
    lat = TurnLatency(turn_idx=3, speech_end=10.0, vad_end=10.2, turn_decision=10.3, asr_final=10.6,
                      llm_first_token=10.8, first_clause=11.0, tts_first_audio=11.2, first_frame_sent=11.25)
    m = lat.as_metrics()
    assert m["turn_idx"] == 3 and m["speech_end_ms"] == 0.0 and m["first_frame_sent_ms"] == 1250.0
    assert m["response_latency_ms"] == 1250.0 and m["asr_ms"] == 400.0 and m["llm_ttft_ms"] == 200.0
    assert m["tts_ttfb_ms"] == 200.0 and m["avatar_delay_ms"] == 50.0
    lat.mark("vad_end", 99.0)  # first occurrence wins
    assert lat.vad_end == 10.2
