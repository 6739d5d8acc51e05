"""The engine as the calls layer's runtime: the manager creates it per conversation, the transport talks to its
endpoint, transcript events and turn metrics land in the store. Stages: the scripted stand-ins of
standins.py, selected the way the server selects real ones (config `_target_`s)."""

from __future__ import annotations

import asyncio

from omegaconf import OmegaConf

from cvi_lab.api.app import create_app
from cvi_lab.domain.conversation import ConversationCreate
from cvi_lab.domain.ids import DEFAULT_REPLICA_ID
from cvi_lab.engine.runtime import EngineRuntime
from cvi_lab.engine.stage_pool import StagePool
from tests.helpers.config import make_cfg

STANDIN_STAGES = {
    "vad": {"_target_": "cvi_lab.stages.vad.energy.EnergyVAD", "threshold_dbfs": -30.0, "min_silence_ms": 200},
    "turn": {"_target_": "tests.engine.standins.ScriptedTurn"},
    "asr": {"_target_": "tests.engine.standins.ScriptedASR"},
    "llm": {"_target_": "tests.engine.standins.ScriptedLLM", "reply": "Monday it is."},
    "tts": {"_target_": "tests.engine.standins.ScriptedTTS"},
    "avatar": {"_target_": "tests.engine.standins.BlankAvatar"},
}


async def wait_for(events, event_type, timeout=10.0, n=1):
    for _ in range(int(timeout / 0.02)):
        if sum(e["event_type"] == event_type for e in events) >= n:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(event_type)


async def test_manager_runs_an_engine_per_call_and_stores_its_transcript(tmp_path):
    cfg = make_cfg(tmp_path)
    OmegaConf.set_struct(cfg, False)
    cfg = OmegaConf.merge(cfg, STANDIN_STAGES)
    pool = StagePool()
    app = create_app(cfg, runtime_factories=[lambda call, room, c: EngineRuntime(call, c, pool)])
    m = app["manager"]
    await m.start()
    try:
        created = await m.create(ConversationCreate.model_validate(
            {"replica_id": DEFAULT_REPLICA_ID, "custom_greeting": "Welcome aboard!", "conversational_context": "Today is Monday."}))
        cid = created["conversation_id"]
        endpoint = m.endpoint_for(cid)
        assert endpoint is not None and endpoint.conversation_id == cid
        assert endpoint.authorize(None) is None
        events = []
        endpoint.subscribe(events.append)
        assert events[0]["event_type"] == "system.replica_joined" and events[0]["message_type"] == "system"
        frames = []

        async def consume():
            async for frame in endpoint.outgoing():
                frames.append(frame)

        consumer = asyncio.ensure_future(consume())
        await endpoint.participant_joined("p1")  # → call (room, timers) → runtime → engine greeting
        await wait_for(events, "conversation.replica.stopped_speaking")
        await endpoint.interaction("p1", {"message_type": "conversation", "event_type": "conversation.respond",
                                          "conversation_id": cid, "properties": {"text": "What day is it?"}})
        await wait_for(events, "conversation.replica.stopped_speaking", n=2)
        await endpoint.interaction("p1", "garbage")
        assert events[-1]["event_type"] == "conversation.error"
        llm = pool._shared[next(k for k in pool._shared if k.startswith("llm:"))]
        assert llm.prompts[-1][0].content.endswith("Today is Monday.")
        await m.end(cid)
        await asyncio.wait_for(consumer, 5)  # the frame stream ends with the call
        assert any(f.speaking for f in frames)
        stored = [(e["event_type"], e["properties"]) for e in m.store.events(cid)]
        speech = [(p["role"], p["speech"]) for t, p in stored if t == "conversation.utterance"]
        assert speech == [("replica", "Welcome aboard!"), ("user", "What day is it?"), ("replica", "Monday it is.")]
        assert [t for t, _ in stored].count("system.shutdown") == 1
        assert any(t == "conversation.error" for t, _ in stored)
        metrics = m.store.turn_metrics(cid)
        assert metrics and metrics[0]["turn_idx"] == 1
        assert endpoint.authorize(None) is not None  # ended
    finally:
        await m.close()
        await app["replicas"].close()
        await app["webhooks"].close()
        app["store"].close()


async def test_the_stored_transcript_starts_with_what_the_llm_saw(tmp_path):
    """application.transcription_ready (and Call.transcript) carry the engine's `system_message()`: the one
    the LLM got on the latest turn (default prompt, context updates and tool block included), not a rebuild."""
    cfg = make_cfg(tmp_path)
    OmegaConf.set_struct(cfg, False)
    cfg = OmegaConf.merge(cfg, STANDIN_STAGES)
    pool = StagePool()
    app = create_app(cfg, runtime_factories=[lambda call, room, c: EngineRuntime(call, c, pool)])
    m = app["manager"]
    await m.start()
    try:
        created = await m.create(ConversationCreate.model_validate(
            {"replica_id": DEFAULT_REPLICA_ID, "conversational_context": "Today is Monday.",
             "callback_url": "http://127.0.0.1:9/hook"}))
        cid = created["conversation_id"]
        endpoint, call = m.endpoint_for(cid), m.call(cid)
        events = []
        endpoint.subscribe(events.append)
        await endpoint.participant_joined("p1")
        await wait_for(events, "conversation.replica.stopped_speaking")
        await endpoint.interaction("p1", {"message_type": "conversation", "event_type": "conversation.overwrite_llm_context",
                                          "conversation_id": cid, "properties": {"context": "Today is Tuesday."}})
        await endpoint.interaction("p1", {"message_type": "conversation", "event_type": "conversation.respond",
                                          "conversation_id": cid, "properties": {"text": "What day is it?"}})
        await wait_for(events, "conversation.replica.stopped_speaking", n=2)
        llm = pool._shared[next(k for k in pool._shared if k.startswith("llm:"))]
        seen = llm.prompts[-1][0].content
        assert "Today is Tuesday." in seen and call.transcript()[0] == {"role": "system", "content": seen}
        await m.end(cid)
        ready, = [d for d in m.store.deliveries(cid) if d["event_type"] == "application.transcription_ready"]
        assert ready["payload"]["properties"]["transcript"][0] == {"role": "system", "content": seen}
    finally:
        await m.close()
        await app["replicas"].close()
        await app["webhooks"].close()
        app["store"].close()


async def test_stage_pool_aclose_releases_shared_stages_resources():
    """Only stages with `aclose` are closed, one failing close does not stop the others, models stay loaded."""
    from cvi_lab.engine.stage_pool import StagePool

    closed = []

    class Holder:
        def __init__(self, name, fail=False):
            self.name, self.fail = name, fail

        async def aclose(self):
            if self.fail:
                raise RuntimeError("boom")
            closed.append(self.name)

    pool = StagePool()
    pool._shared.update({"llm:a": Holder("a", fail=True), "llm:b": Holder("b"), "tts:c": object()})
    await pool.aclose()
    assert closed == ["b"] and len(pool.loaded) == 3


async def test_an_audio_only_call_renders_no_image(tmp_path):
    """SPEC §5 audio_only: the engine's avatar is engine.audio_only_avatar (whatever the config's avatar is), its
    frames carry the replica's audio and no image, and the endpoint tells the transport to offer no video."""
    from cvi_lab.stages.avatar.audio_only import AudioOnlyRenderer

    cfg = make_cfg(tmp_path)
    OmegaConf.set_struct(cfg, False)
    cfg = OmegaConf.merge(cfg, STANDIN_STAGES)
    pool = StagePool()
    runtimes = []

    def factory(call, room, c):
        runtimes.append(EngineRuntime(call, c, pool))
        return runtimes[-1]

    app = create_app(cfg, runtime_factories=[factory])
    m = app["manager"]
    await m.start()
    try:
        created = await m.create(ConversationCreate.model_validate(
            {"replica_id": DEFAULT_REPLICA_ID, "custom_greeting": "Hello by voice.", "properties": {"audio_only": True}}))
        cid = created["conversation_id"]
        endpoint = m.endpoint_for(cid)
        assert endpoint.audio_only and isinstance(runtimes[0].engine.stages.avatar, AudioOnlyRenderer)
        frames, events = [], []
        endpoint.subscribe(events.append)

        async def consume():
            async for frame in endpoint.outgoing():
                frames.append(frame)

        consumer = asyncio.ensure_future(consume())
        await endpoint.participant_joined("p1")
        await wait_for(events, "conversation.replica.stopped_speaking")
        await m.end(cid)
        await asyncio.wait_for(consumer, 5)
        assert frames and all(f.image is None for f in frames)
        assert any(f.speaking and len(f.audio) for f in frames)
        assert m.get(cid)["properties"]["audio_only"] is True
    finally:
        await m.close()
