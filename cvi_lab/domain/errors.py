"""Domain errors carry the HTTP-ish status they mean, so every layer above maps them the same way."""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses; `message` says what was wrong and what is accepted."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    status = 400
    code = "bad_request"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class LimitReached(DomainError):
    status = 429
    code = "too_many_requests"


class Unavailable(DomainError):
    status = 503
    code = "unavailable"
