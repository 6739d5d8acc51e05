"""Today's hosted-API client, unchanged, against our server: LiveKit Agents' Tavus plugin (`TavusAPI`, pinned in
the test extra) pointed at us by its base URL only."""

from __future__ import annotations

import json

import pytest
from livekit.agents import APIStatusError
from livekit.plugins.tavus.api import DEFAULT_PAL_ID, TavusAPI

from cvi_lab.domain.ids import DEFAULT_PERSONA_ID, DEFAULT_REPLICA_ID, is_id

KEY = "a-test-key"


@pytest.fixture
async def server(make_client):
    return await make_client(api_keys=[KEY])


@pytest.fixture
def tavus(server) -> TavusAPI:
    return TavusAPI(api_key=KEY, api_url=str(server.make_url("/v2")), session=server.session)


async def test_create_pal_stores_its_livekit_transport(server, tavus):
    pal_id = await tavus.create_pal("lk-pal", default_face_id=DEFAULT_REPLICA_ID)
    assert is_id(pal_id, "p")
    stored = await (await server.get(f"/v2/pals/{pal_id}", headers={"x-api-key": KEY})).json()
    assert stored["pal_name"] == "lk-pal" and stored["default_face_id"] == DEFAULT_REPLICA_ID
    assert stored["pipeline_mode"] == "echo" and stored["layers"]["transport"] == {"transport_type": "livekit"}
    # a call on LiveKit is not one we can carry: refused, naming ours
    with pytest.raises(APIStatusError) as refused:
        await tavus.create_conversation(pal_id=pal_id)
    assert refused.value.status_code == 400
    error = json.loads(refused.value.body)["error"]
    assert "'livekit'" in error and "supported: webrtc" in error


async def test_a_pal_on_our_transport_starts_a_conversation(server, tavus):
    pal_id = await tavus.create_pal("rtc-pal", default_face_id=DEFAULT_REPLICA_ID, extra_payload={
        "layers": {"transport": {"transport_type": "webrtc"}}})
    cid = await tavus.create_conversation(pal_id=pal_id, properties={"max_call_duration": 60})
    record = await (await server.get(f"/v2/conversations/{cid}", headers={"x-api-key": KEY})).json()
    assert record["status"] == "active" and record["conversation_name"].startswith("lk_conversation_")
    assert (record["pal_id"], record["face_id"]) == (pal_id, DEFAULT_REPLICA_ID)
    assert record["properties"]["max_call_duration"] == 60
    # the deprecated names still reach the same rules
    other = await tavus.create_conversation(persona_id=DEFAULT_PERSONA_ID, replica_id=DEFAULT_REPLICA_ID)
    assert is_id(other, "c")


async def test_the_deprecated_persona_route_and_the_stock_pal(server, tavus):
    persona_id = await tavus.create_persona("lk-persona")
    stored = await (await server.get(f"/v2/personas/{persona_id}", headers={"x-api-key": KEY})).json()
    assert stored["persona_name"] == "lk-persona" and stored["layers"]["transport"]["transport_type"] == "livekit"
    # without a PAL the client names the hosted stock PAL, which this server does not have
    with pytest.raises(APIStatusError) as missing:
        await tavus.create_conversation()
    assert missing.value.status_code == 404 and DEFAULT_PAL_ID in json.loads(missing.value.body)["error"]


async def test_a_wrong_key_is_a_401_the_client_reports(server):
    wrong = TavusAPI(api_key="not-the-key", api_url=str(server.make_url("/v2")), session=server.session)
    with pytest.raises(APIStatusError) as denied:
        await wrong.create_pal(default_face_id=DEFAULT_REPLICA_ID)
    assert denied.value.status_code == 401
