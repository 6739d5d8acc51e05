"""Server-side HTTP to URLs a client gave us (`train_video_url`, `callback_url`, `document_url`), made safe.

Why: the server runs next to things a client must not reach through it (cloud metadata at 169.254.169.254,
an admin port on loopback, the office LAN). So every address a URL leads to is checked: the host of each hop
(IP literals directly; names through `GuardedResolver`, the one resolver aiohttp connects with, so a name
that re-resolves elsewhere between the check and the connect cannot slip through), redirects followed by
hand, one hop at a time, each hop checked again, and bodies capped in size and time. Loopback, private,
link-local and other non-global addresses are refused unless the conf allows them (by default only when the
server itself is bound to loopback: a local lab fetching its own files). The resolver is injectable, so tests
map names to addresses without DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import pathlib
import socket
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from cvi_lab.domain.errors import InvalidInput

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""`resolver(host, port) -> [address, ...]`: what a name resolves to (the system's DNS, or a test's table)."""

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
REDIRECTS = (301, 302, 303, 307, 308)


class FetchError(Exception):
    """A fetch that was refused or failed after the URL was accepted; the message is for the record's error."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_loopback(host: str) -> bool:
    """Whether a bind address or host name is this machine only."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_kind(address: Address) -> str | None:
    """Why an address is not public ('loopback', 'private', 'link-local', ...), or None when it is."""
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    if mapped is not None:
        return address_kind(mapped)
    for kind, flag in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                       ("private", address.is_private), ("multicast", address.is_multicast),
                       ("unspecified", address.is_unspecified), ("reserved", address.is_reserved)):
        if flag:
            return kind
    return None if address.is_global else "non-global"


@dataclass(frozen=True)
class OutboundPolicy:
    """Which addresses server-side fetches may reach, and how many redirects they follow."""

    allow_private: bool
    max_redirects: int
    allowed_networks: tuple[Network, ...] = ()
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def from_config(cls, server: Mapping[str, Any], resolver: Resolver | None = None) -> "OutboundPolicy":
        """`server.outbound` of the conf; `allow_private_addresses: null` means "when bound to loopback"."""
        out = server["outbound"]
        allow = out["allow_private_addresses"]
        return cls(
            allow_private=is_loopback(str(server["host"])) if allow is None else bool(allow),
            max_redirects=int(out["max_redirects"]),
            allowed_networks=tuple(ipaddress.ip_network(str(n), strict=False) for n in out["allowed_networks"]),
            resolver=resolver or system_resolver,
        )

    def refusal(self, address: str) -> str | None:
        """Why this address may not be reached, or None."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if self.allow_private or any(ip in net for net in self.allowed_networks):
            return None
        kind = address_kind(ip)
        return f"{ip} is a {kind} address" if kind else None

    # ------------------------------------------------------------ at creation time: a 400
    async def check(self, url: str, field_name: str) -> None:
        """Refuse (InvalidInput, a 400) a URL that is not http(s) or whose host leads to a refused address."""
        try:
            await self.check_hop(url)
        except FetchError as exc:
            raise InvalidInput(f"{field_name}: {exc}", field=field_name) from None

    async def check_hop(self, url: str) -> None:
        """An http(s) URL whose host leads only to accepted addresses (no DNS when every address is)."""
        host, port = self._host_port(url)
        if self.allow_private:
            return
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = await self.resolver(host, port)
            except OSError as exc:
                raise FetchError(f"the host {host!r} does not resolve ({exc.strerror or exc})") from None
            except UnicodeError:  # IDNA refuses it (e.g. a label over 63 characters): no such host can exist
                raise FetchError(f"the host {host!r} is not a valid host name (IDNA)") from None
        if not addresses:
            raise FetchError(f"the host {host!r} does not resolve")
        for address in addresses:
            reason = self.refusal(address)
            if reason:
                raise FetchError(f"{url[:200]!r} leads to {reason}; only public addresses are fetched "
                                 "(server.outbound.allow_private_addresses / allowed_networks)")

    @staticmethod
    def _host_port(url: str) -> tuple[str, int]:
        try:  # urlsplit itself refuses some URLs (an unclosed "[" of an IPv6 host)
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise FetchError(f"the scheme {parts.scheme!r} is not fetched; accepted: http, https")
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise FetchError(f"the URL {url[:200]!r} is malformed ({exc})") from None
        if not host:
            raise FetchError(f"the URL {url[:200]!r} has no host")
        return host, port or (443 if parts.scheme == "https" else 80)

    # ------------------------------------------------------------ at fetch time
    def session(self, timeout_s: float) -> aiohttp.ClientSession:
        """A session that connects only to addresses this policy accepts (no proxies from the environment)."""
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self))
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s),
                                     trust_env=False)

    @contextlib.asynccontextmanager
    async def _final_response(self, session: aiohttp.ClientSession, url: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET `url` following at most `max_redirects` redirects, each hop checked; the 200 response."""
        for _ in range(self.max_redirects + 1):
            await self.check_hop(url)
            async with session.get(url, allow_redirects=False) as resp:
                if resp.status in REDIRECTS and "Location" in resp.headers:
                    url = urljoin(url, resp.headers["Location"])
                    continue
                if resp.status != 200:
                    raise FetchError(f"the download failed with HTTP {resp.status}")
                yield resp
                return
        raise FetchError(f"more than {self.max_redirects} redirects")

    @staticmethod
    async def _body(resp: aiohttp.ClientResponse, max_bytes: int) -> AsyncIterator[bytes]:
        if (resp.content_length or 0) > max_bytes:
            raise FetchError(too_large(max_bytes))
        size = 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(too_large(max_bytes))
            yield chunk

    async def fetch_bytes(self, url: str, *, max_bytes: int, timeout_s: float) -> tuple[bytes, str | None]:
        """(body, Content-Type) of a GET; raises FetchError (refused, failed, too large, too slow)."""
        try:
            async with self.session(timeout_s) as session, self._final_response(session, url) as resp:
                body = b"".join([chunk async for chunk in self._body(resp, max_bytes)])
                return body, resp.headers.get("Content-Type")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise FetchError(f"the download failed ({type(exc).__name__}: {exc})") from exc

    async def fetch_to_file(self, url: str, dest: pathlib.Path, *, max_bytes: int, timeout_s: float) -> pathlib.Path:
        try:
            async with self.session(timeout_s) as session, self._final_response(session, url) as resp:
                with open(dest, "wb") as fh:
                    async for chunk in self._body(resp, max_bytes):
                        fh.write(chunk)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise FetchError(f"the download failed ({type(exc).__name__}: {exc})") from exc
        return dest

    async def post_json(self, session: aiohttp.ClientSession, url: str, payload: Any) -> int:
        """POST once, no redirects followed (a 3xx is the receiver's answer); returns the HTTP status.
        Raises FetchError when the URL leads to a refused address."""
        await self.check_hop(url)
        async with session.post(url, json=payload, allow_redirects=False) as resp:
            return resp.status


def too_large(max_bytes: int) -> str:
    return f"the body is larger than the {max_bytes} bytes accepted"


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for policy sessions: resolves with the policy's resolver, refuses before connecting."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        addresses: Sequence[str] = await self.policy.resolver(host, port)
        results: list[ResolveResult] = []
        for address in addresses:
            reason = self.policy.refusal(address)
            if reason:
                raise OSError(f"{host} leads to {reason}; only public addresses are fetched")
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            results.append(ResolveResult(hostname=host, host=str(ip), port=port,
                                         family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                                         proto=0, flags=socket.AI_NUMERICHOST))
        if not results:
            raise OSError(f"{host} does not resolve")
        return results

    async def close(self) -> None:
        return None
