"""A stand-in engine runtime for server-process tests: writes a short transcript through the Call recorders.

Registered by dotted path (`server.runtimes=[tests.helpers.scripted_runtime.factory]`), exactly as the real
engine will be, so a test can kill the server mid-conversation with a transcript already stored.
"""

from __future__ import annotations

from tests.helpers.quiet_runtime import QuietRuntime


class ScriptedRuntime(QuietRuntime):
    def __init__(self, call) -> None:
        self.call = call

    async def start(self) -> None:
        self.call.add_event("conversation.utterance", {"role": "replica", "speech": self.call.custom_greeting})
        self.call.add_event("conversation.utterance", {"role": "user", "speech": "What is a replica?"})
        self.call.add_turn_metrics(1, {"response_latency_s": 0.5})

    async def stop(self, reason: str) -> None:
        return None


def factory(call, room, cfg) -> ScriptedRuntime:
    return ScriptedRuntime(call)
