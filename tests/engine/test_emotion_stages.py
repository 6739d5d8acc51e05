"""What `conversation.set_emotion` changes in the real stages: Piper's and espeak's voice (a sad style is slower,
so longer), espeak's pitch parameters, and the portrait's face (lowered lids). The engine side is in
test_app_interactions.py."""

from __future__ import annotations

import numpy as np
import pytest

from cvi_lab.engine.emotion import EmotionTable
from cvi_lab.engine.pipeline_config import PipelineConfigError, load_engine_settings
from cvi_lab.stages.avatar.expression import ExpressiveAvatar
from cvi_lab.stages.tts.style import NEUTRAL_VOICE, StyledVoice

TEXT = "Hello there, how are you doing today?"


def emotions():
    return EmotionTable(load_engine_settings().emotions)


def test_the_configured_emotions_are_valid_and_bad_ones_say_what_is_accepted():
    table = emotions()
    assert {"neutral", "happy", "sad", "angry", "surprised", "calm"} <= set(table.emotions)
    assert table.get("neutral")[1] == NEUTRAL_VOICE
    with pytest.raises(PipelineConfigError, match="engine.emotions.odd is not accepted"):
        EmotionTable({"odd": {"expression": {"lid_drop": 5}, "voice": {}}})


async def _duration(tts, style) -> float:
    chunks = [c async for c in tts.stream_styled(TEXT, style)]
    return sum(len(c.samples) for c in chunks) / tts.sample_rate


async def test_piper_speaks_a_sad_style_slower():
    from cvi_lab.stages.tts.piper import PiperTTS

    tts = PiperTTS(noise_scale=0.0, noise_w_scale=0.0)  # deterministic durations
    assert isinstance(tts, StyledVoice)
    sad, happy = emotions().get("sad")[1], emotions().get("happy")[1]
    neutral = await _duration(tts, NEUTRAL_VOICE)
    assert await _duration(tts, sad) > neutral * 1.05 > neutral > await _duration(tts, happy)


async def test_espeak_follows_rate_and_pitch():
    from cvi_lab.stages.tts.espeak import EspeakTTS

    tts = EspeakTTS()
    sad = emotions().get("sad")[1]
    params = tts.styled_params(sad)
    assert params["rate"] < tts.params["rate"] and params["pitch"] < tts.params["pitch"]
    assert tts.styled_params(NEUTRAL_VOICE) == tts.params
    assert await _duration(tts, sad) > await _duration(tts, NEUTRAL_VOICE)


@pytest.mark.slow
def test_the_portrait_lowers_its_lids_when_sad():
    from cvi_lab.stages.avatar.portrait import PortraitRenderer

    def frames(expression):
        r = PortraitRenderer(render_in_thread=False, seed=1, blink_interval_s=(100.0, 100.0))
        if expression is not None:
            r.set_expression(expression)
        return np.stack([r.next_frame().image for _ in range(5)]).astype(np.int16)

    plain, sad = frames(None), frames(emotions().get("sad")[0])
    assert isinstance(PortraitRenderer.__new__(PortraitRenderer), ExpressiveAvatar)
    eyes = PortraitRenderer(render_in_thread=False).eyes
    x0, y0, x1, y1 = eyes[0]["roi"]
    assert np.abs(sad[:, y0:y1, x0:x1] - plain[:, y0:y1, x0:x1]).mean() > 2.0
