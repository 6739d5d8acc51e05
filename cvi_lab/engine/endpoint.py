"""The transport's view of a conversation (`CallEndpoint`), backed by a `ConversationEngine`.

Why an adapter: the transport's protocol mixes what the engine does (audio, interactions, frames, events)
with what the calls layer decides (who may join, presence timers). The calls layer passes `authorize` and
`on_presence`; everything else goes straight to the engine.
"""

from __future__ import annotations

import inspect
import logging
from typing import AsyncIterator, Awaitable, Callable

import numpy as np

from cvi_lab.engine.engine import ConversationEngine
from cvi_lab.media import VideoFrame
from cvi_lab.transport.contract import INBOUND_SAMPLE_RATE

log = logging.getLogger(__name__)

Presence = Callable[[str, str, str | None], "Awaitable[None] | None"]  # (participant_id, "joined"|"left", reason)


class EngineEndpoint:
    """Implements `cvi_lab.transport.contract.CallEndpoint` for one engine."""

    def __init__(
        self,
        engine: ConversationEngine,
        authorize: Callable[[str | None], str | None] | None = None,
        on_presence: Presence | None = None,
        audio_tap: Callable[[str, np.ndarray], None] | None = None,
    ) -> None:
        self.engine = engine
        self._audio_tap = audio_tap  # e.g. the call recorder; must not block
        self.conversation_id = engine.conversation_id
        self._authorize = authorize
        self._on_presence = on_presence

    def authorize(self, meeting_token: str | None) -> str | None:
        if not self.engine.running:
            return "the conversation has ended"
        return self._authorize(meeting_token) if self._authorize else None

    async def _presence(self, participant_id: str, what: str, reason: str | None) -> None:
        result = self._on_presence(participant_id, what, reason)
        if inspect.isawaitable(result):
            await result

    async def participant_joined(self, participant_id: str) -> None:
        """With `on_presence` the calls layer decides (it may refuse: the error reaches the transport) and
        notifies the engine through its runtime; without it the engine is told directly."""
        if self._on_presence is not None:
            await self._presence(participant_id, "joined", None)
        else:
            await self.engine.participant_joined(participant_id)

    async def participant_left(self, participant_id: str, reason: str) -> None:
        if self._on_presence is not None:
            try:
                await self._presence(participant_id, "left", reason)
            except Exception:  # noqa: BLE001 - leaving cannot be refused; keep the media path alive
                log.exception("presence callback failed")
        else:
            await self.engine.participant_left(participant_id, reason)

    def participant_audio(self, participant_id: str, pcm: np.ndarray) -> None:
        """20 ms int16 frames at 16 kHz: the VAD's rate already, so no resampling; int16 → float32 inside."""
        self.engine.push_audio(pcm)
        if self._audio_tap is not None:
            try:
                self._audio_tap(participant_id, pcm)
            except Exception:  # noqa: BLE001 - a tap (recording) must not break the media path
                log.exception("participant audio tap failed")

    async def interaction(self, participant_id: str, message: object) -> None:
        await self.engine.handle_interaction(message)

    def outgoing(self) -> AsyncIterator[VideoFrame]:
        return self.engine.frames()

    def subscribe(self, send: Callable[[dict], None]) -> Callable[[], None]:
        return self.engine.subscribe(send)


assert INBOUND_SAMPLE_RATE == 16_000  # the VAD/ASR side rate the engine expects
