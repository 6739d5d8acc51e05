"""HTTP signaling and the meeting page: offer -> answer over plain HTTP, no trickle, no outside STUN.

Routes (under `base_path`):
- `GET  /meet/{conversation_id}`          the meeting page (404 page if the conversation is unknown/ended)
- `GET  /meet/{conversation_id}/info`     JSON the page needs: captions on?, greenscreen (and its key colour)?,
                                          token needed?, audio only?
- `POST /meet/{conversation_id}/offer`    `{sdp, type: "offer", meeting_token?, participant_id?}` ->
                                          `{sdp, type: "answer", participant_id}`
- `POST /meet/{conversation_id}/leave`    `{participant_id}`: the participant leaves (page fallback to the
                                          data-channel `conversation.leave` message)
- `GET  /meet-assets/{name}`              meeting.js, controls.js, keyer.js, meeting.css

Why non-trickle: both ends gather host candidates only, which takes milliseconds, so one round trip is
simpler than a candidate exchange and costs nothing.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import uuid
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from cvi_lab.media import GREENSCREEN_RGB
from cvi_lab.transport.contract import CallEndpoint, ResolveEndpoint
from cvi_lab.transport.room import Peer, PeerRoom, PeerSettings
from cvi_lab.transport.rtc import (
    DEFAULT_AUDIO_PREFETCH,
    negotiated_codec,
    new_peer_connection,
    prefer_codec,
    set_audio_prefetch,
    set_inline_audio_decode,
)

log = logging.getLogger(__name__)

ASSETS = ("meeting.js", "controls.js", "keyer.js", "meeting.css")
_CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
_PID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_OFFER_FIELDS = {"sdp", "type", "meeting_token", "participant_id"}


def meeting_url(base_url: str, conversation_id: str, meeting_token: str | None = None, *, base_path: str = "") -> str:
    """The `conversation_url` of SPEC §1: {base}/meet/{id}, with ?t=TOKEN when the call requires auth."""
    url = f"{base_url.rstrip('/')}{base_path}/meet/{quote(conversation_id, safe='')}"
    return f"{url}?{urlencode({'t': meeting_token})}" if meeting_token else url


def _error(status: int, message: str) -> web.Response:
    # SPEC §1: errors carry `error` and `message` (the same text).
    return web.json_response({"error": message, "message": message}, status=status)


def _static_text(name: str) -> str:
    return resources.files("cvi_lab.transport").joinpath("static", name).read_text(encoding="utf-8")


class MeetingTransport:
    """The transport of all live calls: signaling routes, one `PeerRoom` per conversation, shutdown.

    Settings are constructor arguments so the calls layer can fill them from conf."""

    def __init__(
        self,
        resolve: ResolveEndpoint,
        *,
        base_path: str = "",
        peer_settings: PeerSettings | None = None,
        video_codec: str | None = "video/VP8",
        audio_prefetch: int | None = DEFAULT_AUDIO_PREFETCH,
    ) -> None:
        self.resolve = resolve
        self.base_path = base_path.rstrip("/")
        self.peer_settings = peer_settings or PeerSettings()
        self.video_codec = video_codec
        self.audio_prefetch = audio_prefetch
        self.rooms: dict[str, PeerRoom] = {}
        self._closed_ids: set[str] = set()

    # ------------------------------------------------------------------ lifecycle (called by the calls layer)
    async def close_conversation(self, conversation_id: str) -> None:
        """Close every peer of a conversation (the call ended) and stop consuming its frames. Idempotent."""
        self._closed_ids.add(conversation_id)
        room = self.rooms.pop(conversation_id, None)
        if room is not None:
            await room.close()

    async def close_all(self) -> None:
        """Close every conversation (server shutdown)."""
        await asyncio.gather(*(self.close_conversation(cid) for cid in list(self.rooms)), return_exceptions=True)

    def participants(self, conversation_id: str) -> list[str]:
        """Ids of the participants with a live peer connection (connected or connecting)."""
        room = self.rooms.get(conversation_id)
        return list(room.peers) if room else []

    # ------------------------------------------------------------------ routes
    def install(self, app: web.Application) -> None:
        p = self.base_path
        app.router.add_get(p + "/meet-assets/{name}", self.asset)
        app.router.add_get(p + "/meet/{conversation_id}", self.page)
        app.router.add_get(p + "/meet/{conversation_id}/info", self.info)
        app.router.add_post(p + "/meet/{conversation_id}/offer", self.offer)
        app.router.add_post(p + "/meet/{conversation_id}/leave", self.leave)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close_all()

    def _endpoint(self, conversation_id: str) -> CallEndpoint | None:
        if conversation_id in self._closed_ids:
            return None
        try:
            return self.resolve(conversation_id)
        except Exception:
            log.exception("resolve(%r) failed", conversation_id)
            return None

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            return _error(404, f"unknown asset {name!r}; served: {', '.join(ASSETS)}")
        ctype = _CONTENT_TYPES[name[name.rfind(".") :]]
        return web.Response(text=_static_text(name), content_type=ctype, headers={"Cache-Control": "no-cache"})

    async def page(self, request: web.Request) -> web.Response:
        cid = request.match_info["conversation_id"]
        if self._endpoint(cid) is None:
            body = (
                "<!doctype html><meta charset=utf-8><title>Conversation not found</title>"
                f"<p>Conversation <code>{html.escape(cid)}</code> does not exist or has ended.</p>"
            )
            return web.Response(status=404, text=body, content_type="text/html")
        text = (
            _static_text("meeting.html")
            .replace("{{ASSETS}}", html.escape(self.base_path + "/meet-assets", quote=True))
            .replace("{{MEET}}", html.escape(f"{self.base_path}/meet/{quote(cid, safe='')}", quote=True))
            .replace("{{CONVERSATION_ID}}", html.escape(cid, quote=True))
        )
        return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def info(self, request: web.Request) -> web.Response:
        cid = request.match_info["conversation_id"]
        endpoint = self._endpoint(cid)
        if endpoint is None:
            return _error(404, f"conversation {cid!r} does not exist or has ended")
        return web.json_response(
            {
                "conversation_id": cid,
                "captions_enabled": endpoint.captions_enabled,
                "greenscreen": endpoint.greenscreen,
                "greenscreen_rgb": list(GREENSCREEN_RGB),  # what the page keys out (its WebGL keyer)
                "require_auth": endpoint.require_auth,
                "audio_only": endpoint.audio_only,
            }
        )

    async def _json_object(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except Exception:
            return _error(400, "request body is not valid JSON; send a JSON object")
        if not isinstance(body, dict):
            return _error(400, f"request body must be a JSON object, got {type(body).__name__}")
        return body

    async def offer(self, request: web.Request) -> web.Response:
        cid = request.match_info["conversation_id"]
        endpoint = self._endpoint(cid)
        if endpoint is None:
            return _error(404, f"conversation {cid!r} does not exist or has ended")
        body = await self._json_object(request)
        if isinstance(body, web.Response):
            return body
        unknown = sorted(set(body) - _OFFER_FIELDS)
        if unknown:
            return _error(400, f"unknown field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(_OFFER_FIELDS))}")
        sdp, kind = body.get("sdp"), body.get("type")
        if not isinstance(sdp, str) or not sdp.strip():
            return _error(400, "field 'sdp' must be a non-empty string (the SDP of an RTCPeerConnection offer)")
        if kind != "offer":
            return _error(400, f"field 'type' must be \"offer\", got {kind!r}")
        if not sdp.lstrip().startswith("v=0"):
            return _error(400, "field 'sdp' is not an SDP description (it must start with 'v=0')")
        token = body.get("meeting_token", request.query.get("t"))
        if token is not None and not isinstance(token, str):
            return _error(400, "field 'meeting_token' must be a string")
        pid = body.get("participant_id")
        if pid is not None and (not isinstance(pid, str) or not _PID_RE.match(pid)):
            return _error(400, "field 'participant_id' must be 1-64 characters of letters, digits, '_', '-', '.'")
        try:
            reason = endpoint.authorize(token)
        except Exception:
            log.exception("authorize failed for %s", cid)
            return _error(500, "the call could not check the meeting token")
        if reason is not None:
            return _error(403, f"cannot join conversation {cid!r}: {reason}")

        from aiortc import RTCSessionDescription

        pid = pid or "p" + uuid.uuid4().hex[:16]
        room = self.rooms.get(cid)
        if room is None:
            room = self.rooms[cid] = PeerRoom(endpoint, self.peer_settings)
        old = room.peers.get(pid)
        if old is not None:  # the same participant reconnecting: the newer connection wins
            await old.close("closed")

        pc = new_peer_connection()
        peer = Peer(room, pid, pc, self.peer_settings)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:
            await pc.close()
            return _error(400, f"the SDP offer could not be used: {exc}")
        kinds = {t.kind for t in pc.getTransceivers()}
        if not kinds and pc.sctp is None:
            await pc.close()
            return _error(400, "the SDP offer has no audio, video or data channel (m=) section; offer at least one")
        try:
            if "audio" in kinds:
                pc.addTrack(peer.audio_out)
            if "video" in kinds and not endpoint.audio_only:
                pc.addTrack(peer.video_out)
                peer.sends_video = True
                prefer_codec(pc, "video", self.video_codec)
            set_audio_prefetch(pc, self.audio_prefetch)
            set_inline_audio_decode(pc)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            if "audio" in kinds and (negotiated_codec(pc, "audio") or "").lower() != "audio/opus":
                peer.audio_out.encode_with_aiortc()  # the track's own encoder makes Opus only
        except Exception as exc:
            log.exception("answering an offer for %s failed", cid)
            await pc.close()
            return _error(400, f"cannot answer this offer: {exc}")
        if cid in self._closed_ids:  # the call ended while we were answering
            await pc.close()
            return _error(404, f"conversation {cid!r} has ended")
        room.add(peer)
        room.start()
        log.info("participant %s offered to %s (%s)", pid, cid, ", ".join(sorted(kinds)) or "data only")
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type, "participant_id": pid})

    async def leave(self, request: web.Request) -> web.Response:
        cid = request.match_info["conversation_id"]
        body = await self._json_object(request)
        if isinstance(body, web.Response):
            return body
        pid = body.get("participant_id")
        if not isinstance(pid, str):
            return _error(400, "field 'participant_id' (a string, from the offer's answer) is required")
        room = self.rooms.get(cid)
        peer = room.peers.get(pid) if room else None
        if peer is None:
            return _error(404, f"participant {pid!r} is not in conversation {cid!r}")
        await peer.close("left")
        return web.json_response({"participant_id": pid, "status": "left"})


TRANSPORT_KEY = web.AppKey("cvi_transport", MeetingTransport)


def install_routes(app: web.Application, resolve: ResolveEndpoint, *, base_path: str = "", **settings: Any) -> MeetingTransport:
    """Add the meeting routes to `app` and return the transport (also at `app[TRANSPORT_KEY]`).

    `settings` go to MeetingTransport (peer_settings, video_codec, audio_prefetch)."""
    transport = MeetingTransport(resolve, base_path=base_path, **settings)
    transport.install(app)
    app[TRANSPORT_KEY] = transport
    return transport


def get_transport(app: web.Application) -> MeetingTransport:
    return app[TRANSPORT_KEY]


async def close_conversation(app: web.Application, conversation_id: str) -> None:
    """Close every peer of `conversation_id` (for the calls layer, when the call ends)."""
    await app[TRANSPORT_KEY].close_conversation(conversation_id)
