"""`QuietRuntime`: the media side of `calls.runtime.ConversationRuntime` for runtimes that have none.

Why: test runtimes that stand in for the engine only to write events or turn records (store, notebook tests)
still implement the whole declared protocol; this base gives them a silent participant side, no frames and a
fixed system message, so each subclass says only what it does."""

from __future__ import annotations


class QuietRuntime:
    system_prompt = "You are a stand-in runtime for tests."

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

    def subscribe(self, send):
        return lambda: None

    def system_message(self) -> str:
        return self.system_prompt
