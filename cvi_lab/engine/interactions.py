"""The data-channel protocol's inbound side (SPEC §3): what a message must look like before the engine acts.

Why separate: validation is pure (message in, (event_type, properties) or a ValueError with a message that
says what is accepted out), so it is tested without an engine; the engine only dispatches.
"""

from __future__ import annotations

import json

INTERACTIONS = {
    "conversation.echo",
    "conversation.respond",
    "conversation.interrupt",
    "conversation.overwrite_llm_context",
    "conversation.append_llm_context",
    "conversation.sensitivity",
    "conversation.tool_result",
    "conversation.set_emotion",
}
# conversation.sensitivity property -> EngineSettings.with_sensitivity keyword
SENSITIVITY_KEYS = {"participant_pause_sensitivity": "pause_sensitivity",
                    "participant_interrupt_sensitivity": "interrupt_sensitivity"}


def parse_interaction(message: object, conversation_id: str) -> tuple[str, dict]:
    """(event_type, properties) of a well-formed envelope; ValueError saying what is wrong otherwise."""
    if isinstance(message, (str, bytes)):
        try:
            message = json.loads(message)
        except ValueError:
            raise ValueError("message is not JSON; send an object with message_type, event_type, properties") from None
    if not isinstance(message, dict):
        raise ValueError("message must be a JSON object with message_type, event_type, properties")
    if message.get("message_type") != "conversation":
        raise ValueError(f"message_type {message.get('message_type')!r} is not accepted; use 'conversation'")
    event_type = message.get("event_type")
    if event_type not in INTERACTIONS:
        raise ValueError(f"event_type {event_type!r} is not accepted; accepted: {', '.join(sorted(INTERACTIONS))}")
    cid = message.get("conversation_id")
    if cid is not None and cid != conversation_id:
        raise ValueError(f"conversation_id {cid!r} does not match this conversation ({conversation_id})")
    props = message.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise ValueError(f"{event_type}: properties must be an object")
    return event_type, props


def text_prop(props: dict, key: str, allow_empty: bool = False) -> str:
    """A string property; empty only where allowed."""
    value = props.get(key, "" if allow_empty else None)
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ValueError(f"'{key}' must be a non-empty string")
    return value


def tool_result_props(props: dict) -> tuple[str | None, str | None, str]:
    """(tool_call_id, name, result as text) of a conversation.tool_result; the call is named by id or name."""
    call_id, name = props.get("tool_call_id"), props.get("name")
    for key, value in (("tool_call_id", call_id), ("name", name)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"conversation.tool_result: '{key}' must be a non-empty string")
    if call_id is None and name is None:
        raise ValueError("conversation.tool_result: give 'tool_call_id' (from conversation.tool_call) or 'name'")
    if "result" not in props:
        raise ValueError("conversation.tool_result: 'result' is required (a string or any JSON value)")
    result = props["result"]
    return call_id, name, result if isinstance(result, str) else json.dumps(result)
