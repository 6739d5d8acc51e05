"""The transport alone in a real browser: Debian chromium (headless, fake mic playing a WAV) joins a stand-in
endpoint (fake_endpoint.py) whose counters see what the browser sent.

Checks that the replica's video frames were decoded by the browser, that events and interactions cross the
data channel, that the browser's microphone reached the endpoint, and that the leave button leaves. The page
on a real call (captions, green screen, meeting tokens) is test_meeting_page_real_call.py."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from cvi_lab.audio import write_wav

from .chromium import CHROMIUM, launch_args, requires_chromium
from .fake_endpoint import EchoEndpoint

pytestmark = [pytest.mark.browser, requires_chromium]


def _speech_like_wav(path) -> None:
    """1 s silence, then 1.5 s of a warbling tone (loud enough for any VAD), repeated by chromium in a loop."""
    rate = 48_000
    t = np.arange(int(1.5 * rate)) / rate
    voice = 0.3 * np.sin(2 * np.pi * (220 + 40 * np.sin(2 * np.pi * 3 * t)) * t)
    write_wav(path, np.concatenate([np.zeros(rate), voice, np.zeros(rate // 2)]).astype(np.float32), rate)


async def _poll(page, expression: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await page.evaluate(expression):
            return True
        await asyncio.sleep(0.2)
    return False


async def test_meeting_page_in_chromium(server, tmp_path):
    import playwright.async_api as playwright_api
    wav = tmp_path / "mic.wav"
    _speech_like_wav(wav)
    ep = server.add(EchoEndpoint("cbrowser", meeting_token="tok", size=(240, 320), captions_enabled=True))

    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=launch_args(wav),
        )
        try:
            page = await browser.new_page()
            logs: list[str] = []
            page.on("console", lambda msg: logs.append(f"{msg.type}: {msg.text}"))
            await page.goto(server.url("cbrowser", "tok"))
            joined = await _poll(page, "window.cviStats && window.cviStats.joined", 45)
            stats = await page.evaluate("window.cviStats")
            assert joined, f"the page did not connect: {stats} {logs}"

            # replica video decoded by the browser
            ok = await _poll(page, "window.cviStats.framesDecoded >= 25 && window.cviStats.framesPresented >= 10", 30)
            stats = await page.evaluate("window.cviStats")
            assert ok, f"too few video frames decoded: {stats}"
            assert (stats["frameWidth"], stats["frameHeight"]) == (320, 240)

            # captions: the greeting, then a reply to an interaction sent from the page
            assert await _poll(page, "window.cviStats.captions >= 1", 15), await page.evaluate("window.cviStats")
            await page.evaluate(
                "window.cvi.send({message_type: 'conversation', event_type: 'conversation.respond', "
                "properties: {text: 'from the browser'}})"
            )
            assert await _poll(
                page, "window.cviStats.captionTexts.some(c => c.text === 'you said: from the browser')", 15
            ), await page.evaluate("window.cviStats")
            caption = await page.inner_text("#captions")
            assert "from the browser" in caption

            # the fake microphone reached the endpoint as voiced 16 kHz frames
            pid = stats["participantId"]
            deadline = time.monotonic() + 20
            while ep.voiced_frames[pid] < 10 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert ep.voiced_frames[pid] >= 10, f"mic frames {ep.audio_frames[pid]}, voiced {ep.voiced_frames[pid]}"
            assert ep.bad_frames == 0

            # the leave button: participant_left(pid, "left")
            await page.click("#leave")
            deadline = time.monotonic() + 15
            while not ep.left and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert ep.left == [(pid, "left")]
            assert await _poll(page, "document.getElementById('status').textContent.includes('left')", 5)
        finally:
            await browser.close()
