"""`conversation.set_emotion`: an emotion name → the avatar's expression and the voice's style.

Why separate: the table is configuration (`engine.emotions`, checked once when the engine is built); what an
emotion changes depends on the stages' optional capabilities (`ExpressiveAvatar`, `StyledVoice`), so a stage
without one takes part unchanged and the call reports which parts followed.
"""

from __future__ import annotations

from typing import Mapping

from cvi_lab.engine.pipeline_config import PipelineConfigError
from cvi_lab.stages.avatar.expression import Expression
from cvi_lab.stages.tts.style import VoiceStyle


class EmotionTable:
    """The configured emotions, each as (Expression, VoiceStyle)."""

    def __init__(self, emotions: Mapping[str, Mapping[str, Mapping[str, float]]]) -> None:
        self.emotions: dict[str, tuple[Expression, VoiceStyle]] = {}
        for name, entry in emotions.items():
            try:
                self.emotions[str(name)] = (Expression(**dict(entry["expression"])), VoiceStyle(**dict(entry["voice"])))
            except (KeyError, TypeError, ValueError) as exc:
                raise PipelineConfigError(
                    f"engine.emotions.{name} is not accepted ({exc}); give expression: {{lid_drop, tilt_deg, "
                    "head_drop, motion, mouth_gain}} and voice: {speed, pitch, variation}") from None

    def get(self, name: object) -> tuple[Expression, VoiceStyle]:
        if not isinstance(name, str) or name not in self.emotions:
            raise ValueError(f"conversation.set_emotion: emotion {name!r} is not accepted; "
                             f"accepted: {', '.join(self.emotions)}")
        return self.emotions[name]
