"""/v2/personas and /v2/pals (one resource, two vocabularies): create, get, list, patch (JSON Patch, RFC 6902), delete.

Stored under the older names; each route family answers, and takes JSON Patch paths, in its own vocabulary (the
body may use either name of a field: `PersonaCreate` merges them)."""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import jsonpointer
from aiohttp import web

from cvi_lab.api.errors import ApiError, parse_body, validate
from cvi_lab.api.routes import PAGING, Handler, Route, paging, speaking
from cvi_lab.domain.errors import InvalidInput, NotFound
from cvi_lab.domain.ids import DEFAULT_PERSONA_ID, PERSONA, new_id
from cvi_lab.domain.persona import EDITABLE_FIELDS, Pal, Persona, PersonaCreate
from cvi_lab.domain.vocabulary import PALS, PERSONAS, Vocabulary
from cvi_lab.store import Store


def json_patch_schema(vocabulary: Vocabulary) -> dict[str, Any]:
    paths = [f"/{vocabulary.name(k)}" for k in EDITABLE_FIELDS]
    return {
        "type": "array",
        "minItems": 1,
        "description": f"RFC 6902 JSON Patch over the {vocabulary.noun}'s editable fields ({', '.join(paths)}); "
                       "the patched document must be a valid create body, else 400",
        "items": {
            "type": "object",
            "required": ["op", "path"],
            "properties": {
                "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
                "path": {"type": "string", "example": paths[1]},
                "value": {},
                "from": {"type": "string"},
            },
        },
    }


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


def _id(request: web.Request, vocabulary: Vocabulary) -> str:
    return request.match_info[vocabulary.name("persona_id")]


def _check_replica(store: Store, persona: PersonaCreate) -> None:
    rid = persona.default_replica_id
    if rid and store.get_replica(rid) is None:
        raise InvalidInput(f"default_replica_id {rid!r} is not a known replica", field="default_replica_id")


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
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise ApiError(400, "the body must be a JSON Patch (RFC 6902): a list of {op, path, value} objects")
    if not ops:
        raise ApiError(400, "the JSON Patch is empty; give at least one operation")
    document = vocabulary.present({k: record.get(k) for k in EDITABLE_FIELDS})
    try:
        patched = jsonpatch.JsonPatch(ops).apply(document)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError, ValueError) as exc:
        raise ApiError(400, f"the JSON Patch cannot be applied: {exc}; editable paths: "
                            + ", ".join(f"/{k}" for k in document)) from None
    persona = validate(patched, PersonaCreate, _ctx(request))
    _check_replica(store, persona)
    return web.json_response(_public(store.update_persona(record["persona_id"], persona.document()), vocabulary))


async def delete(request: web.Request, vocabulary: Vocabulary) -> web.Response:
    store = _store(request)
    persona_id = _id(request, vocabulary)
    if persona_id == DEFAULT_PERSONA_ID:
        raise InvalidInput(f"the default persona {persona_id!r} cannot be deleted", field="persona_id")
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
    return [
        Route("POST", v.path, h(create), f"Create a {v.noun}", v.collection, request=PersonaCreate, response=model),
        Route("GET", v.path, h(list_), f"List {v.collection}", v.collection, response=model, list_of=True,
              query=PAGING),
        Route("GET", item, h(get), f"Get a {v.noun}", v.collection, response=model),
        Route("PATCH", item, h(patch), f"Edit a {v.noun} with a JSON Patch (RFC 6902)", v.collection,
              request=json_patch_schema(v), response=model),
        Route("DELETE", item, h(delete), f"Delete a {v.noun} ({bad_delete}: 400)", v.collection, status=204),
    ]


ROUTES = [*routes(PERSONAS), *routes(PALS)]
