"""tts=openai_compatible, its client side: the OpenAI request, audio handed on before the body ends, WAV read as
it arrives, and how it fails. Its real traffic against `cvi-lab model-server` is in tests/model_server/."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
from aiohttp import web
from hydra.utils import instantiate

from cvi_lab.stages.base import StageInputError
from cvi_lab.stages.openai_http import RemoteStageError
from cvi_lab.stages.tts.openai_compatible import OpenAICompatibleTTS, WavStream
from cvi_lab.stages.tts.style import StyledVoice, VoiceStyle
from tests.model_server.outside_server import outside_server, silent_server
from tests.stages.conftest import stage_conf

RAMP = (np.arange(4800) % 200 - 100).astype("<i2") * 100  # 0.2 s at 24 kHz, known samples


def make(base_url: str, **kw) -> OpenAICompatibleTTS:
    return instantiate(stage_conf("tts", "openai_compatible"), **{"base_url": base_url, **kw})


def wav_header(rate: int, channels: int = 1, bits: int = 16, tag: int = 1, extra: bytes = b"") -> bytes:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"LIST" + struct.pack("<I", 4) + b"INFO"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra + b"data" + struct.pack("<I", 0xFFFFFFFF))


async def test_first_audio_arrives_before_the_body_ends():
    release = asyncio.Event()
    seen = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.update(body=await request.json(), auth=request.headers.get("Authorization"))
        resp = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await resp.prepare(request)
        await resp.write(RAMP.tobytes()[:4801])  # an odd byte count: half a sample waits for the rest
        await release.wait()  # the rest only once the client has the first chunk
        await resp.write(RAMP.tobytes()[4801:])
        return resp

    async with outside_server(handler) as base:
        tts = make(base, api_key="sk-tts", speed=1.25)
        chunks = []
        async for chunk in tts.stream("Hello there."):
            chunks.append(chunk)
            release.set()
        await tts.aclose()
    assert seen["body"] == {"model": "tts-1", "input": "Hello there.", "voice": "alloy", "response_format": "pcm",
                            "speed": 1.25}
    assert seen["auth"] == "Bearer sk-tts"
    assert len(chunks) == 2 and chunks[0].text == "Hello there." and chunks[1].text == ""
    assert all(c.sample_rate == 24000 for c in chunks)
    got = np.concatenate([c.samples for c in chunks])
    np.testing.assert_array_equal(got, RAMP.astype(np.float32) / 32768.0)  # not a sample lost at the odd split


async def test_a_wav_body_is_read_byte_by_byte_and_resampled():
    stereo = np.repeat(RAMP[:2205], 2)  # 2205 stereo frames at 22.05 kHz = 0.1 s
    body = wav_header(22050, channels=2) + stereo.astype("<i2").tobytes()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        await resp.prepare(request)
        for i in range(0, len(body), 7):  # header and samples split anywhere
            await resp.write(body[i:i + 7])
        return resp

    async with outside_server(handler) as base:
        tts = make(base, response_format="wav", sample_rate=16000, chunk_ms=20)
        chunks = [c async for c in tts.stream("Hi.")]
        await tts.aclose()
    assert chunks and all(c.sample_rate == 16000 for c in chunks)
    assert abs(sum(len(c.samples) for c in chunks) - 1600) <= len(chunks)  # 0.1 s at 16 kHz (rounding per chunk)
    wav, pcm = WavStream(RemoteStageError), b""
    for i in range(0, len(body), 7):  # the header split anywhere: the PCM after it comes out whole
        pcm += wav.feed(body[i:i + 7])
    assert wav.rate == 22050 and wav.channels == 2 and pcm == stereo.astype("<i2").tobytes()


def test_wav_stream_reads_float_and_extensible_formats_and_refuses_others():
    fail = RemoteStageError
    wav = WavStream(fail)
    data = np.array([0.5, -0.25], "<f4").tobytes()
    assert wav.feed(wav_header(24000, bits=32, tag=3) + data) == data
    np.testing.assert_array_equal(wav.samples(data), [0.5, -0.25])
    ext = struct.pack("<HH", 22, 16) + struct.pack("<I", 4) + struct.pack("<H", 1) + b"\x00" * 14  # cbSize, sub-format PCM
    wav = WavStream(fail)
    header = wav_header(16000, tag=0xFFFE)
    fmt_at = header.index(b"fmt ")
    patched = header[:fmt_at + 4] + struct.pack("<I", 16 + len(ext)) + header[fmt_at + 8:fmt_at + 24] + ext + header[fmt_at + 24:]
    wav.feed(patched)
    assert wav.in_data and wav.rate == 16000 and not wav.is_float
    with pytest.raises(RemoteStageError, match="wav format 1 with 8-bit samples"):
        WavStream(fail).feed(wav_header(8000, bits=8))
    with pytest.raises(RemoteStageError, match="does not start with a RIFF/WAVE header"):
        WavStream(fail).feed(b"ID3\x04" + b"\x00" * 20)


@pytest.mark.parametrize("status,body,match", [
    (400, {"error": {"message": "input is too long"}}, "HTTP 400: input is too long"),
    (429, {"error": {"message": "slow down"}}, "HTTP 429: slow down; rate limited"),
])
async def test_an_error_status_names_the_server(status, body, match):
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(body, status=status)

    async with outside_server(handler) as base:
        tts = make(base)
        with pytest.raises(RemoteStageError, match=match) as err:
            [c async for c in tts.stream("Hello.")]
        await tts.aclose()
    assert f"{base}/audio/speech" in str(err.value)


@pytest.mark.parametrize("fmt,body,match", [
    ("pcm", b"", "held no audio"),
    ("wav", b"RIFF\xff\xff\xff\xffWAVE", "ended before its audio began"),
    ("wav", b"<html>oops</html>", "RIFF/WAVE header"),
])
async def test_a_bad_body_is_a_clear_error(fmt, body, match):
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="audio/wav")

    async with outside_server(handler) as base:
        tts = make(base, response_format=fmt)
        with pytest.raises(RemoteStageError, match=match):
            [c async for c in tts.stream("Hello.")]
        await tts.aclose()


async def test_cancelling_closes_the_connection_and_a_hung_server_times_out():
    gone = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await resp.prepare(request)
        try:
            while True:
                await resp.write(RAMP.tobytes())
                await asyncio.sleep(0.02)
        except ConnectionResetError:
            gone.set()
        return resp

    async with outside_server(handler) as base:
        tts = make(base)
        stream = tts.stream("A long answer.")
        await anext(stream)
        await stream.aclose()  # what cancelling the consumer does
        await asyncio.wait_for(gone.wait(), 10)
        await tts.aclose()
    with silent_server() as base:
        tts = make(base, read_timeout_s=0.3)
        with pytest.raises(RemoteStageError, match=r"timed out \(connect 5.0 s / read 0.3 s\)"):
            [c async for c in tts.stream("Hello.")]
        await tts.aclose()


async def test_an_emotion_scales_speed_and_bad_settings_say_what_is_accepted():
    tts = OpenAICompatibleTTS(base_url="http://h:1/v1", model="m", voice="v")
    assert isinstance(tts, StyledVoice)
    assert "speed" not in tts._body("Hi.", VoiceStyle())
    assert tts._body("Hi.", VoiceStyle(speed=1.5))["speed"] == 1.5
    assert OpenAICompatibleTTS(base_url="http://h:1/v1", model="m", voice="v", speed=3.0)._body("Hi.", VoiceStyle(speed=2.0))["speed"] == 4.0
    with pytest.raises(StageInputError, match="speed 5 is not accepted; use 0.25-4.0"):
        OpenAICompatibleTTS(base_url="http://h:1/v1", model="m", voice="v", speed=5)
    with pytest.raises(StageInputError, match="response_format 'mp3' is not accepted; use one of pcm, wav"):
        OpenAICompatibleTTS(base_url="http://h:1/v1", model="m", voice="v", response_format="mp3")
    with pytest.raises(StageInputError, match="has nothing to speak"):
        [c async for c in tts.stream("  ...  ")]
