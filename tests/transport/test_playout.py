"""Outbound playout without a network: silence is not queued, onsets start at once, underruns are counted
honestly, the track encodes Opus itself, inbound audio decodes inline. No timing assertions (those live in
benchmarks/bench_playout.py)."""

from __future__ import annotations

import asyncio

import av
import numpy as np

from cvi_lab.media import VideoFrame
from cvi_lab.transport.media import AUDIO_FRAME_SAMPLES, OutboundAudioTrack
from cvi_lab.transport.room import PeerRoom, PeerSettings, is_idle
from cvi_lab.transport.rtc import InlineAudioDecoder

SPEECH = np.full(AUDIO_FRAME_SAMPLES * 2, 1000, np.int16)


async def test_end_of_speech_is_not_an_underrun_but_a_late_source_is():
    track = OutboundAudioTrack(underrun_wait_s=0.0, encode=False)
    await track.recv()
    track.push(SPEECH)
    track.idle()  # the source's next frame was silence: the speech ends here
    frames = [(await track.recv()).to_ndarray().reshape(-1) for _ in range(4)]
    assert (frames[0] == 1000).all() and (frames[1] == 1000).all() and not frames[2].any() and not frames[3].any()
    assert track.underruns == 0 and track.enqueued == track.taken == len(SPEECH)
    track.push(SPEECH)  # speech again, and then nothing: the source is late mid-speech
    for _ in range(3):
        await track.recv()
    assert track.underruns == 1
    track.stop()


async def test_idle_frames_queue_nothing_and_a_partial_last_frame_is_padded_silently():
    track = OutboundAudioTrack(underrun_wait_s=0.0, encode=False)
    await track.recv()
    for _ in range(3):
        track.idle()
    assert track.buffered_s == 0.0 and track.enqueued == 0
    track.push(SPEECH[:500])
    track.idle()
    f = (await track.recv()).to_ndarray().reshape(-1)
    assert (f[:500] == 1000).all() and not f[500:].any() and track.underruns == 0
    track.stop()


async def test_speech_after_silence_goes_out_without_waiting_for_the_slot():
    track = OutboundAudioTrack(encode=False)
    await track.recv()
    track._start += 10.0  # the next slot is 10 s away: only a fast start can send before it
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    assert not pending.done()
    track.push(SPEECH)
    frame = await asyncio.wait_for(pending, 5.0)
    assert (frame.to_ndarray().reshape(-1) == 1000).all()
    assert track.fast_starts == 1 and track.phase_shift_s > 9.0 and frame.pts == AUDIO_FRAME_SAMPLES
    track.stop()


async def test_no_fast_start_while_speech_is_flowing():
    track = OutboundAudioTrack(underrun_wait_s=0.0, encode=False, phase_step_s=0.0)
    await track.recv()
    track.push(np.full(AUDIO_FRAME_SAMPLES * 3, 7, np.int16))
    await track.recv()  # flowing now
    track._start += 10.0
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.push(SPEECH)
    await asyncio.sleep(0.05)
    assert not pending.done() and track.fast_starts == 0  # it keeps its slot
    pending.cancel()
    track.stop()


async def test_the_track_sends_opus_packets_that_decode_back():
    from aiortc.codecs.opus import OpusDecoder
    from aiortc.jitterbuffer import JitterFrame

    track = OutboundAudioTrack(underrun_wait_s=0.0)
    first = await track.recv()
    assert isinstance(first, av.Packet) and first.pts == 0 and first.time_base.denominator == 48_000
    t = np.arange(AUDIO_FRAME_SAMPLES * 10)
    track.push((np.sin(2 * np.pi * 440 * t / 48_000) * 8000).astype(np.int16))
    packets = [await track.recv() for _ in range(10)]
    assert [p.pts for p in packets] == [AUDIO_FRAME_SAMPLES * i for i in range(1, 11)]
    dec = OpusDecoder()
    out = np.concatenate([f.to_ndarray().reshape(-1, 2)[:, 0] for p in packets
                          for f in dec.decode(JitterFrame(bytes(p), p.pts))])
    assert len(out) == AUDIO_FRAME_SAMPLES * 10
    rms = np.sqrt(np.mean(out[AUDIO_FRAME_SAMPLES:].astype(np.float64) ** 2))
    assert 4000 < rms < 7000  # a 8000-peak sine has rms 5657
    track.stop()


async def test_inline_decoder_hands_frames_to_the_track_at_once():
    from aiortc.codecs.opus import OpusEncoder
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    class Track:
        _queue: asyncio.Queue = asyncio.Queue()

    class Receiver:
        _track = Track()

    codec = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=111)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
    frame.sample_rate, frame.pts = 48_000, 0
    payloads, _ = OpusEncoder().encode(frame)
    inline = InlineAudioDecoder(Receiver())
    inline.put((codec, JitterFrame(payloads[0], 0)))
    assert Receiver._track._queue.qsize() == 1 and inline.decoded == 1
    inline.put((codec, JitterFrame(b"\xff\xff\xff", 960)))  # garbage: dropped, counted
    inline.put(None)
    assert inline.get() is None  # the idle decoder thread returns


class _Endpoint:
    conversation_id = "c1"


class _Peer:
    def __init__(self, audio):
        self.audio_out, self.sends_video, self.participant_id = audio, False, "p1"


async def test_room_queues_speech_not_idle_silence():
    room = PeerRoom(_Endpoint(), PeerSettings())
    audio = OutboundAudioTrack(encode=False)
    await audio.recv()
    room.peers["p1"] = _Peer(audio)
    zeros = np.zeros(640, np.float32)
    idle = VideoFrame(image=None, pts=0.0, audio=zeros, audio_rate=16_000, speaking=False)
    talk = VideoFrame(image=None, pts=0.04, audio=zeros + 0.1, audio_rate=16_000, speaking=True)
    quiet = VideoFrame(image=None, pts=0.08, audio=zeros + 0.001, audio_rate=16_000, speaking=False)
    assert is_idle(idle) and not is_idle(talk) and not is_idle(quiet)
    for _ in range(5):
        room._fan_out(idle)
    assert audio.enqueued == 0 and not room.speech_onsets
    room._fan_out(talk)
    assert audio.enqueued == 1920 and len(room.speech_onsets) == 1
    room._fan_out(quiet)  # not speaking, but not silent either: it is sent
    assert audio.enqueued == 3840
    room._fan_out(talk)
    assert len(room.speech_onsets) == 2  # speaking again after a non-speaking frame: a new onset
    audio.stop()
