"""/v2/personas and /v2/pals (one resource, two vocabularies): create, get, list, patch (JSON Patch, RFC 6902), delete.

Stored under the older names; each route family answers, and takes JSON Patch paths, in its own vocabulary (the
body may use either name of a field: `PersonaCreate` merges them)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from cvi_lab.api import json_patch
from cvi_lab.api.errors import ApiError, parse_body, validate
from cvi_lab.api.routes import PAGING, Handler, Route, paging, speaking
from cvi_lab.calls.documents import check_document_ids
from cvi_lab.domain.errors import Conflict, DomainError, InvalidInput, NotFound
from cvi_lab.domain.ids import DEFAULT_PERSONA_ID, PERSONA, new_id
from cvi_lab.domain.persona import EDITABLE_FIELDS, Pal, Persona, PersonaCreate
from cvi_lab.domain.vocabulary import PALS, PERSONAS, Vocabulary
from cvi_lab.store import Store


def _store(request: web.Request) -> Store:
    return request.app["store"]


def _ctx(request: web.Request) -> dict:
    return request.app["manager"].validation_context()


def _public(record: dict, vocabulary: Vocabulary) -> dict:
    public = Persona.model_validate(record).model_dump()
    return Pal.model_validate(vocabulary.present(public)).model_dump() if vocabulary is PALS else public


def _get(store: Store, persona_id: str) -> dict:
    record = store.get_persona(persona_id)
    if record is None:
        raise NotFound(f"persona_id {persona_id!r} not found", field="persona_id")
    return record


def _editable(vocabulary: Vocabulary) -> dict[str, str]:
    return {k: vocabulary.name(k) for k in EDITABLE_FIELDS}


def _id(request: web.Request, vocabulary: Vocabulary) -> str:
    return request.match_info[vocabulary.name("persona_id")]


def _check_replica(store: Store, persona: PersonaCreate) -> None:
    check_document_ids(store, persona.document_ids)
    rid = persona.default_replica_id
    if rid and store.get_replica(rid) is None:
        raise NotFound(f"default_replica_id {rid!r} is not a known replica", field="default_replica_id")


async def create(request: web.Request, vocabulary: Vocabulary) -> web.Response:
    store = _store(request)
    persona = await parse_body(request, PersonaCreate, _ctx(request))
    _check_replica(store, persona)
    return web.json_response(_public(store.insert_persona(new_id(PERSONA), persona.document()), vocabulary))


async def get(request: web.Request, vocabulary: Vocabulary) -> web.Response:
    return web.json_response(_public(_get(_store(request), _id(request, vocabulary)), vocabulary))


async def list_(request: web.Request, vocabulary: Vocabulary) -> web.Response:
    limit, page = paging(request)
    rows, total = _store(request).list_personas(limit, page)
    return web.json_response({"data": [_public(r, vocabulary) for r in rows], "total_count": total})


async def patch(request: web.Request, vocabulary: Vocabulary) -> web.Response:
    store = _store(request)
    record = _get(store, _id(request, vocabulary))
    raw = await request.read()
    try:
        ops = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})"[:300]) from None
    fields = _editable(vocabulary)
    json_patch.check_operations(ops, PersonaCreate, fields, _ctx(request))
    patched = json_patch.apply(ops, vocabulary.present({k: record.get(k) for k in EDITABLE_FIELDS}))
    try:
        persona = validate(patched, PersonaCreate, _ctx(request))
    except DomainError as exc:
        raise json_patch.as_conflict(exc) from None
    _check_replica(store, persona)
    return web.json_response(_public(store.update_persona(record["persona_id"], persona.document()), vocabulary))


async def delete(request: web.Request, vocabulary: Vocabulary) -> web.Response:
    store = _store(request)
    persona_id = _id(request, vocabulary)
    if persona_id == DEFAULT_PERSONA_ID:
        raise Conflict(f"the default persona {persona_id!r} cannot be deleted", field="persona_id")
    if not store.delete_persona(persona_id):
        raise NotFound(f"persona_id {persona_id!r} not found", field="persona_id")
    return web.Response(status=204)


def routes(v: Vocabulary) -> list[Route]:
    """The persona routes in one vocabulary (`PERSONAS`: /v2/personas, `PALS`: /v2/pals)."""
    item = f"{v.path}/{{{v.name('persona_id')}}}"
    model = Pal if v is PALS else Persona

    def h(handler: Any) -> Handler:
        return speaking(v, handler)

    bad_delete = f"the default {v.noun} cannot be deleted"
    param = v.name("persona_id")
    not_default = {param: {"type": "string", "not": {"const": DEFAULT_PERSONA_ID}, "description": bad_delete}}
    conflict = {409: "the JSON Patch conflicts with the stored record (see the request body's description)"}
    return [
        Route("POST", v.path, h(create), f"Create a {v.noun}", v.collection, request=PersonaCreate, response=model),
        Route("GET", v.path, h(list_), f"List {v.collection}", v.collection, response=model, list_of=True,
              query=PAGING),
        Route("GET", item, h(get), f"Get a {v.noun}", v.collection, response=model),
        Route("PATCH", item, h(patch), f"Edit a {v.noun} with a JSON Patch (RFC 6902)", v.collection,
              request=json_patch.patch_schema(PersonaCreate, _editable(v), v.noun), response=model,
              errors=conflict),
        Route("DELETE", item, h(delete), f"Delete a {v.noun} ({bad_delete}: 409)", v.collection, status=204,
              path_schemas=not_default, errors={409: bad_delete}),
    ]


ROUTES = [*routes(PERSONAS), *routes(PALS)]
