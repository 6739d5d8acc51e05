"""A tiny OpenAI-compatible chat server on loopback, streaming Server-Sent Events like vLLM / Ollama / the
OpenAI API do: for testing `openai_compatible` LLM clients (and, later, engine tests that need a fast,
scripted LLM).

The answer is `reply(messages)` (default: echoes the last user message as "You said: ..."), cut into
word tokens, one SSE event per token, `token_delay_s` apart; `max_tokens` is honoured, a final usage event is
sent when `stream_options.include_usage` asks for it. It records every request, how many tokens each stream
actually sent and whether the client went away early (cancellation tests).

    async with SSEServer(api_key="secret") as srv:
        llm = OpenAICompatibleLLM(base_url=srv.base_url, api_key="secret", model="test")
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web


def echo_reply(messages: list[dict[str, Any]]) -> str:
    last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    return f"You said: {last}"


@dataclass
class StreamRecord:
    body: dict[str, Any]
    headers: dict[str, str]
    sent_tokens: int = 0
    client_gone: bool = False
    finished: bool = False
    started: float = field(default_factory=time.monotonic)


class SSEServer:
    """OpenAI-style `/v1/chat/completions` (stream and non-stream) and `/v1/models` on 127.0.0.1."""

    def __init__(
        self,
        reply: Callable[[list[dict[str, Any]]], str] = echo_reply,
        token_delay_s: float = 0.0,
        api_key: str | None = None,
        model: str = "test-model",
        cached_tokens: int | None = None,
    ) -> None:
        self.reply, self.token_delay_s, self.api_key, self.model = reply, token_delay_s, api_key, model
        self.cached_tokens = cached_tokens
        self.requests: list[StreamRecord] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> "SSEServer":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]  # the free port bound

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ handlers
    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
        return web.json_response({"error": {"message": message, "type": kind}}, status=status)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(401, "Incorrect API key provided.", "authentication_error")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return self._error(400, "body is not JSON")
        rec = StreamRecord(body=body, headers=dict(request.headers))
        self.requests.append(rec)
        if body.get("model") != self.model:
            return self._error(404, f"The model `{body.get('model')}` does not exist.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(400, "messages must be a non-empty list")
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 10_000
        tokens = re.findall(r"\S+\s*", self.reply(messages))[: int(max_tokens)]
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens), "total_tokens": prompt_tokens + len(tokens)}
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        cid, created = f"chatcmpl-{len(self.requests)}", int(time.time())
        if not body.get("stream"):
            rec.sent_tokens, rec.finished = len(tokens), True
            return web.json_response({
                "id": cid, "object": "chat.completion", "created": created, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(tokens).rstrip()}, "finish_reason": "stop"}],
                "usage": usage,
            })
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)

        def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": self.model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(chunk)}\n\n".encode()

        try:
            await resp.write(event({"role": "assistant", "content": ""}))
            for i, tok in enumerate(tokens):
                if self.token_delay_s:
                    await asyncio.sleep(self.token_delay_s)
                await resp.write(event({"content": tok.rstrip() if i == len(tokens) - 1 else tok}))
                rec.sent_tokens += 1
            finish = "length" if len(tokens) == max_tokens else "stop"
            await resp.write(event({}, finish))
            if (body.get("stream_options") or {}).get("include_usage"):
                await resp.write(f"data: {json.dumps({'id': cid, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
            rec.finished = True
        except (ConnectionResetError, asyncio.CancelledError):
            rec.client_gone = True
            raise
        return resp
