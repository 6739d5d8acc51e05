"""Active records that no call on this host runs: a crashed run's orphans, and, with hosts sharing the store
(calls/hosts.py), other hosts' calls, ended through their owner or, when the owner is gone, here.

Why apart from the manager: the manager's own job is the lifecycle of the calls it runs; these are the records
it finds in the store without one. `ConversationManager` inherits them.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable

from cvi_lab.domain.conversation import ShutdownReason
from cvi_lab.domain.timefmt import iso

if TYPE_CHECKING:
    from cvi_lab.calls.call import Call
    from cvi_lab.calls.hosts import HostPeers
    from cvi_lab.clock import Clock
    from cvi_lab.store import Store


class RecordsWithoutCall:
    store: "Store"
    live: "dict[str, Call]"
    hosts: "HostPeers"
    clock: "Clock"
    host_url: str
    log: logging.Logger
    _finish_record: "Callable[[dict[str, Any], str], None]"  # the manager's: status, system.shutdown, webhooks

    def resolve_orphans(self) -> list[str]:
        """Active records no call runs for: all of them on a single host; this host's own with shared hosts
        (the others' calls are theirs; `_sweep_stale` ends those of a host that stopped)."""
        rows = self.store.active_conversations(self.host_url if self.hosts.shared else None)
        return self._end_orphans([r for r in rows if r["conversation_id"] not in self.live], "a previous run")

    def _end_orphans(self, rows: list[dict[str, Any]], whose: str) -> list[str]:
        for row in rows:
            self.store.end_usage(row["conversation_id"])  # usage up to the last persisted heartbeat
            self._finish_record(row, ShutdownReason.SERVER_RESTART)
            self.log.warning("conversation %s was left active by %s: ended (%s)", row["conversation_id"], whose,
                             ShutdownReason.SERVER_RESTART)
        return [row["conversation_id"] for row in rows]

    def _sweep_stale(self) -> None:
        before = iso(self.clock.now() - timedelta(seconds=self.hosts.stale_after_s))
        rows = [r for r in self.store.stale_conversations(before) if r["conversation_id"] not in self.live]
        self._end_orphans(rows, f"a host that stopped beating its usage {self.hosts.stale_after_s:g} s ago")

    async def _end_not_running_here(self, record: dict[str, Any], reason: str, forwarded: bool) -> None:
        """An active record without a call here: its owner ends it (forwarded), or, where nobody runs it any
        more (its host is down, or it was this host's before a crash, or a forward reached a host that is
        not, or no longer, running it), the record is ended here."""
        cid = record["conversation_id"]
        if not forwarded and self.hosts.runs_elsewhere(record, self.host_url):
            if await self.hosts.forward_end(record["host_url"], cid, reason):
                return
            reason = ShutdownReason.SERVER_RESTART  # its host is gone, and the call with it
        self.store.end_usage(cid)
        self._finish_record(record, reason)
