"""The early end-of-turn decision on real speech (jfk.flac) with the real Silero VAD and whisper tiny.en.

The ASR starts at the VAD's candidate end, before its min silence has run out; the transcript it commits
must be the one-shot transcript of exactly the same audio (the decision is not a different, partial ASR:
it is the same call, started sooner)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cvi_lab.audio import load_audio
from cvi_lab.clock import SystemClock
from cvi_lab.config import load_group
from cvi_lab.engine.pipeline_config import load_engine_settings
from cvi_lab.engine.turns import TurnTaking
from cvi_lab.stages.base import TurnDetector

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


class Complete(TurnDetector):
    """An end-of-turn verdict of "finished" at every pause: the first pause of the speech commits a turn."""

    async def predict(self, audio, sample_rate=16_000, silence_s=0.0) -> float:
        return 1.0


class Recorder:
    def __init__(self):
        self.turns, self.tentative = [], []

    def user_started(self, turn, new_turn): ...

    def user_stopped(self, turn): ...

    def user_speech(self, turn, speech_s): ...

    async def turn_complete(self, turn, transcript):
        self.turns.append((turn, transcript))

    def turn_tentative(self, turn, transcript):
        self.tentative.append(transcript.text)

    def turn_abandoned(self, turn): ...

    def stage_failed(self, stage, exc):
        raise AssertionError(f"{stage} failed: {exc}")


async def test_early_transcript_is_the_one_shot_transcript_of_the_same_audio(jfk_path):
    audio, _ = load_audio(jfk_path)  # mono, 16 kHz
    audio = audio.astype(np.float32)
    vad = instantiate(OmegaConf.merge(load_group("vad", "silero"), {"min_silence_ms": 200}))
    asr = instantiate(load_group("asr", "faster_whisper_tiny_en"))
    await asr.warmup()
    settings = load_engine_settings()
    assert settings.early_decision_ms is not None  # the default runs the early path
    handler = Recorder()
    tt = TurnTaking(vad, Complete(), asr, settings, SystemClock(), handler)
    for i in range(0, len(audio), 320):  # 20 ms frames in real time
        tt.push(audio[i : i + 320])
        await asyncio.sleep(0.02)
        if handler.turns:
            break
    for _ in range(200):
        if handler.turns:
            break
        await asyncio.sleep(0.05)
    await tt.close()
    (turn, transcript), *_ = handler.turns
    assert "early_start_ms" in turn.latency.extra  # the decision began before the VAD's speech_end
    pre = int(settings.preroll_ms * 16_000 / 1000)
    one_shot = await asr.transcribe(audio[max(0, turn.start_sample - pre) : turn.end_sample], 16_000, "en")
    print("early:", transcript.text, "| one-shot:", one_shot.text)
    assert transcript.text == one_shot.text
    assert "fellow american" in transcript.text.lower()  # (tiny.en on the first phrase alone: "... fellow American.")
