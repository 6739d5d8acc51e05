"""Error mapping: every failure leaves as JSON `{"error", "message"}` with the right status, never a traceback.

Bad input is turned into 4xx by the request parsing (`parse_body`, `format_validation_error`); the last-resort
branch of the middleware (500) exists for bugs only, and counts them in `app["stats"]["internal_errors"]` so tests can
show that bad input never reaches it.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, TypeVar, get_args

from aiohttp import web
from pydantic import BaseModel, ValidationError

from cvi_lab.domain.errors import DomainError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

_REASONS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
            409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 429: "too_many_requests"}


def error_response(status: int, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message, "message": message, "status": status}
    if field:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


class ApiError(DomainError):
    """An HTTP-level refusal (auth, body, query) with its status."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message, field)
        self.status = status


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


def _accepted_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The field names accepted at the parent of `loc` (for "unknown field" messages)."""
    current: Any = model
    for part in loc[:-1]:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        ann = current.model_fields[part].annotation
        for arg in (get_args(ann) or (ann,)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
                break
        else:
            return None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def format_validation_error(exc: ValidationError, model: type[BaseModel]) -> ApiError:
    """The first problem, as a sentence naming the field and what is accepted."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(err["loc"])
    # Union members add their type name to the location ("hotwords.str"); drop those for the message.
    clean = tuple(p for p in loc if not (isinstance(p, str) and (p.startswith("function-") or p in (
        "str", "int", "bool", "list[str]", "list", "dict", "none", "literal"))))
    field = _loc(clean)
    etype = err["type"]
    if etype == "extra_forbidden":
        accepted = _accepted_fields(model, clean)
        hint = f"; accepted fields: {', '.join(accepted)}" if accepted else ""
        return ApiError(400, f"unknown field {field!r}{hint}", field)
    if etype == "missing":
        return ApiError(400, f"{field} is required", field)
    msg = re.sub(r"a valid dictionary or instance of \w+", "a JSON object", err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
        if not clean:  # a model-level rule; its message names the field itself
            return ApiError(400, msg, field)
    given = err.get("input")
    if etype.endswith("_type") or etype in ("literal_error", "enum", "bool_parsing", "int_parsing"):
        shown = json.dumps(given)[:60] if isinstance(given, (str, int, float, bool, type(None))) else type(given).__name__
        return ApiError(400, f"{field}: {msg} (got {shown})", field)
    return ApiError(400, f"{field}: {msg}", field)


async def parse_body(request: web.Request, model: type[M], context: dict[str, Any] | None = None) -> M:
    """Read and validate a JSON object body against `model` (strict types, unknown fields refused)."""
    raw = await request.read()  # raises 413 past client_max_size
    if not raw.strip():
        raise ApiError(400, "the request body is empty; a JSON object is required")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})"[:300]) from None
    return validate(data, model, context)


def validate(data: Any, model: type[M], context: dict[str, Any] | None = None) -> M:
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise format_validation_error(exc, model) from None


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return error_response(exc.status, exc.message, exc.field)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app["cfg"]["server"]["limits"]["max_body_bytes"]
        return error_response(413, f"the request body is larger than the {limit} bytes accepted")
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return error_response(405, f"method {request.method} is not allowed on {request.path}; allowed: {allowed}",
                              headers={"Allow": allowed})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            return error_response(404, f"no route {request.method} {request.path}")
        return error_response(exc.status, exc.text or exc.reason)
    except Exception:
        request.app["stats"]["internal_errors"] += 1
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(500, "internal error; the server log has the details")
