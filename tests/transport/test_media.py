"""Media plumbing without a network: pacing, silence on underrun, bounded queues, A/V release, resampling."""

from __future__ import annotations

import asyncio
import time

import av
import numpy as np

from cvi_lab.transport.contract import INBOUND_FRAME_SAMPLES
from cvi_lab.transport.media import (
    AUDIO_FRAME_SAMPLES,
    InboundAudio,
    OutboundAudioTrack,
    OutboundVideoTrack,
    PcmResampler,
    resample_int16,
)
from cvi_lab.transport.rtc import decode_message, error_event


async def test_audio_track_is_paced_and_continuous_with_silence_when_late():
    track = OutboundAudioTrack(underrun_wait_s=0.005, encode=False)
    first = await track.recv()  # starts the clock; nothing queued -> silence
    assert first.samples == AUDIO_FRAME_SAMPLES and first.sample_rate == 48_000 and first.pts == 0
    assert not first.to_ndarray().any()
    speech = np.full(AUDIO_FRAME_SAMPLES * 3, 1000, np.int16)
    track.push(speech)
    t0 = time.monotonic()
    frames = [await track.recv() for _ in range(5)]
    elapsed = time.monotonic() - t0
    assert [f.pts for f in frames] == [960 * i for i in range(1, 6)]  # RTP clock never jumps
    assert 0.07 < elapsed < 0.5  # paced (5 x 20 ms, the first slot partly elapsed)
    data = [f.to_ndarray().reshape(-1) for f in frames]
    assert all((d == 1000).all() for d in data[:3]) and not data[3].any() and not data[4].any()
    assert track.taken == track.enqueued == len(speech)
    track.stop()


async def test_audio_track_ignores_audio_before_start_and_caps_its_queue():
    track = OutboundAudioTrack(max_buffer_s=0.1, target_buffer_s=0.04)
    track.push(np.ones(4800, np.int16))
    assert track.enqueued == 0  # a peer still connecting does not queue the replica's voice
    await track.recv()
    track.push(np.ones(48_000, np.int16))  # a 1 s burst
    assert track.buffered_s <= 0.04 + 1e-9 and track.dropped_samples > 0
    assert track.taken + int(track.buffered_s * 48_000) == track.enqueued
    track.stop()


async def test_cut_drops_the_queued_speech_and_releases_video_waiting_on_it():
    audio = OutboundAudioTrack(underrun_wait_s=0.0, max_buffer_s=1.0, encode=False)
    video = OutboundVideoTrack(audio, av_sync_max_wait_s=5.0)
    await audio.recv()
    audio.push(np.full(AUDIO_FRAME_SAMPLES * 5, 1000, np.int16))  # 100 ms of speech queued
    video.push(np.zeros((48, 64, 3), np.uint8), AUDIO_FRAME_SAMPLES * 4)  # its mouth waits for sample 3840
    pending = asyncio.ensure_future(video.recv())
    await asyncio.sleep(0.005)
    assert not pending.done()
    assert audio.cut() == AUDIO_FRAME_SAMPLES * 5 and audio.buffered_s == 0.0
    await asyncio.wait_for(pending, 1)  # released at once, not after a 5 s A/V wait
    assert not (await audio.recv()).to_ndarray().any()  # the next frame out is silence: the speech was cut
    assert audio.taken == audio.enqueued and audio.cut_samples == AUDIO_FRAME_SAMPLES * 5
    assert audio.cut() == 0
    audio.stop()
    video.stop()


async def test_video_waits_for_its_audio_then_goes_out():
    audio = OutboundAudioTrack(underrun_wait_s=0.0)
    video = OutboundVideoTrack(audio, av_sync_max_wait_s=1.0)
    await audio.recv()
    image = np.zeros((48, 64, 3), np.uint8)
    audio.push(np.ones(AUDIO_FRAME_SAMPLES * 2, np.int16))  # frame 1's audio: indexes 0..1919
    video.push(image, 0)
    video.push(image + 1, AUDIO_FRAME_SAMPLES * 2)  # frame 2 starts where frame 1's audio ends
    f1 = await asyncio.wait_for(video.recv(), 1)
    assert f1.width == 64 and f1.height == 48
    pending = asyncio.ensure_future(video.recv())
    await asyncio.sleep(0.005)
    assert not pending.done()  # its audio has not gone out yet
    await audio.recv()
    await audio.recv()
    f2 = await asyncio.wait_for(pending, 1)
    assert f2.pts > f1.pts
    audio.stop()
    video.stop()


async def test_video_keeps_only_the_newest_frames():
    video = OutboundVideoTrack(None, max_queue=2)
    for i in range(5):
        video.push(np.full((8, 8, 3), i, np.uint8), None)
    assert video.frames_dropped == 3
    f = await video.recv()
    assert f.to_ndarray(format="rgb24")[0, 0, 0] in (3, 2)  # yuv round trip of a flat colour
    video.stop()


def test_inbound_audio_gives_aligned_16k_frames():
    got = []
    inbound = InboundAudio(got.append)
    for i in range(10):
        pcm = (np.sin(np.arange(960 * 2) / 48_000 * 2 * np.pi * 300) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")  # interleaved
        frame.sample_rate = 48_000
        frame.pts = i * 960
        inbound.feed(frame)
        assert len(got) == i + 1  # one 20 ms packet -> one 20 ms engine frame at once
    assert all(g.dtype == np.int16 and g.shape == (INBOUND_FRAME_SAMPLES,) for g in got)
    assert np.abs(np.concatenate(got[2:])).max() > 4000


def test_resampling_helpers():
    r = PcmResampler(48_000)
    assert [len(r.push(np.zeros(882, np.float32), 22_050)) for _ in range(3)] == [1920] * 3
    assert len(resample_int16(np.zeros(16_000, np.int16), 16_000, 48_000)) == 48_000
    assert len(r.push(np.zeros(0, np.float32), 22_050)) == 0


def test_decode_message():
    assert decode_message('{"a": 1}') == ({"a": 1}, None)
    assert decode_message(b'[1]') == ([1], None)
    obj, err = decode_message("{oops")
    assert obj is None and "not valid JSON" in err and "conversation.respond" in err
    obj, err = decode_message(b"\xff\xfe")
    assert obj is None and "UTF-8" in err
    ev = error_event("c1", "bad")
    assert ev["event_type"] == "conversation.error" and ev["properties"] == {"error": "bad"}
