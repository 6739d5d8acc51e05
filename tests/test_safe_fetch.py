"""Server-side fetches reach only public addresses unless the conf allows more: checked per hop, per resolution.

A local HTTP server on 127.0.0.1 stands in for "a host on the internet" by allowing exactly 127.0.0.1/32
(`allowed_networks`); names resolve through a table (no DNS here).
"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from aiohttp import web

from cvi_lab.domain.errors import InvalidInput
from cvi_lab.net.safe_fetch import FetchError, OutboundPolicy, address_kind

MB = 1 << 20
SMALL = (b"0123456789", "application/octet-stream")  # body, Content-Type of /small


def table(**names: str):
    async def resolve(host: str, port: int) -> list[str]:
        if host not in names:
            raise OSError(-2, "Name or service not known")
        return [names[host]]

    return resolve


def policy(allow_private=False, allowed=(), **names) -> OutboundPolicy:
    return OutboundPolicy(allow_private=allow_private, max_redirects=3,
                          allowed_networks=tuple(ipaddress.ip_network(n) for n in allowed), resolver=table(**names))


THIS_HOST = policy(allowed=["127.0.0.1/32"], **{"files.test": "127.0.0.1", "lan.test": "192.168.1.20",
                                               "meta.test": "169.254.169.254"})


@pytest.fixture
async def origin():
    """/small (10 bytes), /big (2 MiB, with and without Content-Length), redirects to wherever ?to= says."""
    stall = asyncio.Event()

    async def small(_):
        return web.Response(body=b"0123456789")

    async def big(_):
        return web.Response(body=b"x" * (2 * MB))

    async def big_chunked(request):
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(32):
            await resp.write(b"y" * (64 * 1024))
        await resp.write_eof()
        return resp

    async def redirect(request):
        raise web.HTTPFound(request.query["to"])

    async def slow(_):
        await stall.wait()
        return web.Response(body=b"late")

    app = web.Application()
    app.router.add_get("/small", small)
    app.router.add_get("/big", big)
    app.router.add_get("/big-chunked", big_chunked)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield port
    stall.set()
    await runner.cleanup()


@pytest.mark.parametrize("address,kind", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.0.0.1", "private"), ("192.168.3.4", "private"),
    ("172.16.0.1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("::ffff:127.0.0.1", "loopback"), ("0.0.0.0", "private"), ("100.64.0.1", "non-global"),
    ("224.0.0.1", "multicast"), ("93.184.215.14", None), ("2606:4700::1111", None),
])
def test_address_kinds(address, kind):
    assert address_kind(ipaddress.ip_address(address)) == kind


async def test_loopback_allowed_by_config_is_fetched(origin):
    allowed = policy(allow_private=True)
    assert await allowed.fetch_bytes(f"http://127.0.0.1:{origin}/small", max_bytes=MB, timeout_s=30) == SMALL


async def test_loopback_refused_by_config(origin):
    refused = policy(**{"files.test": "127.0.0.1"})
    for url in (f"http://127.0.0.1:{origin}/small", f"http://files.test:{origin}/small",
                f"http://[::ffff:127.0.0.1]:{origin}/small"):
        with pytest.raises(FetchError, match="loopback address"):
            await refused.fetch_bytes(url, max_bytes=MB, timeout_s=30)
        with pytest.raises(InvalidInput, match="document_url: .*loopback") as err:
            await refused.check(url, "document_url")
        assert err.value.field == "document_url"


async def test_a_name_is_fetched_through_the_guarded_resolver(origin):
    assert await THIS_HOST.fetch_bytes(f"http://files.test:{origin}/small", max_bytes=MB, timeout_s=30) == SMALL


@pytest.mark.parametrize("target,reason", [
    ("http://10.1.2.3/secret", "10.1.2.3 is a private address"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://lan.test/admin", "192.168.1.20 is a private address"),
    ("http://meta.test/", "169.254.169.254 is a link-local address"),
    ("http://127.0.0.2:9/", "127.0.0.2 is a loopback address"),
])
async def test_redirects_to_private_addresses_are_refused(origin, target, reason):
    url = f"http://127.0.0.1:{origin}/redirect?to={target}"
    with pytest.raises(FetchError, match=reason):
        await THIS_HOST.fetch_bytes(url, max_bytes=MB, timeout_s=30)


async def test_a_redirect_to_an_allowed_address_is_followed(origin):
    url = f"http://127.0.0.1:{origin}/redirect?to=http://files.test:{origin}/small"
    assert await THIS_HOST.fetch_bytes(url, max_bytes=MB, timeout_s=30) == SMALL


async def test_redirect_loops_stop(origin):
    loop = f"http://127.0.0.1:{origin}/redirect?to=/redirect%3Fto%3D/redirect%253Fto%253D/small"
    with pytest.raises(FetchError, match="more than 1 redirects"):
        await OutboundPolicy(allow_private=True, max_redirects=1).fetch_bytes(loop, max_bytes=MB, timeout_s=30)


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
async def test_oversize_bodies_are_refused(origin, path, tmp_path):
    with pytest.raises(FetchError, match="larger than the 1048576 bytes accepted"):
        await THIS_HOST.fetch_to_file(f"http://127.0.0.1:{origin}{path}", tmp_path / "out", max_bytes=MB, timeout_s=30)


async def test_a_stalled_server_hits_the_time_limit(origin):
    with pytest.raises(FetchError, match="TimeoutError"):
        await THIS_HOST.fetch_bytes(f"http://127.0.0.1:{origin}/slow", max_bytes=MB, timeout_s=0.3)


@pytest.mark.parametrize("url,words", [
    ("ftp://example.com/x", "scheme 'ftp' is not fetched; accepted: http, https"),
    ("http:///nohost", "has no host"),
    ("https://user@[::1/x", "is malformed"),  # urlsplit itself raises on an unclosed IPv6 bracket
    ("http://nowhere.test/x", "'nowhere.test' does not resolve"),
])
async def test_creation_time_check_names_the_problem(url, words):
    with pytest.raises(InvalidInput, match=words):
        await THIS_HOST.check(url, "callback_url")


def test_default_allows_private_only_when_bound_to_loopback():
    out = {"allow_private_addresses": None, "allowed_networks": [], "max_redirects": 5}
    assert OutboundPolicy.from_config({"host": "127.0.0.1", "outbound": out}).allow_private
    assert not OutboundPolicy.from_config({"host": "0.0.0.0", "outbound": out}).allow_private
    forced = {**out, "allow_private_addresses": False}
    assert not OutboundPolicy.from_config({"host": "127.0.0.1", "outbound": forced}).allow_private


# ------------------------------------------------------------ where clients give URLs: a 400 at creation time
@pytest.fixture
async def public_only_api(tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from cvi_lab.api.app import create_app
    from cvi_lab.clock import FakeClock
    from tests.helpers.config import make_cfg

    cfg = make_cfg(tmp_path, **{"outbound.allow_private_addresses": False})
    app = create_app(cfg, clock=FakeClock(), resolver=table(**{"lan.test": "192.168.1.20"}))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client
    assert app["stats"]["internal_errors"] == 0
    await client.close()


@pytest.mark.parametrize("route,body,field", [
    ("/v2/conversations", {"callback_url": "http://127.0.0.1:9/hook", "test_mode": True}, "callback_url"),
    ("/v2/conversations", {"callback_url": "http://lan.test/hook", "test_mode": True}, "callback_url"),
    ("/v2/replicas", {"train_video_url": "http://169.254.169.254/face.mp4"}, "train_video_url"),
    ("/v2/replicas", {"train_video_url": "builtin:astronaut", "callback_url": "http://10.0.0.7/hook"}, "callback_url"),
])
async def test_private_urls_are_a_400_at_creation(public_only_api, route, body, field):
    resp = await public_only_api.post(route, json=body)
    err = await resp.json()
    assert resp.status == 400, err
    assert err["error"].startswith(f"{field}: ") and "only public addresses are fetched" in err["error"]


async def test_a_webhook_to_a_refused_address_fails_once_without_retries(tmp_path):
    """The name passed the check when the conversation was made, then re-resolved to the LAN: no delivery."""
    from cvi_lab.calls.webhooks import WebhookDeliverer
    from cvi_lab.clock import FakeClock
    from cvi_lab.store import Store

    clock = FakeClock()
    store = Store(tmp_path / "db.sqlite", clock)
    hooks = WebhookDeliverer(store, {"max_attempts": 5, "timeout_s": 5}, clock,
                             policy(**{"hooks.test": "192.168.1.20"}))
    try:
        delivery = hooks.send("c1", "http://hooks.test/hook", "system.shutdown", {})
        await hooks.drain(30)
        [record] = [d for d in store.deliveries() if d["id"] == delivery]
        assert record["status"] == "failed" and record["attempts"] == 1
        assert record["last_error"].startswith("refused: ")
        assert "192.168.1.20 is a private address" in record["last_error"]
    finally:
        await hooks.close()
        store.close()


async def test_a_loopback_lab_accepts_urls_without_a_dns_lookup():
    """When every address is allowed nothing can be refused: creation does not wait on (or fail by) DNS."""
    async def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError("resolved at creation time")

    await OutboundPolicy(allow_private=True, max_redirects=3, resolver=no_dns).check("http://hooks.lab/x", "callback_url")
    with pytest.raises(InvalidInput, match="scheme 'ftp'"):
        await OutboundPolicy(allow_private=True, max_redirects=3).check("ftp://hooks.lab/x", "callback_url")
