"""The route table: one list that both registers handlers and generates /openapi.json, so they cannot drift."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel

from cvi_lab.api.errors import ApiError
from cvi_lab.domain.errors import DomainError
from cvi_lab.domain.vocabulary import Vocabulary

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Query:
    name: str
    type: str  # "integer" | "string" | "boolean"
    description: str
    default: Any = None
    enum: tuple[str, ...] | None = None


@dataclass
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    request: type[BaseModel] | dict | None = None  # a model, or a raw JSON schema (JSON Patch)
    response: type[BaseModel] | None = None
    list_of: bool = False  # response is {"data": [response], "total_count"}
    status: int = 200
    query: list[Query] = field(default_factory=list)


def speaking(vocabulary: Vocabulary, handler: Callable[[web.Request, Vocabulary], Awaitable[web.StreamResponse]]) -> Handler:
    """`handler` bound to one vocabulary; its refusals are reworded in that vocabulary's field names."""

    async def bound(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request, vocabulary)
        except DomainError as exc:
            exc.message, exc.field = vocabulary.say(exc.message), vocabulary.say(exc.field)
            raise

    bound.__name__ = f"{handler.__name__}_{vocabulary.collection}"
    return bound


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name}={raw[:40]!r} is not an integer; accepted: {lo}..{hi}", name) from None
    if not lo <= value <= hi:
        raise ApiError(400, f"query parameter {name}={value} is out of range; accepted: {lo}..{hi}", name)
    return value


def query_bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0", ""):
        raise ApiError(400, f"query parameter {name}={raw[:40]!r} is not accepted; accepted: true, false", name)
    return raw in ("true", "1")


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    if raw not in choices:
        raise ApiError(400, f"query parameter {name}={raw[:40]!r} is not accepted; accepted: {', '.join(choices)}", name)
    return raw


def paging(request: web.Request) -> tuple[int, int]:
    max_page = int(request.app["settings"]["server"]["limits"].get("max_page_size", 100))
    return query_int(request, "limit", 10, 1, max_page), query_int(request, "page", 1, 1, 10**9)


PAGING = [Query("limit", "integer", "page size", 10), Query("page", "integer", "1-based page number", 1)]
