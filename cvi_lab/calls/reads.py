"""What the API reads of conversations: records (live usage filled in), per-turn metrics, transcripts.

Why apart from the manager: reads only look at the store and the live calls; the manager's own job is the
lifecycle (create, presence, timers, end). `ConversationManager` inherits these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cvi_lab.domain.conversation import Conversation, TurnRecord
from cvi_lab.domain.errors import NotFound

if TYPE_CHECKING:
    from cvi_lab.calls.call import Call
    from cvi_lab.store import Store


class ConversationReads:
    store: "Store"
    live: "dict[str, Call]"

    def get(self, conversation_id: str, verbose: bool = False) -> dict[str, Any]:
        record = self.store.get_conversation(conversation_id)
        if record is None:
            raise NotFound(f"conversation_id {conversation_id!r} not found", field="conversation_id")
        return self._public(record, verbose)

    def list(self, limit: int, page: int, status: str | None) -> dict[str, Any]:
        rows, total = self.store.list_conversations(limit=limit, page=page, status=status)
        return {"data": [self._public(r, False) for r in rows], "total_count": total}

    def _public(self, record: dict[str, Any], verbose: bool) -> dict[str, Any]:
        call = self.live.get(record["conversation_id"])
        if call is not None and not call.ending:
            record["usage_seconds"] = call.elapsed()
        record["usage_seconds"] = round(float(record.get("usage_seconds") or 0.0), 3)
        if verbose:
            record["events"] = self.store.events(record["conversation_id"])
        return Conversation.model_validate(record).model_dump(exclude={"events"} if not verbose else set())

    def turns(self, conversation_id: str) -> dict[str, Any]:
        """`{"data": [{turn_idx, metrics, created_at}], "total_count"}`: the stored per-turn metrics."""
        if self.store.get_conversation(conversation_id) is None:
            raise NotFound(f"conversation_id {conversation_id!r} not found", field="conversation_id")
        rows = self.store.turn_metrics(conversation_id)
        return {"data": [TurnRecord.model_validate(r).model_dump() for r in rows], "total_count": len(rows)}

    def transcript(self, conversation_id: str, system_message: str | None) -> list[dict[str, str]]:
        """[{role, content}]: `system_message` first (what the LLM saw; see `Call.system_message`), then the
        stored utterances (the shape of application.transcription_ready)."""
        out: list[dict[str, str]] = []
        if system_message is not None:
            out.append({"role": "system", "content": system_message})
        for ev in self.store.events(conversation_id):
            if ev["event_type"] != "conversation.utterance":
                continue
            role = ev["properties"].get("role")
            speech = ev["properties"].get("speech", "")
            out.append({"role": "assistant" if role in ("replica", "assistant") else "user", "content": speech})
        return out
