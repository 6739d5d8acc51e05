"""aiortc settings shared by the server and the participant client: a closed network, loopback, low latency.

Why one module: both ends must agree on the choices that make a call work offline (no STUN/TURN, host
candidates only) and on the knobs that trade robustness for latency (audio jitter-buffer prefetch).

The `getattr`/`setattr` on aiortc's private fields here patch an outside library that declares no such
knobs; each one checks the field is there and logs when aiortc's internals changed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

DATA_CHANNEL_LABEL = "cvi"
LEAVE_EVENT = "conversation.leave"

# aiortc's audio receiver holds 4 packets (80 ms) before decoding the first. An Opus packet is a whole frame
# and on loopback/LAN there is nothing to reorder, so by default each packet is decoded on arrival (0):
# the participant-to-engine hop gets 80 ms faster. 1+ = aiortc's buffer with that many packets of prefetch.
DEFAULT_AUDIO_PREFETCH = 0

_loopback_patched = False


def ensure_loopback_candidates() -> None:
    """Let aioice offer 127.0.0.1 when the machine has no other IPv4 address (e.g. `--network none` boxes).

    aioice skips loopback when gathering host candidates; with only `lo` there would be no candidate at all."""
    global _loopback_patched
    if _loopback_patched:
        return
    _loopback_patched = True
    try:
        import aioice.ice as ice

        original = ice.get_host_addresses
        if any(":" not in a for a in original(use_ipv4=True, use_ipv6=False)):
            return

        def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            addrs = original(use_ipv4, use_ipv6)
            if use_ipv4 and not any(":" not in a for a in addrs):
                addrs.append("127.0.0.1")
            return addrs

        ice.get_host_addresses = with_loopback
        log.info("no non-loopback IPv4 address: offering 127.0.0.1 as an ICE host candidate")
    except Exception:  # pragma: no cover - defensive: never break a call for this
        log.exception("could not patch aioice host gathering")


def new_peer_connection():
    """An RTCPeerConnection with no ICE servers: host candidates only, nothing asked of the outside network."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    ensure_loopback_candidates()
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def _immediate_jitter_buffer(capacity: int):
    from aiortc.jitterbuffer import JitterBuffer, JitterFrame

    class ImmediateAudioBuffer(JitterBuffer):
        """Hands each audio packet to the decoder as it arrives; a packet older than the last one is dropped."""

        def __init__(self) -> None:
            super().__init__(capacity=capacity)
            self._last: int | None = None

        def add(self, packet):  # -> (pli_flag, frame)
            seq = packet.sequence_number
            if self._last is not None:
                ahead = (seq - self._last) & 0xFFFF
                if ahead == 0 or ahead >= 0x8000:
                    return False, None  # duplicate, or older than what was already decoded
            self._last = seq
            return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)

    return ImmediateAudioBuffer()


def _marker_jitter_buffer(capacity: int):
    from aiortc.jitterbuffer import JitterBuffer, JitterFrame

    class MarkerVideoBuffer(JitterBuffer):
        """aiortc's video buffer, but a frame is complete at its marker bit (as in browsers), not when the
        next frame's first packet arrives, so a decoded frame is not held back one frame interval."""

        def __init__(self) -> None:
            super().__init__(capacity=capacity, is_video=True)

        def add(self, packet):
            pli_flag, frame = super().add(packet)
            if frame is not None or not packet.marker or self._origin is None:
                return pli_flag, frame
            count = ((packet.sequence_number - self._origin) & 0xFFFF) + 1
            if count > self._capacity:
                return pli_flag, None
            packets = []
            for i in range(count):
                p = self._packets[(self._origin + i) % self._capacity]
                if p is None or p.timestamp != packet.timestamp:
                    return pli_flag, None  # a packet is missing: leave it to aiortc's logic
                packets.append(p)
            self.remove(count)
            return pli_flag, JitterFrame(data=b"".join(p._data for p in packets), timestamp=packet.timestamp)

    return MarkerVideoBuffer()


def set_video_marker_completion(pc: Any) -> None:
    """Make every video receiver of `pc` hand over a frame at its RTP marker bit (saves one frame interval)."""
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "video":
            continue
        receiver = transceiver.receiver
        attr = "_RTCRtpReceiver__jitter_buffer"
        current = getattr(receiver, attr, None)
        if current is None:  # pragma: no cover - aiortc internals changed
            log.warning("aiortc has no %s; video frames complete one frame late", attr)
            return
        setattr(receiver, attr, _marker_jitter_buffer(current.capacity))


def set_audio_prefetch(pc: Any, prefetch: int | None) -> None:
    """Set the audio jitter buffer of every audio receiver of `pc` (see DEFAULT_AUDIO_PREFETCH; None = aiortc's)."""
    if prefetch is None:
        return
    from aiortc.jitterbuffer import JitterBuffer

    for transceiver in pc.getTransceivers():
        if transceiver.kind != "audio":
            continue
        receiver = transceiver.receiver
        attr = "_RTCRtpReceiver__jitter_buffer"
        current = getattr(receiver, attr, None)
        if current is None:  # pragma: no cover - aiortc internals changed
            log.warning("aiortc has no %s; audio prefetch stays at its default", attr)
            return
        if int(prefetch) <= 0:
            setattr(receiver, attr, _immediate_jitter_buffer(current.capacity))
        else:
            setattr(receiver, attr, JitterBuffer(capacity=current.capacity, prefetch=int(prefetch)))


class InlineAudioDecoder:
    """Stands in for an audio receiver's decoder queue: each packet is decoded on the event loop as it
    arrives and handed to the track's queue at once.

    Why: aiortc decodes on a thread and hands frames back through `run_coroutine_threadsafe`; an Opus packet
    takes ~50 us to decode, but each of those hops waits for the GIL and the loop, which under load (the
    models' threads, the video encoder) was measured to hold decoded audio back 40-230 ms. The decoder
    thread aiortc still starts blocks in `get()` until the receiver stops."""

    def __init__(self, receiver: Any) -> None:
        self._receiver = receiver
        self._decoder = None
        self._codec_name: str | None = None
        self._stopped = threading.Event()
        self.decoded = 0
        self.errors = 0

    def put(self, task: Any) -> None:
        if task is None:  # the receiver stops: the thread returns and ends the track
            self._stopped.set()
            return
        codec, encoded_frame = task
        try:
            if codec.name != self._codec_name:
                from aiortc.codecs import get_decoder

                self._decoder, self._codec_name = get_decoder(codec), codec.name
            frames = self._decoder.decode(encoded_frame)
        except Exception as exc:  # a corrupt packet: drop it, keep the decoder (as aiortc does)
            self.errors += 1
            log.debug("audio packet could not be decoded: %s", exc)
            return
        track = self._receiver._track
        for frame in frames:
            self.decoded += 1
            track._queue.put_nowait(frame)

    def get(self, *args: Any, **kwargs: Any) -> None:
        self._stopped.wait()
        return None


def set_inline_audio_decode(pc: Any) -> None:
    """Decode every audio receiver's packets on the loop (InlineAudioDecoder). Call before the receivers
    start (before setLocalDescription on the answering side, setRemoteDescription on the offering side)."""
    attr = "_RTCRtpReceiver__decoder_queue"
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "audio":
            continue
        receiver = transceiver.receiver
        if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None or not hasattr(receiver, attr):
            log.warning("cannot decode audio inline (aiortc internals changed, or the receiver already started)")
            continue
        setattr(receiver, attr, InlineAudioDecoder(receiver))


def negotiated_codec(pc: Any, kind: str) -> str | None:
    """The mime type the first `kind` transceiver sends with (after the descriptions are set), or None."""
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind:
            codecs = getattr(transceiver, "_codecs", None)
            return codecs[0].mimeType if codecs else None
    return None


def prefer_codec(pc: Any, kind: str, mime: str | None) -> None:
    """Put codec `mime` (e.g. "video/VP8") first for every transceiver of `kind`; unknown names are ignored."""
    if not mime:
        return
    from aiortc import RTCRtpSender

    caps = RTCRtpSender.getCapabilities(kind)
    chosen = [c for c in caps.codecs if c.mimeType.lower() == mime.lower()]
    if not chosen:
        log.warning("codec %s is not available for %s; using aiortc's order", mime, kind)
        return
    rest = [c for c in caps.codecs if c.mimeType.lower() != mime.lower()]  # fallbacks, if the peer lacks it
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind:
            transceiver.setCodecPreferences(chosen + rest)


def error_event(conversation_id: str | None, error: str) -> dict:
    """The event answering a data-channel message the transport or engine could not use."""
    return {
        "message_type": "conversation",
        "event_type": "conversation.error",
        "conversation_id": conversation_id,
        "timestamp": time.time(),
        "properties": {"error": error},
    }


def decode_message(data: str | bytes) -> tuple[object | None, str | None]:
    """Data-channel payload -> (JSON value, None) or (None, error text saying what is accepted)."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            return None, "binary message is not UTF-8; send JSON text messages"
    try:
        return json.loads(data), None
    except json.JSONDecodeError as exc:
        preview = data[:60] + ("..." if len(data) > 60 else "")
        return None, (
            f"message is not valid JSON ({exc.msg} at position {exc.pos}): {preview!r}; "
            'send a JSON object like {"message_type": "conversation", "event_type": "conversation.respond", '
            '"properties": {"text": "..."}}'
        )
