"""The meeting page on a real call: Debian chromium joins a conversation of the real server (calls layer,
engine with real stages, WebRTC transport), with a recording of a human voice as its microphone.

What the page shows comes from the conversation's properties through the real endpoint: captions with
`enable_closed_captions`, the green screen keyed out in WebGL with `apply_greenscreen` (transparent, or a chosen
colour), and with `require_auth` the page is refused without the meeting token and joins with it. The controls
a person expects are checked against what the server sees: mute silences the participant for the engine's VAD
(no `user.started_speaking` while muted, again after unmuting), the speaking indicator follows the replica's
`replica.started_speaking`/`stopped_speaking`, the timer runs, the microphone select lists Chromium's fake
devices and switching replaces the sent track, and Leave takes the participant out of the server's room. The
persona runs the engine's echo pipeline (VAD, TTS, avatar: the real stages, without an LLM to wait for); its
greeting is the caption to see, and `conversation.echo` makes it speak on demand. Two calls in all (~20-40 s
each): each checks as much as it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import pytest
import pytest_asyncio

from cvi_lab.audio import load_audio, write_wav
from cvi_lab.domain.ids import DEFAULT_REPLICA_ID
from cvi_lab.transport.signaling import get_transport

from .chromium import CHROMIUM, launch_args, requires_chromium

log = logging.getLogger(__name__)

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


class ServerEvents:
    """The engine's events for one call, taken on the server (the runtime's own subscription, not the page's)."""

    def __init__(self, real_server, cid: str) -> None:
        self.events: list[dict] = []
        self.unsubscribe = real_server.app["manager"].call(cid).runtime.subscribe(self.events.append)

    def count(self, event_type: str) -> int:
        return sum(e["event_type"] == event_type for e in self.events)

    def user_speaking(self) -> bool:
        """What the engine's VAD says now: the latest user.started/stopped_speaking."""
        last = [e["event_type"] for e in self.events if e["event_type"].startswith("conversation.user.")]
        return bool(last) and last[-1] == "conversation.user.started_speaking"

    async def wait(self, predicate, timeout: float, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}: {self.events[-5:]}"
            await asyncio.sleep(0.1)


async def keyed_pixel(page, where: str) -> list[int]:
    """RGBA of the keyed canvas at `where` ("corner": the background, "centre": the face) as the person sees it."""
    return await page.evaluate(f"""() => {{
      const c = document.getElementById('keyed');
      const [x, y] = {where!r} === 'corner' ? [6, 6] : [Math.floor(c.width / 2), Math.floor(c.height / 2)];
      return window.cvi.keyedPixel(x, y);
    }}""")


async def echo(page, text: str) -> None:
    await page.evaluate(
        "text => window.cvi.send({message_type: 'conversation', event_type: 'conversation.echo', "
        "properties: {modality: 'text', text}})", text)


async def test_green_screen_call_with_the_controls_a_person_expects(real_server, echo_persona, browser):
    conv = await real_server.conversation(
        echo_persona, properties={"enable_closed_captions": True, "apply_greenscreen": True})
    cid = conv["conversation_id"]
    server = ServerEvents(real_server, cid)
    try:
        async with meeting_page(browser, conv["conversation_url"]) as (page, logs):
            await joined(page, logs)
            await page.wait_for_function(
                f"window.cviStats.captionTexts.some(c => c.role === 'replica' && c.text === {GREETING!r})",
                timeout=EVENT_TIMEOUT_MS)
            assert GREETING in await page.inner_text("#captions")
            await page.wait_for_function("window.cviStats.framesDecoded >= 25", timeout=EVENT_TIMEOUT_MS)

            # the microphone select: Chromium's fake devices, by label
            log.info("step: the microphone select: Chromium's fake")
            stats = await page.evaluate("window.cviStats")
            labels = [m["label"] for m in stats["microphones"]]
            assert len(labels) >= 2 and all("Fake" in label for label in labels), labels
            assert await page.is_visible("#mic") and await page.eval_on_selector("#mic", "s => s.options.length") == len(labels)

            # green screen keyed out: the background transparent, the face opaque and not green
            assert await page.evaluate("document.getElementById('stage').classList.contains('greenscreen')")
            assert stats["background"] == "transparent" and await page.is_visible("#keyed")
            await page.wait_for_function("window.cvi.keyedPixel(0, 0) !== null && document.getElementById('keyed').width > 0")
            corner, centre = await keyed_pixel(page, "corner"), await keyed_pixel(page, "centre")
            assert corner[3] == 0, f"the keyed background is {corner}, not transparent"
            assert centre[3] == 255 and not near(centre[:3], GREEN), f"the face is keyed out: {centre}"
            drawn = await page.evaluate("window.cvi.keyer().frames")  # the canvas follows the video
            await page.wait_for_function(f"window.cvi.keyer().frames >= {drawn + 10}", timeout=EVENT_TIMEOUT_MS)
            log.info("keyed: %s (per video frame: %s)", await page.evaluate("window.cvi.keyer().frames"),
                     await page.evaluate("window.cvi.keyer().perVideoFrame"))
            # a chosen colour instead: the shader puts it where the green was
            await page.select_option("#background", "color")
            await page.eval_on_selector("#background-color", "i => { i.value = '#ff2000'; i.dispatchEvent(new Event('input')); }")
            corner, centre = await keyed_pixel(page, "corner"), await keyed_pixel(page, "centre")
            assert corner[3] == 255 and near(corner[:3], (255, 32, 0), 2), f"the background is {corner}, not #ff2000"
            assert centre[3] == 255 and not near(centre[:3], (255, 32, 0)), centre
            await page.select_option("#background", "green")  # as sent: the video itself, the green screen
            assert near(await corner_pixel(page), GREEN) and await page.evaluate("window.cvi.keyedPixel(6, 6)") is None
            assert await page.is_visible("#replica") and not await page.is_visible("#keyed")

            # the microphone is live: the engine's VAD hears JFK
            log.info("step: the microphone is live: the engine's V")
            await server.wait(lambda: server.count("conversation.user.started_speaking") >= 1, 30, "the participant's speech")

            # mute: once the VAD's segment in flight has closed, the engine hears nothing
            await page.click("#mute")
            assert await page.get_attribute("#mute", "aria-pressed") == "true"
            assert (await page.evaluate("window.cviStats"))["muted"]
            await asyncio.sleep(1.0)
            await server.wait(lambda: not server.user_speaking(), 10, "the VAD to close the segment after muting")
            heard = server.count("conversation.user.started_speaking")
            timer_before = await page.inner_text("#timer")
            elapsed_before = (await page.evaluate("window.cviStats"))["elapsedS"]

            # while muted (nothing barges in), the replica speaks: the indicator turns on, then off
            log.info("step: while muted (nothing barges in), the r")
            turns = (await page.evaluate("window.cviStats"))["replicaSpeakingTurns"]
            await echo(page, "I can see that you are muted.")
            await page.wait_for_function(
                f"document.getElementById('speaking').dataset.speaking === 'true' && "
                f"window.cviStats.replicaSpeakingTurns > {turns}", polling="raf", timeout=EVENT_TIMEOUT_MS)
            assert "speaking" in await page.inner_text("#speaking")
            assert await page.evaluate("document.getElementById('stage').classList.contains('replica-speaking')")
            await page.wait_for_function("document.getElementById('speaking').dataset.speaking === 'false'",
                                         timeout=EVENT_TIMEOUT_MS)
            assert server.count("conversation.replica.stopped_speaking") >= 2  # the greeting's and the echo's
            await page.wait_for_function("window.cviStats.captionTexts.some(c => c.text.includes('muted'))",
                                         timeout=EVENT_TIMEOUT_MS)  # an interaction from the page, its caption
            await asyncio.sleep(2.0)
            assert server.count("conversation.user.started_speaking") == heard, "the engine heard a muted participant"

            # the timer ran meanwhile
            stats = await page.evaluate("window.cviStats")
            assert stats["elapsedS"] >= elapsed_before + 2 and await page.inner_text("#timer") != timer_before

            # unmute: heard again; then another microphone replaces the sent track
            log.info("step: unmute: heard again; then another micr")
            await page.click("#mute")
            assert await page.get_attribute("#mute", "aria-pressed") == "false"
            await server.wait(lambda: server.count("conversation.user.started_speaking") > heard, 30,
                              "the participant's speech after unmuting")
            other = next(m for m in stats["microphones"] if m["label"] != stats["microphoneLabel"])
            await page.select_option("#mic", other["deviceId"])
            await page.wait_for_function("window.cviStats.microphoneSwitches === 1", timeout=EVENT_TIMEOUT_MS)
            sent = await page.evaluate("window.cviStats.microphoneLabel")
            assert sent == other["label"], f"the sender's track is {sent!r}, not the chosen {other['label']!r}"

            # Leave: the server's room no longer has the participant
            log.info("step: Leave: the server's room no longer has")
            await page.click("#leave")
            transport = get_transport(real_server.app)
            await server.wait(lambda: not transport.participants(cid), 15, "the participant to leave")
            await page.wait_for_function("document.getElementById('status').textContent.includes('left')",
                                         timeout=EVENT_TIMEOUT_MS)
            assert await page.is_disabled("#mute") and await page.is_disabled("#leave")
    finally:
        server.unsubscribe()
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
            # nothing to key: no background choice, no keyed canvas
            assert not await page.is_visible("#background-field") and not await page.is_visible("#keyed")
            assert await page.evaluate("window.cvi.keyedPixel(6, 6)") is None
    finally:
        await real_server.api("POST", f"/v2/conversations/{cid}/end")
