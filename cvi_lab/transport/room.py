"""`PeerRoom`, one conversation's peers: fan-out of the replica's frames and events, presence, the data channel.

Why a room: the engine produces ONE stream of frames and events per conversation, however many people are
in the call, so the room is the single consumer of `endpoint.outgoing()` and the single event subscriber,
and copies what it gets to every peer. A peer maps aiortc's connection states onto the endpoint's presence
callbacks (joined once, left once, always in that order).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from cvi_lab.media import VideoFrame
from cvi_lab.transport.contract import CallEndpoint
from cvi_lab.transport.media import (
    RTP_AUDIO_RATE,
    InboundAudio,
    OutboundAudioTrack,
    OutboundVideoTrack,
    PcmResampler,
    drain,
)
from cvi_lab.transport.rtc import LEAVE_EVENT, decode_message, error_event

log = logging.getLogger(__name__)


@dataclass
class PeerSettings:
    """Per-peer knobs (the calls layer can fill them from cvi_lab/conf/serve.yaml)."""

    disconnect_grace_s: float = 5.0  # 'disconnected' this long -> participant_left(reason="disconnected")
    connect_timeout_s: float = 30.0  # an answered offer that never connects is dropped after this
    media_timeout_s: float | None = 10.0  # no mic audio this long after it flowed -> "disconnected" (None: off)
    underrun_wait_s: float = 0.015  # see OutboundAudioTrack
    max_audio_buffer_s: float = 0.2  # see OutboundAudioTrack: past this the queue is cut to target_audio_buffer_s
    target_audio_buffer_s: float = 0.04
    phase_margin_s: float = 0.003  # see OutboundAudioTrack (phase tracking); phase_step_s=0 turns it off
    phase_step_s: float = 0.004
    video_queue: int = 2
    av_sync_max_wait_s: float = 0.12
    outbox_size: int = 256  # events kept for a peer whose data channel is not open yet
    close_flush_s: float = 0.5  # how long closing waits for queued data-channel messages to leave


class Peer:
    """One participant's RTCPeerConnection and what the transport tracks about it."""

    def __init__(self, room: "PeerRoom", participant_id: str, pc: Any, settings: PeerSettings) -> None:
        self.room = room
        self.participant_id = participant_id
        self.pc = pc
        self.settings = settings
        self.audio_out = OutboundAudioTrack(
            underrun_wait_s=settings.underrun_wait_s,
            max_buffer_s=settings.max_audio_buffer_s,
            target_buffer_s=settings.target_audio_buffer_s,
            phase_margin_s=settings.phase_margin_s,
            phase_step_s=settings.phase_step_s,
        )
        self.video_out = OutboundVideoTrack(
            self.audio_out, max_queue=settings.video_queue, av_sync_max_wait_s=settings.av_sync_max_wait_s
        )
        self.inbound = InboundAudio(self._on_audio)
        self.channels: list[Any] = []
        self.outbox: collections.deque[str] = collections.deque(maxlen=settings.outbox_size)
        self.sends_video = False  # set when the answer carries our video track (the offer had a video m-line)
        self.joined = False
        self.left = False
        self.closed = False
        self.created_at = time.monotonic()
        self.joined_at: float | None = None
        self._tasks: set[asyncio.Task] = set()
        self._grace: asyncio.Task | None = None
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state)

    # ------------------------------------------------------------------ helpers
    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        task.set_name(f"{name}:{self.participant_id}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("peer %s task %s failed", self.participant_id, task.get_name(), exc_info=task.exception())

    @property
    def endpoint(self) -> CallEndpoint:
        return self.room.endpoint

    def start(self) -> None:
        self._spawn(self._watchdog(), "watchdog")

    # ------------------------------------------------------------------ media in
    def _on_audio(self, pcm) -> None:
        self.endpoint.participant_audio(self.participant_id, pcm)

    def _on_track(self, track) -> None:
        if track.kind == "audio":
            self._spawn(self.inbound.run(track), "inbound-audio")
        else:
            self._spawn(drain(track), f"drain-{track.kind}")

    # ------------------------------------------------------------------ data channel
    def _on_datachannel(self, channel) -> None:
        self.channels.append(channel)

        @channel.on("message")
        def on_message(data) -> None:
            self._on_message(channel, data)

        @channel.on("open")
        def on_open() -> None:
            self._flush()

        self._flush()

    def _on_message(self, channel, data) -> None:
        obj, error = decode_message(data)
        if error is not None:
            log.info("peer %s sent a non-JSON message: %s", self.participant_id, error)
            self._send_to(channel, error_event(self.room.conversation_id, error))
            return
        if isinstance(obj, dict) and obj.get("event_type") == LEAVE_EVENT:
            self._spawn(self.close("left"), "leave")
            return
        self._spawn(self._interaction(obj), "interaction")

    async def _interaction(self, obj: object) -> None:
        try:
            await self.endpoint.interaction(self.participant_id, obj)
        except Exception as exc:
            log.exception("endpoint.interaction failed for %s", self.participant_id)
            self.send_event(error_event(self.room.conversation_id, f"interaction failed: {exc}"))

    def _send_to(self, channel, event: dict) -> None:
        try:
            if channel.readyState == "open":
                channel.send(json.dumps(event, default=str))
        except Exception:
            log.exception("data channel send failed for %s", self.participant_id)

    def send_event(self, event: dict) -> None:
        """Send to this peer's open data channels, or keep it (bounded) until one opens."""
        self.send_text(json.dumps(event, default=str))

    def send_text(self, text: str) -> None:
        self.outbox.append(text)
        self._flush()

    def _flush(self) -> None:
        open_channels = [c for c in self.channels if c.readyState == "open"]
        if not open_channels:
            return
        while self.outbox:
            text = self.outbox.popleft()
            for channel in open_channels:
                try:
                    channel.send(text)
                except Exception:
                    log.exception("data channel send failed for %s", self.participant_id)

    # ------------------------------------------------------------------ presence
    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.debug("peer %s connection state %s", self.participant_id, state)
        if state == "connected":
            if self._grace is not None:
                self._grace.cancel()
                self._grace = None
            if not self.joined and not self.left:
                self.joined = True
                self.joined_at = time.monotonic()
                self._spawn(self._joined(), "joined")
        elif state == "disconnected":
            if self._grace is None:
                self._grace = self._spawn(self._grace_then_leave(), "grace")
        elif state == "failed":
            self._spawn(self.close("ice_failed"), "failed")
        elif state == "closed":
            self._spawn(self.close("closed"), "closed")

    async def _grace_then_leave(self) -> None:
        await asyncio.sleep(self.settings.disconnect_grace_s)
        self._grace = None
        await self.close("disconnected")

    async def _watchdog(self) -> None:
        """Drop peers that never connect, and notice a participant whose media silently stopped."""
        s = self.settings
        while not self.closed:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            if not self.joined and now - self.created_at > s.connect_timeout_s:
                log.info("peer %s did not connect within %.0f s", self.participant_id, s.connect_timeout_s)
                await self.close("ice_failed")
                return
            last = self.inbound.last_frame_at
            if s.media_timeout_s is not None and self.joined and last is not None and now - last > s.media_timeout_s:
                log.info("peer %s sent no audio for %.0f s", self.participant_id, s.media_timeout_s)
                await self.close("disconnected")
                return

    async def _joined(self) -> None:
        try:
            await self.endpoint.participant_joined(self.participant_id)
        except Exception:  # e.g. the room is full: the peer stays connected but the call does not count it
            log.exception("endpoint.participant_joined failed for %s", self.participant_id)

    async def _left(self, reason: str) -> None:
        try:
            await self.endpoint.participant_left(self.participant_id, reason)
        except Exception:  # leaving cannot be refused; keep closing
            log.exception("endpoint.participant_left failed for %s", self.participant_id)

    async def close(self, reason: str, *, notify: bool = True) -> None:
        """Close the connection once; tell the endpoint the participant left if it had joined."""
        if self.closed:
            return
        self.closed = True
        self.room.forget(self)
        self.audio_out.stop()  # media stops at once; only queued events still get a moment to leave
        self.video_out.stop()
        if self.joined and not self.left and notify:
            self.left = True
            await self._left(reason)
        self.left = True
        await self._wait_flushed()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        try:
            await self.pc.close()
        except Exception:
            log.exception("closing peer %s failed", self.participant_id)
        log.info("peer %s closed (%s)", self.participant_id, reason)

    async def _wait_flushed(self) -> None:
        deadline = time.monotonic() + self.settings.close_flush_s
        while time.monotonic() < deadline:
            if not any(c.readyState == "open" and c.bufferedAmount > 0 for c in self.channels):
                return
            await asyncio.sleep(0.02)


def is_idle(frame) -> bool:
    """A frame whose audio is only the replica's idle silence (not speaking, and digital zero)."""
    if frame.speaking:
        return False
    audio = frame.audio
    return audio is None or len(audio) == 0 or not np.any(audio)


class PeerRoom:
    """A conversation's peers, fed by one consumer of the endpoint's frames and one event subscription."""

    def __init__(self, endpoint: CallEndpoint, settings: PeerSettings) -> None:
        self.endpoint = endpoint
        self.conversation_id = endpoint.conversation_id
        self.settings = settings
        self.peers: dict[str, Peer] = {}
        self._resampler = PcmResampler(RTP_AUDIO_RATE)
        self._pump: asyncio.Task | None = None
        self._unsubscribe = None
        self.frames_in = 0
        self.closed = False
        self._speaking = False
        self.speech_onsets: collections.deque[float] = collections.deque(maxlen=256)  # first speaking frames in

    def start(self) -> None:
        if self._pump is not None:
            return
        self._unsubscribe = self.endpoint.subscribe(self.broadcast)
        self._pump = asyncio.ensure_future(self._consume())
        self._pump.set_name(f"outgoing:{self.conversation_id}")

    def add(self, peer: Peer) -> None:
        self.peers[peer.participant_id] = peer
        peer.start()

    def forget(self, peer: Peer) -> None:
        if self.peers.get(peer.participant_id) is peer:
            del self.peers[peer.participant_id]

    def broadcast(self, event: dict) -> None:
        """The endpoint's event sink: one JSON encoding, sent to every peer."""
        try:
            text = json.dumps(event, default=str)
        except Exception:
            log.exception("event is not JSON-serialisable: %r", event)
            return
        for peer in list(self.peers.values()):
            peer.send_text(text)

    async def _consume(self) -> None:
        try:
            async for frame in self.endpoint.outgoing():
                self.frames_in += 1
                try:
                    self._fan_out(frame)
                except Exception:
                    log.exception("could not fan out a frame of %s", self.conversation_id)
            log.info("outgoing stream of %s ended", self.conversation_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outgoing stream of %s failed", self.conversation_id)

    def _fan_out(self, frame: VideoFrame) -> None:
        audio = frame.audio
        pcm48 = self._resampler.push(audio, frame.audio_rate) if audio is not None and len(audio) else None
        cut = frame.interrupted
        if is_idle(frame):  # silence is not queued: the audio track makes it (see outbound.py)
            pcm48 = None
        elif frame.speaking and not self._speaking:
            self.speech_onsets.append(time.monotonic())
        self._speaking = bool(frame.speaking)
        for peer in list(self.peers.values()):
            if cut:  # barge-in: what the peer still buffers of the cut speech must not play
                peer.audio_out.cut()
            # the image leaves when the first sample of its own audio does (or, without audio, when the
            # audio before it has gone out)
            index = peer.audio_out.enqueued + (1 if pcm48 is not None and len(pcm48) else 0)
            if pcm48 is not None:
                peer.audio_out.push(pcm48)
            else:
                peer.audio_out.idle()
            if frame.image is not None and peer.sends_video:
                peer.video_out.push(frame.image, index if peer.audio_out.started else None)

    async def close(self) -> None:
        """Close every peer without presence callbacks (the call is over) and stop consuming."""
        self.closed = True
        peers = list(self.peers.values())
        await asyncio.gather(*(p.close("closed", notify=False) for p in peers), return_exceptions=True)
        if self._unsubscribe is not None:
            try:
                self._unsubscribe()
            except Exception:
                log.exception("unsubscribe failed for %s", self.conversation_id)
        if self._pump is not None:
            self._pump.cancel()
            try:
                await self._pump
            except (asyncio.CancelledError, Exception):
                pass
