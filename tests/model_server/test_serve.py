"""`cvi-lab model-server`'s entry point: it warms the stages it serves, says where, stops on request, and refuses
to start where it would expose models without a key or serve a stage it does not know."""

from __future__ import annotations

import asyncio

import aiohttp

from cvi_lab.config import compose
from cvi_lab.model_server.app import serve


async def test_serves_the_chosen_stages_until_stopped(capsys):
    cfg = compose(["model_server.stages=[tts]", "model_server.port=0"], config_name="model_server")
    stop, urls = asyncio.Event(), []
    task = asyncio.create_task(serve(cfg, ready=urls.append, stop=stop))
    while not urls and not task.done():
        await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as session:
        async with session.get(urls[0].removesuffix("/v1") + "/health") as resp:
            assert await resp.json() == {"status": "ok", "stages": ["tts"]}
        async with session.post(urls[0] + "/audio/speech", json={"model": "piper", "input": "Hi there.", "voice": "x",
                                                                 "response_format": "pcm"}) as resp:
            assert resp.status == 200 and resp.content_type == "audio/pcm" and len(await resp.read()) > 4800
    stop.set()
    assert await task == 0
    assert f"serving tts (piper) at {urls[0]}" in capsys.readouterr().out


async def test_refuses_to_expose_models_without_a_key_or_to_serve_an_unknown_stage(capsys):
    open_to_all = compose(["model_server.host=0.0.0.0"], config_name="model_server")
    assert await serve(open_to_all) == 2
    assert "without a key: set model_server.api_keys or bind to 127.0.0.1" in capsys.readouterr().err
    unknown = compose(["model_server.stages=[asr,vad]"], config_name="model_server")
    assert await serve(unknown) == 2
    assert "choose from asr, tts, llm" in capsys.readouterr().err
