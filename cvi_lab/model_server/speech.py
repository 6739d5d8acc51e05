"""`POST /v1/audio/speech` over our tts stage, streamed, in OpenAI's shapes.

Request (JSON): `model`, `input` (1..max_input_chars), `voice` (a name, or `{"id": name}`: our stage has one
voice, so any name speaks with it), `response_format` pcm | wav (OpenAI's default mp3 is not encoded here: a
request without one gets wav), `speed` 0.25-4.0 (through the stage's `StyledVoice` where it has one),
`instructions` (accepted, not used), `stream_format` audio.
Answer: the audio as it is made, chunked: `pcm` is 16-bit little-endian mono at `pcm_sample_rate` (24 kHz, as
OpenAI's); `wav` is one streamed WAV at the voice's own rate whose header sizes are 0xFFFFFFFF (unknown length).
The first clause's audio leaves before the next is synthesized; a client that goes away stops synthesis.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Any

from aiohttp import web

from cvi_lab.model_server.errors import STREAMING, BadRequest, check_model, json_object
from cvi_lab.stages.base import TTS, StageInputError
from cvi_lab.stages.tts.style import NEUTRAL_VOICE, StyledVoice, VoiceStyle

RESPONSE_FORMATS = ("pcm", "wav")
DEFAULT_FORMAT = "wav"
SPEED_RANGE = (0.25, 4.0)
CONTENT_TYPES = {"pcm": "audio/pcm", "wav": "audio/wav"}


def streamed_wav_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header for a body of unknown length (sizes 0xFFFFFFFF, as streaming servers send)."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", unknown) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + \
        b"data" + struct.pack("<I", unknown)


def _style(body: dict[str, Any]) -> VoiceStyle:
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:
        raise BadRequest(f"speed {speed!r} is not accepted; use a number from {SPEED_RANGE[0]} to {SPEED_RANGE[1]}",
                         "speed")
    return NEUTRAL_VOICE if speed == 1.0 else VoiceStyle(speed=float(speed))


def _check(body: dict[str, Any], max_chars: int) -> tuple[str, str]:
    text = body.get("input")
    if not isinstance(text, str) or not text.strip() or len(text) > max_chars:
        raise BadRequest(f"input must be a non-empty string of at most {max_chars} characters", "input")
    voice = body.get("voice")
    name = voice.get("id") if isinstance(voice, dict) else voice
    if not isinstance(name, str) or not name:
        raise BadRequest("voice is required: a voice name (this server speaks every name with its one voice)", "voice")
    fmt = body.get("response_format", DEFAULT_FORMAT)
    if fmt not in RESPONSE_FORMATS:
        raise BadRequest(f"response_format {fmt!r} is not accepted here; accepted: {', '.join(RESPONSE_FORMATS)}",
                         "response_format")
    if body.get("stream_format", "audio") != "audio":
        raise BadRequest(f"stream_format {body.get('stream_format')!r} is not accepted; accepted: audio", "stream_format")
    if not isinstance(body.get("instructions", ""), str):
        raise BadRequest("instructions must be a string", "instructions")
    return text, fmt


def speech_handler(tts: TTS, models: list[str], pcm_sample_rate: int, max_input_chars: int):
    async def handle(request: web.Request) -> web.StreamResponse:
        from cvi_lab.audio import resample, to_int16

        body = await json_object(request)
        check_model(body.get("model"), models)
        text, fmt = _check(body, max_input_chars)
        style = _style(body)
        rate = pcm_sample_rate if fmt == "pcm" else tts.sample_rate
        chunks = tts.stream_styled(text, style) if style != NEUTRAL_VOICE and isinstance(tts, StyledVoice) \
            else tts.stream(text)
        async with contextlib.aclosing(chunks):
            try:
                first = await anext(chunks)
            except StageInputError as exc:
                raise BadRequest(str(exc), "input") from None
            except StopAsyncIteration:
                raise BadRequest(f"input {text[:60]!r} gave no audio; give text with words to speak", "input") from None
            resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPES[fmt]})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            request[STREAMING] = True  # from here a failure can only cut the body short (errors.py)
            if fmt == "wav":
                await resp.write(streamed_wav_header(rate))
            chunk = first
            try:
                while True:
                    await resp.write(to_int16(resample(chunk.samples, chunk.sample_rate, rate)).astype("<i2").tobytes())
                    chunk = await anext(chunks, None)
                    if chunk is None:
                        break
            except ConnectionResetError:  # the client went away (a barge-in): stop synthesizing
                return resp
        await resp.write_eof()
        return resp

    return handle
