"""ASR on any OpenAI-compatible `POST {base_url}/audio/transcriptions` server: `cvi-lab model-server`,
faster-whisper servers (speaches / faster-whisper-server), vLLM, or a hosted API.

Why: the call host then only cuts utterances (VAD, end of turn) and ships each one, as a 16 kHz 16-bit WAV,
to a machine that holds the model. The request is OpenAI's multipart form (`file`, `model`, `language`,
`response_format` json | verbose_json, optional `temperature`, `prompt`, `timestamp_granularities[]=word`);
the answer's `text` (and, with verbose_json, `language` and `words`) fills the `Transcript`.

What a remote server can and cannot give: one final transcript per utterance. This REST API has no interim
results (a server streams partial text only over its own realtime/WebSocket protocols), so `partials()` is
the interface's default: the final result, once. Word timings come only with `verbose_json` and
`word_timestamps: true` on servers that implement timestamp granularities.
"""

from __future__ import annotations

import functools
import io
from typing import Any, Mapping, Sequence

import numpy as np

from cvi_lab.stages.asr.faster_whisper import check_language
from cvi_lab.stages.base import ASR, ASR_SAMPLE_RATE, StageInputError, Transcript, check_pcm, run_blocking
from cvi_lab.stages.openai_http import Endpoint, endpoint_url

RESPONSE_FORMATS = ("json", "verbose_json")
WHO = "OpenAICompatibleASR"


def wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    """Mono float PCM -> a 16-bit WAV file in memory (what every transcription server reads)."""
    import soundfile as sf

    from cvi_lab.audio import to_int16

    buf = io.BytesIO()
    sf.write(buf, to_int16(pcm), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@functools.cache
def _language_codes() -> Mapping[str, str]:
    """Whisper's language names -> ISO codes (hosted APIs answer "english", faster-whisper servers "en")."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    return dict(TO_LANGUAGE_CODE)


class OpenAICompatibleASR(ASR):
    """Settings mirror `cvi_lab/conf/asr/openai_compatible.yaml`.

    base_url: e.g. http://gpu-host:8090/v1 (`cvi-lab model-server`), http://127.0.0.1:8000/v1 (speaches, vLLM);
      a URL already ending in /audio/transcriptions is used as is.
    model: the name the server knows the model by. api_key: sent as a Bearer token when set.
    language: the default ISO code sent when a call gives none (null = the server detects); languages: the
      codes the server's model accepts ("*" = any: it detects).
    response_format: json (text only) or verbose_json (also the detected language, and words with
      word_timestamps). temperature / prompt: sent when set.
    connect_timeout_s / read_timeout_s: to connect; the longest wait for the answer.
    """

    sample_rate = ASR_SAMPLE_RATE

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        language: str | None = None,
        languages: Sequence[str] = ("en",),
        response_format: str = "json",
        word_timestamps: bool = False,
        temperature: float | None = None,
        prompt: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
        extra_fields: Mapping[str, Any] | None = None,
    ) -> None:
        if not model:
            raise StageInputError(f"{WHO}: model is required (the name the server knows the model by)")
        if response_format not in RESPONSE_FORMATS:
            raise StageInputError(f"{WHO}: response_format {response_format!r} is not accepted; use one of "
                                  f"{', '.join(RESPONSE_FORMATS)}")
        if word_timestamps and response_format != "verbose_json":
            raise StageInputError(f"{WHO}: word_timestamps needs response_format: verbose_json")
        self.languages = tuple(str(c).lower() for c in languages)
        if not self.languages:
            raise StageInputError(f"{WHO}: languages must name at least one ISO code (or '*' for any)")
        self.default_language = check_language(language, self.languages, WHO)
        self.model, self.response_format, self.word_timestamps = str(model), response_format, bool(word_timestamps)
        self.temperature, self.prompt = temperature, prompt
        self.extra_fields = dict(extra_fields or {})
        self.endpoint = Endpoint(endpoint_url(base_url, "audio/transcriptions", WHO), WHO, api_key, headers,
                                 connect_timeout_s, read_timeout_s)

    async def aclose(self) -> None:
        await self.endpoint.aclose()

    async def warmup(self) -> None:
        """One request on a quarter second of silence: checks the server, key and model now, not on turn one."""
        await self.transcribe(np.zeros(ASR_SAMPLE_RATE // 4, np.float32))

    def _form(self, wav: bytes, language: str | None):
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("file", wav, filename="utterance.wav", content_type="audio/wav")
        form.add_field("model", self.model)
        form.add_field("response_format", self.response_format)
        if language:
            form.add_field("language", language)
        if self.word_timestamps:
            form.add_field("timestamp_granularities[]", "word")
        for key, value in (("temperature", self.temperature), ("prompt", self.prompt), *self.extra_fields.items()):
            if value is not None:
                form.add_field(key, str(value))
        return form

    async def transcribe(self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE, language: str | None = None) -> Transcript:
        """One utterance -> one request; the server's error, a timeout or a bad body -> RemoteStageError."""
        x = check_pcm(audio, sample_rate, ASR_SAMPLE_RATE, WHO)
        lang = check_language(language, self.languages, WHO) or self.default_language
        wav = await run_blocking(wav_bytes, x, ASR_SAMPLE_RATE)
        async with self.endpoint.post(data=self._form(wav, lang)) as resp:
            raw = await resp.read()
        return await self._transcript(raw, lang)

    async def _transcript(self, raw: bytes, requested: str | None) -> Transcript:
        import json

        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise self.endpoint.fail(f"the answer is not JSON: {raw[:200]!r}") from None
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise self.endpoint.fail(f"the answer has no 'text' string: {str(body)[:200]}")
        language = body.get("language") if isinstance(body.get("language"), str) else None
        if language and len(language) > 3:  # a name ("english"), as hosted APIs answer
            language = (await run_blocking(_language_codes)).get(language.lower())
        try:
            words = [(str(w["word"]).strip(), float(w["start"]), float(w["end"])) for w in body.get("words") or ()]
        except (TypeError, KeyError, ValueError):
            raise self.endpoint.fail(f"the answer's 'words' are not [{{word, start, end}}]: {str(body)[:200]}") from None
        return Transcript(text=body["text"].strip(), language=(language or requested), words=words)
