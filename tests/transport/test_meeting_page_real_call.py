"""The meeting page on a real call: Debian chromium joins a conversation of the real server (calls layer,
engine with real stages, WebRTC transport), with a recording of a human voice as its microphone.

What the page shows comes from the conversation's properties through the real endpoint: captions with
`enable_closed_captions`, the green background with `apply_greenscreen`, and with `require_auth` the page
is refused without the meeting token and joins with it. The persona runs the engine's echo pipeline (VAD,
TTS, avatar: the real stages, without an LLM to wait for); its greeting is the caption to see.
"""

from __future__ import annotations

import contextlib
import logging
import socket

import pytest
import pytest_asyncio

from cvi_lab.audio import load_audio, write_wav
from cvi_lab.domain.ids import DEFAULT_REPLICA_ID

from .chromium import CHROMIUM, launch_args, requires_chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow, requires_chromium, pytest.mark.asyncio(loop_scope="module")]

GREETING = "Hello, these words are the caption."
GREEN = (0, 255, 155)  # SPEC §1 apply_greenscreen
JOIN_TIMEOUT_MS = 120_000  # the first call of the module loads the stages and builds the default replica
EVENT_TIMEOUT_MS = 60_000

# The replica's video, one pixel near the top-left corner (the background), as the browser decoded it.
CORNER_PIXEL = """() => {
  const v = document.getElementById('replica');
  if (!v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0);
  return Array.from(g.getImageData(6, 6, 1, 1).data).slice(0, 3);
}"""


class RealServer:
    """create_app over the composed serve config (engine runtime, transport installer) on a loopback port."""

    def __init__(self, app, runner, base: str) -> None:
        self.app, self.runner, self.base = app, runner, base

    async def api(self, method: str, path: str, body: dict | None = None) -> dict:
        import aiohttp

        async with aiohttp.ClientSession() as http, http.request(method, self.base + path, json=body) as resp:
            data = await resp.json()
            assert resp.status < 400, f"{method} {path} -> {resp.status}: {data}"
            return data

    async def conversation(self, persona_id: str, **fields) -> dict:
        return await self.api("POST", "/v2/conversations", {"persona_id": persona_id, "replica_id": DEFAULT_REPLICA_ID,
                                                            "custom_greeting": GREETING, **fields})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def real_server(tmp_path_factory):
    from aiohttp import web

    from cvi_lab.api.app import create_app
    from cvi_lab.cli import compose_config

    logging.getLogger("aioice").setLevel(logging.WARNING)
    home = tmp_path_factory.mktemp("real-server")
    cfg = compose_config([f"server.home={home}", "server.host=127.0.0.1", "server.api_keys=[]",
                          "server.public_url=null"])
    app = create_app(cfg)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    await web.SockSite(runner, sock).start()
    app["manager"].base_url = base  # conversation_url points here
    try:
        yield RealServer(app, runner, base)
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def echo_persona(real_server) -> str:
    persona = await real_server.api("POST", "/v2/personas", {"persona_name": "caption test", "pipeline_mode": "echo"})
    return persona["persona_id"]


@pytest.fixture(scope="module")
def microphone(jfk_path, tmp_path_factory):
    """JFK's voice as the browser's microphone (chromium reads a WAV file and loops it)."""
    pcm, rate = load_audio(jfk_path, 48_000)
    return write_wav(tmp_path_factory.mktemp("mic") / "jfk.wav", pcm, rate)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(microphone):
    import playwright.async_api as playwright_api
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=launch_args(microphone))
        try:
            yield chromium
        finally:
            await chromium.close()


@contextlib.asynccontextmanager
async def meeting_page(browser, url: str):
    page = await browser.new_page()
    logs: list[str] = []
    page.on("console", lambda msg: logs.append(f"{msg.type}: {msg.text}"))
    try:
        await page.goto(url)
        yield page, logs
    finally:
        await page.close()


async def joined(page, logs) -> None:
    try:
        await page.wait_for_function("window.cviStats && window.cviStats.joined", timeout=JOIN_TIMEOUT_MS)
    except Exception as exc:
        raise AssertionError(f"the page did not join: {await page.evaluate('window.cviStats')} {logs}") from exc


async def corner_pixel(page) -> list[int]:
    await page.wait_for_function(f"({CORNER_PIXEL})() !== null", timeout=EVENT_TIMEOUT_MS)
    return await page.evaluate(f"({CORNER_PIXEL})()")


def near(pixel, colour, tolerance=40) -> bool:
    """VP8 and the browser's YUV → RGB move a flat colour by a few levels."""
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


async def test_captions_and_green_screen_on_a_real_call(real_server, echo_persona, browser):
    conv = await real_server.conversation(
        echo_persona, properties={"enable_closed_captions": True, "apply_greenscreen": True})
    cid = conv["conversation_id"]
    try:
        async with meeting_page(browser, conv["conversation_url"]) as (page, logs):
            await joined(page, logs)
            await page.wait_for_function(
                f"window.cviStats.captionTexts.some(c => c.role === 'replica' && c.text === {GREETING!r})",
                timeout=EVENT_TIMEOUT_MS)
            assert GREETING in await page.inner_text("#captions")
            assert await page.evaluate("document.getElementById('stage').classList.contains('greenscreen')")
            pixel = await corner_pixel(page)
            assert near(pixel, GREEN), f"the replica's background is {pixel}, not the green screen {GREEN}"
    finally:
        await real_server.api("POST", f"/v2/conversations/{cid}/end")


async def test_meeting_token_required_and_captions_off_by_default(real_server, echo_persona, browser):
    conv = await real_server.conversation(echo_persona, require_auth=True)
    cid, url = conv["conversation_id"], conv["conversation_url"]
    assert conv["meeting_token"] and url.endswith(f"?t={conv['meeting_token']}")
    try:
        async with meeting_page(browser, url.split("?")[0]) as (page, logs):  # the page without its token
            await page.wait_for_function("window.cviStats.errors.some(e => e.startsWith('Cannot join'))",
                                         timeout=EVENT_TIMEOUT_MS)
            stats = await page.evaluate("window.cviStats")
            assert not stats["joined"] and "a valid meeting_token is required" in stats["errors"][-1], stats
        async with meeting_page(browser, url) as (page, logs):
            await joined(page, logs)
            # the greeting arrives as an event, but this call has no captions: none is shown
            await page.wait_for_function(
                "window.cviStats.events.some(e => e.event_type === 'conversation.utterance')",
                timeout=EVENT_TIMEOUT_MS)
            stats = await page.evaluate("window.cviStats")
            assert stats["captions"] == 0 and await page.evaluate("document.getElementById('captions').hidden")
            assert not await page.evaluate("document.getElementById('stage').classList.contains('greenscreen')")
            pixel = await corner_pixel(page)
            assert not near(pixel, GREEN), f"green background {pixel} without apply_greenscreen"
    finally:
        await real_server.api("POST", f"/v2/conversations/{cid}/end")
