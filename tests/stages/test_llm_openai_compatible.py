"""openai_compatible LLM against a real SSE server on loopback (tests/helpers/sse_server.py)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from hydra.utils import instantiate

from cvi_lab.stages.base import ChatMessage, LLMStats, StageInputError
from cvi_lab.stages.llm.openai_compatible import LLMEndpointError, OpenAICompatibleLLM
from tests.stages.conftest import stage_conf
from tests.helpers.sse_server import SSEServer

MSGS = [ChatMessage("system", "Be brief."), ChatMessage("user", "one two three four five six seven eight")]


def make(server: SSEServer, **kw) -> OpenAICompatibleLLM:
    cfg = stage_conf("llm", "openai_compatible")
    return instantiate(cfg, **{"base_url": server.base_url, "model": "test-model", "api_key": server.api_key, **kw})


async def test_streams_pieces_with_usage_and_sends_the_request():
    async with SSEServer(api_key="sk-test", cached_tokens=3) as srv:
        llm = make(srv)
        stats = LLMStats()
        pieces = [p async for p in llm.stream(MSGS, stats=stats)]
        await llm.aclose()
    assert "".join(pieces) == "You said: one two three four five six seven eight"
    assert len(pieces) == 10 and pieces[0] == "You "
    assert stats.completion_tokens == 10 and stats.prompt_tokens == 10 and stats.cached_prompt_tokens == 3
    assert stats.first_token_s is not None and stats.total_s >= stats.first_token_s
    body = srv.requests[0].body
    assert body["stream"] is True and body["model"] == "test-model" and body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert srv.requests[0].headers["Authorization"] == "Bearer sk-test"


async def test_honours_max_tokens_and_works_without_usage():
    async with SSEServer() as srv:
        llm = make(srv, include_usage=False, extra_body={"top_k": 5})
        stats = LLMStats()
        out = "".join([p async for p in llm.stream(MSGS, max_tokens=3, stats=stats)])
        await llm.warmup()
        await llm.aclose()
    assert out == "You said: one"
    assert stats.completion_tokens == 3
    assert srv.requests[0].body["max_tokens"] == 3 and srv.requests[0].body["top_k"] == 5
    assert "stream_options" not in srv.requests[0].body


async def test_cancellation_closes_the_stream_promptly():
    async with SSEServer(token_delay_s=0.05, reply=lambda m: "word " * 200) as srv:
        llm = make(srv)
        got: list[str] = []

        async def consume():
            async for piece in llm.stream(MSGS, max_tokens=200):
                got.append(piece)

        task = asyncio.create_task(consume())
        while len(got) < 3:
            await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.perf_counter() - t0 < 2.0
        rec = srv.requests[0]
        at_cancel = rec.sent_tokens
        await asyncio.sleep(0.5)  # 10 more tokens would have been sent by now
        assert rec.sent_tokens <= at_cancel + 2 and not rec.finished and rec.client_gone
        await llm.aclose()


async def test_unreachable_endpoint_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAICompatibleLLM(base_url=f"http://127.0.0.1:{port}/v1", model="m", connect_timeout_s=2)
    with pytest.raises(LLMEndpointError, match="cannot connect.*check base_url"):
        await llm.warmup()
    await llm.aclose()


async def test_http_errors_are_clear():
    async with SSEServer(api_key="right") as srv:
        bad_key = make(srv, api_key="wrong")
        with pytest.raises(LLMEndpointError, match="HTTP 401: Incorrect API key.*check api_key"):
            await bad_key.warmup()
        bad_model = make(srv, model="nope")
        with pytest.raises(LLMEndpointError, match="HTTP 404.*`nope` does not exist"):
            await bad_model.warmup()
        await bad_key.aclose()
        await bad_model.aclose()


async def test_bad_input_is_a_clear_error():
    with pytest.raises(StageInputError, match="base_url"):
        OpenAICompatibleLLM(base_url="localhost:8000", model="m")
    llm = OpenAICompatibleLLM(base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(StageInputError, match="non-empty list"):
        async for _ in llm.stream([]):
            pass
    with pytest.raises(StageInputError, match="positive integer"):
        async for _ in llm.stream(MSGS, max_tokens=-1):
            pass
