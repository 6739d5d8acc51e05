"""Knowledge-base documents: accept (the URL checked now: a 400), fetch and cut into passages in the background.

Why in the background: a download and its parsing take seconds; the record says where it is (`status`
started → processing → ready | error, `progress`), and a `callback_url` hears the outcome. URLs go through the
outbound policy (cvi_lab/net/safe_fetch.py); a local path or file:// URL is read from the server's disk.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from typing import Any, Mapping

from cvi_lab.calls.jobs import BackgroundJobs
from cvi_lab.calls.replicas import local_source
from cvi_lab.calls.webhooks import WebhookDeliverer
from cvi_lab.clock import Clock
from cvi_lab.domain.documents import DOCUMENT, DocumentCreate, DocumentUpdate
from cvi_lab.domain.errors import InvalidInput, NotFound
from cvi_lab.domain.ids import new_id
from cvi_lab.domain.timefmt import iso
from cvi_lab.net.safe_fetch import FetchError, is_loopback
from cvi_lab.stages.retrieval.text import UnsupportedDocument, detect_format, passages, to_text
from cvi_lab.store import Store

log = logging.getLogger(__name__)


class DocumentService:
    def __init__(self, store: Store, server_cfg: Mapping[str, Any], webhooks: WebhookDeliverer, clock: Clock) -> None:
        self.store, self.webhooks, self.clock = store, webhooks, clock
        cfg = server_cfg["documents"]
        self.max_bytes = int(cfg["max_bytes"])
        self.download_timeout_s = float(cfg["download_timeout_s"])
        self.passage_words = int(cfg["passage_words"])
        local = cfg["allow_local_paths"]
        self.allow_local_paths = is_loopback(str(server_cfg["host"])) if local is None else bool(local)
        self.jobs = BackgroundJobs()

    # ------------------------------------------------------------ API side
    async def create(self, req: DocumentCreate) -> dict[str, Any]:
        source = req.document_url.strip()
        if not source:
            raise InvalidInput("document_url is empty; give an http(s) URL, a file:// URL or a local path",
                               "document_url")
        path = self._local(source)
        if path is not None and not self.allow_local_paths:
            raise InvalidInput("document_url: this server reads no local paths (only a server bound to loopback "
                               "does: server.documents.allow_local_paths); give an http(s) URL", field="document_url")
        if path is not None and not path.is_file():
            raise NotFound(f"document_url: no file at {str(path)[:200]!r}", field="document_url")
        if path is None:
            await self.webhooks.outbound.check(source, "document_url")
        if req.callback_url:
            await self.webhooks.outbound.check(req.callback_url, "callback_url")
        document_id = new_id(DOCUMENT)
        record = self.store.insert_document(document_id, {
            "document_name": req.document_name or pathlib.PurePosixPath(source).name or document_id,
            "document_url": source, "status": "started", "progress": 0, "callback_url": req.callback_url,
            "tags": list(dict.fromkeys(req.tags)), "properties": req.properties,
        })
        self.jobs.start(self._process(document_id))
        return record

    def get(self, document_id: str) -> dict[str, Any]:
        record = self.store.get_document(document_id)
        if record is None:
            raise NotFound(f"document_id {document_id!r} not found", field="document_id")
        return record

    def update(self, document_id: str, req: DocumentUpdate) -> dict[str, Any]:
        self.get(document_id)
        fields = {k: v for k, v in {"document_name": req.document_name,
                                    "tags": None if req.tags is None else list(dict.fromkeys(req.tags))}.items()
                  if v is not None}
        if fields:
            self.store.update_document(document_id, **fields)
        return self.get(document_id)

    def delete(self, document_id: str) -> None:
        if not self.store.delete_document(document_id):
            raise NotFound(f"document_id {document_id!r} not found", field="document_id")

    async def drain(self, timeout: float | None = None) -> None:
        await self.jobs.drain(timeout)

    async def close(self) -> None:
        await self.jobs.close()

    # ------------------------------------------------------------ processing
    @staticmethod
    def _local(source: str) -> pathlib.Path | None:
        """The file a path or file: URL names; None for http(s) (DocumentCreate refuses every other scheme)."""
        try:
            return local_source(source)
        except InvalidInput as exc:  # the replicas' wording names train_video_url
            raise InvalidInput(exc.message.replace("train_video_url", "document_url"), field="document_url") from None

    async def _process(self, document_id: str) -> None:
        record = self.store.get_document(document_id)
        if record is None:
            return
        self.store.update_document(document_id, status="processing", progress=10)
        try:
            body, content_type = await self._read(record["document_url"])
            self.store.update_document(document_id, progress=50)
            fmt = detect_format(record["document_url"], content_type, body[:1024])
            found = await asyncio.to_thread(lambda: passages(to_text(body, fmt), self.passage_words))
            if not found:
                raise UnsupportedDocument("the document has no text")
        except asyncio.CancelledError:
            raise
        except (FetchError, UnsupportedDocument, OSError) as exc:
            self._finish(document_id, "error", error_message=f"document_url: {exc}"[:1000])
            return
        except Exception as exc:  # noqa: BLE001 - recorded on the document, never a crashed task
            log.exception("document %s processing failed", document_id)
            self._finish(document_id, "error", error_message=f"processing failed: {type(exc).__name__}: {exc}"[:1000])
            return
        if self.store.get_document(document_id) is None:  # deleted while processing
            return
        count = self.store.replace_passages(document_id, found)
        self._finish(document_id, "ready", passage_count=count, progress=100, error_message=None)

    async def _read(self, source: str) -> tuple[bytes, str | None]:
        path = local_source(source)
        if path is not None:
            size = (await asyncio.to_thread(path.stat)).st_size
            if size > self.max_bytes:
                raise FetchError(f"the file is larger than the {self.max_bytes} bytes accepted")
            return await asyncio.to_thread(path.read_bytes), None
        return await self.webhooks.outbound.fetch_bytes(source, max_bytes=self.max_bytes,
                                                        timeout_s=self.download_timeout_s)

    def _finish(self, document_id: str, status: str, **fields: Any) -> None:
        if not self.store.update_document(document_id, status=status, **fields):
            return
        record = self.store.get_document(document_id)
        if record and record.get("callback_url"):
            url = record["callback_url"]
            self.webhooks.send_payload(None, url, f"document.{status}", {
                "document_id": document_id, "status": status, "error_message": record.get("error_message"),
                "webhook_url": url, "timestamp": iso(self.clock.now()),
            })


def check_document_ids(store: Store, document_ids: list[str] | None) -> None:
    """A conversation or persona naming documents that do not exist is a 404 (tags may match none yet)."""
    missing = [d for d in document_ids or [] if store.get_document(d) is None]
    if missing:
        raise NotFound(f"document_ids: {', '.join(repr(m) for m in missing[:5])} not found; "
                           "create documents with POST /v2/documents", field="document_ids")
