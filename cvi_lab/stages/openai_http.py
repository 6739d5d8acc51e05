"""The HTTP side shared by the stages that talk to OpenAI-compatible servers (`asr` and `tts`
`openai_compatible`): one keep-alive session per event loop, the timeouts, and errors that name the server,
the HTTP status and what to check.

Why one module: both remote stages must fail the same way (a `RemoteStageError` whose message says which
server and why), and the wording lives once. The LLM backend (`stages/llm/openai_compatible.py`) predates it
and keeps its own copy of the same rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, AsyncIterator, Mapping

from cvi_lab.stages.base import StageError, StageInputError

HINTS = {
    401: "; check api_key (the env var named in the stage's conf)",
    403: "; the key is not allowed to use this model",
    404: "; check base_url (should end in /v1) and model",
    413: "; the request is larger than the server accepts",
    429: "; rate limited or out of quota",
}


class RemoteStageError(StageError):
    """The server could not be reached, timed out or answered with an error; the message says which and why."""


def endpoint_url(base_url: str, path: str, who: str) -> str:
    """`{base_url}/{path}` (a base_url already ending in the path is used as is); not http(s) -> StageInputError."""
    if not base_url or not str(base_url).startswith(("http://", "https://")):
        raise StageInputError(f"{who}: base_url {base_url!r} is not accepted; use an http(s) URL such as "
                              "http://127.0.0.1:8000/v1")
    url = str(base_url).rstrip("/")
    return url if url.endswith("/" + path) else f"{url}/{path}"


def error_text(body: str) -> str:
    """The message of an OpenAI error body ({"error": {"message": ...}}), else the body's start."""
    try:
        err = json.loads(body).get("error")
        if isinstance(err, Mapping):
            return str(err.get("message") or err)
        if err:
            return str(err)
    except (json.JSONDecodeError, AttributeError):
        pass
    return body[:300]


class KeepAliveSession:
    """One aiohttp session per event loop, kept alive between requests (saves the TCP/TLS handshake on every
    turn); remote stages (and the LLM's openai_compatible backend) hold one each."""

    def __init__(self, connect_timeout_s: float, read_timeout_s: float) -> None:
        self.connect_timeout_s, self.read_timeout_s = float(connect_timeout_s), float(read_timeout_s)
        self._session = None
        self._session_loop = None

    def get(self):
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s, sock_read=self.read_timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
            self._session_loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class Endpoint:
    """One OpenAI-compatible endpoint: its URL, key, extra headers and timeouts, and a session per event loop.

    connect_timeout_s: to open the connection; read_timeout_s: the longest wait for the next piece of the
    response (the first byte included: a transcription must come back within it)."""

    def __init__(self, url: str, who: str, api_key: str | None, headers: Mapping[str, str] | None,
                 connect_timeout_s: float, read_timeout_s: float) -> None:
        self.url, self.who = url, f"{who} ({url})"
        self.api_key = api_key or None
        self.headers = dict(headers or {})
        self.connect_timeout_s, self.read_timeout_s = float(connect_timeout_s), float(read_timeout_s)
        self.session = KeepAliveSession(self.connect_timeout_s, self.read_timeout_s)

    async def aclose(self) -> None:
        await self.session.aclose()

    def fail(self, what: str) -> RemoteStageError:
        return RemoteStageError(f"{self.who}: {what}")

    @contextlib.asynccontextmanager
    async def post(self, headers: Mapping[str, str] | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        """POST to the endpoint; yields the 200 response. Any other status, a refused connection, a timeout
        (also while the body is read inside the block) -> RemoteStageError naming the server."""
        import aiohttp

        headers = {**(headers or {}), **self.headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            async with self.session.get().post(self.url, headers=headers, **kwargs) as resp:
                if resp.status != 200:
                    body = await resp.text(errors="replace")
                    raise self.fail(f"HTTP {resp.status}: {error_text(body)}{HINTS.get(resp.status, '')}")
                yield resp
        except aiohttp.ClientConnectorError as exc:
            raise self.fail(f"cannot connect ({exc.os_error or exc}); check base_url and that the server is running") from exc
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise self.fail(f"timed out (connect {self.connect_timeout_s} s / read {self.read_timeout_s} s)") from exc
        except aiohttp.ClientPayloadError as exc:
            raise self.fail(f"the response body broke off: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise self.fail(f"connection failed: {exc}") from exc
