"""Memories of a call (SPEC §5 `memory_stores`): remembered when it ends, recalled when the next one starts.

Why here: the calls layer knows when a call ends and what it is about to start; the extractor (the `memory`
config group) and the store do the rest. At the end (an end listener of the manager) the call's stored
utterances go to the extractor and what it keeps is added to each of the call's memory stores; at the start
the newest memories of the call's stores are appended to the persona context its runtime is given, so they
are part of the one system message the LLM sees (and the stored transcript shows). A root without the `memory`
group (`~memory`) neither remembers nor recalls.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hydra.utils import instantiate

from cvi_lab.calls.settings import plain
from cvi_lab.domain.memories import memory_scope
from cvi_lab.stages.memory import MemoryExtractor, Utterance
from cvi_lab.store import Store

log = logging.getLogger(__name__)


def recall_memories(cfg: Any, store: Store, persona: dict[str, Any], conversation: dict[str, Any]) -> dict[str, Any]:
    """The persona as the call's runtime gets it: its context followed by the newest memories of the call's
    stores (`memory.recall` of them, under `memory.heading`, each worded by `memory.item`); the stored persona
    is not changed. Unchanged without the `memory` group or without memories."""
    if "memory" not in cfg or cfg["memory"] is None:
        return persona
    settings = plain(cfg["memory"])
    memories = store.recall(memory_scope(conversation, persona), int(settings["recall"]))
    if not memories:
        return persona
    block = "\n".join([settings["heading"], *(settings["item"].format(text=m["text"]) for m in memories)])
    context = "\n\n".join(p for p in ((persona.get("context") or "").strip(), block) if p)
    return {**persona, "context": context}


class MemoryKeeper:
    """What ended calls leave for their memory stores (an end listener of the manager)."""

    def __init__(self, store: Store, extractor: MemoryExtractor, keep_per_store: int) -> None:
        self.store, self.extractor, self.keep_per_store = store, extractor, int(keep_per_store)

    @classmethod
    def from_config(cls, cfg: Any, store: Store) -> "MemoryKeeper | None":
        """From the root config's `memory` group; None when the root has none."""
        if "memory" not in cfg or cfg["memory"] is None:
            return None
        memory = plain(cfg["memory"])
        return cls(store, instantiate(memory["extractor"], _convert_="all"), memory["keep_per_store"])

    async def remember(self, conversation_id: str, reason: str) -> int:
        """What the ended call leaves for its memory stores; returns how many memories were added."""
        record = self.store.get_conversation(conversation_id)
        if record is None:
            return 0
        persona = self.store.get_persona(record["persona_id"]) or {}
        tags = memory_scope(record, persona)
        if not tags:
            return 0
        utterances = [Utterance("user" if e["properties"].get("role") == "user" else "replica",
                                str(e["properties"].get("speech") or ""))
                      for e in self.store.events(conversation_id) if e["event_type"] == "conversation.utterance"]
        kept = await asyncio.to_thread(self.extractor.extract, utterances)
        items = [(m.kind, m.text) for m in kept]
        added = sum(self.store.add_memories(tag, conversation_id, items, self.keep_per_store) for tag in tags)
        log.info("conversation %s (%s): %d memories for %s", conversation_id, reason, added, ", ".join(tags))
        return added
