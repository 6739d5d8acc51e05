"""Several hosts, one store (`server.store.url` on PostgreSQL, `server.hosts.key` set on every host): which
host runs a conversation, how another host ends it there, and who ends the calls of a host that died.

Each record carries its owner's internal base URL (`host_url`). An end that reaches a host which does not run
the call is forwarded to the owner (`POST /internal/conversations/{id}/end`, the shared key in
`x-cvi-lab-host-key`), which stops the runtime and writes the ended record, so the client's answer is the
final record. Why a forward rather than a state the owner watches: the end takes effect at once, without
every host polling the store for its calls. The owner being down is decided by facts, not guesses: nobody
listening at its address (connection refused) ends the record on the spot; an owner that stopped beating its
calls' usage for `stale_after_s` has its calls ended by whichever host sweeps first. Each host's concurrency
limit counts only the calls it runs (its own CPU).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import aiohttp

from cvi_lab.domain.errors import Unavailable

HOST_KEY_HEADER = "x-cvi-lab-host-key"
INTERNAL_END_PATH = "/internal/conversations/{conversation_id}/end"

log = logging.getLogger(__name__)


class HostPeers:
    """This host's side of the shared store: its identity and its requests to the other hosts."""

    def __init__(self, hosts: Mapping[str, Any]) -> None:
        self.key: str | None = str(hosts["key"]) if hosts["key"] else None
        self.internal_url: str | None = str(hosts["internal_url"]).rstrip("/") if hosts["internal_url"] else None
        self.stale_after_s = float(hosts["stale_after_s"])
        self.forward_timeout_s = float(hosts["forward_timeout_s"])
        self._http: aiohttp.ClientSession | None = None

    @property
    def shared(self) -> bool:
        """Whether other hosts share this store (the key is what they authenticate each other with)."""
        return self.key is not None

    def runs_elsewhere(self, record: Mapping[str, Any], own_url: str) -> bool:
        return self.shared and bool(record.get("host_url")) and record["host_url"] != own_url

    async def forward_end(self, host_url: str, conversation_id: str, reason: str) -> bool:
        """Ask the owner to end its call. True: it did (or already had); False: nobody listens there (the
        host is down, its call with it). Raises Unavailable when the owner is there but does not answer
        in time or refuses (a wrong key is a configuration error, not a reason to call the call ended)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.forward_timeout_s))
        url = host_url + INTERNAL_END_PATH.format(conversation_id=conversation_id)
        try:
            async with self._http.post(url, json={"shutdown_reason": reason},
                                       headers={HOST_KEY_HEADER: self.key or ""}) as resp:
                if resp.status == 200:
                    return True
                detail = (await resp.text())[:200]
        except aiohttp.ClientConnectorError as exc:
            log.warning("host %s is not reachable (%s): conversation %s ends here", host_url, exc, conversation_id)
            return False
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise Unavailable(f"conversation {conversation_id} runs on host {host_url}, which did not answer "
                              f"the end within {self.forward_timeout_s:g} s ({type(exc).__name__}); retry") from None
        raise Unavailable(f"conversation {conversation_id} runs on host {host_url}, which refused the end "
                          f"(HTTP {resp.status}: {detail}); check server.hosts.key on both hosts")

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()
