"""A loopback OpenAI-compatible chat server over cvi-lab's configured LLM stage (runs in OUR venv).

Why: Pipecat has no embedded SmolLM2 service, but it speaks OpenAI's streaming /v1/chat/completions. This
server builds the LLM exactly as cvi-lab's engine does for a conversation (`build_plan` over the composed
cvi_lab/conf/serve.yaml: the default `llm` choice, with `engine.stage_overrides` applied, e.g. threads=1), warms it
up, primes its prompt-prefix cache with the call's system message like the engine does at call start, and
then streams `llm.stream(messages, max_tokens, stats)` pieces as SSE chunks. Sampling settings in the request
(temperature, top_p, seed, ...) are ignored: the stage's own config applies, as it does inside cvi-lab.

    python -m benchmarks.peer.llm_server [--port 0] [--system-prompt TEXT] [hydra overrides ...]

Prints `READY <port>` on stdout once the model is loaded and primed. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
import uuid
from typing import Any

log = logging.getLogger("peer.llm_server")


def build_llm(overrides: list[str]) -> tuple[Any, Any, dict]:
    """(llm stage instance, engine settings, description) as the engine would build it."""
    from cvi_lab.cli import compose_config
    from cvi_lab.engine.pipeline_config import build_plan
    from cvi_lab.engine.stage_pool import instantiate
    from omegaconf import OmegaConf

    cfg = compose_config(overrides)
    plan = build_plan(cfg)
    llm_cfg = plan.stages["llm"]
    llm = instantiate(llm_cfg)
    desc = {"choice": plan.choices.get("llm"), "config": OmegaConf.to_container(llm_cfg, resolve=True)}
    return llm, plan.settings, desc


def _text(content: Any) -> str:
    """OpenAI message content: a string, or a list of parts ({"type": "text", "text": ...})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
    return str(content)


class ChatServer:
    def __init__(self, llm: Any, default_max_tokens: int, model_name: str = "cvi-lab-llm") -> None:
        self.llm, self.default_max_tokens, self.model_name = llm, default_max_tokens, model_name
        self.requests: list[dict] = []  # per request: prompt/completion tokens, ttft, total

    def app(self):
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.stats)
        return app

    async def models(self, request):
        from aiohttp import web

        return web.json_response({"object": "list", "data": [{"id": self.model_name, "object": "model"}]})

    async def stats(self, request):
        from aiohttp import web

        return web.json_response({"requests": self.requests})

    async def chat(self, request):
        from aiohttp import web

        from cvi_lab.stages.base import ChatMessage, LLMStats

        body = await request.json()
        messages = [ChatMessage(m.get("role", "user"), _text(m.get("content"))) for m in body.get("messages", [])]
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or self.default_max_tokens
        stream = bool(body.get("stream", False))
        usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:16]}", int(time.time())
        stats, t0 = LLMStats(), time.perf_counter()
        record = {"at": time.time(), "messages": len(messages), "max_tokens": max_tokens}

        def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
            obj: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created,
                                   "model": self.model_name,
                                   "choices": [] if usage is not None else
                                   [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage is not None:
                obj["usage"] = usage
            return f"data: {json.dumps(obj)}\n\n".encode()

        def usage() -> dict:
            return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
                    "total_tokens": stats.prompt_tokens + stats.completion_tokens}

        pieces: list[str] = []
        resp = None
        if stream:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await resp.prepare(request)
        first = None
        try:
            async with contextlib.aclosing(self.llm.stream(messages, int(max_tokens), stats)) as gen:
                async for piece in gen:
                    if first is None:
                        first = time.perf_counter() - t0
                    if resp is not None:  # the role rides on the first piece: no empty chunk before the text
                        await resp.write(chunk({"content": piece} | ({} if pieces else {"role": "assistant"})))
                    pieces.append(piece)
        finally:
            record.update(prompt_tokens=stats.prompt_tokens, cached_prompt_tokens=stats.cached_prompt_tokens,
                          completion_tokens=stats.completion_tokens,
                          ttft_ms=None if first is None else round(first * 1000, 1),
                          total_ms=round((time.perf_counter() - t0) * 1000, 1), text="".join(pieces))
            self.requests.append(record)
        if resp is None:
            return web.json_response({
                "id": cid, "object": "chat.completion", "created": created, "model": self.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces)},
                             "finish_reason": "stop"}], "usage": usage()})
        await resp.write(chunk({}, "stop"))
        if usage_wanted:
            await resp.write(chunk({}, usage=usage()))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


async def serve(args: argparse.Namespace) -> None:
    import inspect

    from aiohttp import web

    llm, settings, desc = build_llm(args.overrides)
    # as the engine: the stage pool warms the shared instance and hands out a fork per conversation (when the
    # backend offers one); the engine then primes that instance's prefix cache with the call's system message
    if hasattr(llm, "warmup"):
        await llm.warmup()
    if hasattr(llm, "fork"):
        llm = llm.fork()
    warmup = getattr(llm, "warmup", None)
    if args.system_prompt and warmup is not None and "system_prompt" in inspect.signature(warmup).parameters:
        await warmup(system_prompt=args.system_prompt)
    server = ChatServer(llm, int(settings.max_tokens))
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    port = runner.addresses[0][1]  # the bound port (args.port 0 = a free one)
    print(json.dumps({"llm": desc, "max_tokens": settings.max_tokens}), flush=True)
    print(f"READY {port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peer.llm_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--system-prompt", default="", help="prime the prefix cache with this system message")
    p.add_argument("overrides", nargs="*", help="Hydra key=value overrides over cvi_lab/conf/serve.yaml")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[llm-server] %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
