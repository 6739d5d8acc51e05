"""/v2/personas: create, get, list, patch (JSON Patch, RFC 6902), delete."""

from __future__ import annotations

import json

import jsonpatch
import jsonpointer
from aiohttp import web

from cvi_lab.api.errors import ApiError, parse_body, validate
from cvi_lab.api.routes import PAGING, Route, paging
from cvi_lab.calls.documents import check_document_ids
from cvi_lab.domain.errors import InvalidInput, NotFound
from cvi_lab.domain.ids import DEFAULT_PERSONA_ID, PERSONA, new_id
from cvi_lab.domain.persona import EDITABLE_FIELDS, Persona, PersonaCreate
from cvi_lab.store import Store

JSON_PATCH_SCHEMA = {
    "type": "array",
    "description": "RFC 6902 JSON Patch over the persona's editable fields",
    "items": {
        "type": "object",
        "required": ["op", "path"],
        "properties": {
            "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
            "path": {"type": "string", "example": "/system_prompt"},
            "value": {},
            "from": {"type": "string"},
        },
    },
}


def _store(request: web.Request) -> Store:
    return request.app["store"]


def _ctx(request: web.Request) -> dict:
    return request.app["manager"].validation_context()


def _public(record: dict) -> dict:
    return Persona.model_validate(record).model_dump()


def _get(store: Store, persona_id: str) -> dict:
    record = store.get_persona(persona_id)
    if record is None:
        raise NotFound(f"persona_id {persona_id!r} not found", field="persona_id")
    return record


def _check_replica(store: Store, persona: PersonaCreate) -> None:
    check_document_ids(store, persona.document_ids)
    rid = persona.default_replica_id
    if rid and store.get_replica(rid) is None:
        raise InvalidInput(f"default_replica_id {rid!r} is not a known replica", field="default_replica_id")


async def create(request: web.Request) -> web.Response:
    store = _store(request)
    persona = await parse_body(request, PersonaCreate, _ctx(request))
    _check_replica(store, persona)
    return web.json_response(_public(store.insert_persona(new_id(PERSONA), persona.document())))


async def get(request: web.Request) -> web.Response:
    return web.json_response(_public(_get(_store(request), request.match_info["persona_id"])))


async def list_(request: web.Request) -> web.Response:
    limit, page = paging(request)
    rows, total = _store(request).list_personas(limit, page)
    return web.json_response({"data": [_public(r) for r in rows], "total_count": total})


async def patch(request: web.Request) -> web.Response:
    store = _store(request)
    record = _get(store, request.match_info["persona_id"])
    raw = await request.read()
    try:
        ops = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})"[:300]) from None
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise ApiError(400, "the body must be a JSON Patch (RFC 6902): a list of {op, path, value} objects")
    if not ops:
        raise ApiError(400, "the JSON Patch is empty; give at least one operation")
    document = {k: record.get(k) for k in EDITABLE_FIELDS}
    try:
        patched = jsonpatch.JsonPatch(ops).apply(document)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError, ValueError) as exc:
        raise ApiError(400, f"the JSON Patch cannot be applied: {exc}; editable paths: "
                            + ", ".join(f"/{k}" for k in EDITABLE_FIELDS)) from None
    persona = validate(patched, PersonaCreate, _ctx(request))
    _check_replica(store, persona)
    return web.json_response(_public(store.update_persona(record["persona_id"], persona.document())))


async def delete(request: web.Request) -> web.Response:
    store = _store(request)
    persona_id = request.match_info["persona_id"]
    if persona_id == DEFAULT_PERSONA_ID:
        raise InvalidInput(f"the default persona {persona_id!r} cannot be deleted", field="persona_id")
    if not store.delete_persona(persona_id):
        raise NotFound(f"persona_id {persona_id!r} not found", field="persona_id")
    return web.Response(status=204)


ROUTES = [
    Route("POST", "/v2/personas", create, "Create a persona", "personas", request=PersonaCreate, response=Persona),
    Route("GET", "/v2/personas", list_, "List personas", "personas", response=Persona, list_of=True, query=PAGING),
    Route("GET", "/v2/personas/{persona_id}", get, "Get a persona", "personas", response=Persona),
    Route("PATCH", "/v2/personas/{persona_id}", patch, "Edit a persona with a JSON Patch (RFC 6902)", "personas",
          request=JSON_PATCH_SCHEMA, response=Persona),
    Route("DELETE", "/v2/personas/{persona_id}", delete, "Delete a persona", "personas", status=204),
]
