"""`POST /v1/chat/completions` over our llm stage, in OpenAI's shapes.

Request (JSON): `model`, `messages` (roles system, developer (read as system), user, assistant, tool; content
a string, null, or a list of `{"type": "text", "text"}` parts), `stream`, `stream_options.include_usage`,
`max_completion_tokens` or `max_tokens`, `n` (1 only). Sampling fields (`temperature`, `top_p`, `seed`, ...)
are accepted and not used: the stage decodes as its config says.
Answer: with `stream`, Server-Sent Events of `chat.completion.chunk` objects (the role first, then one
`delta.content` per piece, then `finish_reason`, then the usage chunk when asked for, then `data: [DONE]`);
without, one `chat.completion` object with `usage`. A client that disconnects stops generation within a token.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import Any

from aiohttp import web

from cvi_lab.model_server.errors import STREAMING, BadRequest, check_model, json_object
from cvi_lab.stages.base import LLM, ChatMessage, LLMStats, StageInputError

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}


def _content(value: Any, i: int) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                                       for p in value):
        return "".join(p["text"] for p in value)
    raise BadRequest(f"messages[{i}].content must be a string, null or a list of text parts "
                     "({\"type\": \"text\", \"text\": ...})", f"messages[{i}].content")


def parse_messages(raw: Any) -> list[ChatMessage]:
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages must be a non-empty list of {role, content}", "messages")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise BadRequest(f"messages[{i}].role must be one of {', '.join(ROLES)}", f"messages[{i}].role")
        out.append(ChatMessage(ROLES[m["role"]], _content(m.get("content"), i)))
    return out


def _max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"{key} {value!r} is not accepted; use a positive integer", key)
        return value
    return None


def _usage(stats: LLMStats) -> dict[str, Any]:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": stats.cached_prompt_tokens}}


def chat_handler(llm: LLM, models: list[str]):
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await json_object(request)
        model = check_model(body.get("model"), models)
        messages = parse_messages(body.get("messages"))
        max_tokens = _max_tokens(body)
        if body.get("n", 1) != 1:
            raise BadRequest(f"n {body.get('n')!r} is not accepted; this server makes one choice (n: 1)", "n")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise BadRequest("stream must be true or false", "stream")
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise BadRequest("stream_options must be an object ({include_usage: bool})", "stream_options")
        stats = LLMStats()
        pieces = llm.stream(messages, max_tokens=max_tokens, stats=stats)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model}
        async with contextlib.aclosing(pieces):
            try:
                first = await anext(pieces, None)
            except StageInputError as exc:
                raise BadRequest(str(exc), "messages") from None
            if not stream:
                text = "".join([first or "", *[p async for p in pieces]])
                return web.json_response({
                    **head, "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": _finish(stats, max_tokens)}],
                    "usage": _usage(stats)})
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await resp.prepare(request)
            request[STREAMING] = True  # from here a failure can only cut the stream short (errors.py)

            async def send(delta: dict[str, Any] | None, finish: str | None = None, usage: dict | None = None) -> None:
                choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
                event = {**head, "object": "chat.completion.chunk", "choices": choices}
                if usage is not None:
                    event["usage"] = usage
                await resp.write(f"data: {json.dumps(event)}\n\n".encode())

            try:
                await send({"role": "assistant", "content": ""})
                piece = first
                while piece is not None:
                    await send({"content": piece})
                    piece = await anext(pieces, None)
                await send({}, _finish(stats, max_tokens))
                if options.get("include_usage"):
                    await send(None, usage=_usage(stats))
                await resp.write(b"data: [DONE]\n\n")
            except ConnectionResetError:  # the client went away (a barge-in): closing `pieces` stops decoding
                return resp
        await resp.write_eof()
        return resp

    return handle


def _finish(stats: LLMStats, max_tokens: int | None) -> str:
    return "length" if max_tokens is not None and stats.completion_tokens >= max_tokens else "stop"
