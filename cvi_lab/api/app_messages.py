"""POST /v2/conversations/{id}/send-app-message (SPEC §5): one interaction envelope into a live call.

Why a route of its own: the body is not a resource but one data-channel message (SPEC §3), and it must be
handled exactly as if it came over the data channel, so it goes through the same endpoint → runtime call
(`ConversationManager.app_message`); what the runtime refuses comes back as the 400's message, and the same
refusal reaches the data channel as a `conversation.error` event. Rate limited per conversation
(`server.limits.app_messages_per_window` per `app_messages_window_s`, 429 beyond).
"""

from __future__ import annotations

import json
from typing import Literal

from aiohttp import web
from pydantic import BaseModel

from cvi_lab.api.errors import ApiError
from cvi_lab.api.routes import Route
from cvi_lab.calls.manager import ConversationManager
from cvi_lab.engine.interactions import INTERACTIONS

PATH = "/v2/conversations/{conversation_id}/send-app-message"

# What the server enforces on the envelope (the properties of each event type are the runtime's to check: 400).
ENVELOPE_SCHEMA = {
    "type": "object",
    "required": ["message_type", "event_type"],
    "properties": {
        "message_type": {"type": "string", "enum": ["conversation"]},
        "event_type": {"type": "string", "enum": sorted(INTERACTIONS)},
        "conversation_id": {"type": "string", "description": "if given, the conversation of the path"},
        "properties": {"type": ["object", "null"], "description": "the event's properties (SPEC §3, §5)"},
    },
    "description": "one interaction envelope, as sent over the data channel",
}


class AppMessageDelivered(BaseModel):
    """The message was applied to the live call."""

    conversation_id: str
    status: Literal["delivered"]


async def send_app_message(request: web.Request) -> web.Response:
    manager: ConversationManager = request.app["manager"]
    raw = await request.read()
    try:
        message = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})"[:300]) from None
    if not isinstance(message, dict):
        raise ApiError(400, "the request body must be one interaction envelope: a JSON object with message_type "
                            "'conversation', event_type and properties")
    return web.json_response(await manager.app_message(request.match_info["conversation_id"], message))


ROUTES = [
    Route("POST", PATH, send_app_message,
          "Send one interaction to a live conversation, as over its data channel (rate limited: 429)",
          "conversations", request=ENVELOPE_SCHEMA, response=AppMessageDelivered,
          errors={400: "a malformed envelope, a message the engine refuses (its reason is the message), or a "
                       "conversation that is not live (ended, test_mode), as the hosted API answers",
                  409: "this server runs no runtime (server.runtimes is empty), so no call takes interactions",
                  429: "more app messages in the window than server.limits.app_messages_per_window"}),
]
