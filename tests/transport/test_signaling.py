"""HTTP side of the transport: the meeting page, its assets and info, and offer validation (404/403/400)."""

from __future__ import annotations

import aiohttp

from cvi_lab.transport.signaling import meeting_url

from .fake_endpoint import EchoEndpoint

VALID_SDP_START = "v=0\r\n"


async def _post(url, body):
    async with aiohttp.ClientSession() as s:
        async with s.post(url, **({"data": body} if isinstance(body, str) else {"json": body})) as r:
            return r.status, await r.json(content_type=None)


async def _get(url):
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            return r.status, r.headers.get("Content-Type", ""), await r.text()


def test_meeting_url():
    assert meeting_url("http://h:1/", "c1") == "http://h:1/meet/c1"
    assert meeting_url("http://h:1", "c1", "tok en") == "http://h:1/meet/c1?t=tok+en"


async def test_page_assets_and_info(server):
    server.add(EchoEndpoint("c1", captions_enabled=True))
    status, ctype, text = await _get(server.url("c1"))
    assert status == 200 and "text/html" in ctype
    assert 'data-meet="/meet/c1"' in text and "/meet-assets/meeting.js" in text
    assert "{{" not in text
    for name, kind in (("meeting.js", "javascript"), ("controls.js", "javascript"), ("keyer.js", "javascript"),
                       ("meeting.css", "css")):
        assert f"/meet-assets/{name}" in text  # every asset the page loads is served
        status, ctype, body = await _get(f"{server.base_url}/meet-assets/{name}")
        assert status == 200 and kind in ctype and len(body) > 100
    status, _, _ = await _get(f"{server.base_url}/meet-assets/secret.py")
    assert status == 404
    status, _, body = await _get(server.url("c1") + "/info")
    assert status == 200 and '"captions_enabled": true' in body and '"greenscreen_rgb": [0, 255, 155]' in body


async def test_unknown_conversation_is_404(server):
    status, ctype, text = await _get(server.url("cnope"))
    assert status == 404 and "text/html" in ctype and "cnope" in text
    status, body = await _post(server.url("cnope") + "/offer", {"sdp": VALID_SDP_START, "type": "offer"})
    assert status == 404 and "cnope" in body["error"] and body["message"] == body["error"]


async def test_offer_validation_is_400(server):
    server.add(EchoEndpoint("c1"))
    url = server.url("c1") + "/offer"
    cases = [
        ("not json", "not valid JSON"),
        ([1, 2], "JSON object"),
        ({"type": "offer"}, "'sdp'"),
        ({"sdp": VALID_SDP_START, "type": "answer"}, "'type'"),
        ({"sdp": "hello", "type": "offer"}, "v=0"),
        ({"sdp": VALID_SDP_START, "type": "offer", "colour": "red"}, "colour"),
        ({"sdp": VALID_SDP_START, "type": "offer", "participant_id": "a b"}, "participant_id"),
        ({"sdp": VALID_SDP_START + "garbage", "type": "offer"}, "no audio, video or data channel"),
    ]
    for body, expected in cases:
        status, resp = await _post(url, body)
        assert status == 400, (body, resp)
        assert expected in resp["error"], (body, resp)


async def test_bad_token_and_full_room_are_403(server):
    server.add(EchoEndpoint("c1", meeting_token="secret"))
    status, body = await _post(server.url("c1") + "/offer", {"sdp": VALID_SDP_START, "type": "offer", "meeting_token": "nope"})
    assert status == 403 and "meeting_token" in body["error"]
    full = server.add(EchoEndpoint("c2", max_participants=2))
    full.joined.append("someone")
    status, body = await _post(server.url("c2") + "/offer", {"sdp": VALID_SDP_START, "type": "offer"})
    assert status == 403 and "full" in body["error"]


async def test_leave_unknown_participant_is_404(server):
    server.add(EchoEndpoint("c1"))
    status, body = await _post(server.url("c1") + "/leave", {"participant_id": "pnobody"})
    assert status == 404
    status, body = await _post(server.url("c1") + "/leave", {})
    assert status == 400 and "participant_id" in body["error"]
