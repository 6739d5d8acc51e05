"""A stand-in `ConversationRuntime` for calls-layer tests: it logs what the calls layer tells it.

Why a stand-in: these tests are about the lifecycle (room, timers, endpoint, transcript), not about answers;
the engine as a runtime is tested in tests/engine/test_runtime.py and in the meeting-page browser test."""

from __future__ import annotations


class RecordingRuntime:
    """A `ConversationRuntime` that logs what the calls layer tells it; its system message changes with the
    turns, as an engine's does (context updates), so the transcript must read it, not rebuild it."""

    def __init__(self, call, room, cfg, log, fail=False):
        self.call, self.log, self.fail = call, log, fail
        self.prompt = f"You are a test. {call.record['conversational_context']}"
        self.audio: list[tuple[str, int]] = []
        self.sinks: list = []

    async def start(self):
        self.log.append(("start", self.call.room.replica_present))
        if self.fail:
            raise RuntimeError("model weights missing")

    async def stop(self, reason):
        self.call.add_event("conversation.utterance", {"role": "replica", "speech": "Bye now."})
        self.prompt += " It is Tuesday now."  # the last turn's prompt
        self.log.append(("stop", reason))

    async def participant_joined(self, pid, kind):
        self.log.append(("joined", pid, kind))

    async def participant_left(self, pid, kind, reason):
        self.log.append(("left", pid, reason))

    def participant_audio(self, pid, pcm):
        self.audio.append((pid, len(pcm)))

    async def interaction(self, pid, message):
        self.log.append(("interaction", pid, message))

    async def outgoing(self):
        return
        yield

    def subscribe(self, send):
        self.sinks.append(send)
        return lambda: self.sinks.remove(send)

    def system_message(self):
        return self.prompt


def factory(call, room, cfg) -> RecordingRuntime:
    """For `server.runtimes=[tests.calls.runtime_standin.factory]` (by dotted path, as the engine's)."""
    return RecordingRuntime(call, room, cfg, [])
