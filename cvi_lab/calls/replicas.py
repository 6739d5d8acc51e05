"""Replica builds: fetch the training source, run the configured builder in a thread, track status.

The builder is a dotted path in conf (`server.replica_builder`), with the contract
`build_replica(source, out_dir, progress) -> dict`, raising `ReplicaBuildError(message)` for sources it
refuses. Artifacts live under `<artifacts_dir>/replicas/<replica_id>/`. The default replica is built from
"builtin:..." the first time something needs its artifacts, then reused.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import pathlib
import shutil
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlparse

from cvi_lab.calls.jobs import BackgroundJobs
from cvi_lab.calls.webhooks import WebhookDeliverer
from cvi_lab.clock import Clock
from cvi_lab.domain.errors import Conflict, InvalidInput, NotFound
from cvi_lab.domain.ids import DEFAULT_REPLICA_ID, REPLICA, new_id
from cvi_lab.domain.replica import ReplicaCreate, progress_text
from cvi_lab.domain.timefmt import iso
from cvi_lab.net.safe_fetch import FetchError
from cvi_lab.store import Store

log = logging.getLogger(__name__)

Builder = Callable[[Any, pathlib.Path, Callable[[int], None]], dict]


def load_object(dotted: str) -> Any:
    """`package.module.attr` -> the object; ImportError/AttributeError say which part is missing."""
    module_name, _, attr = dotted.rpartition(".")
    if not module_name:
        raise ImportError(f"{dotted!r} is not a dotted path (package.module.name)")
    return getattr(importlib.import_module(module_name), attr)


def local_source(url: str) -> pathlib.Path | None:
    """The local file a source names (plain path or file:// URL), or None for http(s)/builtin sources."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https") or url.startswith("builtin:"):
        return None
    if parsed.scheme == "file":
        return pathlib.Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:
        raise InvalidInput(
            f"train_video_url scheme {parsed.scheme!r} is not accepted; accepted: a local path, file://, http://, https://",
            field="train_video_url",
        )
    return pathlib.Path(url).expanduser()


class ReplicaService:
    def __init__(self, store: Store, server_cfg: Mapping[str, Any], webhooks: WebhookDeliverer, clock: Clock) -> None:
        self.store = store
        self.webhooks = webhooks
        self.clock = clock
        self.builder_path = str(server_cfg.get("replica_builder"))
        self.artifacts_root = pathlib.Path(str(server_cfg.get("artifacts_dir"))) / "replicas"
        rcfg = server_cfg.get("replicas") or {}
        self.max_source_bytes = int(rcfg.get("max_source_bytes", 200 * 2**20))
        self.download_timeout_s = float(rcfg.get("download_timeout_s", 120))
        self.jobs = BackgroundJobs()
        self._locks: dict[str, asyncio.Lock] = {}

    def out_dir(self, replica_id: str) -> pathlib.Path:
        return self.artifacts_root / replica_id

    # ------------------------------------------------------------ API side
    async def create(self, req: ReplicaCreate) -> dict[str, Any]:
        source = req.train_video_url.strip()
        if not source:
            raise InvalidInput("train_video_url is empty; give a local path, file:// or http(s) URL", "train_video_url")
        path = local_source(source)
        if path is not None and not path.is_file():
            raise NotFound(f"train_video_url: no file at {str(path)[:200]!r}", field="train_video_url")
        if path is None and not source.startswith("builtin:"):
            await self.webhooks.outbound.check(source, "train_video_url")
        if req.callback_url:
            await self.webhooks.outbound.check(req.callback_url, "callback_url")
        replica_id = new_id(REPLICA)
        record = self.store.insert_replica(replica_id, {
            "replica_name": req.replica_name or f"replica {replica_id}", "status": "started",
            "training_progress": progress_text(0), "train_video_url": source, "callback_url": req.callback_url,
        })
        self.jobs.start(self._build_and_report(replica_id))
        return record

    async def delete(self, replica_id: str) -> None:
        if replica_id == DEFAULT_REPLICA_ID:
            raise Conflict(f"the default replica {replica_id!r} cannot be deleted", field="replica_id")
        if not self.store.delete_replica(replica_id):
            raise NotFound(f"replica_id {replica_id!r} not found", field="replica_id")
        await asyncio.to_thread(shutil.rmtree, self.out_dir(replica_id), True)

    async def drain(self, timeout: float | None = None) -> None:
        await self.jobs.drain(timeout)

    async def close(self) -> None:
        await self.jobs.close()

    # ------------------------------------------------------------ engine side
    async def ensure_artifacts(self, replica_id: str) -> dict[str, Any]:
        """The replica's built artifacts (dict from the builder, plus "dir"); builds them on first use."""
        lock = self._locks.setdefault(replica_id, asyncio.Lock())
        async with lock:
            record = self.store.get_replica(replica_id)
            if record is None:
                raise NotFound(f"replica_id {replica_id!r} not found", field="replica_id")
            artifacts = record.get("artifacts")
            if artifacts and pathlib.Path(artifacts.get("dir", "")).is_dir():
                return artifacts
            if record["status"] == "error":
                raise InvalidInput(f"replica {replica_id!r} failed to build: {record.get('error_message')}")
            ok = await self._build(replica_id, keep_status=record["status"] == "completed")
            record = self.store.get_replica(replica_id)
            if not ok or not record or not record.get("artifacts"):
                raise InvalidInput(f"replica {replica_id!r} could not be built: {record and record.get('error_message')}")
            return record["artifacts"]

    # ------------------------------------------------------------ the build
    async def _build_and_report(self, replica_id: str) -> None:
        await self._build(replica_id)
        record = self.store.get_replica(replica_id)
        if record and record.get("callback_url"):
            url = record["callback_url"]
            self.webhooks.send_payload(None, url, "replica." + record["status"], {
                "replica_id": replica_id, "status": record["status"], "training_progress": record["training_progress"],
                "error_message": record.get("error_message"), "webhook_url": url, "timestamp": iso(self.clock.now()),
            })

    async def _build(self, replica_id: str, keep_status: bool = False) -> bool:
        record = self.store.get_replica(replica_id)
        if record is None:
            return False
        out_dir = self.out_dir(replica_id)
        loop = asyncio.get_running_loop()

        def progress(percent: int) -> None:  # called from the builder thread
            if not keep_status:
                loop.call_soon_threadsafe(self._progress, replica_id, percent)

        try:
            builder: Builder = load_object(self.builder_path)
        except (ImportError, AttributeError) as exc:
            return self._fail(replica_id, f"replica builder {self.builder_path!r} is not available ({exc})", keep_status)
        try:
            source = await self._fetch(record["train_video_url"], out_dir)
            await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
            result = await asyncio.to_thread(builder, source, out_dir, progress)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            known = type(exc).__name__ in ("ReplicaBuildError", "SourceError")
            message = str(exc) if known else f"replica build failed: {type(exc).__name__}: {exc}"
            if not known:
                log.exception("replica %s build failed", replica_id)
            return self._fail(replica_id, message[:1000], keep_status)
        artifacts = {**(result or {}), "dir": str(out_dir)}
        artifacts = {k: (str(v) if isinstance(v, pathlib.PurePath) else v) for k, v in artifacts.items()}
        if self.store.get_replica(replica_id) is None:  # deleted while building
            await asyncio.to_thread(shutil.rmtree, out_dir, True)
            return False
        self.store.update_replica(replica_id, status="completed", training_progress=progress_text(100),
                                  error_message=None, artifacts=artifacts)
        return True

    def _progress(self, replica_id: str, percent: int) -> None:
        record = self.store.get_replica(replica_id)
        if record and record["status"] == "started":
            self.store.update_replica(replica_id, training_progress=progress_text(min(int(percent), 99)))

    def _fail(self, replica_id: str, message: str, keep_status: bool) -> bool:
        if keep_status:  # a lazily built completed replica keeps its status; the caller reports the error
            self.store.update_replica(replica_id, error_message=message)
        else:
            self.store.update_replica(replica_id, status="error", error_message=message)
        return False

    async def _fetch(self, source: str, out_dir: pathlib.Path) -> pathlib.Path | str:
        """A local path for the builder: local files as is, http(s) downloaded through the outbound policy."""
        if source.startswith("builtin:"):
            return source
        path = local_source(source)
        if path is not None:
            if not path.is_file():
                raise SourceError(f"train_video_url: no file at {str(path)!r}")
            return path
        name = pathlib.PurePosixPath(urlparse(source).path).name or "source"
        dest = out_dir / ("source_" + name)
        await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
        try:
            return await self.webhooks.outbound.fetch_to_file(source, dest, max_bytes=self.max_source_bytes,
                                                              timeout_s=self.download_timeout_s)
        except FetchError as exc:
            raise SourceError(f"train_video_url: {exc}") from exc


class SourceError(Exception):
    """The training source could not be fetched; becomes the replica's error_message."""
