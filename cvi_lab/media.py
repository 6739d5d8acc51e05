"""The media that flows between stages, engine and transport: audio chunks, TTS chunks with timings, frames.

Why its own module: the transport and the engine need these types without importing the stage layer (which
starts an executor); this module has no side effects and depends on numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# SPEC §1 apply_greenscreen: the exact colour behind the replica (the avatar paints it, the meeting page keys it
# out, the lip-sync metrics look for it).
GREENSCREEN_RGB = (0, 255, 155)


@dataclass
class AudioChunk:
    """A piece of mono audio. `samples` is float32 in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate)


@dataclass
class Timing:
    """A word or phoneme and where it sits in the chunk's audio (seconds from the chunk start)."""

    label: str
    start: float
    end: float


@dataclass
class TTSChunk:
    """PCM from the TTS. `samples` float32 mono at `sample_rate`. Timings when the engine gives them."""

    samples: np.ndarray
    sample_rate: int
    text: str = ""
    words: list[Timing] | None = None
    phonemes: list[Timing] | None = None
    phoneme_string: str | None = None  # phonemes of the chunk without timings (e.g. Piper)

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate)


@dataclass
class VideoFrame:
    """One rendered RGB frame (H, W, 3 uint8) at presentation time `pts` (seconds from stream start).

    `audio` is the PCM (float32 at `audio_rate`) that plays during this frame, so the transport can send
    audio and video that belong together. `interrupted` marks the first frame after a barge-in cleared the
    renderer: audio sent before it was cut, so a transport drops whatever of it it still buffers."""

    image: np.ndarray | None  # None in audio_only calls: nothing is rendered
    pts: float
    audio: np.ndarray
    audio_rate: int
    speaking: bool = False
    interrupted: bool = False
