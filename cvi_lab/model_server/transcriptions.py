"""`POST /v1/audio/transcriptions` over our asr stage, in OpenAI's shapes.

Request (multipart/form-data): `file` (WAV, FLAC, OGG: what soundfile reads; any rate and channel count:
mixed to mono, resampled to 16 kHz), `model`, optional `language` (ISO code), `prompt` and `temperature`
(accepted; our stages decode as configured), `response_format` json | text | verbose_json,
`timestamp_granularities[]` word | segment.
Answer: json `{"text"}`; text: the bare text; verbose_json `{"task", "language", "duration", "text",
"segments", "words"?}` with `language` as the ISO code (as faster-whisper servers answer; OpenAI's own API
answers the name), one segment for the utterance (id, start, end, text), and words when asked for and the
stage gives them.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from aiohttp import web

from cvi_lab.model_server.errors import BadRequest, check_model
from cvi_lab.stages.base import ASR, ASR_SAMPLE_RATE, StageInputError, run_blocking

RESPONSE_FORMATS = ("json", "text", "verbose_json")
GRANULARITIES = ("word", "segment")


def decode_upload(data: bytes) -> np.ndarray:
    """An uploaded audio file -> float32 mono at 16 kHz; unreadable -> BadRequest naming the formats."""
    import soundfile as sf

    from cvi_lab.audio import resample

    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise BadRequest(f"file could not be read as audio ({exc}); accepted: WAV, FLAC, OGG", "file") from None
    return resample(audio.mean(axis=1), int(rate), ASR_SAMPLE_RATE)


def _field(form: Any, name: str, accepted: tuple[str, ...] | None = None, default: str | None = None) -> str | None:
    value = form.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a form field, not a file", name)
    if accepted is not None and value not in accepted:
        raise BadRequest(f"{name} {value!r} is not accepted; accepted: {', '.join(accepted)}", name)
    return value


def _temperature(form: Any) -> None:
    raw = _field(form, "temperature")
    if raw is None:
        return
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise BadRequest(f"temperature {raw!r} is not accepted; use a number from 0 to 1", "temperature")


def transcription_handler(asr: ASR, models: list[str]):
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise BadRequest(f"the body must be multipart/form-data (file, model, ...), not {request.content_type!r}")
        form = await request.post()
        check_model(_field(form, "model"), models)
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            raise BadRequest("file is required: the audio to transcribe, sent as a file part", "file")
        fmt = _field(form, "response_format", RESPONSE_FORMATS, "json")
        _temperature(form)
        _field(form, "prompt")
        granularities = form.getall("timestamp_granularities[]", [])
        for g in granularities:
            if g not in GRANULARITIES:
                raise BadRequest(f"timestamp_granularities[] {g!r} is not accepted; accepted: {', '.join(GRANULARITIES)}",
                                 "timestamp_granularities[]")
        audio = await run_blocking(decode_upload, upload.file.read())
        language = _field(form, "language")
        try:
            result = await asr.transcribe(audio, ASR_SAMPLE_RATE, language)
        except StageInputError as exc:
            raise BadRequest(str(exc), "language" if language else "file") from None
        if fmt == "text":
            return web.Response(text=result.text, content_type="text/plain")
        if fmt == "json":
            return web.json_response({"text": result.text})
        duration = len(audio) / ASR_SAMPLE_RATE
        body: dict[str, Any] = {
            "task": "transcribe", "language": result.language or language, "duration": round(duration, 3),
            "text": result.text,
            "segments": [{"id": 0, "start": 0.0, "end": round(duration, 3), "text": result.text}],
        }
        if "word" in granularities:
            body["words"] = [{"word": w, "start": s, "end": e} for w, s, e in result.words]
        return web.json_response(body)

    return handle
