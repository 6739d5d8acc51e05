"""Webhook delivery to `callback_url`: background tasks, retries with exponential backoff, every attempt recorded.

Why background: a slow or dead receiver must never delay or break a call, so `send` only records the
delivery and schedules a task; `close` gives in-flight deliveries a grace period at shutdown, and pending
ones are resumed at the next start (`resume_pending`). Deliveries go through the outbound policy
(`cvi_lab/net/safe_fetch.py`): a URL that leads to a refused address fails at once, without retries, and
redirects are not followed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Mapping

import aiohttp

from cvi_lab.calls.timers import sleep
from cvi_lab.clock import Clock
from cvi_lab.domain.timefmt import iso
from cvi_lab.domain.vocabulary import both_id_names
from cvi_lab.net.safe_fetch import FetchError, OutboundPolicy
from cvi_lab.store import Store

log = logging.getLogger(__name__)


class WebhookDeliverer:
    def __init__(self, store: Store, cfg: Mapping[str, Any], clock: Clock, outbound: OutboundPolicy) -> None:
        self.store = store
        self.outbound = outbound
        self.clock = clock
        self.max_attempts = int(cfg.get("max_attempts", 5))
        self.initial_backoff_s = float(cfg.get("initial_backoff_s", 0.5))
        self.backoff_factor = float(cfg.get("backoff_factor", 2.0))
        self.timeout_s = float(cfg.get("timeout_s", 5.0))
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()

    def payload(self, conversation_id: str, url: str, event_type: str, properties: dict[str, Any]) -> dict[str, Any]:
        """SPEC §3 shape."""
        return {
            "conversation_id": conversation_id,
            "event_type": event_type,
            "message_type": event_type.split(".", 1)[0],
            "webhook_url": url,
            "timestamp": iso(self.clock.now()),
            "properties": both_id_names(properties),
        }

    def send(self, conversation_id: str, url: str | None, event_type: str, properties: dict[str, Any]) -> int | None:
        """Record and schedule a conversation webhook; returns the delivery id (None without a URL)."""
        if not url:
            return None
        return self.send_payload(conversation_id, url, event_type,
                                 self.payload(conversation_id, url, event_type, properties))

    def send_payload(self, conversation_id: str | None, url: str, event_type: str, payload: dict[str, Any]) -> int:
        """Record and schedule any payload (a replica's or a document's own); a replica id is also named face_id."""
        payload = both_id_names(payload)
        delivery_id = self.store.add_delivery(conversation_id, event_type, url, payload)
        self._spawn(delivery_id, url, payload, 0)
        return delivery_id

    def resume_pending(self) -> int:
        """Reschedule deliveries a previous run left pending (e.g. it was killed mid-retry)."""
        pending = self.store.deliveries(status="pending")
        for d in pending:
            self._spawn(d["id"], d["url"], d["payload"], d["attempts"])
        return len(pending)

    def _spawn(self, delivery_id: int, url: str, payload: dict[str, Any], attempts: int) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(delivery_id, url, payload, attempts))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery_id: int, url: str, payload: dict[str, Any], attempts: int) -> None:
        while attempts < self.max_attempts:
            if attempts:
                await sleep(self.clock, self.initial_backoff_s * self.backoff_factor ** (attempts - 1))
            attempts += 1
            code, error, refused = None, None, False
            try:
                if self._session is None or self._session.closed:
                    self._session = self.outbound.session(self.timeout_s)
                code = await self.outbound.post_json(self._session, url, payload)
            except asyncio.CancelledError:
                raise
            except FetchError as exc:  # the URL leads to an address the policy refuses: final
                error, refused = f"refused: {exc}"[:500], True
            except Exception as exc:  # network errors, timeouts, bad URLs: recorded, retried
                error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
            if code is not None and 200 <= code < 300:
                self.store.update_delivery(delivery_id, status="delivered", attempts=attempts, status_code=code,
                                           error=None)
                return
            if code is not None:
                error = f"HTTP {code}"
            retryable = not refused and (code is None or code >= 500 or code in (408, 429))
            final = not retryable or attempts >= self.max_attempts
            self.store.update_delivery(delivery_id, status="failed" if final else "pending", attempts=attempts,
                                       status_code=code, error=error)
            if final:
                log.warning("webhook %s to %s failed after %d attempt(s): %s", payload.get("event_type"), url,
                            attempts, error)
                return

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for in-flight deliveries (tests, graceful shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def close(self, grace_s: float = 0.0) -> None:
        if grace_s > 0:
            await self.drain(grace_s)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
