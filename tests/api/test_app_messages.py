"""POST /v2/conversations/{id}/send-app-message: the envelope goes the data channel's way (endpoint → runtime →
engine), errors as SPEC §5 (404 unknown, 400 not live (ended, test mode), malformed or refused, 409 no runtime,
429 over the rate limit), the OpenAPI entry.

The runtime is the real `ConversationEngine` on the scripted stand-in stages of tests/engine (no models), so the
refusals and events are the engine's own."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cvi_lab.api.app import create_app
from cvi_lab.domain.ids import DEFAULT_REPLICA_ID
from cvi_lab.engine.engine import ConversationEngine, ConversationSpec, Sinks, Stages
from tests.engine.standins import BlankAvatar, ScriptedASR, ScriptedLLM, ScriptedTTS, ScriptedTurn, energy_vad
from tests.engine.test_engine_unit import settings
from tests.helpers.config import make_cfg


class StandinEngineRuntime:
    """`ConversationRuntime` over a real engine with stand-in stages; keeps every event it sent out."""

    def __init__(self, call) -> None:
        self.call = call
        self.events: list[dict] = []
        stages = Stages(vad=energy_vad(), tts=ScriptedTTS(), avatar=BlankAvatar(), turn=ScriptedTurn(),
                        asr=ScriptedASR(), llm=ScriptedLLM("Fine, thanks."))
        self.engine = ConversationEngine(ConversationSpec(call.conversation_id, custom_greeting="Hi!"), stages,
                                         settings(), sinks=Sinks(record_event=call.add_event))

    async def start(self) -> None:
        await self.engine.start()
        self.engine.subscribe(self.events.append)

    async def stop(self, reason: str) -> None:
        await self.engine.stop(reason)

    async def participant_joined(self, participant_id, kind) -> None:
        await self.engine.participant_joined(participant_id)

    async def participant_left(self, participant_id, kind, reason) -> None:
        await self.engine.participant_left(participant_id, reason)

    def participant_audio(self, participant_id, pcm) -> None:
        self.engine.push_audio(pcm)

    async def interaction(self, participant_id, message):
        return await self.engine.handle_interaction(message)

    def outgoing(self):
        return self.engine.frames()

    def subscribe(self, send):
        return self.engine.subscribe(send)

    def system_message(self) -> str:
        return self.engine.system_message()


@pytest.fixture
async def live(tmp_path, clock):
    runtimes: dict[str, StandinEngineRuntime] = {}

    def factory(call, room, cfg):
        runtimes[call.conversation_id] = runtime = StandinEngineRuntime(call)
        return runtime

    cfg = make_cfg(tmp_path / "home", **{"limits.app_messages_per_window": 3, "limits.app_messages_window_s": 10})
    client = TestClient(TestServer(create_app(cfg, clock=clock, runtime_factories=[factory]), host="127.0.0.1"))
    await client.start_server()
    client.runtimes = runtimes
    yield client
    assert client.app["stats"]["internal_errors"] == 0, "a request reached the 500 handler"
    await client.close()


async def start_call(api) -> str:
    resp = await api.post("/v2/conversations", json={"replica_id": DEFAULT_REPLICA_ID})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["conversation_id"]


def envelope(cid, event_type, **props):
    return {"message_type": "conversation", "event_type": event_type, "conversation_id": cid, "properties": props}


def send(api, cid, body):
    return api.post(f"/v2/conversations/{cid}/send-app-message", json=body)


async def test_an_app_message_is_handled_like_a_data_channel_message(live):
    cid = await start_call(live)
    engine = live.runtimes[cid].engine
    resp = await send(live, cid, envelope(cid, "conversation.append_llm_context", context="The user is Ada."))
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"conversation_id": cid, "status": "delivered"}
    assert "The user is Ada." in engine.system_message()
    resp = await send(live, cid, envelope(cid, "conversation.set_emotion", emotion="happy"))
    assert resp.status == 200 and engine.speaker.voice_style == engine.emotions.get("happy")[1]


async def test_refusals_are_400s_naming_what_is_accepted_and_reach_the_data_channel_too(live, clock):
    cid = await start_call(live)
    runtime = live.runtimes[cid]
    cases = [
        (envelope(cid, "conversation.dance"), "event_type 'conversation.dance' is not accepted; accepted:"),
        ({**envelope(cid, "conversation.respond", text="hi"), "message_type": "system"}, "use 'conversation'"),
        (envelope("c-other", "conversation.respond", text="hi"), "does not match this conversation"),
        (envelope(cid, "conversation.respond", text=""), "'text' must be a non-empty string"),
        (envelope(cid, "conversation.set_emotion", emotion="gleeful"), "accepted: neutral, happy"),
        (envelope(cid, "conversation.tool_result", name="f", result=1), "no pending tool call"),
    ]
    for body, expected in cases:
        resp = await send(live, cid, body)
        assert resp.status == 400, (body, await resp.text())
        assert expected in (await resp.json())["error"]
        clock.advance(11)  # a new rate window (this test is not about the limit)
    errors = [e["properties"]["error"] for e in runtime.events if e["event_type"] == "conversation.error"]
    assert len(errors) == len(cases)  # the same refusals, as error events on the data channel
    for raw, expected in ((b"[1, 2]", "one interaction envelope"), (b"{nope", "not valid JSON"),
                          (b"", "one interaction envelope")):
        resp = await live.post(f"/v2/conversations/{cid}/send-app-message", data=raw,
                               headers={"content-type": "application/json"})
        assert resp.status == 400 and expected in (await resp.json())["error"]


async def test_unknown_ended_and_rate_limited(live, clock):
    resp = await send(live, "c123456789", envelope("c123456789", "conversation.interrupt"))
    assert resp.status == 404 and "does not exist" in (await resp.json())["error"]

    cid = await start_call(live)
    for _ in range(3):  # the limit in this test's config: 3 per 10 s
        assert (await send(live, cid, envelope(cid, "conversation.interrupt"))).status == 200
    resp = await send(live, cid, envelope(cid, "conversation.interrupt"))
    assert resp.status == 429
    assert "more than 3 app messages in 10 s" in (await resp.json())["error"]
    clock.advance(10.5)
    assert (await send(live, cid, envelope(cid, "conversation.interrupt"))).status == 200

    other = await start_call(live)  # the limit is per conversation
    assert (await send(live, other, envelope(other, "conversation.interrupt"))).status == 200

    assert (await live.post(f"/v2/conversations/{cid}/end")).status == 200
    resp = await send(live, cid, envelope(cid, "conversation.interrupt"))
    assert resp.status == 400 and "is not live" in (await resp.json())["error"]


async def test_test_mode_conversations_never_take_app_messages(live):
    resp = await live.post("/v2/conversations", json={"replica_id": DEFAULT_REPLICA_ID, "test_mode": True})
    cid = (await resp.json())["conversation_id"]
    resp = await send(live, cid, envelope(cid, "conversation.interrupt"))
    assert resp.status == 400 and "is not live" in (await resp.json())["error"]


async def test_the_openapi_document_declares_the_route(live):
    spec = await (await live.get("/openapi.json")).json()
    op = spec["paths"]["/v2/conversations/{conversation_id}/send-app-message"]["post"]
    assert set(op["responses"]) >= {"200", "400", "404", "409", "429"}
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["message_type"]["enum"] == ["conversation"]
    assert {"conversation.tool_result", "conversation.set_emotion", "conversation.respond"} <= set(
        body["properties"]["event_type"]["enum"])
    assert spec["components"]["schemas"]["AppMessageDelivered"]["required"] == ["conversation_id", "status"]
