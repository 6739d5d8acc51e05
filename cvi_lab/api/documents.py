"""/v2/documents: the knowledge base. Create (processed in the background), list (by status, tags), get,
update the name and tags, delete."""

from __future__ import annotations

from aiohttp import web

from cvi_lab.api.errors import parse_body
from cvi_lab.api.routes import PAGING, Query, Route, one, paging, query_choice
from cvi_lab.calls.documents import DocumentService
from cvi_lab.domain.documents import MAX_TAGS, TAGS_QUERY_PATTERN, Document, DocumentCreate, DocumentUpdate, query_tags
from cvi_lab.domain.errors import InvalidInput

STATUSES = ("started", "processing", "ready", "error")


def _service(request: web.Request) -> DocumentService:
    return request.app["documents"]


def _public(record: dict) -> dict:
    return Document.model_validate(record).model_dump()


def _ctx(request: web.Request) -> dict:
    return request.app["manager"].validation_context()


async def create(request: web.Request) -> web.Response:
    req = await parse_body(request, DocumentCreate, _ctx(request))
    return web.json_response(_public(await _service(request).create(req)))


async def get(request: web.Request) -> web.Response:
    return web.json_response(_public(_service(request).get(request.match_info["document_id"])))


async def list_(request: web.Request) -> web.Response:
    limit, page = paging(request)
    status = query_choice(request, "status", STATUSES)
    try:
        tags = query_tags(one(request, "tags"))
    except ValueError as exc:
        raise InvalidInput(f"query parameter tags {exc}", "tags") from None
    rows, total = _service(request).store.list_documents(limit, page, status, tags)
    return web.json_response({"data": [_public(r) for r in rows], "total_count": total})


async def update(request: web.Request) -> web.Response:
    req = await parse_body(request, DocumentUpdate, _ctx(request))
    return web.json_response(_public(_service(request).update(request.match_info["document_id"], req)))


async def delete(request: web.Request) -> web.Response:
    _service(request).delete(request.match_info["document_id"])
    return web.Response(status=204)


ROUTES = [
    Route("POST", "/v2/documents", create, "Add a document to the knowledge base (from an http(s) URL or a "
          "local path; processed in the background)", "documents", request=DocumentCreate, response=Document),
    Route("GET", "/v2/documents", list_, "List documents", "documents", response=Document, list_of=True,
          query=[*PAGING, Query("status", "string", "filter by status", None, STATUSES),
                 Query("tags", "string", "comma-separated tags: documents with any of them (blank entries are "
                       f"ignored; at most {MAX_TAGS} others)", pattern=TAGS_QUERY_PATTERN)]),
    Route("GET", "/v2/documents/{document_id}", get, "Get a document", "documents", response=Document),
    Route("PATCH", "/v2/documents/{document_id}", update, "Change a document's name or tags", "documents",
          request=DocumentUpdate, response=Document),
    Route("DELETE", "/v2/documents/{document_id}", delete, "Delete a document and its passages", "documents",
          status=204),
]
