"""End-to-end fixtures: the real server (create_app over the full composed config: engine + WebRTC transport)
on a free loopback port, one per module so the models load once (the engine's StagePool is process-wide), and
a Whisper tiny.en ASR instantiated from conf/asr to transcribe what the participant received."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import pytest_asyncio

from cvi_lab.cli import CONF_DIR

NEEDED = ["vad/silero.yaml", "turn/smart_turn_v3.yaml", "asr/faster_whisper_tiny_en.yaml", "llm/hf_causal.yaml",
          "tts/piper.yaml", "avatar/portrait.yaml"]


@pytest.fixture(scope="module")
def cfg():
    if any(not (CONF_DIR / p).exists() for p in NEEDED):
        pytest.skip("default stage configs not all installed")
    from cvi_lab.cli import compose_config

    return compose_config([])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(cfg, tmp_path_factory):
    """A running LiveServer (cvi_lab.demo): .api(method, path, body), .turn_metrics(id), .base."""
    from cvi_lab.demo import LiveServer

    logging.getLogger("aioice").setLevel(logging.WARNING)
    async with LiveServer(cfg, tmp_path_factory.mktemp("server")) as srv:
        yield srv


@pytest.fixture(scope="module")
def asr():
    """Whisper tiny.en via hydra instantiate of conf/asr/faster_whisper_tiny_en.yaml (the real stage)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    stage = instantiate(OmegaConf.load(CONF_DIR / "asr" / "faster_whisper_tiny_en.yaml"))
    return stage


def transcribe(asr, audio48: np.ndarray) -> str:
    from cvi_lab.audio import resample

    return asr.transcribe_sync(resample(audio48, 48_000, 16_000), 16_000, "en").text


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def wer(ref: str, hyp: str) -> float:
    r, h = words(ref), words(hyp)
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
            prev, d[j] = d[j], cur
    return d[len(h)] / max(1, len(r))


def received_between(client, t0: float, t1: float) -> np.ndarray:
    """Received audio (float32, 48 kHz) of the chunks that arrived in [t0, t1]."""
    from cvi_lab.audio import to_float32

    chunks = [c for a, c in zip(client.rec.audio_arrivals, client.rec.audio_chunks) if t0 <= a <= t1]
    return to_float32(np.concatenate(chunks)) if chunks else np.zeros(0, np.float32)


