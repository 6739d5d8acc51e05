"""A stand-in engine runtime for server-process tests: writes a short transcript through the Call recorders.

Registered by dotted path (`server.runtimes=[tests.helpers.scripted_runtime.factory]`), exactly as the real
engine will be, so a test can kill the server mid-conversation with a transcript already stored.
"""

from __future__ import annotations


SYSTEM_MESSAGE = "You are a scripted runtime for the store tests."


class ScriptedRuntime:
    def __init__(self, call) -> None:
        self.call = call

    async def start(self) -> None:
        self.call.add_event("conversation.utterance", {"role": "replica", "speech": self.call.custom_greeting})
        self.call.add_event("conversation.utterance", {"role": "user", "speech": "What is a replica?"})
        self.call.add_turn_metrics(1, {"response_latency_s": 0.5})

    async def stop(self, reason: str) -> None:
        return None

    # the rest of calls.runtime.ConversationRuntime: this stand-in has no media and no LLM
    async def participant_joined(self, participant_id: str, kind: str) -> None:
        return None

    async def participant_left(self, participant_id: str, kind: str, reason: str) -> None:
        return None

    def participant_audio(self, participant_id: str, pcm) -> None:
        return None

    async def interaction(self, participant_id: str, message: object) -> None:
        return None

    async def outgoing(self):
        return
        yield  # an async generator that ends at once: no frames

    def system_message(self) -> str:
        return SYSTEM_MESSAGE

    def subscribe(self, send):
        return lambda: None


def factory(call, room, cfg) -> ScriptedRuntime:
    return ScriptedRuntime(call)
