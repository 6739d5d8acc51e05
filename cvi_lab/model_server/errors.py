"""OpenAI's error body (`{"error": {"message", "type", "param", "code"}}`) for every refusal of the model
server, so clients written for OpenAI (and our own `openai_compatible` stages) read the reason."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

STREAMING = web.RequestKey("cvi_lab.streaming", bool)  # the response has started: an error can only cut it short
TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
         405: "invalid_request_error", 413: "invalid_request_error", 500: "server_error"}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"), "param": param,
                      "code": code}}
    return web.json_response(body, status=status)


class BadRequest(Exception):
    """A request field is missing or not accepted: a 400 naming the field and what it accepts."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.status, self.code = param, status, code

    def response(self) -> web.Response:
        return error_response(self.status, str(self), self.param, self.code)


def check_model(body_model: Any, accepted: list[str]) -> str:
    """The request's `model` if this server serves it under that name, else a 404 listing the names."""
    if not isinstance(body_model, str) or not body_model:
        raise BadRequest(f"model is required; this server accepts: {', '.join(accepted)}", "model")
    if body_model not in accepted:
        raise BadRequest(f"the model {body_model!r} does not exist here; this server accepts: {', '.join(accepted)}",
                         "model", status=404, code="model_not_found")
    return body_model


NOT_AN_OBJECT = "the body must be a JSON object with the route's fields (model, ...)"


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body, else a 400 saying a JSON object is expected."""
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest(NOT_AN_OBJECT) from None
    if not isinstance(body, dict):
        raise BadRequest(NOT_AN_OBJECT)
    return body
