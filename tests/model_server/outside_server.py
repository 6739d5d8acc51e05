"""A stand-in for someone else's OpenAI-compatible server on loopback: the test gives the handler (a body the
real servers could send: an error, garbage, a slow stream), the helper records the requests.

For the stages' client-side paths only; the stages' real traffic is tested against `cvi-lab model-server`."""

from __future__ import annotations

import contextlib
import socket
from typing import AsyncIterator, Awaitable, Callable, Iterator

from aiohttp import web


@contextlib.asynccontextmanager
async def outside_server(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    """Serve `handler` on every POST path; yields the base URL (`http://127.0.0.1:PORT/v1`)."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers (a hung server): yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def free_port_url() -> str:
    """A base URL on a port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
