"""cvi-lab's scripted participant, speaking to a Pipecat bot (SmallWebRTC signaling + RTVI data channel).

Everything that measures is cvi-lab's own `ParticipantClient`, unchanged: the paced 48 kHz `MicrophoneTrack`
(it records when each voiced 10 ms went out), the receive loop that timestamps each audio frame on arrival,
the voiced-window detection (`first_voiced_after`, -40 dBFS) and the jitter-buffer setting. Only two things
differ for Pipecat:

- signaling: the SDP offer goes to the bot's `POST /api/offer` (Pipecat's SmallWebRTC convention: JSON
  {sdp, type, pc_id?} in, {sdp, type, pc_id} out) instead of cvi-lab's `/meet/<id>/offer`; the bot's pc_id
  stands in for the participant id;
- events: Pipecat reports the bot's state as RTVI messages on the data channel. After joining we send RTVI's
  `client-ready` (as any Pipecat client does) and translate the RTVI messages that `cvi_lab.harness.call`'s turn
  helpers wait on into cvi-lab's event names (the raw RTVI message is kept too):
  bot-started-speaking / bot-stopped-speaking -> conversation.replica.started_speaking / .stopped_speaking,
  a final user transcription -> conversation.utterance (role user), spoken bot output -> (role replica).
So `cvi_lab.harness.call.wait_greeting` and `spoken_turn` run against Pipecat exactly as against cvi-lab.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from cvi_lab.transport.client import ParticipantClient
from cvi_lab.transport.rtc import decode_message

RTVI_LABEL = "rtvi-ai"
RTVI_CLIENT_VERSION = "2.2.0"  # pipecat 1.14's RTVI.PROTOCOL_VERSION


class PipecatParticipant(ParticipantClient):
    """`PipecatParticipant("http://127.0.0.1:7860")`: a ParticipantClient for a Pipecat SmallWebRTC bot."""

    def __init__(self, bot_url: str, **kwargs: Any) -> None:
        base = bot_url.rstrip("/")
        kwargs.setdefault("receive_video", False)  # the bot sends audio only (so does the measurement)
        super().__init__(f"{base}/meet/pipecat", **kwargs)  # the parent only needs a well-formed URL
        self.offer_url = f"{base}/api/offer"
        self.conversation_id = "pipecat"
        self.turn_idx = 0

    async def join(self, timeout: float = 30.0) -> "PipecatParticipant":
        await super().join(timeout)
        self.send_interaction({"label": RTVI_LABEL, "type": "client-ready", "id": uuid.uuid4().hex[:8],
                               "data": {"version": RTVI_CLIENT_VERSION,
                                        "about": {"library": "cvi-lab benchmarks.peer", "platform": "python"}}})
        return self

    async def leave(self, how: str = "close") -> None:
        if how == "datachannel" and self.channel is not None and self.channel.readyState == "open":
            self.send_interaction({"label": RTVI_LABEL, "type": "disconnect-bot", "id": uuid.uuid4().hex[:8]})
        await self.close()

    def on_message(self, data) -> None:
        obj, error = decode_message(data)
        now = time.monotonic()
        self.record_event(now, obj if error is None else data)
        if isinstance(obj, dict) and obj.get("label") == RTVI_LABEL:
            event = self._translate(obj)
            if event is not None:
                self.record_event(now, event)

    def _translate(self, msg: dict) -> dict | None:
        kind, data = msg.get("type"), msg.get("data") or {}

        def event(event_type: str, properties: dict | None = None) -> dict:
            return {"message_type": "conversation", "event_type": event_type, "conversation_id": "pipecat",
                    "turn_idx": self.turn_idx, "properties": properties or {}, "rtvi": kind}

        if kind == "bot-started-speaking":
            return event("conversation.replica.started_speaking")
        if kind == "bot-stopped-speaking":
            return event("conversation.replica.stopped_speaking")
        if kind == "user-transcription" and data.get("final"):
            self.turn_idx += 1
            return event("conversation.utterance", {"role": "user", "speech": str(data.get("text", "")).strip()})
        if kind == "bot-output" and data.get("spoken", True) and data.get("text"):
            return event("conversation.utterance", {"role": "replica", "speech": str(data["text"]).strip()})
        return None


def heard_and_said(client: ParticipantClient, since: float, until: float | None) -> tuple[str, str]:
    """(user transcript, replica words) of the utterance events that arrived in [since, until)."""
    from cvi_lab.harness.call import utterances

    heard = " ".join(e["properties"]["speech"] for _, e in utterances(client, "user", since, until))
    said = " ".join(e["properties"]["speech"] for _, e in utterances(client, "replica", since, until))
    return heard, said


def dump_events(client: ParticipantClient, path) -> None:
    with open(path, "w") as f:
        for t, e in client.rec.events:
            f.write(json.dumps({"arrival": t, "event": e}, default=str) + "\n")
