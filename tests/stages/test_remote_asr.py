"""asr=openai_compatible, its client side: the OpenAI request it sends and how it fails (a server's error, a hung
server, garbage). Its real traffic against `cvi-lab model-server` is in tests/model_server/."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web
from hydra.utils import instantiate

from cvi_lab.stages.asr.openai_compatible import OpenAICompatibleASR
from cvi_lab.stages.base import StageInputError
from cvi_lab.stages.openai_http import RemoteStageError
from tests.model_server.outside_server import free_port_url, outside_server, silent_server
from tests.stages.conftest import stage_conf

TONE = (0.3 * np.sin(np.arange(8000) * 2 * np.pi * 440 / 16000)).astype(np.float32)


def make(base_url: str, **kw) -> OpenAICompatibleASR:
    return instantiate(stage_conf("asr", "openai_compatible"), **{"base_url": base_url, **kw})


async def test_sends_openai_multipart_and_reads_verbose_json():
    seen = {}

    async def handler(request: web.Request) -> web.Response:
        form = await request.post()
        seen.update(path=request.path, auth=request.headers.get("Authorization"),
                    fields={k: v for k, v in form.items() if isinstance(v, str)},
                    granularities=form.getall("timestamp_granularities[]"), file=form["file"].file.read())
        return web.json_response({"task": "transcribe", "language": "english", "duration": 0.5, "text": " Hello there. ",
                                  "words": [{"word": " Hello", "start": 0.0, "end": 0.2},
                                            {"word": "there.", "start": 0.25, "end": 0.5}]})

    async with outside_server(handler) as base:
        asr = make(base, api_key="sk-asr", response_format="verbose_json", word_timestamps=True, temperature=0.0,
                   prompt="greetings")
        result = await asr.transcribe(TONE)
        await asr.aclose()
    assert result.text == "Hello there." and result.language == "en"  # a language name maps to its ISO code
    assert result.words == [("Hello", 0.0, 0.2), ("there.", 0.25, 0.5)]
    assert seen["path"] == "/v1/audio/transcriptions" and seen["auth"] == "Bearer sk-asr"
    assert seen["fields"] == {"model": "whisper-1", "response_format": "verbose_json", "language": "en",
                              "temperature": "0.0", "prompt": "greetings", "timestamp_granularities[]": "word"}
    assert seen["granularities"] == ["word"]
    audio, rate = sf.read(io.BytesIO(seen["file"]), dtype="int16")
    assert rate == 16000 and len(audio) == len(TONE)  # a 16-bit WAV of exactly the utterance


async def test_a_call_language_is_checked_and_sent():
    seen = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((await request.post()).get("language"))
        return web.json_response({"text": "hallo"})

    async with outside_server(handler) as base:
        asr = make(base, language=None, languages=["en", "de", "*"])
        assert (await asr.transcribe(TONE, language="de")).language == "de"
        assert (await asr.transcribe(TONE)).language is None  # no language: the server detects
        with pytest.raises(StageInputError, match="accepted ISO codes: de, en"):
            await asr.transcribe(TONE, language="xx")
        await asr.aclose()
    assert seen == ["de", None]


@pytest.mark.parametrize("status,body,match", [
    (401, {"error": {"message": "Incorrect API key provided"}}, r"HTTP 401: Incorrect API key provided; check api_key"),
    (404, {"error": {"message": "model not found"}}, r"HTTP 404: model not found; check base_url"),
    (500, "upstream exploded", r"HTTP 500: upstream exploded"),
])
async def test_an_error_status_names_the_server_and_the_reason(status, body, match):
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(body, status=status) if isinstance(body, dict) else web.Response(text=body, status=status)

    async with outside_server(handler) as base:
        asr = make(base)
        with pytest.raises(RemoteStageError, match=match) as err:
            await asr.transcribe(TONE)
        await asr.aclose()
    assert f"{base}/audio/transcriptions" in str(err.value)


@pytest.mark.parametrize("body,match", [
    (b"<html>busy</html>", "not JSON"),
    (b'{"transcript": "hi"}', "no 'text' string"),
    (b'{"text": "hi", "words": [{"word": "hi"}]}', "'words' are not"),
])
async def test_a_bad_body_is_a_clear_error(body, match):
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    async with outside_server(handler) as base:
        asr = make(base, response_format="verbose_json")
        with pytest.raises(RemoteStageError, match=match):
            await asr.transcribe(TONE)
        await asr.aclose()


async def test_a_hung_server_times_out_and_a_closed_port_is_named():
    with silent_server() as base:
        asr = make(base, read_timeout_s=0.3)
        with pytest.raises(RemoteStageError, match=r"timed out \(connect 5.0 s / read 0.3 s\)"):
            await asr.transcribe(TONE)
        await asr.aclose()
    asr = make(free_port_url())
    with pytest.raises(RemoteStageError, match="cannot connect .*check base_url and that the server is running"):
        await asr.warmup()
    await asr.aclose()


async def test_bad_settings_say_what_is_accepted():
    def build(base_url="http://127.0.0.1:1/v1", **kw):
        return OpenAICompatibleASR(base_url=base_url, model="whisper-1", **kw)

    with pytest.raises(StageInputError, match="base_url 'ftp://x' is not accepted"):
        build("ftp://x")
    with pytest.raises(StageInputError, match="response_format 'srt' is not accepted; use one of json, verbose_json"):
        build(response_format="srt")
    with pytest.raises(StageInputError, match="word_timestamps needs response_format: verbose_json"):
        build(word_timestamps=True)
    with pytest.raises(StageInputError, match="sample rate 8000 Hz is not accepted"):
        await build().transcribe(TONE, 8000)
    assert build("http://h:1/v1/audio/transcriptions").endpoint.url == "http://h:1/v1/audio/transcriptions"
