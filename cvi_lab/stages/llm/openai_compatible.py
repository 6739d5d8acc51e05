"""Any OpenAI-compatible streaming `/v1/chat/completions` endpoint: vLLM, Ollama, llama.cpp server, SGLang,
or a hosted API (the persona's `layers.llm.base_url` / `api_key` / `model` map onto this backend).

Why raw aiohttp + SSE parsing rather than the `openai` SDK: one dependency less (aiohttp is already here for
the server), and the stream is closed the moment the consumer is cancelled: the server sees the
disconnect and stops generating (vLLM and llama.cpp abort the request), so no tokens are paid for after a
barge-in. Token usage (and `prompt_tokens_details.cached_tokens`, for servers with prefix caching) fills
`LLMStats` when the server sends it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator, Mapping, Sequence

from cvi_lab.stages.base import LLM, ChatMessage, LLMStats, StageError, StageInputError
from cvi_lab.stages.llm.messages import check_max_tokens, normalize_messages
from cvi_lab.stages.openai_http import KeepAliveSession, error_text


class LLMEndpointError(StageError):
    """The endpoint could not be reached or answered with an error; the message says which and why."""


class OpenAICompatibleLLM(LLM):
    """Settings mirror `cvi_lab/conf/llm/openai_compatible.yaml`.

    base_url: e.g. http://127.0.0.1:8000/v1 (vLLM), http://127.0.0.1:11434/v1 (Ollama), https://api.openai.com/v1;
      a URL already ending in /chat/completions is used as is.
    api_key: sent as `Authorization: Bearer ...` when set.
    connect_timeout_s: to open the connection; read_timeout_s: the longest wait for the next streamed piece.
    include_usage: ask for a final usage event (`stream_options`); turn off for servers that reject it.
    extra_body: merged into the request (e.g. {"top_k": 20} for vLLM, {"options": {...}} for Ollama).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        max_new_tokens: int = 128,
        temperature: float | None = 0.0,
        top_p: float | None = None,
        seed: int | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        include_usage: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not base_url or not str(base_url).startswith(("http://", "https://")):
            raise StageInputError(
                f"OpenAICompatibleLLM: base_url {base_url!r} is not accepted; use an http(s) URL such as "
                "http://127.0.0.1:8000/v1"
            )
        if not model:
            raise StageInputError("OpenAICompatibleLLM: model is required (the name the server knows the model by)")
        url = str(base_url).rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model, self.api_key = str(model), api_key
        self.max_new_tokens = check_max_tokens(max_new_tokens, 128, "OpenAICompatibleLLM")
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.connect_timeout_s, self.read_timeout_s = float(connect_timeout_s), float(read_timeout_s)
        self.include_usage = bool(include_usage)
        self.extra_body = dict(extra_body or {})
        self.headers = dict(headers or {})
        self.session = KeepAliveSession(self.connect_timeout_s, self.read_timeout_s)

    async def aclose(self) -> None:
        await self.session.aclose()

    async def warmup(self) -> None:
        """One 1-token request: checks the endpoint, key and model now rather than on the first turn."""
        async for _ in self.stream([ChatMessage("user", "Hi")], max_tokens=1):
            pass

    def _body(self, msgs: list[dict[str, str]], max_new: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": msgs, "stream": True, "max_tokens": max_new}
        if self.include_usage:
            body["stream_options"] = {"include_usage": True}
        for key, value in (("temperature", self.temperature), ("top_p", self.top_p), ("seed", self.seed)):
            if value is not None:
                body[key] = value
        body.update(self.extra_body)
        return body

    async def stream(
        self, messages: Sequence[ChatMessage], max_tokens: int | None = None, stats: LLMStats | None = None
    ) -> AsyncIterator[str]:
        """Text pieces as the server streams them; cancelling closes the connection at once."""
        import aiohttp

        t0 = time.perf_counter()
        msgs = normalize_messages(messages, "OpenAICompatibleLLM")
        max_new = check_max_tokens(max_tokens, self.max_new_tokens, "OpenAICompatibleLLM")
        stats = stats if stats is not None else LLMStats()
        headers = {"Accept": "text/event-stream", **self.headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        who = f"OpenAICompatibleLLM ({self.url})"
        try:
            async with self.session.get().post(self.url, json=self._body(msgs, max_new), headers=headers) as resp:
                if resp.status != 200:
                    raise LLMEndpointError(f"{who}: HTTP {resp.status}: {error_text(await resp.text())}" + _hint(resp.status))
                pieces = 0
                async for data in _sse_data(resp):
                    if data == "[DONE]":
                        break
                    try:
                        event = json.loads(data)
                    except json.JSONDecodeError:
                        raise LLMEndpointError(f"{who}: the stream sent a non-JSON event: {data[:200]!r}") from None
                    if event.get("error"):
                        raise LLMEndpointError(f"{who}: the server reported an error: {error_text(json.dumps(event))}")
                    usage = event.get("usage")
                    if usage:
                        stats.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                        stats.completion_tokens = int(usage.get("completion_tokens") or pieces)
                        details = usage.get("prompt_tokens_details") or {}
                        stats.cached_prompt_tokens = int(details.get("cached_tokens") or 0)
                    for choice in event.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            pieces += 1
                            if not usage:
                                stats.completion_tokens = pieces
                            if stats.first_token_s is None:
                                stats.first_token_s = time.perf_counter() - t0
                            yield text
        except aiohttp.ClientConnectorError as exc:
            raise LLMEndpointError(
                f"{who}: cannot connect ({exc.os_error or exc}); check base_url and that the server is running"
            ) from exc
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise LLMEndpointError(
                f"{who}: timed out (connect {self.connect_timeout_s} s / read {self.read_timeout_s} s)"
            ) from exc
        except aiohttp.ClientError as exc:
            raise LLMEndpointError(f"{who}: connection failed: {exc}") from exc
        stats.total_s = time.perf_counter() - t0


async def _sse_data(resp) -> AsyncIterator[str]:
    """The `data:` payloads of a Server-Sent Events response (multi-line data joined with newlines)."""
    buf: list[str] = []
    async for raw in resp.content:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if buf:
                yield "\n".join(buf)
                buf = []
        elif line.startswith("data:"):
            buf.append(line[5:].lstrip(" "))
        # comments (":"), "event:", "id:", "retry:" lines carry nothing we use
    if buf:
        yield "\n".join(buf)


def _hint(status: int) -> str:
    return {
        401: "; check api_key",
        403: "; the key is not allowed to use this model",
        404: "; check base_url (should end in /v1) and model",
        429: "; rate limited or out of quota",
    }.get(status, "")
