"""/openapi.json, generated from the route table and the pydantic models."""

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


def build_openapi(routes: list[Route]) -> dict[str, Any]:
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

    error = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    paths: dict[str, Any] = {}
    for r in routes:
        op: dict[str, Any] = {"summary": r.summary, "tags": [r.tag], "operationId": f"{r.method.lower()}_{r.path}",
                              "security": [{"apiKey": []}]}
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in re.findall(r"{(\w+)}", r.path)]
        for q in r.query:
            schema: dict[str, Any] = {"type": q.type}
            if q.default is not None:
                schema["default"] = q.default
            if q.enum:
                schema["enum"] = list(q.enum)
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
        op["responses"] = {str(r.status): ok, "400": error, "401": error, "404": error}
        if r.method == "POST" and r.path == "/v2/conversations":
            op["responses"]["429"] = error
        # --- send-app-message (api/app_messages.py): rate limited per conversation ---
        if r.method == "POST" and r.path.endswith("/send-app-message"):
            op["responses"]["429"] = error
        # --- end send-app-message ---
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "cvi-lab API", "version": cvi_lab.__version__,
                 "description": "Local twin of the hosted CVI API (/v2): conversations, personas, replicas."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
    }
