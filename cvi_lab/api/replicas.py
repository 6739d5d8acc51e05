"""/v2/replicas: create (builds in the background), get, list, delete."""

from __future__ import annotations

from aiohttp import web

from cvi_lab.api.errors import parse_body
from cvi_lab.api.routes import PAGING, Route, paging
from cvi_lab.calls.replicas import ReplicaService
from cvi_lab.domain.errors import NotFound
from cvi_lab.domain.replica import Replica, ReplicaCreate


def _service(request: web.Request) -> ReplicaService:
    return request.app["replicas"]


def _public(record: dict) -> dict:
    return Replica.model_validate(record).model_dump()


async def create(request: web.Request) -> web.Response:
    req = await parse_body(request, ReplicaCreate, request.app["manager"].validation_context())
    return web.json_response(_public(await _service(request).create(req)))


async def get(request: web.Request) -> web.Response:
    replica_id = request.match_info["replica_id"]
    record = _service(request).store.get_replica(replica_id)
    if record is None:
        raise NotFound(f"replica_id {replica_id!r} not found", field="replica_id")
    return web.json_response(_public(record))


async def list_(request: web.Request) -> web.Response:
    limit, page = paging(request)
    rows, total = _service(request).store.list_replicas(limit, page)
    return web.json_response({"data": [_public(r) for r in rows], "total_count": total})


async def delete(request: web.Request) -> web.Response:
    await _service(request).delete(request.match_info["replica_id"])
    return web.Response(status=204)


ROUTES = [
    Route("POST", "/v2/replicas", create, "Create a replica from a face video or image", "replicas",
          request=ReplicaCreate, response=Replica),
    Route("GET", "/v2/replicas", list_, "List replicas", "replicas", response=Replica, list_of=True, query=PAGING),
    Route("GET", "/v2/replicas/{replica_id}", get, "Get a replica", "replicas", response=Replica),
    Route("DELETE", "/v2/replicas/{replica_id}", delete, "Delete a replica", "replicas", status=204),
]
