"""Knowledge-base documents (SPEC §5): the create/update requests, the stored record, and the fields
conversations and personas (PALs) carry to choose documents for retrieval.

A document is fetched and cut into passages in the background: `status` goes started → processing → ready
(or error, with `error_message`); only ready documents take part in a call's retrieval.
"""

from __future__ import annotations

import re

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from cvi_lab.domain.validation import HttpUrl, Name, RequestModel, source, source_schema

DOCUMENT = "d"  # id prefix, like the hosted API's document ids
DocumentStatus = Literal["started", "processing", "ready", "error"]
RetrievalStrategy = Literal["speed", "balanced", "quality"]
DEFAULT_RETRIEVAL_STRATEGY: RetrievalStrategy = "balanced"  # SPEC §5
MAX_TAGS = 32
# What `document_url` accepts (calls/documents.py): a local path, an http(s) URL with a host, or a file: URL.
DocumentSource = source(source_schema("[Ff][Ii][Ll][Ee]"), "a local path, file:// or http(s)://")


def _few(value: list[str]) -> list[str]:
    if len(value) > MAX_TAGS:
        raise ValueError(f"has {len(value)} entries; at most {MAX_TAGS} are accepted")
    return value


Names = Annotated[list[Name], AfterValidator(_few)]  # document ids

# A tag (documents, memory stores): not empty, no comma (?tags= is comma-separated), no whitespace at either end
# (a query's entries are stripped of it), so every stored tag can be asked for.
TAG_PATTERN = r"^[^, \t\n\r\f\v]([^,]*[^, \t\n\r\f\v])?$"


def _tag(value: str) -> str:
    if not re.match(TAG_PATTERN, value):
        raise ValueError(f"{value[:40]!r} is not a tag: a tag is not empty, has no comma and no whitespace at "
                         "either end")
    return value


Tag = Annotated[Name, AfterValidator(_tag), Field(json_schema_extra={"pattern": TAG_PATTERN})]
Tags = Annotated[list[Tag], AfterValidator(_few)]
_BLANK = r"[ \t\n\r\f\v]*"
_ENTRY = rf"{_BLANK}[^, \t\n\r\f\v][^,]*"
# ?tags=a,b: comma-separated; blank entries are ignored; at most MAX_TAGS others (the pattern says exactly that).
TAGS_QUERY_PATTERN = (rf"^({_BLANK},)*({_BLANK}|{_ENTRY}(,({_BLANK},)*{_ENTRY}){{0,{MAX_TAGS - 1}}}(,{_BLANK})*)$")


def query_tags(raw: str | None) -> list[str]:
    """The tags of a `?tags=` query (see TAGS_QUERY_PATTERN); more than MAX_TAGS is a ValueError."""
    tags = [t.strip(" \t\n\r\f\v") for t in (raw or "").split(",")]
    tags = [t for t in tags if t]
    if len(tags) > MAX_TAGS:
        raise ValueError(f"has {len(tags)} entries; at most {MAX_TAGS} are accepted")
    return tags


class DocumentCreate(RequestModel):
    """POST /v2/documents body: `document_url` is an http(s) URL (fetched through the outbound policy) or a
    local path / file:// URL on the server."""

    document_url: DocumentSource
    document_name: Name | None = None
    callback_url: HttpUrl | None = None
    tags: Tags = Field(default_factory=list)
    properties: dict[str, str | int | float | bool] = Field(default_factory=dict)


class DocumentUpdate(RequestModel):
    """PATCH /v2/documents/{document_id} body: the name and the tags can change; the content cannot."""

    document_name: Name | None = None
    tags: Tags | None = None


class Document(BaseModel):
    """A stored document as the API returns it."""

    document_id: str
    document_name: str | None = None
    document_url: str
    status: DocumentStatus
    progress: int = 0  # percent processed
    error_message: str | None = None
    callback_url: str | None = None
    tags: list[str] = Field(default_factory=list)
    properties: dict[str, Any] = Field(default_factory=dict)
    passage_count: int = 0
    created_at: str
    updated_at: str


KNOWLEDGE_FIELDS = ("document_ids", "document_tags", "document_retrieval_strategy", "memory_stores")
"""What conversations and PALs take to choose what a call knows: documents by id, or every document with one of
the tags (`document_retrieval_strategy` trades passages in the prompt for latency), and the memory stores (tags,
domain/memories.py) it recalls and adds to. Declared on each model as `document_ids: Names | None`,
`document_tags: Tags | None`, `document_retrieval_strategy: RetrievalStrategy | None`,
`memory_stores: Tags | None`."""


def knowledge(model: BaseModel) -> dict[str, Any]:
    """The knowledge fields of a request model, as stored."""
    return {name: getattr(model, name) for name in KNOWLEDGE_FIELDS}


def knowledge_scope(conversation: dict[str, Any], persona: dict[str, Any]) -> tuple[list[str], list[str], str]:
    """(document ids, tags, strategy) of a call: the conversation's and its persona's documents together; the
    conversation's strategy, else the persona's, else the default."""
    ids = list(dict.fromkeys([*(conversation.get("document_ids") or []), *(persona.get("document_ids") or [])]))
    tags = list(dict.fromkeys([*(conversation.get("document_tags") or []), *(persona.get("document_tags") or [])]))
    strategy = (conversation.get("document_retrieval_strategy") or persona.get("document_retrieval_strategy")
                or DEFAULT_RETRIEVAL_STRATEGY)
    return ids, tags, strategy
