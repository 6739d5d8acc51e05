"""The replica's facial expression (`conversation.set_emotion`): `Expression` and the `ExpressiveAvatar`
capability.

Why a capability: an avatar renderer is built per conversation, so it can hold the call's expression; one that
cannot show expressions does not implement `ExpressiveAvatar` and the call goes on with its neutral face.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Expression:
    """`lid_drop`: eyelids lowered at rest (0 open .. 1 closed); `tilt_deg`: a steady head tilt; `head_drop`: the
    head lowered, as a fraction of the height; `motion`: scale of idle sway and speech nods; `mouth_gain`: scale
    of the mouth's opening while speaking."""

    lid_drop: float = 0.0
    tilt_deg: float = 0.0
    head_drop: float = 0.0
    motion: float = 1.0
    mouth_gain: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.lid_drop <= 0.9 or self.motion < 0 or self.mouth_gain < 0 or abs(self.tilt_deg) > 20:
            raise ValueError(f"expression {self} is not accepted; lid_drop in [0, 0.9], motion >= 0, "
                             "mouth_gain >= 0, |tilt_deg| <= 20")


NEUTRAL_EXPRESSION = Expression()


@runtime_checkable
class ExpressiveAvatar(Protocol):
    """An avatar that shows an expression from the next frame on."""

    def set_expression(self, expression: Expression) -> None: ...
