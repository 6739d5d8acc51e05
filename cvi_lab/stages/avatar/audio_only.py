"""The renderer of `audio_only` conversations (SPEC §5): the replica's audio, paced as frames, with no image.

Why a renderer and not a bypass: the engine's timing (what was heard, barge-in cuts, the frame pump's pacing)
and the transport's audio track run on the avatar's frame clock; keeping that clock while rendering nothing
leaves every other path unchanged and drops only the cost of the pictures (and of building the replica).
"""

from __future__ import annotations

import numpy as np

from cvi_lab.stages.avatar.streaming import FrameCue, StreamingAvatar


class AudioOnlyRenderer(StreamingAvatar):
    """`StreamingAvatar` whose frames carry audio and `image=None`; takes (and ignores) the per-call arguments
    of every avatar (`replica_dir`, `apply_greenscreen`, `seed`)."""

    def __init__(self, fps: int = 25, audio_rate: int = 22050, replica_dir: object = None,
                 apply_greenscreen: bool = False, seed: int = 0) -> None:
        super().__init__(fps=fps, audio_rate=audio_rate, seed=seed, render_in_thread=False)

    def render_frame(self, index: int, audio: np.ndarray, cue: FrameCue) -> None:  # type: ignore[override]
        return None
