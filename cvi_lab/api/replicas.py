"""/v2/replicas and /v2/faces (one resource, two vocabularies): create (builds in the background), get, list, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cvi_lab.api.errors import parse_body
from cvi_lab.api.routes import PAGING, Handler, Route, paging, speaking
from cvi_lab.calls.replicas import ReplicaService
from cvi_lab.domain.errors import NotFound
from cvi_lab.domain.ids import DEFAULT_REPLICA_ID
from cvi_lab.domain.replica import Face, Replica, ReplicaCreate
from cvi_lab.domain.vocabulary import FACES, REPLICAS, Vocabulary


def _service(request: web.Request) -> ReplicaService:
    return request.app["replicas"]


def _public(record: dict, vocabulary: Vocabulary) -> dict:
    public = Replica.model_validate(record).model_dump()
    return Face.model_validate(vocabulary.present(public)).model_dump() if vocabulary is FACES else public


def _id(request: web.Request, vocabulary: Vocabulary) -> str:
    return request.match_info[vocabulary.name("replica_id")]


async def create(request: web.Request, vocabulary: Vocabulary) -> web.Response:
    req = await parse_body(request, ReplicaCreate, request.app["manager"].validation_context())
    return web.json_response(_public(await _service(request).create(req), vocabulary))


async def get(request: web.Request, vocabulary: Vocabulary) -> web.Response:
    replica_id = _id(request, vocabulary)
    record = _service(request).store.get_replica(replica_id)
    if record is None:
        raise NotFound(f"replica_id {replica_id!r} not found", field="replica_id")
    return web.json_response(_public(record, vocabulary))


async def list_(request: web.Request, vocabulary: Vocabulary) -> web.Response:
    limit, page = paging(request)
    rows, total = _service(request).store.list_replicas(limit, page)
    return web.json_response({"data": [_public(r, vocabulary) for r in rows], "total_count": total})


async def delete(request: web.Request, vocabulary: Vocabulary) -> web.Response:
    await _service(request).delete(_id(request, vocabulary))
    return web.Response(status=204)


def routes(v: Vocabulary) -> list[Route]:
    """The replica routes in one vocabulary (`REPLICAS`: /v2/replicas, `FACES`: /v2/faces)."""
    item = f"{v.path}/{{{v.name('replica_id')}}}"
    model = Face if v is FACES else Replica

    def h(handler: Any) -> Handler:
        return speaking(v, handler)

    bad_delete = f"the default {v.noun} cannot be deleted"
    return [
        Route("POST", v.path, h(create), f"Create a {v.noun} from a face video or image", v.collection,
              request=ReplicaCreate, response=model),
        Route("GET", v.path, h(list_), f"List {v.collection}", v.collection, response=model, list_of=True,
              query=PAGING),
        Route("GET", item, h(get), f"Get a {v.noun}", v.collection, response=model),
        Route("DELETE", item, h(delete), f"Delete a {v.noun} ({bad_delete}: 409)", v.collection, status=204,
              errors={409: bad_delete},
              path_schemas={v.name("replica_id"): {"type": "string", "not": {"const": DEFAULT_REPLICA_ID},
                                                   "description": bad_delete}}),
    ]


ROUTES = [*routes(REPLICAS), *routes(FACES)]
