"""/v2/conversations: create (starts the call), get, list, end, delete."""

from __future__ import annotations

from aiohttp import web

from cvi_lab.api.errors import parse_body
from cvi_lab.api.routes import PAGING, Query, Route, paging, query_bool, query_choice
from cvi_lab.calls.manager import ConversationManager
from cvi_lab.domain.conversation import (
    Conversation, ConversationCreate, ConversationCreated, ShutdownReason, TurnRecord,
)


def _manager(request: web.Request) -> ConversationManager:
    return request.app["manager"]


async def create(request: web.Request) -> web.Response:
    manager = _manager(request)
    req = await parse_body(request, ConversationCreate, manager.validation_context())
    return web.json_response(await manager.create(req))


async def get(request: web.Request) -> web.Response:
    verbose = query_bool(request, "verbose")
    return web.json_response(_manager(request).get(request.match_info["conversation_id"], verbose=verbose))


async def list_(request: web.Request) -> web.Response:
    limit, page = paging(request)
    status = query_choice(request, "status", ("active", "ended"))
    return web.json_response(_manager(request).list(limit, page, status))


async def turns(request: web.Request) -> web.Response:
    return web.json_response(_manager(request).turns(request.match_info["conversation_id"]))


async def end(request: web.Request) -> web.Response:
    manager = _manager(request)
    return web.json_response(await manager.end(request.match_info["conversation_id"], ShutdownReason.END_ENDPOINT))


async def delete(request: web.Request) -> web.Response:
    await _manager(request).delete(request.match_info["conversation_id"])
    return web.Response(status=204)


# Hosts sharing a store (README "Several hosts, one store"): an end for a call another host runs goes to it
ELSEWHERE_UNAVAILABLE = ("the call runs on another host sharing the store (server.hosts), which did not answer the "
                         "forwarded end in time or refused it; retry")

ROUTES = [
    Route("POST", "/v2/conversations", create, "Create a conversation (starts the call at once)", "conversations",
          request=ConversationCreate, response=ConversationCreated,
          errors={400: "bad input (the message names the field and what is accepted); also, decided by the stored "
                       "records (SPEC §1, §5): a persona without default_replica_id and no replica given (field "
                       "persona.default_replica_id), a persona whose layers.transport is not one this server "
                       "provides (field layers.transport.transport_type)",
                  409: "the replica is not built yet, or its build failed (status not 'completed')",
                  429: "all concurrency spots are taken (User has reached maximum concurrent conversations)",
                  503: "the server is shutting down, or the call could not start"}),
    Route("GET", "/v2/conversations", list_, "List conversations", "conversations", response=Conversation,
          list_of=True, query=[*PAGING, Query("status", "string", "filter by status", None, ("active", "ended"))]),
    Route("GET", "/v2/conversations/{conversation_id}", get, "Get a conversation", "conversations",
          response=Conversation, query=[Query("verbose", "boolean", "include events", False)]),
    Route("GET", "/v2/conversations/{conversation_id}/turns", turns,
          "Per-turn metrics of a conversation (latency marks, stage durations, LLM/TTS figures)", "conversations",
          response=TurnRecord, list_of=True),
    Route("POST", "/v2/conversations/{conversation_id}/end", end, "End a conversation (idempotent)",
          "conversations", response=Conversation, errors={503: ELSEWHERE_UNAVAILABLE}),
    Route("DELETE", "/v2/conversations/{conversation_id}", delete, "Delete a conversation", "conversations",
          status=204, errors={503: ELSEWHERE_UNAVAILABLE}),
]
