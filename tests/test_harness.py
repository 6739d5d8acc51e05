"""The harness: the in-process server (free port, clean stop, a second one beside it, `cvi-lab serve` on
top of it) and the analysis of received audio the call measurements read (cvi_lab/transport/heard.py)."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import numpy as np
import pytest

from cvi_lab.domain.ids import DEFAULT_REPLICA_ID
from cvi_lab.harness.server import InProcessServer, loopback_config, private_server
from cvi_lab.transport.heard import RATE, WINDOW, Recording, db_to_amp
from tests.helpers.config import make_cfg


def refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def test_server_starts_on_a_free_port_and_stops(tmp_path):
    srv = InProcessServer(loopback_config(make_cfg(tmp_path / "cfg"), tmp_path / "home"))
    await srv.start()
    try:
        assert srv.port and srv.base == f"http://127.0.0.1:{srv.port}" and srv.local_url == srv.base
        assert (await srv.api("GET", "/health"))["status"] == "ok"
        conv = await srv.api("POST", "/v2/conversations", {"replica_id": DEFAULT_REPLICA_ID})
        assert conv["conversation_url"] == f"{srv.base}/meet/{conv['conversation_id']}"  # the bound port
        assert str(srv.app["store"].path).startswith(str((tmp_path / "home").resolve()))
    finally:
        await srv.stop()
    assert not srv.running and refuses(srv.port)
    await srv.stop()  # idempotent


async def test_a_second_server_starts_beside_the_first_and_after_it(tmp_path):
    cfg = make_cfg(tmp_path / "cfg")
    async with private_server(cfg, tmp_path / "a") as a, private_server(cfg) as b:
        assert a.port != b.port
        assert (await a.api("GET", "/health"))["status"] == (await b.api("GET", "/health"))["status"] == "ok"
    async with private_server(cfg, tmp_path / "a") as again:  # the same home, its store reopened
        assert (await again.api("GET", "/health"))["live_conversations"] == 0


async def test_without_the_transport_there_is_no_meeting_page(tmp_path):
    async with private_server(make_cfg(tmp_path / "cfg")) as srv:
        conv = await srv.api("POST", "/v2/conversations", {"replica_id": DEFAULT_REPLICA_ID})
        status, _ = await srv.api("GET", f"/meet/{conv['conversation_id']}", ok=False)
        assert status == 404  # API only: the page that joins a call is the transport's (api.plugins)


async def test_serve_runs_on_the_harness_and_refuses_a_taken_port(tmp_path):
    from cvi_lab.api.app import serve

    cfg = loopback_config(make_cfg(tmp_path / "cfg"), tmp_path / "home")
    ready: asyncio.Future = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    running = asyncio.ensure_future(serve(cfg, ready=ready.set_result, stop=stop))
    url = await asyncio.wait_for(ready, 60)
    async with aiohttp.ClientSession() as http, http.get(f"{url}/health") as resp:
        assert resp.status == 200
    port = int(url.rsplit(":", 1)[1])
    taken = loopback_config(cfg, tmp_path / "other", port=port)
    assert await serve(taken, stop=asyncio.Event()) == 2  # cannot listen: says so, exit code 2
    stop.set()
    assert await asyncio.wait_for(running, 60) == 0
    assert refuses(port)


# ---------------------------------------------------------------------------------------------- what was heard
THRESHOLD = db_to_amp(-40.0)


def chunk(voiced_windows: list[int], n_windows: int = 2) -> np.ndarray:
    """A received chunk of `n_windows` 10 ms windows, loud (-6 dBFS) in `voiced_windows`, silent elsewhere."""
    pcm = np.zeros(n_windows * WINDOW, np.int16)
    for w in voiced_windows:
        pcm[w * WINDOW:(w + 1) * WINDOW] = 16384
    return pcm


def recording(*chunks: tuple[float, list[int]]) -> Recording:
    rec = Recording()
    for arrival, voiced in chunks:
        rec.add_audio(arrival, chunk(voiced))
    return rec


def test_first_and_last_voiced_windows_of_what_arrived():
    rec = recording((10.0, []), (10.02, [1]), (10.04, [0, 1]), (10.06, []), (10.08, [0]))
    win = WINDOW / RATE
    assert rec.first_voiced_after(10.0, THRESHOLD) == pytest.approx(10.02 + win)  # second window of the chunk
    assert rec.first_voiced_after(10.05, THRESHOLD) == pytest.approx(10.08)
    assert rec.first_voiced_after(10.09, THRESHOLD) is None
    assert rec.last_voiced_between(10.0, 10.06, THRESHOLD) == pytest.approx(10.04 + 2 * win)  # end of window 1
    assert rec.last_voiced_between(10.0, None, THRESHOLD) == pytest.approx(10.08 + win)
    assert rec.last_voiced_between(10.06, 10.07, THRESHOLD) is None
    assert rec.audio_samples == 5 * 2 * WINDOW and rec.audio_offsets[-1] == 4 * 2 * WINDOW
    assert len(rec.audio_between(10.02, 10.04)) == 2 * 2 * WINDOW


def test_voice_stopped_after_waits_for_a_long_enough_silence():
    rec = recording((1.0, [0]), (1.2, []), (1.5, [1]), (2.0, []), (2.7, []))
    win = WINDOW / RATE
    # 0.3 s quiet: the gap 1.01 -> 1.2 is too short; 1.52 (end of the voice at 1.5) -> 2.0 is long enough
    assert rec.voice_stopped_after(1.0, 0.3, THRESHOLD) == pytest.approx(1.5 + 2 * win)
    assert rec.voice_stopped_after(1.0, 0.1, THRESHOLD) == pytest.approx(1.0 + win)  # 1.2 - 1.01 >= 0.1
    assert rec.voice_stopped_after(1.0, 5.0, THRESHOLD) is None  # not quiet that long yet
