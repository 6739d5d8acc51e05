"""The model server's aiohttp app: routes over given stages, OpenAI-shaped errors, optional Bearer keys;
and `serve(cfg)`, the entry point of `cvi-lab model-server` (root config `cvi_lab/conf/model_server.yaml`)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import sys
from typing import Any, Callable, Mapping, Sequence

from aiohttp import web

from cvi_lab.model_server.chat import chat_handler
from cvi_lab.model_server.errors import STREAMING, BadRequest, error_response
from cvi_lab.model_server.speech import speech_handler
from cvi_lab.model_server.transcriptions import transcription_handler
from cvi_lab.stages.base import StageError

log = logging.getLogger(__name__)
GROUPS = ("asr", "tts", "llm")
ROUTES = {"asr": "/v1/audio/transcriptions", "tts": "/v1/audio/speech", "llm": "/v1/chat/completions"}
OPEN_PATHS = ("/health",)
ROUTES_KEY = web.AppKey("routes", set)  # the paths served, named in a 404's message


def _middleware(api_keys: Sequence[str]):
    @web.middleware
    async def handle(request: web.Request, handler: Callable) -> web.StreamResponse:
        if api_keys and request.path not in OPEN_PATHS:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not any(hmac.compare_digest(given, k) for k in api_keys):
                return error_response(401, "a valid API key is required: Authorization: Bearer <key>", code="invalid_api_key")
        try:
            return await handler(request)
        except BadRequest as exc:
            return exc.response()
        except web.HTTPException as exc:  # routing (404, 405), a body over client_max_size (413)
            if exc.status < 400:
                raise
            return error_response(exc.status, f"{exc.reason}: {request.method} {request.path}"
                                  + (f"; routes: {', '.join(sorted(request.app[ROUTES_KEY]))}" if exc.status in (404, 405) else ""))
        except StageError as exc:
            if request.get(STREAMING):
                raise  # the answer has begun: the body is cut short (the client sees it end early)
            log.warning("%s %s failed: %s", request.method, request.path, exc)
            return error_response(500, f"the model failed: {exc}")

    return handle


def build_app(stages: Mapping[str, Any], models: Mapping[str, list[str]], settings: Mapping[str, Any]) -> web.Application:
    """An app serving the routes of the stages given (`asr`, `tts`, `llm`; each optional). `models`: the names
    each group's route accepts as `model`."""
    api_keys = [str(k) for k in settings.get("api_keys") or ()]
    app = web.Application(client_max_size=int(settings["max_upload_mb"]) * 1024 * 1024,
                          middlewares=[_middleware(api_keys)])
    app[ROUTES_KEY] = {ROUTES[g] for g in stages} | {"/v1/models", "/health"}
    if "asr" in stages:
        app.router.add_post(ROUTES["asr"], transcription_handler(stages["asr"], list(models["asr"])))
    if "tts" in stages:
        app.router.add_post(ROUTES["tts"], speech_handler(stages["tts"], list(models["tts"]),
                                                          int(settings["pcm_sample_rate"]), int(settings["max_input_chars"])))
    if "llm" in stages:
        app.router.add_post(ROUTES["llm"], chat_handler(stages["llm"], list(models["llm"])))
    listing = {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": f"cvi-lab {g}"}
                                          for g in stages for name in models[g]]}

    async def list_models(_: web.Request) -> web.Response:
        return web.json_response(listing)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "stages": sorted(stages)})

    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    return app


def served_models(cfg: Any, group: str) -> list[str]:
    """The names a group's route accepts: the stage's config name (`asr=faster_whisper_tiny_en` ->
    "faster_whisper_tiny_en") and the aliases in `model_server.aliases` (OpenAI's names by default)."""
    from cvi_lab.config import recorded

    return [str(recorded(cfg).choices[group]), *[str(a) for a in cfg.model_server.aliases[group] or ()]]


async def load_stages(cfg: Any, pool: Any) -> dict[str, Any]:
    """The configured stages, built and warmed up through the engine's stage pool (one at a time)."""
    return {g: await pool.get(g, cfg[g]) for g in cfg.model_server.stages}


async def serve(cfg: Any, *, ready: Callable[[str], None] | None = None, stop: asyncio.Event | None = None) -> int:
    """Run until SIGINT/SIGTERM (or `stop`). Exit code 2: refused to start (a non-loopback host without keys,
    an unknown stage group, a port in use)."""
    from cvi_lab.engine.stage_pool import StagePool
    from cvi_lab.net.safe_fetch import is_loopback

    settings = cfg.model_server
    unknown = [g for g in settings.stages if g not in GROUPS]
    if unknown or not settings.stages:
        print(f"[cvi-lab] model_server.stages {list(settings.stages)} is not accepted; choose from {', '.join(GROUPS)}",
              file=sys.stderr, flush=True)
        return 2
    if not settings.api_keys and not is_loopback(str(settings.host)):
        print(f"[cvi-lab] refusing to serve models on {settings.host} without a key: set model_server.api_keys "
              "or bind to 127.0.0.1", file=sys.stderr, flush=True)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="[cvi-lab] %(levelname)s %(name)s: %(message)s")
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    pool = StagePool()
    stages = await load_stages(cfg, pool)
    app = build_app(stages, {g: served_models(cfg, g) for g in stages}, settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, str(settings.host), int(settings.port))
        await site.start()
    except OSError as exc:
        print(f"[cvi-lab] cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr, flush=True)
        await runner.cleanup()
        return 2
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}/v1"
    print(f"[cvi-lab] serving {', '.join(f'{g} ({served_models(cfg, g)[0]})' for g in stages)} at {url}", flush=True)
    if ready:
        ready(url)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await pool.aclose()
    return 0


def run(cfg: Any) -> int:
    """Blocking entry point of `cvi-lab model-server`."""
    return asyncio.run(serve(cfg))
