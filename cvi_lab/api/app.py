"""The aiohttp application: store + manager + routes; `run_server` is what `cvi-lab serve` runs.

Seams for later layers: `installers` (callables `installer(app)`, or dotted paths in `server.installers`)
add routes such as the transport's meeting page and signaling (without the transport there is no
`/meet/{id}` route: a page that cannot join the call would only pretend), and `runtime_factories` (or
`server.runtimes`) attach the engine to every new conversation (see cvi_lab/calls/call.py).
`app["manager"]`, `app["store"]`, `app["replicas"]`, `app["webhooks"]` are there for them.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import sys
import warnings
from typing import Any, Callable, Iterable

from aiohttp import web

from cvi_lab.cpu import deprioritize_media
from cvi_lab.api import app_messages, conversations, documents, memories, personas, replicas
from cvi_lab.api.errors import ApiError, error_middleware
from cvi_lab.api.openapi import build_openapi
from cvi_lab.api.routes import Route
from cvi_lab.calls.runtime import RuntimeFactory
from cvi_lab.calls.documents import DocumentService
from cvi_lab.calls.hosts import HOST_KEY_HEADER, INTERNAL_END_PATH
from cvi_lab.calls.manager import ConversationManager
from cvi_lab.calls.memories import MemoryKeeper
from cvi_lab.calls.replicas import ReplicaService, load_object
from cvi_lab.calls.settings import server_settings
from cvi_lab.calls.webhooks import WebhookDeliverer
from cvi_lab.clock import Clock, SystemClock
from cvi_lab.domain.conversation import ShutdownReason
from cvi_lab.net.safe_fetch import OutboundPolicy, Resolver, is_loopback
from cvi_lab.store import Store

log = logging.getLogger(__name__)

ROUTES: list[Route] = [*conversations.ROUTES, *app_messages.ROUTES, *personas.ROUTES, *replicas.ROUTES,
                       *documents.ROUTES, *memories.ROUTES]
Installer = Callable[[web.Application], Any]


def auth_mode(server: dict[str, Any]) -> tuple[bool, str]:
    """(allowed, the sentence the server prints at start)."""
    keys = [k for k in server.get("api_keys") or [] if k]
    host = str(server["host"])
    if keys:
        return True, f"auth: x-api-key required ({len(keys)} key(s) configured)"
    if is_loopback(host):
        return True, f"auth: NONE (no server.api_keys set; allowed because bound to loopback {host})"
    return False, (f"refusing to start: server.host={host} is not loopback and no server.api_keys are set; "
                   "set server.api_keys='[a-secret]' or bind server.host=127.0.0.1")


def base_url(server: dict[str, Any], port: int | None = None) -> str:
    if server.get("public_url"):
        return str(server["public_url"]).rstrip("/")
    host = str(server["host"])
    host = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
    return f"http://{host}:{port if port is not None else server['port']}"


def _auth_middleware(keys: list[str]):
    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if keys and request.path.startswith("/v2"):
            given = request.headers.get("x-api-key")
            if not given:
                raise ApiError(401, "the x-api-key header is required")
            if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
                raise ApiError(401, "the x-api-key is not valid")
        limit = request.app["settings"]["server"]["limits"]["max_body_bytes"]
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, f"the request body is larger than the {limit} bytes accepted")
        return await handler(request)

    return auth


_SHUTDOWN_REASONS = sorted(v for k, v in vars(ShutdownReason).items() if k.isupper())


def _install_internal_end(app: web.Application, key: str) -> None:
    """`POST /internal/conversations/{id}/end` for the other hosts sharing the store (calls/hosts.py): ends a
    call this host runs. Outside /v2 and the OpenAPI document: hosts, not clients, speak it."""

    async def internal_end(request: web.Request) -> web.Response:
        given = request.headers.get(HOST_KEY_HEADER)
        if not given or not hmac.compare_digest(given.encode(), key.encode()):
            raise ApiError(401, f"the {HOST_KEY_HEADER} header must carry the hosts' shared key (server.hosts.key)")
        try:
            body = await request.json()
        except ValueError:
            body = None
        reason = body.get("shutdown_reason") if isinstance(body, dict) else None
        if reason not in _SHUTDOWN_REASONS:
            raise ApiError(400, f"the body must be {{\"shutdown_reason\": one of {_SHUTDOWN_REASONS}}}",
                           "shutdown_reason")
        manager = request.app["manager"]
        return web.json_response(await manager.end(request.match_info["conversation_id"], reason, forwarded=True))

    app.router.add_post(INTERNAL_END_PATH, internal_end)


def create_app(
    cfg: Any, *, clock: Clock | None = None, installers: Iterable[Installer] = (),
    runtime_factories: Iterable[RuntimeFactory] = (), resolver: Resolver | None = None,
) -> web.Application:
    """`resolver` replaces the system's DNS for server-side fetches (tests map names without a network)."""
    settings = server_settings(cfg)
    server = settings["server"]
    clock = clock or SystemClock()
    keys = [str(k) for k in server.get("api_keys") or [] if k]
    app = web.Application(
        client_max_size=int(server["limits"]["max_body_bytes"]),
        middlewares=[error_middleware, _auth_middleware(keys)],
    )
    store = Store.configured(server["store"], clock)  # SQLite or PostgreSQL; synchronous calls, as before
    outbound = OutboundPolicy.from_config(server, resolver)
    webhooks = WebhookDeliverer(store, server.get("webhooks") or {}, clock, outbound)
    replica_service = ReplicaService(store, server, webhooks, clock)
    document_service = DocumentService(store, server, webhooks, clock)
    manager = ConversationManager(store, cfg, clock=clock, webhooks=webhooks, replicas=replica_service,
                                  base_url=base_url(server))
    keeper = MemoryKeeper.from_config(cfg, store)
    if keeper is not None:
        manager.add_end_listener(keeper.remember)
    spec = build_openapi(ROUTES, dict(server["limits"]), manager.languages.supported())
    with warnings.catch_warnings():  # later layers reach the services by plain string keys: keep that simple
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app.update(cfg=settings, settings=settings, full_cfg=cfg, clock=clock, store=store, webhooks=webhooks,
                   replicas=replica_service, documents=document_service, manager=manager, outbound=outbound,
                   stats={"internal_errors": 0}, openapi=spec)
    for factory in [*(load_object(p) for p in server.get("runtimes") or []), *runtime_factories]:
        manager.add_runtime_factory(factory)

    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(spec)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "live_conversations": len(manager.live)})

    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/health", health)
    if server["hosts"]["key"]:
        _install_internal_end(app, str(server["hosts"]["key"]))
    for installer in [*(load_object(p) for p in server.get("installers") or []), *installers]:
        installer(app)

    async def on_startup(_: web.Application) -> None:
        cpu = server["cpu"]
        deprioritize_media(asyncio.get_running_loop(), int(cpu["media_niceness"]), int(cpu["media_threads"]))
        orphans = await manager.start()
        if orphans:
            log.warning("resolved %d conversation(s) left active by a previous run", len(orphans))

    async def on_cleanup(_: web.Application) -> None:
        await manager.close()
        await replica_service.close()
        await document_service.close()
        await webhooks.close(float((server.get("webhooks") or {}).get("grace_s", 1.0)))
        store.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def serve(cfg: Any, *, ready: Callable[[str], None] | None = None, stop: asyncio.Event | None = None) -> int:
    """Run until SIGINT/SIGTERM (or `stop` is set). Returns an exit code (2 = refused to start)."""
    from cvi_lab.harness.server import InProcessServer  # the harness builds on this module

    server = server_settings(cfg)["server"]
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="[cvi-lab] %(levelname)s %(name)s: %(message)s")
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    ok, sentence = auth_mode(server)
    if not ok:
        print(f"[cvi-lab] {sentence}", file=sys.stderr, flush=True)
        return 2
    running = InProcessServer(cfg)
    try:
        await running.start()
    except OSError as exc:
        print(f"[cvi-lab] cannot listen on {server['host']}:{server['port']}: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"[cvi-lab] {sentence}", flush=True)
    print(f"[cvi-lab] store: {running.app['store'].location}", flush=True)
    print(f"[cvi-lab] serving the API at http://{server['host']}:{running.port}/v2 (meeting pages under "
          f"{running.base}/meet/)", flush=True)
    if ready:
        ready(running.local_url)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread / platform
            pass
    try:
        await stop.wait()
    finally:
        print("[cvi-lab] shutting down: ending live conversations", flush=True)
        await running.stop()
    return 0


def run_server(cfg: Any) -> int:
    """Blocking entry point of `cvi-lab serve`."""
    return asyncio.run(serve(cfg))
