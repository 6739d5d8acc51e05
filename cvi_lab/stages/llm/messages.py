"""Chat-message validation shared by the LLM backends: one wording for bad input everywhere."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from cvi_lab.stages.base import ChatMessage, StageInputError

ROLES = ("system", "user", "assistant", "tool")


def normalize_messages(messages: Sequence[ChatMessage | Mapping[str, Any]], who: str,
                       allow_system_only: bool = False) -> list[dict[str, str]]:
    """ChatMessage objects or {"role", "content"} dicts -> list of dicts; clear errors for bad input.
    `allow_system_only`: a prompt prefix to prime (no turn needs to have text yet)."""
    if isinstance(messages, (str, bytes)) or not messages:
        raise StageInputError(f"{who}: messages must be a non-empty list of chat messages (role + content)")
    out: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if isinstance(m, ChatMessage):
            role, content = m.role, m.content
        elif isinstance(m, Mapping):
            role, content = m.get("role"), m.get("content")
        else:
            raise StageInputError(f"{who}: message {i} is a {type(m).__name__}; give a ChatMessage or a "
                                  "{'role': ..., 'content': ...} dict")
        if role not in ROLES:
            raise StageInputError(f"{who}: message {i} has role {role!r}; accepted roles: {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise StageInputError(f"{who}: message {i} content must be a string, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    if not allow_system_only and not any(m["content"].strip() for m in out if m["role"] != "system"):
        raise StageInputError(f"{who}: no user/assistant message with text; give at least one non-empty turn")
    return out


def check_max_tokens(max_tokens: int | None, default: int, who: str) -> int:
    n = default if max_tokens is None else max_tokens
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise StageInputError(f"{who}: max_tokens {max_tokens!r} is not accepted; use a positive integer or None")
    return n
