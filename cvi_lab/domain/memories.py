"""Memories (SPEC §5 `memory_stores`): what a call with a tag left for later calls with that tag.

A conversation or a PAL (persona) names memory stores by tag. When a live call with tags ends, the extractor
(the `memory` config group, cvi_lab/conf/memory/) picks what should be remembered from what the participant said,
and each tag keeps it; a later call whose conversation or PAL carries one of the tags has those memories in its
system message. Memories are listed and deleted through /v2/memories and /v2/memory_stores/{memory_store}.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

MEMORY = "m"  # id prefix
MemoryKind = Literal["fact", "decision"]  # a fact the participant gave about themselves, or a decision taken


class Memory(BaseModel):
    """One remembered sentence as the API returns it."""

    memory_id: str
    memory_store: str
    kind: MemoryKind
    text: str
    conversation_id: str | None = None  # the call it was learned in (None once that conversation is deleted)
    created_at: str


def memory_scope(conversation: dict[str, Any], persona: dict[str, Any]) -> list[str]:
    """The memory stores of a call: the conversation's and its persona's tags together, in that order."""
    return list(dict.fromkeys([*(conversation.get("memory_stores") or []), *(persona.get("memory_stores") or [])]))
