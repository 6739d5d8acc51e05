"""A late avatar frame repeats the previous image with its own audio (the audio never waits for the picture),
and the renderer reports what it rendered and repeated."""

from __future__ import annotations

import numpy as np

from cvi_lab.media import TTSChunk
from cvi_lab.stages.avatar.streaming import StreamingAvatar


class CountingAvatar(StreamingAvatar):
    """A backend whose image is its frame index (so a repeated image shows)."""

    def render_frame(self, index, audio, cue):
        return np.full((self.height, self.width, 3), index % 256, np.uint8)


def test_a_repeated_frame_keeps_the_audio_running():
    avatar = CountingAvatar(fps=25, width=32, height=32, audio_rate=16_000, render_in_thread=False)
    speech = np.linspace(-0.5, 0.5, 16_000 // 25 * 3, dtype=np.float32)
    avatar.push_audio(TTSChunk(speech, 16_000))
    first = avatar.next_frame()
    late = avatar.next_frame(render=False)
    third = avatar.next_frame()
    assert late.image is first.image  # the picture repeats ...
    assert np.array_equal(np.concatenate([first.audio, late.audio, third.audio]), speech)  # ... the audio goes on
    assert third.image[0, 0, 0] == 2 and late.pts > first.pts
    stats = avatar.render_stats()
    assert stats["rendered_frames"] == 2 and stats["repeated_frames"] == 1
