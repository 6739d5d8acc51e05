"""Tool calls: how the LLM is told about the tools, and how its reply is read back as a call.

Why separate: the instruction block in the system message and the parser of the reply are two halves of one
convention (reply with only a JSON object, or Hermes-style `<tool_call>...</tool_call>`); they change together.
A tool call is not spoken: the engine turns it into a `conversation.tool_call` event (with a `tool_call_id`)
for the application, and keeps it pending until a `conversation.tool_result` closes it (`PendingToolCalls`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Sequence

TOOL_CALL_OPENINGS = ("{", "<tool_call>")


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as the event carries it
    tool_call_id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:16]}")


def tool_instructions(tools: Sequence[dict]) -> str:
    """The system-message block that lists the tools and the reply convention ("" without tools)."""
    if not tools:
        return ""
    specs = [t.get("function", t) for t in tools]
    return (
        "You can call these tools. To call one, reply with only a JSON object "
        '{"name": <tool name>, "arguments": {...}}.\n' + json.dumps(specs)
    )


def opens_tool_call(head: str) -> bool:
    """The start of a reply (leading pieces) opens a tool call rather than speech."""
    return head.lstrip().startswith(TOOL_CALL_OPENINGS)


def parse_tool_call(text: str) -> ToolCall:
    """The call in a reply that opened one; ValueError (with the text) if it cannot be read."""
    raw = text.strip().removeprefix("<tool_call>").removesuffix("</tool_call>").strip()
    try:
        call = json.loads(raw)
        name = call.get("name") or call.get("tool")
        arguments = call.get("arguments", call.get("parameters", {}))
    except (ValueError, AttributeError):
        name = None
    if not isinstance(name, str):
        raise ValueError(f"the LLM produced an unreadable tool call: {raw[:200]}")
    return ToolCall(name, arguments if isinstance(arguments, str) else json.dumps(arguments))


class PendingToolCalls:
    """The calls the application has not answered yet, by id (in the order they were made)."""

    def __init__(self) -> None:
        self._calls: dict[str, ToolCall] = {}

    def add(self, call: ToolCall) -> None:
        self._calls[call.tool_call_id] = call

    def take(self, tool_call_id: str | None, name: str | None) -> ToolCall:
        """Remove and return the call a result answers: by id, else the latest pending call of that name."""
        if tool_call_id is not None:
            call = self._calls.get(tool_call_id)
            if call is not None and name is not None and call.name != name:
                raise ValueError(f"conversation.tool_result: tool_call_id {tool_call_id!r} is a call of "
                                 f"{call.name!r}, not {name!r}")
        else:
            call = next((c for c in reversed(self._calls.values()) if c.name == name), None)
        if call is None:
            raise ValueError(f"conversation.tool_result: no pending tool call with "
                             f"{'tool_call_id ' + repr(tool_call_id) if tool_call_id else 'name ' + repr(name)}; "
                             f"pending: {self.describe() or 'none'}")
        del self._calls[call.tool_call_id]
        return call

    def describe(self) -> str:
        return ", ".join(f"{c.tool_call_id} ({c.name})" for c in self._calls.values())
