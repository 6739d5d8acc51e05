"""Presence: connection states -> participant_joined / participant_left, exactly once and in that order."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from cvi_lab.transport.client import ParticipantClient
from cvi_lab.transport.room import Peer, PeerRoom, PeerSettings
from cvi_lab.transport.rtc import new_peer_connection

from .fake_endpoint import EchoEndpoint


class FakePC:
    """Just enough of RTCPeerConnection to drive Peer's state machine."""

    def __init__(self) -> None:
        self.handlers = {}
        self.connectionState = "new"
        self.closed = False

    def on(self, event, handler=None):
        self.handlers[event] = handler

    def set(self, state: str) -> None:
        self.connectionState = state
        self.handlers["connectionstatechange"]()

    async def close(self) -> None:
        self.closed = True


async def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def make_peer(ep, **settings):
    room = PeerRoom(ep, PeerSettings(**settings))
    pc = FakePC()
    peer = Peer(room, "p1", pc, room.settings)
    room.add(peer)
    return room, peer, pc


async def test_ice_failed_after_join():
    ep = EchoEndpoint("c1", greeting=None)
    room, peer, pc = make_peer(ep)
    pc.set("connecting")
    pc.set("connected")
    pc.set("connected")
    assert await wait_until(lambda: ep.joined == ["p1"], 2)
    pc.set("failed")
    assert await wait_until(lambda: ep.left == [("p1", "ice_failed")], 2)
    assert pc.closed and room.peers == {}
    pc.set("closed")
    await asyncio.sleep(0.05)
    assert ep.left == [("p1", "ice_failed")]  # once


async def test_disconnected_grace_period():
    ep = EchoEndpoint("c1", greeting=None)
    room, peer, pc = make_peer(ep, disconnect_grace_s=0.3)
    pc.set("connected")
    assert await wait_until(lambda: ep.joined == ["p1"], 2)
    pc.set("disconnected")
    await asyncio.sleep(0.1)
    pc.set("connected")  # back within the grace period: nothing happens
    await asyncio.sleep(0.4)
    assert ep.left == [] and ep.joined == ["p1"]
    pc.set("disconnected")
    assert await wait_until(lambda: ep.left == [("p1", "disconnected")], 2)
    assert pc.closed


async def test_failure_before_join_is_not_a_leave():
    ep = EchoEndpoint("c1", greeting=None)
    room, peer, pc = make_peer(ep)
    pc.set("connecting")
    pc.set("failed")
    assert await wait_until(lambda: pc.closed, 2)
    assert ep.joined == [] and ep.left == []


async def test_never_connecting_peer_is_dropped(server):
    server.transport.peer_settings = PeerSettings(connect_timeout_s=1.0)
    ep = server.add(EchoEndpoint("c1", greeting=None))
    pc = new_peer_connection()
    pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as s:
        async with s.post(server.url("c1") + "/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as r:
            assert r.status == 200
    assert len(server.transport.participants("c1")) == 1
    # the answer is never applied, so ICE never connects
    assert await wait_until(lambda: server.transport.participants("c1") == [], 10)
    assert ep.joined == [] and ep.left == []
    await pc.close()


async def test_silent_media_means_disconnected(server):
    server.transport.peer_settings = PeerSettings(media_timeout_s=1.0)
    ep = server.add(EchoEndpoint("c1", greeting=None))
    client = ParticipantClient(server.url("c1"), receive_video=False)
    await client.join(timeout=30)
    assert await wait_until(lambda: ep.audio_frames[client.participant_id] > 5, 10)
    client.mic.stop()  # the participant vanishes without closing anything
    assert await wait_until(lambda: ep.left == [(client.participant_id, "disconnected")], 10), ep.left
    await client.close()
