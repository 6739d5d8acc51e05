"""`ConversationEndpoint`: the transport's `CallEndpoint` for one live call, composed by the calls layer.

Why here: the transport's protocol mixes what the calls layer decides (who may join, presence, what the
meeting page shows) with what the runtime does (audio, interactions, frames, events). The calls layer owns
both, so it composes them: transport → endpoint → call (room, timers) and runtime, with no hop between.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, AsyncIterator, Callable

import numpy as np

from cvi_lab.media import VideoFrame

if TYPE_CHECKING:
    from cvi_lab.calls.call import Call
    from cvi_lab.calls.runtime import ConversationRuntime


class ConversationEndpoint:
    """Implements `cvi_lab.transport.contract.CallEndpoint` from a `Call` and its started runtime."""

    def __init__(self, call: "Call", runtime: "ConversationRuntime") -> None:
        self.call = call
        self.runtime = runtime
        self.conversation_id = call.conversation_id
        properties = call.properties
        # SPEC §1: what the meeting page shows, fixed when the conversation is created
        self.captions_enabled = bool(properties["enable_closed_captions"])
        self.greenscreen = bool(properties["apply_greenscreen"])
        self.audio_only = bool(properties["audio_only"])  # SPEC §5: no video track offered
        self.require_auth = bool(call.record["require_auth"])

    def authorize(self, meeting_token: str | None) -> str | None:
        return self.call.manager.authorize(self.conversation_id, meeting_token)

    async def participant_joined(self, participant_id: str) -> None:
        await self.call.participant_joined(participant_id, "participant")

    async def participant_left(self, participant_id: str, reason: str) -> None:
        await self.call.participant_left(participant_id, reason)

    def participant_audio(self, participant_id: str, pcm: np.ndarray) -> None:
        self.runtime.participant_audio(participant_id, pcm)

    async def interaction(self, participant_id: str, message: object) -> str | None:
        return await self.runtime.interaction(participant_id, message)

    def outgoing(self) -> AsyncIterator[VideoFrame]:
        return self.runtime.outgoing()

    def subscribe(self, send: Callable[[dict], None]) -> Callable[[], None]:
        return self.runtime.subscribe(send)
