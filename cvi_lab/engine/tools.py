"""Tool calls: how the LLM is told about the tools, and how its reply is read back as a call.

Why separate: the instruction block in the system message and the parser of the reply are two halves of one
convention (reply with only a JSON object, or Hermes-style `<tool_call>...</tool_call>`); they change together.
A tool call is not spoken: the engine turns it into a `conversation.tool_call` event for the application.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

TOOL_CALL_OPENINGS = ("{", "<tool_call>")


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as the event carries it


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
