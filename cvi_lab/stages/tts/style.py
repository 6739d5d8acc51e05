"""How a voice may be styled per utterance (`conversation.set_emotion`): `VoiceStyle` and the `StyledVoice`
capability.

Why a capability and not a setting: one TTS instance is shared by every call on the server (the stage pool),
so an emotion must travel with each request rather than change the voice; a TTS that cannot vary its voice
simply does not implement `StyledVoice` and speaks as configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Protocol, runtime_checkable

from cvi_lab.media import TTSChunk


@dataclass(frozen=True)
class VoiceStyle:
    """Relative to the configured voice: `speed` > 1 speaks faster; `pitch` in [-1, 1] moves the pitch within the
    voice's range (where the TTS has one); `variation` scales the expressive variation (Piper's noise scales)."""

    speed: float = 1.0
    pitch: float = 0.0
    variation: float = 1.0

    def __post_init__(self) -> None:
        if self.speed <= 0 or self.variation < 0 or not -1.0 <= self.pitch <= 1.0:
            raise ValueError(f"voice style {self} is not accepted; speed > 0, variation >= 0, pitch in [-1, 1]")


NEUTRAL_VOICE = VoiceStyle()


@runtime_checkable
class StyledVoice(Protocol):
    """A TTS that can speak one text in a style (the engine uses it when the call has an emotion set)."""

    def stream_styled(self, text: str, style: VoiceStyle) -> AsyncIterator[TTSChunk]: ...
