"""/openapi.json, generated from the route table and the pydantic models, with the configured limits and the
language table filled in: the document states every bound, type, enum and error status the server enforces."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import cvi_lab
from cvi_lab.api.routes import Route

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "what was wrong and what is accepted"},
        "message": {"type": "string", "description": "the same text (clients of the hosted API read either)"},
        "status": {"type": "integer"},
        "field": {"type": "string", "description": "the offending field, when there is one"},
    },
}


# Error statuses every /v2 operation can answer, and when.
COMMON_ERRORS = {400: "bad input: the message names the field and what is accepted",
                 401: "the x-api-key header is missing or not valid", 404: "an id that names no record"}
BODY_ERRORS = {413: "the body is larger than server.limits.max_body_bytes"}


def _fill(node: Any, limits: dict[str, Any], languages: list[str]) -> Any:
    """Replace `"$limits.<key>"` and `"$languages"` placeholders with the configured values."""
    if isinstance(node, dict):
        return {k: _fill(v, limits, languages) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, limits, languages) for v in node]
    if isinstance(node, str) and node.startswith("$limits."):
        return int(limits[node.removeprefix("$limits.")])
    if node == "$languages":
        return list(languages)
    return node


def build_openapi(routes: list[Route], limits: dict[str, Any], languages: list[str]) -> dict[str, Any]:
    models: list[type[BaseModel]] = []
    for r in routes:
        for m in (r.request, r.response):
            if isinstance(m, type) and issubclass(m, BaseModel) and m not in models:
                models.append(m)
    _, top = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA

    def ref(m: type[BaseModel]) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{m.__name__}"}

    def error(when: str) -> dict[str, Any]:
        return {"description": when, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

    paths: dict[str, Any] = {}
    for r in routes:
        op: dict[str, Any] = {"summary": r.summary, "tags": [r.tag], "operationId": f"{r.method.lower()}_{r.path}",
                              "security": [{"apiKey": []}]}
        params = [{"name": n, "in": "path", "required": True, "schema": r.path_schemas.get(n, {"type": "string"})}
                  for n in re.findall(r"{(\w+)}", r.path)]
        for q in r.query:
            schema: dict[str, Any] = {"type": q.type}
            if q.default is not None:
                schema["default"] = q.default
            if q.enum:
                schema["enum"] = list(q.enum)
            if q.pattern is not None:
                schema["pattern"] = q.pattern
            if q.max_length is not None:
                schema["maxLength"] = int(limits[q.max_length]) if isinstance(q.max_length, str) else q.max_length
            if q.minimum is not None:
                schema["minimum"] = q.minimum
            if q.maximum is not None:
                schema["maximum"] = int(limits[q.maximum]) if isinstance(q.maximum, str) else q.maximum
            params.append({"name": q.name, "in": "query", "required": False, "description": q.description,
                           "schema": schema})
        if params:
            op["parameters"] = params
        if r.request is not None:
            body = ref(r.request) if isinstance(r.request, type) else r.request
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        if r.status == 204:
            ok: dict[str, Any] = {"description": "done, no content"}
        else:
            schema = ref(r.response) if r.response else {"type": "object"}
            if r.list_of:
                schema = {"type": "object", "required": ["data", "total_count"], "properties": {
                    "data": {"type": "array", "items": schema}, "total_count": {"type": "integer"}}}
            ok = {"description": "success", "content": {"application/json": {"schema": schema}}}
        errors = {**COMMON_ERRORS, **(BODY_ERRORS if r.request is not None else {}), **r.errors}
        op["responses"] = {str(r.status): ok, **{str(code): error(when) for code, when in sorted(errors.items())}}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return _fill({
        "openapi": "3.1.0",
        "info": {"title": "cvi-lab API", "version": cvi_lab.__version__,
                 "description": "Local twin of the hosted CVI API (/v2): conversations, personas (PALs), replicas (faces). "
                                "A known path with a method it does not have answers 405 with an Allow header."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
    }, limits, languages)
