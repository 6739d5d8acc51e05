"""Real WebRTC on loopback between the server transport and the Python participant client."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from cvi_lab.transport.client import JoinError, ParticipantClient

from .fake_endpoint import EchoEndpoint

log = logging.getLogger(__name__)


def tone(seconds: float, rate: int = 48_000, freq: float = 440.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


async def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_call_media_events_and_presence(server):
    """One call exercises everything that needs a connected peer (joining is the slow part on 2 cores)."""
    ep = server.add(EchoEndpoint("c1", size=(240, 320)))
    reds: list[tuple[float, float]] = []  # (arrival, mean red): the echo endpoint paints loudness in red
    client = ParticipantClient(
        server.url("c1"), on_video_frame=lambda f, t: reds.append((t, float(f.to_ndarray(format="rgb24")[..., 0].mean())))
    )
    await client.join(timeout=30)
    pid = client.participant_id
    try:
        # presence: joined once, greeting event delivered even if emitted before the channel opened
        assert await wait_until(lambda: ep.joined == [pid], 10)
        assert await client.wait_event("system.replica_joined", timeout=10)
        greeting = await client.wait_event("conversation.utterance", timeout=10)
        assert greeting[1]["properties"]["speech"] == ep.greeting

        # video: the right size at about 25 fps
        assert await client.wait_for(lambda: len(client.rec.video) >= 30, 20)
        since = client.rec.video[-1].arrival
        await asyncio.sleep(2.0)
        fps = client.video_fps(since=since)
        v = client.rec.video[-1]
        log.info("video %dx%d at %.1f fps", v.width, v.height, fps)
        assert (v.width, v.height) == (320, 240)
        assert 15 <= fps <= 32, fps

        # audio in: 16 kHz int16 frames of 320 samples reach the endpoint
        assert await wait_until(lambda: ep.audio_frames[pid] > 20, 10)
        assert ep.bad_frames == 0

        # audio round trip: tone out, echoed back; the latency is logged, not asserted tightly
        await asyncio.sleep(0.5)
        marker = time.monotonic()
        await client.send_wav(tone(0.4), 48_000)
        sent = client.speech_started_after(marker)
        assert sent is not None and client.speech_ended_at > sent
        heard = await client.wait_first_voiced_after(sent, timeout=10)
        assert heard is not None, "the echoed tone never came back"
        rtt = heard - sent
        inbound = ep.first_voiced_in - sent  # client mic -> endpoint.participant_audio
        outbound = heard - ep.first_voiced_out  # endpoint yields the frame -> client decodes it
        print(f"\naudio: round trip {rtt * 1000:.0f} ms = transport in {inbound * 1000:.0f} ms"
              f" + echo framing {(ep.first_voiced_out - ep.first_voiced_in) * 1000:.0f} ms"
              f" + transport out {outbound * 1000:.0f} ms")
        assert rtt < 1.0
        # A/V sync: the first red frame (the frame carrying the tone) arrives with the tone's audio
        await asyncio.sleep(0.3)
        red = next((t for t, r in reds if t >= sent and r > 100), None)
        assert red is not None, "no video frame showed the echoed tone"
        skew = red - heard
        print(f"A/V: the tone's first video frame arrived {skew * 1000:+.0f} ms from its first audio"
              " (negative = video first; the onset can sit up to 40 ms into its frame)")
        assert -0.15 < skew < 0.15
        assert ep.voiced_frames[pid] >= 5
        # the echo arrives continuous: no silent gap inside the tone
        await asyncio.sleep(0.6)
        got = client.rec.audio(16_000)
        voiced = np.abs(got) > 0.05
        idx = np.nonzero(voiced)[0]
        run = idx[-1] - idx[0]
        assert run > 0.3 * 16_000

        # data channel both ways; malformed JSON gets an error event and the call goes on
        t0 = time.monotonic()
        client.send_interaction("{not json")
        err = await client.wait_event("conversation.error", timeout=10, since=t0)
        assert err is not None and "not valid JSON" in err[1]["properties"]["error"]
        t1 = time.monotonic()
        client.send_interaction({"message_type": "conversation", "event_type": "conversation.respond",
                                 "conversation_id": "c1", "properties": {"text": "hi"}})
        reply = await client.wait_event("conversation.utterance", timeout=10, since=t1)
        assert reply is not None and reply[1]["properties"]["speech"] == "you said: hi"
        assert ep.interactions[-1][1]["properties"]["text"] == "hi"
        frames = len(client.rec.video)
        assert await client.wait_for(lambda: len(client.rec.video) > frames + 5, 10)
    finally:
        await client.leave()
    # explicit leave: participant_left(pid, "left") once, peer gone
    assert await wait_until(lambda: ep.left == [(pid, "left")], 10), ep.left
    assert await wait_until(lambda: server.transport.participants("c1") == [], 10)


async def test_close_and_close_conversation(server):
    ep = server.add(EchoEndpoint("c2", greeting=None))
    a, b, c = (ParticipantClient(server.url("c2"), receive_video=False) for _ in range(3))
    await asyncio.gather(a.join(timeout=30), b.join(timeout=30), c.join(timeout=30))
    assert await wait_until(lambda: len(ep.joined) == 3, 10)
    # leaving over HTTP (the page's fallback when its data channel is gone)
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.post(server.url("c2") + "/leave", json={"participant_id": c.participant_id}) as r:
            assert r.status == 200
    assert ep.left == [(c.participant_id, "left")]
    await c.close()
    ep.left.clear()
    # closing the peer connection without a leave message: the server notices the DTLS close
    await a.leave(how="close")
    assert await wait_until(lambda: len(ep.left) == 1, 15), ep.left
    assert ep.left[0][0] == a.participant_id and ep.left[0][1] in ("closed", "disconnected")
    # the calls layer ends the call: every peer is closed, no more presence callbacks, offers refused
    await server.transport.close_conversation("c2")
    assert await b.wait_for(lambda: b.connection_states and b.connection_states[-1][1] in ("closed", "failed"), 15)
    assert server.transport.participants("c2") == []
    with pytest.raises(JoinError) as info:
        await ParticipantClient(server.url("c2")).join(timeout=10)
    assert info.value.status == 404
    await b.close()


async def test_client_cli_records_a_call(server, tmp_path):
    """`python -m cvi_lab.transport.client URL --wav f.wav --record DIR`, in its own process."""
    import json
    import os
    import sys

    from cvi_lab.audio import write_wav

    server.add(EchoEndpoint("ccli", meeting_token="tok", greeting=None))
    wav = tmp_path / "say.wav"
    write_wav(wav, tone(0.5, 16_000), 16_000)
    out = tmp_path / "rec"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cvi_lab.transport.client", server.url("ccli", "tok"),
        "--wav", str(wav), "--lead-in", "0.5", "--linger", "1.5", "--record", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, stdout.decode()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["video_frames"] > 20 and summary["audio_seconds"] > 1.5
    assert summary["response_latency_s"] is not None  # the echo of our speech
    assert (out / "received.wav").stat().st_size > 100_000
    assert (out / "video.csv").read_text().startswith("arrival,pts,width,height")


async def test_an_audio_only_call_offers_no_video_track(server):
    """SPEC §5 audio_only: the answer to an offer with a video m-line sends no video; audio still round-trips."""
    ep = server.add(EchoEndpoint("c-audio", audio_only=True))
    client = ParticipantClient(server.url("c-audio"))  # offers to receive video, as the meeting page does
    await client.join(timeout=30)
    try:
        answer = client.pc.remoteDescription.sdp
        video = answer[answer.index("m=video"):]
        assert "a=sendonly" not in video and "a=sendrecv" not in video  # nothing is sent on it
        assert await client.wait_event("conversation.utterance", timeout=10)
        await asyncio.sleep(0.5)
        marker = time.monotonic()
        await client.send_wav(tone(0.4), 48_000)
        sent = client.speech_started_after(marker)
        assert sent is not None and await client.wait_first_voiced_after(sent, timeout=10) is not None
        assert client.rec.video == [] and ep.frames_out > 0
    finally:
        await client.close()
