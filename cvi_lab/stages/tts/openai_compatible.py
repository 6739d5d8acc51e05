"""TTS on any OpenAI-compatible `POST {base_url}/audio/speech` server: `cvi-lab model-server`, speaches,
Kokoro-FastAPI, vLLM-Omni, or a hosted API.

Why streamed: the answer's body is read as it arrives and handed on in chunks of `chunk_ms`, so the avatar
gets the first audio before the server has finished the clause (on servers that stream; ours sends each
clause's audio as soon as Piper has made it). Request: OpenAI's JSON (`model`, `input`, `voice`,
`response_format` pcm | wav, `speed`). Body: `pcm` is raw 16-bit little-endian mono at the server's rate
(`pcm_sample_rate`: 24 kHz on OpenAI and most servers); `wav` says its own rate and channels in its header
(a streamed WAV's sizes may be 0 or 0xFFFFFFFF: it is read until the body ends). Chunks come out at
`sample_rate`, what this stage tells the pipeline, resampled when the server's rate differs.

Timings: none. The API sends audio only, and the pipeline needs none: the speech ledger spreads a clause's
words evenly over its audio when a chunk has no word timings, and the avatar's mouth follows the audio's
energy when a chunk has no phonemes.

Cancelling the consumer closes the connection at once; the server sees the disconnect.
"""

from __future__ import annotations

import struct
from typing import Any, AsyncIterator, Mapping, Sequence

import numpy as np

from cvi_lab.media import TTSChunk
from cvi_lab.stages.base import TTS, StageInputError
from cvi_lab.stages.openai_http import Endpoint, endpoint_url
from cvi_lab.stages.tts.style import NEUTRAL_VOICE, VoiceStyle
from cvi_lab.stages.tts.text import check_text

RESPONSE_FORMATS = ("pcm", "wav")
SPEED_RANGE = (0.25, 4.0)  # OpenAI's accepted `speed`
WHO = "OpenAICompatibleTTS"


class RawPcm:
    """A `pcm` body: 16-bit little-endian mono at a known rate, PCM from its first byte."""

    def __init__(self, rate: int) -> None:
        self.rate: int | None = rate
        self.channels, self.width, self.is_float, self.in_data = 1, 2, False, True

    def feed(self, data: bytes) -> bytes:
        """The PCM bytes that `data` brings (whole frames not guaranteed)."""
        return data

    @property
    def frame(self) -> int:
        return self.width * self.channels

    def samples(self, pcm: bytes) -> np.ndarray:
        """Whole frames of PCM bytes -> float32 mono."""
        x = np.frombuffer(pcm, "<f4" if self.is_float else "<i2").astype(np.float32)
        if not self.is_float:
            x /= 32768.0
        return x.reshape(-1, self.channels).mean(axis=1) if self.channels > 1 else x


class WavStream(RawPcm):
    """A `wav` body read as its bytes arrive: the header first (fmt, then data), then PCM frames.

    Accepts 16-bit integer and 32-bit float PCM, any channel count (mixed to mono)."""

    def __init__(self, fail) -> None:
        super().__init__(0)
        self.rate, self.in_data = None, False
        self._buf = b""
        self._fail = fail

    def feed(self, data: bytes) -> bytes:
        if self.in_data:
            return data
        self._buf += data
        if len(self._buf) < 12:
            return b""
        if self._buf[:4] != b"RIFF" or self._buf[8:12] != b"WAVE":
            raise self._fail(f"the wav body does not start with a RIFF/WAVE header: {self._buf[:12]!r}")
        pos = 12
        while len(self._buf) >= pos + 8:
            cid, size = self._buf[pos:pos + 4], struct.unpack("<I", self._buf[pos + 4:pos + 8])[0]
            if cid == b"data":
                if self.rate is None:
                    raise self._fail("the wav body has no fmt chunk before its data")
                self.in_data = True
                rest, self._buf = self._buf[pos + 8:], b""
                return rest
            if len(self._buf) < pos + 8 + size:
                return b""
            if cid == b"fmt ":
                self._format(self._buf[pos + 8:pos + 8 + size])
            pos += 8 + size + (size & 1)
        return b""

    def _format(self, fmt: bytes) -> None:
        if len(fmt) < 16:
            raise self._fail(f"the wav fmt chunk is {len(fmt)} bytes; a valid one has at least 16")
        tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
        if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's first two bytes
            tag = struct.unpack("<H", fmt[24:26])[0]
        if (tag, bits) not in ((1, 16), (3, 32)) or channels < 1 or rate < 1:
            raise self._fail(f"wav format {tag} with {bits}-bit samples, {channels} channels at {rate} Hz is not "
                             "accepted; accepted: 16-bit PCM or 32-bit float")
        self.rate, self.channels, self.width, self.is_float = int(rate), int(channels), bits // 8, tag == 3


class OpenAICompatibleTTS(TTS):
    """Settings mirror `cvi_lab/conf/tts/openai_compatible.yaml`.

    base_url: e.g. http://gpu-host:8090/v1 (`cvi-lab model-server`); a URL ending in /audio/speech is used as is.
    model / voice: the names the server knows. speed: 0.25-4.0 (null = not sent: the server's 1.0); a call's
      emotion scales it (`StyledVoice`).
    response_format: pcm (raw 16-bit, at pcm_sample_rate) or wav. sample_rate: what the chunks are delivered at.
    chunk_ms: the audio handed on per chunk (the first one as soon as that much has arrived).
    languages: what the server's voice speaks.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        voice: str,
        api_key: str | None = None,
        response_format: str = "pcm",
        speed: float | None = None,
        pcm_sample_rate: int = 24_000,
        sample_rate: int = 24_000,
        chunk_ms: int = 80,
        languages: Sequence[str] = ("en",),
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if not model or not voice:
            raise StageInputError(f"{WHO}: model and voice are required (the names the server knows)")
        if response_format not in RESPONSE_FORMATS:
            raise StageInputError(f"{WHO}: response_format {response_format!r} is not accepted; use one of "
                                  f"{', '.join(RESPONSE_FORMATS)}")
        if speed is not None and not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:
            raise StageInputError(f"{WHO}: speed {speed} is not accepted; use {SPEED_RANGE[0]}-{SPEED_RANGE[1]} or null")
        for key, value in (("pcm_sample_rate", pcm_sample_rate), ("sample_rate", sample_rate), ("chunk_ms", chunk_ms)):
            if not isinstance(value, int) or value <= 0:
                raise StageInputError(f"{WHO}: {key} {value!r} is not accepted; use a positive integer")
        self.model, self.voice, self.response_format, self.speed = str(model), str(voice), response_format, speed
        self.pcm_sample_rate, self.sample_rate, self.chunk_ms = pcm_sample_rate, sample_rate, chunk_ms
        self.languages = tuple(languages)
        self.extra_body = dict(extra_body or {})
        self.endpoint = Endpoint(endpoint_url(base_url, "audio/speech", WHO), WHO, api_key, headers,
                                 connect_timeout_s, read_timeout_s)

    async def aclose(self) -> None:
        await self.endpoint.aclose()

    async def warmup(self) -> None:
        """One short request: checks the server, key, model and voice now rather than on the first answer."""
        async for _ in self.stream("Hello."):
            pass

    def _body(self, text: str, style: VoiceStyle) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "input": text, "voice": self.voice,
                                "response_format": self.response_format}
        speed = self.speed if style.speed == 1.0 else (self.speed or 1.0) * style.speed
        if speed is not None:
            body["speed"] = min(max(speed, SPEED_RANGE[0]), SPEED_RANGE[1])
        body.update(self.extra_body)
        return body

    async def stream(self, text: str) -> AsyncIterator[TTSChunk]:
        """Chunks of `chunk_ms` as the body arrives; cancelling closes the connection."""
        async for chunk in self.stream_styled(text, NEUTRAL_VOICE):
            yield chunk

    async def stream_styled(self, text: str, style: VoiceStyle) -> AsyncIterator[TTSChunk]:
        """`stream` in a style (`StyledVoice`): the style's speed scales `speed` (pitch and variation are not
        in the API)."""
        from cvi_lab.audio import resample

        body = self._body(check_text(text, WHO), style)
        decoder = WavStream(self.endpoint.fail) if self.response_format == "wav" else RawPcm(self.pcm_sample_rate)
        pending, delivered = b"", 0

        def chunk(upto: int) -> TTSChunk:
            samples = resample(decoder.samples(pending[:upto]), decoder.rate, self.sample_rate)
            return TTSChunk(samples, self.sample_rate, text=text if delivered == 0 else "")

        async with self.endpoint.post(json=body, headers={"Accept": "audio/*"}) as resp:
            async for data in resp.content.iter_any():
                pending += decoder.feed(data)
                if decoder.rate is None:
                    continue
                if len(pending) >= decoder.frame * max(1, decoder.rate * self.chunk_ms // 1000):
                    whole = len(pending) - len(pending) % decoder.frame
                    out, pending = chunk(whole), pending[whole:]
                    delivered += 1
                    yield out
        if not decoder.in_data:
            raise self.endpoint.fail("the wav body ended before its audio began")
        whole = len(pending) - len(pending) % decoder.frame
        if whole:
            delivered += 1
            yield chunk(whole)
        if delivered == 0:
            raise self.endpoint.fail(f"the answer to {text[:60]!r} held no audio")
