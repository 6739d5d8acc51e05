"""The boundary between the WebRTC transport and whatever runs a live call (the engine).

Why a protocol here: the transport must not know models or the call lifecycle (DESIGN: arrows point down),
so it defines what it needs and the layer above (calls/engine) implements it. The server hands the transport
a `resolve(conversation_id) -> CallEndpoint | None` function.
"""

from __future__ import annotations

from typing import AsyncIterator, Callable, Protocol

import numpy as np

from cvi_lab.media import VideoFrame

# Participant audio is delivered as 16 kHz mono int16, in 20 ms frames (320 samples).
INBOUND_SAMPLE_RATE = 16_000
INBOUND_FRAME_SAMPLES = 320



class CallEndpoint(Protocol):
    """One live conversation as seen by the transport."""

    conversation_id: str
    # What the meeting page shows (GET /meet/{id}/info), from the conversation's properties (SPEC §1):
    captions_enabled: bool  # enable_closed_captions: show the utterance events as captions
    greenscreen: bool  # apply_greenscreen: the replica's background is GREENSCREEN_RGB
    require_auth: bool  # the page needs the meeting_token (?t=...)
    audio_only: bool  # audio_only (SPEC §5): the answer carries no video track (frames have no image)

    def authorize(self, meeting_token: str | None) -> str | None:
        """None if the participant may join; else the reason (e.g. bad token, room full, call ended).

        Runs when the offer arrives, before the participant has joined, so a `max_participants` check must
        count participants still connecting (`MeetingTransport.participants(cid)` lists them)."""

    async def participant_joined(self, participant_id: str) -> None:
        """A participant's peer connection is up (ICE connected). Drives presence timers and the greeting."""

    async def participant_left(self, participant_id: str, reason: str) -> None:
        """Left / disconnected / ICE failed. `reason` is "left" | "disconnected" | "ice_failed" | "closed".

        Called at most once per participant, only after `participant_joined`, and not when the calls layer
        closes the conversation itself (`close_conversation`)."""

    def participant_audio(self, participant_id: str, pcm: np.ndarray) -> None:
        """A 20 ms frame of participant audio: int16 mono at INBOUND_SAMPLE_RATE. Must not block."""

    async def interaction(self, participant_id: str, message: object) -> str | None:
        """A data-channel message, already JSON-decoded. Text that is not JSON is answered by the transport
        with a `conversation.error` event and never reaches here; `conversation.leave` is handled by the
        transport (it ends that participant's presence) and is not forwarded. Returns why the message was
        refused (None: applied); the endpoint has sent that as an error event already, so the transport
        ignores it."""

    def outgoing(self) -> AsyncIterator[VideoFrame]:
        """The replica's frames, each with the audio that plays during it, paced in real time."""

    def subscribe(self, send: Callable[[dict], None]) -> Callable[[], None]:
        """Register a sink for outgoing events (data channel); returns an unsubscribe function."""


ResolveEndpoint = Callable[[str], "CallEndpoint | None"]
