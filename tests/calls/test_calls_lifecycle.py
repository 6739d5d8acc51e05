"""Call lifecycle through the manager with a FakeClock: timers, presence, usage, runtimes, orphans."""

from __future__ import annotations

import numpy as np
import pytest

from cvi_lab.calls.room import RoomClosed, RoomFull
from cvi_lab.domain.conversation import ConversationCreate, ShutdownReason
from cvi_lab.domain.errors import LimitReached, Unavailable
from cvi_lab.domain.ids import DEFAULT_REPLICA_ID
from tests.calls.runtime_standin import RecordingRuntime


def req(**kw) -> ConversationCreate:
    kw.setdefault("replica_id", DEFAULT_REPLICA_ID)
    return ConversationCreate.model_validate(kw)


async def status(manager, cid):
    await manager.drain()
    return manager.get(cid)


async def test_create_starts_the_call(make_env):
    app = await make_env()
    m = app["manager"]
    created = await m.create(req())
    cid = created["conversation_id"]
    assert created["status"] == "active" and created["conversation_url"].endswith(f"/meet/{cid}")
    room = m.room(cid)
    assert room.replica_present and room.participant_count == 0
    events = [e["event_type"] for e in app["store"].events(cid)]
    assert events == ["system.replica_joined"]
    assert app["store"].get_usage(cid)["ended_at"] is None


async def test_participant_absent_timeout(make_env, clock):
    m = (await make_env())["manager"]
    cid = (await m.create(req(properties={"participant_absent_timeout": 30})))["conversation_id"]
    clock.advance(29.9)
    assert (await status(m, cid))["status"] == "active"
    clock.advance(0.2)
    rec = await status(m, cid)
    assert rec["status"] == "ended" and rec["shutdown_reason"] == ShutdownReason.PARTICIPANT_ABSENT
    assert rec["usage_seconds"] == pytest.approx(30.0, abs=0.2)
    assert cid not in m.live


async def test_join_cancels_absent_timeout_and_left_timeout_zero_ends_at_once(make_env, clock):
    m = (await make_env())["manager"]
    cid = (await m.create(req(properties={"participant_absent_timeout": 30})))["conversation_id"]
    await m.participant_joined(cid, "alice")
    clock.advance(100)
    assert (await status(m, cid))["status"] == "active"
    await m.participant_left(cid, "alice", "left")
    rec = await status(m, cid)
    assert rec["shutdown_reason"] == ShutdownReason.PARTICIPANT_LEFT


async def test_participant_left_timeout_counts_from_last_leave_and_rejoin_cancels(make_env, clock):
    m = (await make_env())["manager"]
    cid = (await m.create(req(properties={"participant_left_timeout": 20})))["conversation_id"]
    room = m.room(cid)
    room.join("alice")
    room.join("observer-1", kind="observer")
    room.leave("alice")
    clock.advance(60)  # the observer still counts as a participant
    assert (await status(m, cid))["status"] == "active"
    room.leave("observer-1")
    clock.advance(19)
    assert (await status(m, cid))["status"] == "active"
    room.join("alice")  # back before the timeout: cancelled
    clock.advance(60)
    assert (await status(m, cid))["status"] == "active"
    room.leave("alice")
    clock.advance(20.01)
    rec = await status(m, cid)
    assert rec["status"] == "ended" and rec["shutdown_reason"] == ShutdownReason.PARTICIPANT_LEFT


async def test_max_call_duration(make_env, clock):
    m = (await make_env())["manager"]
    cid = (await m.create(req(properties={"max_call_duration": 90})))["conversation_id"]
    m.room(cid).join("alice")
    clock.advance(89)
    assert (await status(m, cid))["status"] == "active"
    clock.advance(1.5)
    rec = await status(m, cid)
    assert rec["shutdown_reason"] == ShutdownReason.MAX_CALL_DURATION
    assert rec["usage_seconds"] == pytest.approx(90.0, abs=0.01)
    assert m.room(cid) is None


async def test_end_is_idempotent_and_records_usage(make_env, clock):
    m = (await make_env())["manager"]
    cid = (await m.create(req()))["conversation_id"]
    clock.advance(42)
    first = await m.end(cid)
    clock.advance(100)
    second = await m.end(cid)
    assert first["shutdown_reason"] == ShutdownReason.END_ENDPOINT
    assert first["usage_seconds"] == second["usage_seconds"] == pytest.approx(42.0)
    assert [e["event_type"] for e in m.store.events(cid)].count("system.shutdown") == 1


async def test_max_participants_counts_the_replica(make_env):
    m = (await make_env())["manager"]
    cid = (await m.create(req(max_participants=2)))["conversation_id"]
    room = m.room(cid)
    room.join("alice")
    assert m.authorize(cid, None) is not None
    with pytest.raises(RoomFull, match="max_participants 2"):
        room.join("bob")
    assert room.join("alice") is False  # re-join of a present member is not a new member
    await m.end(cid)
    with pytest.raises(RoomClosed):
        room.join("carol")


async def test_test_mode_skips_replica_usage_and_spot(make_env):
    m = (await make_env(**{"limits.max_concurrent_conversations": 1}))["manager"]
    created = await m.create(req(test_mode=True))
    assert created["status"] == "ended"
    cid = created["conversation_id"]
    assert m.room(cid) is None and m.store.get_usage(cid) is None and m.store.events(cid) == []
    await m.create(req())  # the only spot is still free
    with pytest.raises(LimitReached, match="User has reached maximum concurrent conversations"):
        await m.create(req())


async def test_usage_heartbeat_is_persisted(make_env, clock):
    m = (await make_env(**{"usage.heartbeat_s": 2.0}))["manager"]
    cid = (await m.create(req()))["conversation_id"]
    clock.advance(5)
    usage = m.store.get_usage(cid)
    assert usage["seconds"] == pytest.approx(4.0) and usage["ended_at"] is None


async def test_orphans_from_a_killed_run_are_resolved_at_start(make_env, clock):
    app = await make_env(**{"usage.heartbeat_s": 1.0})
    m, store = app["manager"], app["store"]
    cid = (await m.create(req()))["conversation_id"]
    clock.advance(7.5)
    m.live.clear()  # what a SIGKILL leaves: the record says active, nobody runs it
    orphans = m.resolve_orphans()
    assert orphans == [cid]
    rec = m.get(cid)
    assert rec["status"] == "ended" and rec["shutdown_reason"] == ShutdownReason.SERVER_RESTART
    assert rec["usage_seconds"] == pytest.approx(7.0)


async def test_runtime_factory_hooks(make_env):
    log: list = []
    app = await make_env(runtime_factories=[lambda call, room, cfg: RecordingRuntime(call, room, cfg, log)])
    m = app["manager"]
    cid = (await m.create(req(conversational_context="It is Monday.",
                              properties={"participant_left_timeout": 5})))["conversation_id"]
    call = m.call(cid)
    assert m.endpoint_for(cid) is call.endpoint and call.endpoint.runtime is call.runtime
    assert call.transcript()[0] == {"role": "system", "content": "You are a test. It is Monday."}
    assert call.language.code == "en"
    await m.participant_joined(cid, "alice")
    call.add_event("conversation.utterance", {"role": "user", "speech": "Hello?"})
    call.add_turn_metrics(0, {"response_latency_s": 0.61})
    await m.participant_left(cid, "alice", "disconnected")
    await m.end(cid)
    assert log == [("start", False), ("joined", "alice", "participant"), ("left", "alice", "disconnected"),
                   ("stop", ShutdownReason.END_ENDPOINT)]
    assert m.endpoint_for(cid) is None
    assert m.store.turn_metrics(cid)[0]["metrics"] == {"response_latency_s": 0.61}


async def test_endpoint_goes_straight_to_the_room_and_the_runtime(make_env):
    """The transport's endpoint: presence through the call's room (timers, stored events, refusals) and then
    the runtime; media and interactions to the runtime; what the meeting page shows from the properties."""
    log: list = []
    app = await make_env(runtime_factories=[lambda call, room, cfg: RecordingRuntime(call, room, cfg, log)])
    m = app["manager"]
    created = await m.create(req(max_participants=2, require_auth=True, properties={"enable_closed_captions": True}))
    cid, token = created["conversation_id"], created["meeting_token"]
    endpoint = m.endpoint_for(cid)
    assert (endpoint.captions_enabled, endpoint.greenscreen, endpoint.require_auth) == (True, False, True)
    assert endpoint.authorize(None) == "a valid meeting_token is required"
    assert endpoint.authorize(token) is None
    await endpoint.participant_joined("alice")
    assert m.room(cid).members["alice"] == "participant"
    assert endpoint.authorize(token).startswith("the room is full")
    with pytest.raises(RoomFull):  # refused by the room: the runtime never hears of bob
        await endpoint.participant_joined("bob")
    endpoint.participant_audio("alice", np.zeros(320, np.int16))
    await endpoint.interaction("alice", {"event_type": "conversation.respond"})
    await endpoint.participant_left("alice", "left")
    await endpoint.participant_left("alice", "left")  # once only
    assert log[1:] == [("joined", "alice", "participant"), ("interaction", "alice", {"event_type": "conversation.respond"}),
                       ("left", "alice", "left")]
    assert endpoint.runtime.audio == [("alice", 320)]
    stored = [e["event_type"] for e in m.store.events(cid)]
    assert stored.count("system.participant_joined") == 1 and stored.count("system.participant_left") == 1
    await m.end(cid)
    assert m.endpoint_for(cid) is None and endpoint.authorize(token) == "the conversation has ended"


async def test_transcript_webhook_starts_with_what_the_llm_saw_last(make_env):
    """application.transcription_ready: the runtime's system message read after it stopped, not a rebuild."""
    app = await make_env(runtime_factories=[lambda call, room, cfg: RecordingRuntime(call, room, cfg, [])])
    m = app["manager"]
    cid = (await m.create(req(conversational_context="It is Monday.", callback_url="http://127.0.0.1:9/hook")))[
        "conversation_id"]
    await m.end(cid)
    ready, = [d for d in m.store.deliveries(cid) if d["event_type"] == "application.transcription_ready"]
    transcript = ready["payload"]["properties"]["transcript"]
    assert transcript == [{"role": "system", "content": "You are a test. It is Monday. It is Tuesday now."},
                          {"role": "assistant", "content": "Bye now."}]


def test_a_conversation_has_one_runtime(tmp_path):
    from cvi_lab.api.app import create_app
    from tests.helpers.config import make_cfg

    def factory(call, room, cfg):
        return RecordingRuntime(call, room, cfg, [])

    with pytest.raises(ValueError, match="a conversation has one runtime"):
        create_app(make_cfg(tmp_path), runtime_factories=[factory, factory])


async def test_runtime_start_failure_ends_the_call_and_frees_the_spot(make_env):
    log: list = []
    app = await make_env(runtime_factories=[lambda c, r, cfg: RecordingRuntime(c, r, cfg, log, fail=True)],
                         **{"limits.max_concurrent_conversations": 1})
    m = app["manager"]
    with pytest.raises(Unavailable, match="model weights missing"):
        await m.create(req())
    rows, _ = m.store.list_conversations(status="ended")
    assert rows[0]["shutdown_reason"] == ShutdownReason.STARTUP_FAILED
    assert not m.live


async def test_meeting_token_required_and_expires(make_env, clock):
    m = (await make_env())["manager"]
    created = await m.create(req(require_auth=True, properties={"participant_absent_timeout": 60}))
    cid, token = created["conversation_id"], created["meeting_token"]
    assert token and created["conversation_url"].endswith(f"?t={token}")
    assert m.authorize(cid, None) == "a valid meeting_token is required"
    assert m.authorize(cid, "wrong") == "a valid meeting_token is required"
    assert m.authorize(cid, token) is None
    m.room(cid).join("alice")  # keeps the call alive past the absent timeout
    clock.advance(61)
    assert m.authorize(cid, token) == "the meeting_token has expired"
    assert m.authorize("cffffffff", token) == "unknown conversation"


async def test_end_listeners_run_after_the_end_and_errors_do_not_break_it(make_env):
    m = (await make_env())["manager"]
    seen = []

    async def closer(cid, reason):
        seen.append((cid, reason, m.call(cid) is None))

    def broken(cid, reason):
        raise RuntimeError("listener bug")

    m.add_end_listener(broken)
    m.add_end_listener(closer)
    cid = (await m.create(req()))["conversation_id"]
    rec = await m.end(cid)
    assert rec["status"] == "ended" and seen == [(cid, ShutdownReason.END_ENDPOINT, True)]


async def test_shutdown_ends_live_calls_then_closes_the_runtime_factory(make_env):
    """A factory's `aclose` (shared, loop-bound resources such as an LLM's HTTP session) runs at shutdown,
    after its live calls stopped; a factory whose close fails does not break the shutdown."""
    log: list = []

    def factory(call, room, cfg):
        return RecordingRuntime(call, room, cfg, log)

    async def close():
        log.append(("factory closed",))

    factory.aclose = close
    app = await make_env(runtime_factories=[factory])
    m = app["manager"]
    await m.create(req())
    await m.close()
    assert log[-2:] == [("stop", ShutdownReason.SERVER_SHUTDOWN), ("factory closed",)]


async def test_a_failing_factory_close_is_logged_not_raised(make_env, caplog):
    def broken(call, room, cfg):
        return RecordingRuntime(call, room, cfg, [])

    async def broken_close():
        raise RuntimeError("boom")

    broken.aclose = broken_close
    m = (await make_env(runtime_factories=[broken]))["manager"]
    await m.create(req())
    await m.close()
    assert "closing runtime factory" in caplog.text and not m.live
