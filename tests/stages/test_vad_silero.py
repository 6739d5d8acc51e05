"""Silero VAD (shipped ONNX) on real synthesized speech with known silences."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hydra.utils import instantiate

from cvi_lab.audio import load_audio, to_int16
from cvi_lab.stages.base import ModelMissingError, StageInputError
from cvi_lab.stages.vad.silero import SileroVAD
from tests.stages.conftest import stage_conf

TOL = 0.100  # seconds


def run_vad(vad, audio, frame):
    """Push `audio` in frames of `frame` samples (int or iterable of sizes); events with the pushed count."""
    vad.reset()
    out, pos = [], 0
    sizes = iter(frame) if not isinstance(frame, int) else None
    while pos < len(audio):
        n = next(sizes) if sizes else frame
        chunk = audio[pos : pos + n]
        pos += len(chunk)
        out += [(e, pos) for e in vad.push(chunk)]
    return out


def assert_boundaries(events, scene, tol=TOL):
    kinds = [e.kind for e, _ in events]
    assert kinds == ["speech_start", "speech_end"] * len(scene.segments), kinds
    for i, (start, end) in enumerate(scene.segments):
        s, e = events[2 * i][0], events[2 * i + 1][0]
        assert abs(s.sample - start) / scene.sample_rate <= tol, (i, "start", s.time, start / scene.sample_rate)
        assert abs(e.sample - end) / scene.sample_rate <= tol, (i, "end", e.time, end / scene.sample_rate)


@pytest.fixture(scope="module")
def vad():
    v = instantiate(stage_conf("vad", "silero"))
    asyncio.run(v.warmup())
    return v


def test_conf_builds_silero(vad):
    assert isinstance(vad, SileroVAD) and vad.sample_rate == 16_000 and vad.threshold == 0.5


def test_boundaries_within_100ms_in_20ms_frames(vad, speech_with_pauses):
    events = run_vad(vad, speech_with_pauses.audio, 320)
    assert_boundaries(events, speech_with_pauses)


def test_speech_end_is_where_speech_ended_not_where_the_timer_fired(vad, speech_with_pauses):
    sr = speech_with_pauses.sample_rate
    min_silence = int(0.250 * sr)
    for ev, pushed in run_vad(vad, speech_with_pauses.audio, 320):
        if ev.kind == "speech_end":
            # fired only after min_silence of silence, but stamped back at the silence's start (+ pad)
            assert pushed - ev.sample >= min_silence - int(0.030 * sr)
    assert not vad.speaking


def test_sample_counting_is_exact_for_any_frame_size(vad, speech_with_pauses):
    audio = speech_with_pauses.audio
    whole = [e for e, _ in run_vad(vad, audio, len(audio))]
    rng = np.random.default_rng(0)
    ragged = [e for e, _ in run_vad(vad, audio, (int(n) for n in rng.integers(1, 2000, size=10_000)))]
    assert whole == ragged
    assert [e for e, _ in run_vad(vad, to_int16(audio), 480)] == whole  # int16 frames: same events


def test_speech_probability_follows_speech(vad, speech_with_pauses):
    sr = speech_with_pauses.sample_rate
    vad.reset()
    vad.push(speech_with_pauses.audio[: int(0.5 * sr)])  # leading silence
    assert vad.speech_probability < 0.1
    start, _ = speech_with_pauses.segments[0]
    vad.push(speech_with_pauses.audio[int(0.5 * sr) : start + sr])
    assert vad.speaking and 0.0 <= vad.speech_probability <= 1.0


def test_reset_restarts_the_counter(vad, speech_with_pauses):
    first = run_vad(vad, speech_with_pauses.audio, 320)
    vad.push(np.zeros(12345, np.float32))
    assert run_vad(vad, speech_with_pauses.audio, 320) == first


def test_real_voice_jfk(vad, jfk_path):
    audio, sr = load_audio(jfk_path, 16_000)
    events = [e for e, _ in run_vad(vad, audio, 320)]
    assert events and events[0].kind == "speech_start" and 0.1 < events[0].time < 0.6
    assert sum(e.kind == "speech_end" for e in events) >= 2  # the speech's pauses are found


def test_silence_gives_no_events(vad):
    vad.reset()
    assert vad.push(np.zeros(16_000 * 2, np.float32)) == [] and not vad.speaking


@pytest.mark.parametrize(
    "bad, msg",
    [
        (np.zeros((2, 320), np.float32), "mono"),
        (np.zeros(320, np.int32), "dtype"),
    ],
)
def test_bad_input_is_a_clear_error(vad, bad, msg):
    with pytest.raises(StageInputError, match=msg):
        vad.push(bad)


async def test_missing_model_file_is_a_clear_error(tmp_path):
    v = SileroVAD(model_path=str(tmp_path / "nope.onnx"))
    with pytest.raises(ModelMissingError, match="nope.onnx"):
        await v.warmup()


def test_bad_threshold_is_a_clear_error():
    with pytest.raises(StageInputError, match="threshold"):
        SileroVAD(threshold=1.5)
