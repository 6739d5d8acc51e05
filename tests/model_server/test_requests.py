"""The model server refuses what it cannot serve as OpenAI does: a 4xx with `{"error": {"message", "type",
"param", "code"}}` naming the field and what is accepted (never a 500); no model is loaded for a refusal."""

from __future__ import annotations

import io

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from tests.model_server.conftest import ThreadedModelServer


def wav(seconds: float = 0.25) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(16000 * seconds), np.int16), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def form(**fields) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for key, value in fields.items():
        if key == "file":
            data.add_field("file", value, filename="a.wav", content_type="audio/wav")
        else:
            data.add_field(key, value)
    return data


async def call(url: str, path: str, method: str = "POST", **kwargs) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url.removesuffix("/v1") + path, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)


SPEECH = {"model": "tts-1", "input": "Hello.", "voice": "alloy"}
CHAT = {"model": "default", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize("path,kwargs,status,param,says", [
    ("/v1/audio/transcriptions", {"data": form(model="whisper-1")}, 400, "file", "file is required"),
    ("/v1/audio/transcriptions", {"data": form(file=wav())}, 400, "model", "model is required; this server accepts: faster_whisper_tiny_en, whisper-1"),
    ("/v1/audio/transcriptions", {"data": form(file=wav(), model="whisper-9")}, 404, "model", "'whisper-9' does not exist here"),
    ("/v1/audio/transcriptions", {"data": form(file=wav(), model="whisper-1", response_format="srt")}, 400, "response_format", "accepted: json, text, verbose_json"),
    ("/v1/audio/transcriptions", {"data": form(file=b"not audio", model="whisper-1")}, 400, "file", "accepted: WAV, FLAC, OGG"),
    ("/v1/audio/transcriptions", {"data": form(file=wav(), model="whisper-1", temperature="hot")}, 400, "temperature", "from 0 to 1"),
    ("/v1/audio/transcriptions", {"data": form(file=wav(), model="whisper-1", **{"timestamp_granularities[]": "char"})}, 400, "timestamp_granularities[]", "accepted: word, segment"),
    ("/v1/audio/transcriptions", {"json": {"model": "whisper-1"}}, 400, None, "multipart/form-data"),
    ("/v1/audio/speech", {"data": b"{not json"}, 400, None, "JSON object"),
    ("/v1/audio/speech", {"json": {**SPEECH, "input": ""}}, 400, "input", "non-empty string of at most 4096"),
    ("/v1/audio/speech", {"json": {**SPEECH, "voice": None}}, 400, "voice", "voice is required"),
    ("/v1/audio/speech", {"json": {**SPEECH, "response_format": "mp3"}}, 400, "response_format", "accepted: pcm, wav"),
    ("/v1/audio/speech", {"json": {**SPEECH, "speed": 9}}, 400, "speed", "from 0.25 to 4.0"),
    ("/v1/audio/speech", {"json": {**SPEECH, "stream_format": "sse"}}, 400, "stream_format", "accepted: audio"),
    ("/v1/audio/speech", {"json": {**SPEECH, "model": "whisper-1"}}, 404, "model", "accepts: piper, tts-1"),
    ("/v1/chat/completions", {"json": {**CHAT, "messages": []}}, 400, "messages", "non-empty list"),
    ("/v1/chat/completions", {"json": {**CHAT, "messages": [{"role": "robot", "content": "x"}]}}, 400, "messages[0].role", "one of system, developer"),
    ("/v1/chat/completions", {"json": {**CHAT, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}}, 400, "messages[0].content", "list of text parts"),
    ("/v1/chat/completions", {"json": {**CHAT, "max_tokens": 0}}, 400, "max_tokens", "positive integer"),
    ("/v1/chat/completions", {"json": {**CHAT, "n": 2}}, 400, "n", "n: 1"),
    ("/v1/chat/completions", {"json": {**CHAT, "stream": "yes"}}, 400, "stream", "true or false"),
])
async def test_a_bad_request_is_an_openai_error_naming_the_field(model_server, path, kwargs, status, param, says):
    got, body = await call(model_server.url, path, **kwargs)
    assert got == status, body
    assert body["error"]["param"] == param and says in body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"


async def test_routes_models_and_sizes(model_server):
    status, body = await call(model_server.url, "/v1/models", "GET")
    assert status == 200 and {m["id"] for m in body["data"]} >= {"faster_whisper_tiny_en", "whisper-1", "piper", "tts-1",
                                                                  "ct2_causal", "default"}
    status, body = await call(model_server.url, "/v1/embeddings", json={})
    assert status == 404 and "/v1/audio/speech" in body["error"]["message"]
    status, body = await call(model_server.url, "/v1/audio/speech", "GET")
    assert status == 405
    status, body = await call(model_server.url, "/v1/audio/transcriptions",
                              data=form(file=b"\0" * (26 * 1024 * 1024), model="whisper-1"))
    assert status == 413 and "error" in body
    assert await call(model_server.url, "/health", "GET") == (200, {"status": "ok", "stages": ["asr", "llm", "tts"]})


async def test_keys_are_required_when_set():
    with ThreadedModelServer(["model_server.stages=[tts]"], api_keys=["k1"]) as server:
        status, body = await call(server.url, "/v1/audio/speech", json=SPEECH)
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        status, body = await call(server.url, "/v1/audio/speech", json={**SPEECH, "speed": 0},
                                  headers={"Authorization": "Bearer k1"})
        assert status == 400  # the key let it through to the field check
        assert (await call(server.url, "/health", "GET"))[0] == 200
