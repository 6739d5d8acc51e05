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
    minimum: int | None = None
    maximum: int | str | None = None  # a number, or a key of server.limits
    pattern: str | None = None
    max_length: int | str | None = None  # a number, or a key of server.limits


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
    path_schemas: dict[str, dict] = field(default_factory=dict)  # path parameter -> its JSON schema (default: string)
    errors: dict[int, str] = field(default_factory=dict)  # route-specific error statuses -> when


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


def one(request: web.Request, name: str) -> str | None:
    """The query parameter's value; given more than once (an array where one value is documented) is refused."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ApiError(400, f"query parameter {name} is given {len(values)} times; give it once", name)
    return values[0] if values else None


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = one(request, name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.lstrip("-").isdigit():
        raise ApiError(400, f"query parameter {name}={raw[:40]!r} is not an integer; accepted: {lo}..{hi}", name)
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name}={raw[:40]!r} is not an integer; accepted: {lo}..{hi}", name) from None
    if not lo <= value <= hi:
        raise ApiError(400, f"query parameter {name}={value} is out of range; accepted: {lo}..{hi}", name)
    return value


def query_bool(request: web.Request, name: str) -> bool:
    raw = one(request, name)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise ApiError(400, f"query parameter {name}={raw[:40]!r} is not accepted; accepted: true, false", name)
    return raw == "true"


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = one(request, name)
    if raw is None:
        return None
    if raw not in choices:
        raise ApiError(400, f"query parameter {name}={raw[:40]!r} is not accepted; accepted: {', '.join(choices)}", name)
    return raw


MAX_PAGE = 10**9
PAGING = [Query("limit", "integer", "page size", 10, minimum=1, maximum="max_page_size"),
          Query("page", "integer", "1-based page number", 1, minimum=1, maximum=MAX_PAGE)]


def paging(request: web.Request) -> tuple[int, int]:
    max_page = int(request.app["settings"]["server"]["limits"]["max_page_size"])
    limit, page = PAGING
    return (query_int(request, "limit", limit.default, 1, max_page),
            query_int(request, "page", page.default, 1, MAX_PAGE))
