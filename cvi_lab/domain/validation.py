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
# What urlsplit refuses in a host (outside an IPv6 literal) and a user part: brackets, and the characters NFKC
# turns into one of / ? # @ : (urllib's "netloc contains invalid characters under NFKC normalization").
NETLOC_UNSAFE = (r"\[\]\u2047-\u2049\u2100\u2101\u2105\u2106\u2a74\ufe13\ufe16\ufe55\ufe56\ufe5f\ufe6b"
                 r"\uff03\uff0f\uff1a\uff1f\uff20")
# Whitespace str.strip() drops beyond ASCII's: never inside a URL or a source (so stripping a valid one is exact).
_UNICODE_SPACES = r"\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_H16 = "[0-9A-Fa-f]{1,4}"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_LS32 = f"({_H16}:{_H16}|{_OCTET}(\\.{_OCTET}){{3}})"


def _ipv6() -> str:
    """RFC 3986's IPv6address (every form Python's ipaddress parses; no zone id, no IPvFuture)."""
    def groups(n: int) -> str:
        return f"({_H16}:){{{n}}}"

    def head(n: int) -> str:  # [ *n( h16 ":" ) h16 ]
        return f"(({_H16}:){{0,{n}}}{_H16})?"
    forms = [f"{groups(6)}{_LS32}", f"::{groups(5)}{_LS32}", f"({_H16})?::{groups(4)}{_LS32}",
             f"{head(1)}::{groups(3)}{_LS32}", f"{head(2)}::{groups(2)}{_LS32}", f"{head(3)}::{_H16}:{_LS32}",
             f"{head(4)}::{_LS32}", f"{head(5)}::{_H16}", f"{head(6)}::"]
    return "(" + "|".join(f"({f})" for f in forms) + ")"


IPV6 = _ipv6()
# An http(s) URL with a host: the one rule for callback_url, base_url and http(s) sources, in the schema and in the
# check, and exactly what urlsplit parses (a bracketed host is an IPv6 address; a port 0-65535).
HTTP_URL_BODY = (rf"[Hh][Tt][Tt][Pp][Ss]?://([^/?#@{NETLOC_UNSAFE}\x00-\x20\x7f{_UNICODE_SPACES}]*@)?"  # user
                 rf"([^/?#@:{NETLOC_UNSAFE}\x00-\x20\x7f{_UNICODE_SPACES}]+|\[{IPV6}\])"  # host, or [IPv6]
                 r"(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
                 rf"([/?#][^\x00-\x20\x7f{_UNICODE_SPACES}]*)?")
HTTP_URL = f"^{HTTP_URL_BODY}$"

# Sources (a replica's train_video_url, a document's document_url): a local path, an http(s) URL, or a URL of one
# of a few more schemes. What str.strip() drops at the ends is allowed there; inside a path or file URL there are
# no control characters, no whitespace but the space, and nothing urlsplit would refuse (brackets and the
# characters above), so every source the schema accepts is one the server can parse.
_SPACES = r"\t\n\x0b\x0c\r\x1c-\x1f " + _UNICODE_SPACES
_EDGE = f"[{_SPACES}]*"
_SAFE = rf"[^\x00-\x20\x7f{_UNICODE_SPACES}{NETLOC_UNSAFE}]"
_PLAIN = f"{_SAFE}( *{_SAFE})*"  # safe characters with single or repeated spaces between them (one way to match)
_SCHEME_LIKE = r"^[\x00-\x20]*[A-Za-z][A-Za-z0-9+.-]+:"  # urlsplit strips leading C0 controls and spaces


def source_schema(*schemes: str) -> dict[str, Any]:
    """The JSON schema of a source; `schemes` are regexes of the other URL schemes taken (e.g. file)."""
    return {"anyOf": [
        {"allOf": [{"not": {"pattern": _SCHEME_LIKE}}, {"pattern": f"^{_EDGE}{_PLAIN}{_EDGE}$"}]},
        {"pattern": f"^{_EDGE}{HTTP_URL_BODY}{_EDGE}$"},
        *({"pattern": f"^{_EDGE}{scheme}:({_PLAIN})?{_EDGE}$"} for scheme in schemes)]}


def satisfies(schema: dict[str, Any], value: str) -> bool:
    """`value` against the string keywords used here (pattern, not, allOf, anyOf): the check IS the schema."""
    return ((("pattern" not in schema) or re.search(schema["pattern"], value) is not None)
            and not ("not" in schema and satisfies(schema["not"], value))
            and all(satisfies(s, value) for s in schema.get("allOf", []))
            and (("anyOf" not in schema) or any(satisfies(s, value) for s in schema["anyOf"])))


def source(schema: dict[str, Any], accepted: str) -> Any:
    """A source field's type: capped like Text, and held to `schema` (refused with `accepted` in the message)."""
    def check(value: str, info: ValidationInfo) -> str:
        _check_text(value, info)
        if not value.strip():
            raise ValueError(f"the source is empty; accepted: {accepted}")
        if not satisfies(schema, value):
            scheme = re.match(_SCHEME_LIKE, value)
            name = scheme.group(0).strip("\x00 ").rstrip(":").lower() if scheme else None
            if name and name not in ("http", "https") and not satisfies(schema, f"{value[:scheme.end()]}x"):
                raise ValueError(f"the scheme {name!r} is not accepted; accepted: {accepted}")
            raise ValueError(f"{value[:80]!r} is not accepted; accepted: {accepted} (a path or file URL without "
                             "control characters or brackets; an http(s) URL with a host urlsplit parses)")
        return value
    return Annotated[str, AfterValidator(check), Field(json_schema_extra={
        "maxLength": limit_ref("max_text_chars"), **schema})]


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
