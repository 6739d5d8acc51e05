"""asr, tts and llm `openai_compatible` against `cvi-lab model-server` with the real embedded stages on loopback:
a real transcription of a real voice, real speech back, a streamed answer, the hung-request and cancel paths,
and one offline lab run with all three stages remote."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from hydra.utils import instantiate

from cvi_lab.audio import load_audio, resample
from cvi_lab.config import compose, load_group
from cvi_lab.stages.base import ChatMessage, LLMStats
from cvi_lab.stages.openai_http import RemoteStageError

pytestmark = pytest.mark.slow
JFK = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "jfk.flac"


def remote(group: str, base_url: str, **kw):
    return instantiate(load_group(group, "openai_compatible"), **{"base_url": base_url, **kw})


@pytest.fixture(scope="module")
def jfk():
    if not JFK.is_file():
        pytest.skip(f"{JFK} is absent (the shared test data lives beside the clone)")
    return load_audio(JFK)[0]


async def test_a_real_voice_is_transcribed_remotely_as_embedded(model_server, jfk):
    asr = remote("asr", model_server.url)
    verbose = remote("asr", model_server.url, response_format="verbose_json", model="faster_whisper_tiny_en")
    got, detailed = await asr.transcribe(jfk), await verbose.transcribe(jfk)
    embedded = await model_server.stages["asr"].transcribe(jfk)
    for stage in (asr, verbose):
        await stage.aclose()
    text = got.text.lower()
    assert "my fellow americans" in text and "your country" in text and "do for you" in text
    words = {" ".join(re.findall(r"[a-z']+", t.text.lower())) for t in (got, detailed, embedded)}
    assert len(words) == 1  # the same words (the WAV's 16-bit samples may move a comma)
    assert detailed.language == "en"


async def test_real_speech_comes_back_in_both_formats(model_server):
    asr = model_server.stages["asr"]
    for fmt in ("pcm", "wav"):
        tts = remote("tts", model_server.url, response_format=fmt, sample_rate=22050)
        chunks = [c async for c in tts.stream("It is sunny today. Bring a hat and some water.")]
        await tts.aclose()
        assert chunks and all(c.sample_rate == 22050 for c in chunks)
        import numpy as np

        audio = np.concatenate([c.samples for c in chunks])
        assert 1.5 < len(audio) / 22050 < 8.0
        heard = (await asr.transcribe(resample(audio, 22050, 16000))).text.lower()
        assert "sunny" in heard and "water" in heard, (fmt, heard)


async def test_an_answer_streams_with_usage_and_a_cancel_stops_it(model_server):
    llm = remote("llm", model_server.url, max_new_tokens=24)
    stats = LLMStats()
    pieces = [p async for p in llm.stream([ChatMessage("user", "What is the capital of France?")], stats=stats)]
    assert "France" in "".join(pieces) and len(pieces) > 1  # SmolLM2-135M's answer, streamed piece by piece
    assert stats.prompt_tokens > 5 and 1 <= stats.completion_tokens <= 24 and stats.first_token_s is not None
    stream = llm.stream([ChatMessage("user", "Tell me a very long story about the sea.")], max_tokens=120)
    await anext(stream)
    await stream.aclose()  # what a barge-in does: the server's decoding stops with the connection
    again = [p async for p in llm.stream([ChatMessage("user", "Say hello.")], max_tokens=8)]
    assert again  # the server is free again
    await llm.aclose()


async def test_a_request_longer_than_the_read_timeout_fails_clearly_and_the_server_carries_on(model_server, jfk):
    impatient = remote("asr", model_server.url, read_timeout_s=0.01)  # an 11 s utterance takes far longer
    with pytest.raises(RemoteStageError, match=r"timed out \(connect 5.0 s / read 0.01 s\)"):
        await impatient.transcribe(jfk)
    await impatient.aclose()
    await asyncio.sleep(0)
    patient = remote("asr", model_server.url)
    assert "your country" in (await patient.transcribe(jfk)).text.lower()
    await patient.aclose()


def test_an_offline_lab_run_with_every_model_remote(model_server, tmp_path, monkeypatch):
    from cvi_lab.lab import app

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    stages = [f"{g}=openai_compatible" for g in ("asr", "tts", "llm")] + \
             [f"{g}.base_url={model_server.url}" for g in ("asr", "tts", "llm")]
    code = app.main(["experiment=smoke", *stages, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                     f"tracking.artifact_root={tmp_path}/mlruns", f"hydra.run.dir={out}",
                     "metrics.intelligibility=false", "metrics.sample_video=false", "metrics.turn_views=0",
                     "engine.max_tokens=24", "participant.max_reply_s=300",
                     # the judge served too, as a user points it at Ollama or vLLM: the same HTTP path
                     "metrics.judge=true", "judge.llm=openai_compatible", f"judge.llm_settings.base_url={model_server.url}"])
    assert code == 0
    turns = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
    assert len(turns) == 2 and all(t["heard"] and t["replica_text"] and not t["error"] for t in turns)
    cfg = json.loads((out / "metrics.json").read_text())
    assert cfg["asr_wer"] < 0.5
    assert cfg["judge_labels"] == 16 and "judge_agreement_within1" in cfg and cfg["judge_labels_scored_rate"] > 0, cfg
    assert compose(stages).composed.choices["tts"] == "openai_compatible"
