"""enable_recording: the runtime records the replica's frames + audio and the participant's audio into an MP4,
then the calls layer stores `application.recording_ready`, shows `recording_path` and sends the webhook.
Stages: the scripted stand-ins (this tests the recording plumbing, not the models)."""

from __future__ import annotations

import asyncio
import pathlib

import av
import numpy as np
from omegaconf import OmegaConf

from cvi_lab.api.app import create_app
from cvi_lab.domain.conversation import ConversationCreate
from cvi_lab.domain.ids import DEFAULT_REPLICA_ID
from cvi_lab.engine.recording import CallRecorder
from cvi_lab.engine.runtime import EngineRuntime
from cvi_lab.engine.stage_pool import StagePool
from cvi_lab.media import VideoFrame
from tests.engine.test_runtime import STANDIN_STAGES, wait_for
from tests.helpers.config import make_cfg
from tests.helpers.webhook_receiver import WebhookReceiver


def _streams(path: pathlib.Path) -> dict[str, float]:
    """Decoded seconds per stream type (decoding everything proves the file is whole)."""
    out: dict[str, float] = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            if stream.type == "video":
                n = sum(1 for _ in container.decode(stream))
                out["video"] = n / float(stream.average_rate)
        container.seek(0)
        a = container.streams.audio[0]
        samples = sum(f.samples for f in container.decode(a))
        out["audio"] = samples / a.rate
    return out


async def test_recorded_call_writes_mp4_event_field_and_webhook(tmp_path):
    cfg = make_cfg(tmp_path)
    OmegaConf.set_struct(cfg, False)
    cfg = OmegaConf.merge(cfg, STANDIN_STAGES)
    pool = StagePool()
    app = create_app(cfg, runtime_factories=[lambda call, room, c: EngineRuntime(call, c, pool)])
    m = app["manager"]
    await m.start()
    try:
        async with WebhookReceiver() as hooks:
            created = await m.create(ConversationCreate.model_validate({
                "replica_id": DEFAULT_REPLICA_ID, "custom_greeting": "Welcome aboard!", "callback_url": hooks.url,
                "properties": {"enable_recording": True}}))
            cid = created["conversation_id"]
            endpoint = m.endpoint_for(cid)
            events: list[dict] = []
            endpoint.subscribe(events.append)
            await endpoint.participant_joined("p1")
            # quiet participant audio (below the VAD threshold: no turn), 20 ms frames in real time
            quiet = (np.sin(np.arange(320) / 3.0) * 300).astype(np.int16)
            for _ in range(25):
                endpoint.participant_audio("p1", quiet)
                await asyncio.sleep(0.02)
            await wait_for(events, "conversation.replica.stopped_speaking")
            await m.end(cid)
            await m.drain()  # the recording is finished in the background after the end
            await hooks.wait_for(lambda h: bool(h.of_type("application.recording_ready")), timeout=20)

            hook = hooks.of_type("application.recording_ready")[0]
            path = pathlib.Path(hook["properties"]["recording_path"])
            assert path.exists() and path.suffix == ".mp4" and path.parent.name == "recordings"
            assert path.parent.parent == pathlib.Path(str(cfg.server.artifacts_dir)).resolve()
            duration = hook["properties"]["duration"]
            assert 0.4 < duration < 30
            decoded = _streams(path)
            assert set(decoded) == {"video", "audio"}
            assert abs(decoded["video"] - duration) < 0.5 and abs(decoded["audio"] - duration) < 0.5
            stored = [e for e in m.store.events(cid) if e["event_type"] == "application.recording_ready"]
            assert stored and stored[0]["properties"]["recording_path"] == str(path)
            assert m.get(cid)["recording_path"] == str(path)
    finally:
        await m.close()
        await app["replicas"].close()
        await app["webhooks"].close()
        app["store"].close()


async def test_call_without_recording_has_no_file(tmp_path):
    cfg = make_cfg(tmp_path)
    OmegaConf.set_struct(cfg, False)
    cfg = OmegaConf.merge(cfg, STANDIN_STAGES)
    app = create_app(cfg, runtime_factories=[lambda call, room, c: EngineRuntime(call, c, StagePool())])
    m = app["manager"]
    await m.start()
    try:
        created = await m.create(ConversationCreate.model_validate({"replica_id": DEFAULT_REPLICA_ID}))
        await m.end(created["conversation_id"])
        await m.drain()
        assert m.get(created["conversation_id"])["recording_path"] is None
        assert not (pathlib.Path(str(cfg.server.artifacts_dir)) / "recordings").exists()
    finally:
        await m.close()
        await app["replicas"].close()
        await app["webhooks"].close()
        app["store"].close()


async def test_recorder_mixes_participant_audio_and_survives_bad_frames(tmp_path):
    """Unit: the participant's tone is audible in the mixed track; a broken frame fails the recording only."""
    rec = CallRecorder(tmp_path / "a.mp4", fps=25)
    rate = 16_000
    for i in range(50):  # 2 s of silent replica frames, participant tone in real time
        rec.video(VideoFrame(np.zeros((32, 32, 3), np.uint8), i / 25, np.zeros(rate // 25, np.float32), rate))
        rec.participant_audio((np.sin(np.arange(640) * 2 * np.pi * 440 / rate) * 8000).astype(np.int16))
        await asyncio.sleep(0.04)
    path, duration = await rec.finish()
    assert 1.8 < duration < 2.5
    with av.open(str(path)) as c:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert np.sqrt(np.mean(pcm**2)) > 0.05  # the participant is in the mix

    bad = CallRecorder(tmp_path / "b.mp4", fps=25)
    bad.video(VideoFrame(np.zeros((32, 32, 3), np.uint8), 0.0, np.zeros(640, np.float32), rate))
    bad.video(VideoFrame(np.zeros((32,), np.uint8), 0.04, np.zeros(640, np.float32), rate))  # not an image
    assert await bad.finish() is None
    assert bad.failed and not (tmp_path / "b.mp4").exists() and not (tmp_path / "b.mp4.part").exists()
