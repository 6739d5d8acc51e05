"""Shared request-model rules: strict JSON types, unknown fields refused, sizes capped by conf limits.

Why a context: the caps (text length, timeouts) are configuration (`server.limits`), so request models read
them from the pydantic validation context instead of hard-coding them; `DEFAULT_LIMITS` applies without one.
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping
from urllib.parse import urlparse

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, model_validator

DEFAULT_LIMITS: dict[str, int] = {
    "max_text_chars": 100_000,
    "max_name_chars": 256,
    "max_call_duration_s": 86_400,
    "max_timeout_s": 86_400,
    "max_participants": 64,
}


def limit(info: ValidationInfo, key: str) -> int:
    ctx = info.context or {}
    limits: Mapping[str, Any] = ctx.get("limits") or {}
    return int(limits.get(key, DEFAULT_LIMITS[key]))


def _check_text(value: str, info: ValidationInfo) -> str:
    cap = limit(info, "max_text_chars")
    if len(value) > cap:
        raise ValueError(f"is {len(value)} characters long; at most {cap} are accepted")
    return value


def _check_name(value: str, info: ValidationInfo) -> str:
    cap = limit(info, "max_name_chars")
    if len(value) > cap:
        raise ValueError(f"is {len(value)} characters long; at most {cap} are accepted")
    return value


def _check_url(value: str, info: ValidationInfo) -> str:
    _check_text(value, info)
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{value[:80]!r} is not an http(s) URL; accepted: http://... or https://...")
    return value


Text = Annotated[str, AfterValidator(_check_text)]
Name = Annotated[str, AfterValidator(_check_name)]
HttpUrl = Annotated[str, AfterValidator(_check_url)]


class RequestModel(BaseModel):
    """A JSON request body: strict types (no "3600" for 3600), unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        """`"field": null` is "not given" (SDKs send unset optionals as null); unknown keys are still refused."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None and k in cls.model_fields)}
        return data


class OpenSection(BaseModel):
    """A settings section that types its documented keys but passes other keys through to the stage config."""

    model_config = ConfigDict(extra="allow", strict=True)
