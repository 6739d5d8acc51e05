"""Building a replica without a server, in this process (`cvi-lab replica create PATH`): same service, same store."""

from __future__ import annotations

import asyncio
from typing import Any

from cvi_lab.calls.replicas import ReplicaService
from cvi_lab.calls.settings import server_settings
from cvi_lab.calls.webhooks import WebhookDeliverer
from cvi_lab.clock import SystemClock
from cvi_lab.domain.errors import DomainError
from cvi_lab.domain.replica import Replica, ReplicaCreate
from cvi_lab.net.safe_fetch import OutboundPolicy
from cvi_lab.store import Store


def build_replica_offline(cfg: Any, source: str, name: str | None = None) -> dict[str, Any]:
    """Create the replica record, build it in this process, return the final record (status completed|error)."""
    server = server_settings(cfg)["server"]

    async def run() -> dict[str, Any]:
        clock = SystemClock()
        store = Store.configured(server["store"], clock)
        webhooks = WebhookDeliverer(store, server.get("webhooks") or {}, clock, OutboundPolicy.from_config(server))
        service = ReplicaService(store, server, webhooks, clock)
        try:
            try:
                record = await service.create(ReplicaCreate(replica_name=name, train_video_url=source))
            except DomainError as exc:
                return {"status": "error", "error_message": exc.message}
            await service.drain()
            return Replica.model_validate(store.get_replica(record["replica_id"])).model_dump()
        finally:
            await webhooks.close()
            store.close()

    return asyncio.run(run())
