"""GET /meet/{id}/info and the offer's token check through the real calls layer and transport routes: what the
meeting page reads comes from the conversation's properties (the browser test on a real call is
tests/transport/test_meeting_page_real_call.py)."""

from __future__ import annotations

import pytest

from cvi_lab.domain.ids import DEFAULT_REPLICA_ID

PLUGINS = {"runtimes": ["tests.calls.runtime_standin.factory"], "installers": ["cvi_lab.api.plugins.install_transport"]}


@pytest.fixture
async def meet_api(make_client):
    return await make_client(**PLUGINS)


async def create(api, **body) -> dict:
    resp = await api.post("/v2/conversations", json={"replica_id": DEFAULT_REPLICA_ID, **body})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def info(api, cid: str) -> tuple[int, dict]:
    resp = await api.get(f"/meet/{cid}/info")
    return resp.status, await resp.json()


async def test_info_reads_the_conversation_properties(meet_api):
    on = await create(meet_api, properties={"enable_closed_captions": True, "apply_greenscreen": True,
                                            "audio_only": True})
    off = await create(meet_api, require_auth=True)
    assert await info(meet_api, on["conversation_id"]) == (200, {
        "conversation_id": on["conversation_id"], "captions_enabled": True, "greenscreen": True, "require_auth": False,
        "audio_only": True, "greenscreen_rgb": [0, 255, 155]})
    assert await info(meet_api, off["conversation_id"]) == (200, {
        "conversation_id": off["conversation_id"], "captions_enabled": False, "greenscreen": False, "require_auth": True,
        "audio_only": False, "greenscreen_rgb": [0, 255, 155]})


async def test_offer_without_the_meeting_token_is_refused(meet_api):
    conv = await create(meet_api, require_auth=True)
    cid = conv["conversation_id"]
    resp = await meet_api.post(f"/meet/{cid}/offer", json={"sdp": "v=0\r\n", "type": "offer"})
    assert resp.status == 403 and "a valid meeting_token is required" in (await resp.json())["error"]
    resp = await meet_api.post(f"/meet/{cid}/offer", json={"sdp": "v=0\r\n", "type": "offer", "meeting_token": "nope"})
    assert resp.status == 403


async def test_an_ended_conversation_has_no_meeting(meet_api):
    cid = (await create(meet_api))["conversation_id"]
    assert (await meet_api.post(f"/v2/conversations/{cid}/end")).status == 200
    status, body = await info(meet_api, cid)
    assert status == 404 and "has ended" in body["error"]
