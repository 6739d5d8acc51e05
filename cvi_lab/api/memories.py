"""/v2/memories and /v2/memory_stores/{memory_store}: what calls with memory stores (tags) remembered. List (of one
store or all), get, delete one memory, delete every memory of a store. Memories are written only by calls that
end (calls/memories.py); there is no route that adds one."""

from __future__ import annotations

import re

from aiohttp import web

from cvi_lab.api.routes import PAGING, Query, Route, one, paging
from cvi_lab.domain.documents import TAG_PATTERN
from cvi_lab.domain.errors import InvalidInput, NotFound
from cvi_lab.domain.memories import Memory

TAG_SCHEMA = {"type": "string", "pattern": TAG_PATTERN, "maxLength": "$limits.max_name_chars"}


def _tag(request: web.Request, value: str | None, name: str) -> str | None:
    cap = int(request.app["settings"]["server"]["limits"]["max_name_chars"])
    if value is not None and (len(value) > cap or not re.match(TAG_PATTERN, value)):
        raise InvalidInput(f"{name} {value[:40]!r} is not a memory store tag; accepted: at most {cap} characters, "
                           "not empty, no comma, no whitespace at either end", name)
    return value


def _public(record: dict) -> dict:
    return Memory.model_validate(record).model_dump()


def _memory(request: web.Request) -> dict:
    memory_id = request.match_info["memory_id"]
    record = request.app["store"].get_memory(memory_id)
    if record is None:
        raise NotFound(f"memory_id {memory_id!r} not found", field="memory_id")
    return record


async def list_(request: web.Request) -> web.Response:
    limit, page = paging(request)
    store_tag = _tag(request, one(request, "memory_store"), "memory_store")
    rows, total = request.app["store"].list_memories(limit, page, store_tag)
    return web.json_response({"data": [_public(r) for r in rows], "total_count": total})


async def get(request: web.Request) -> web.Response:
    return web.json_response(_public(_memory(request)))


async def delete(request: web.Request) -> web.Response:
    request.app["store"].delete_memory(_memory(request)["memory_id"])
    return web.Response(status=204)


async def delete_store(request: web.Request) -> web.Response:
    tag = _tag(request, request.match_info["memory_store"], "memory_store")
    if not request.app["store"].delete_memory_store(tag):
        raise NotFound(f"memory_store {tag!r} has no memories", field="memory_store")
    return web.Response(status=204)


ROUTES = [
    Route("GET", "/v2/memories", list_, "List memories, newest first (of one memory store, or all)", "memories",
          response=Memory, list_of=True,
          query=[*PAGING, Query("memory_store", "string", "only this memory store's (a tag of memory_stores)",
                                pattern=TAG_PATTERN, max_length="max_name_chars")]),
    Route("GET", "/v2/memories/{memory_id}", get, "Get a memory", "memories", response=Memory),
    Route("DELETE", "/v2/memories/{memory_id}", delete, "Forget one memory", "memories", status=204),
    Route("DELETE", "/v2/memory_stores/{memory_store}", delete_store, "Forget every memory of a memory store",
          "memories", status=204, path_schemas={"memory_store": TAG_SCHEMA},
          errors={404: "the memory store has no memories"}),
]
