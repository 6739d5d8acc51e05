"""A real aiohttp server on 127.0.0.1 with the meeting routes, backed by EchoEndpoint stand-ins."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from cvi_lab.transport.room import PeerSettings
from cvi_lab.transport.signaling import install_routes

from .fake_endpoint import EchoEndpoint


class Server:
    def __init__(self) -> None:
        self.endpoints: dict[str, EchoEndpoint] = {}
        self.transport = None
        self.base_url = ""

    def add(self, endpoint: EchoEndpoint) -> EchoEndpoint:
        self.endpoints[endpoint.conversation_id] = endpoint
        return endpoint

    def url(self, conversation_id: str, token: str | None = None) -> str:
        from cvi_lab.transport.signaling import meeting_url

        return meeting_url(self.base_url, conversation_id, token)


@pytest.fixture
async def server():
    logging.getLogger("aioice").setLevel(logging.WARNING)
    srv = Server()
    app = web.Application()
    srv.transport = install_routes(app, srv.endpoints.get, peer_settings=PeerSettings(disconnect_grace_s=1.0))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    srv.base_url = f"http://127.0.0.1:{port}"
    try:
        yield srv
    finally:
        await runner.cleanup()
