"""Shared request-model rules: strict JSON types, unknown fields refused, sizes capped by conf limits.

Why a context: the caps (text length, timeouts) are configuration (`server.limits`), so request models read
them from the pydantic validation context instead of hard-coding them; `DEFAULT_LIMITS` applies without one.
The JSON schemas say the same: a cap appears as `"$limits.<key>"` (`limit_ref`), which the OpenAPI document
replaces with the configured number, and every rule checked here is written into the schema too.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Mapping

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator
from pydantic.json_schema import JsonSchemaValue

DEFAULT_LIMITS: dict[str, int] = {
    "max_text_chars": 100_000,
    "max_name_chars": 256,
    "max_call_duration_s": 86_400,
    "max_timeout_s": 86_400,
    "max_participants": 64,
}


def limit_ref(key: str) -> str:
    """A placeholder for a configured limit in a JSON schema (filled in by the OpenAPI document)."""
    return f"$limits.{key}"


# Not blank: a character other than ASCII whitespace (the same class in Python and ECMA-262 regexes).
NOT_BLANK = r"[^ \t\n\r\f\v]"
# An http(s) URL with a host: the one rule for callback_url and base_url, in the schema and in the check.
HTTP_URL = (r"^[Hh][Tt][Tt][Pp][Ss]?://([^/?#@\[\]\x00-\x20\x7f]*@)?"  # user info
            r"([^/?#@:\[\]\x00-\x20\x7f]+|\[[0-9A-Fa-f:.]+\])"  # host, or [IPv6]: what urlsplit parses
            r"(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"  # port 0-65535
            r"([/?#][^\x00-\x20\x7f]*)?$")


def not_blank(value: str | None) -> bool:
    return value is not None and re.search(NOT_BLANK, value) is not None


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
    if not re.match(HTTP_URL, value):
        raise ValueError(f"{value[:80]!r} is not an http(s) URL; accepted: http://host/... or https://host/...")
    return value


Text = Annotated[str, AfterValidator(_check_text), Field(json_schema_extra={"maxLength": limit_ref("max_text_chars")})]
Name = Annotated[str, AfterValidator(_check_name), Field(json_schema_extra={"maxLength": limit_ref("max_name_chars")})]
# A record id as a request names it: not empty ("" would silently mean "not given").
Id = Annotated[str, AfterValidator(_check_name), Field(min_length=1, json_schema_extra={
    "maxLength": limit_ref("max_name_chars")})]
HttpUrl = Annotated[str, AfterValidator(_check_url), Field(json_schema_extra={
    "maxLength": limit_ref("max_text_chars"), "pattern": HTTP_URL})]


def _integral(value: Any) -> Any:
    """JSON has one number type: 458.0 is the integer 458 (JSON Schema agrees); 458.5 and "458" are still refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Int = Annotated[int, BeforeValidator(_integral)]


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    if prop.get("type") == "null" or any(p.get("type") == "null" for p in prop.get("anyOf", [])):
        return prop
    described = {k: prop.pop(k) for k in ("description", "default", "title") if k in prop}
    return {"anyOf": [prop, {"type": "null"}], **described}


class RequestModel(BaseModel):
    """A JSON request body: strict types (no "3600" for 3600), unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", strict=True)
    # Cross-field rules the model checks, as JSON Schema keywords (a model with such a rule states it here).
    SCHEMA_RULES: ClassVar[list[dict[str, Any]]] = []

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        """`"field": null` is "not given" (SDKs send unset optionals as null); unknown keys are still refused."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None and k in cls.model_fields)}
        return data

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> JsonSchemaValue:
        """The schema as enforced: an optional field also takes null (= not given); the cross-field rules."""
        schema = handler.resolve_ref_schema(handler(core_schema))
        required = set(schema.get("required", []))
        schema["properties"] = {k: (v if k in required else _nullable(dict(v)))
                                for k, v in schema.get("properties", {}).items()}
        rules = cls.schema_rules()
        if rules:
            schema["allOf"] = rules
        return schema

    @classmethod
    def schema_rules(cls) -> list[dict[str, Any]]:
        return list(cls.SCHEMA_RULES)


class OpenSection(BaseModel):
    """A settings section that types its documented keys but passes other keys through to the stage config."""

    model_config = ConfigDict(extra="allow", strict=True)
