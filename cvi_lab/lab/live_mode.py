"""Live mode: the API server in-process on loopback, one real WebRTC call per script, real time.

Why measure here and not in the engine: SPEC §4 defines response latency at the participant's side of the
connection, so `ParticipantClient` timestamps are the truth (last voiced 10 ms of our speech sent → first
voiced 10 ms of the replica received); the engine's own records are kept as per-stage detail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from cvi_lab.lab.dataset import SAMPLE_RATE, Dataset, Script
from cvi_lab.lab.metrics import TurnResult
from cvi_lab.lab.runner import ModeUnavailable, RunResult, apply_engine_record, participant_audio, stage_layers
from cvi_lab.lab.turn_metrics import MISSED_TURN_S

log = logging.getLogger("cvi_lab.lab")
SILENCE_END_S = 0.6  # received audio quiet this long after a barge-in = the replica stopped (participant's view)
NO_ANSWER_WAIT_S = MISSED_TURN_S + 1.0  # a line not to be answered: a reply later than a missed turn is not waited for


def _server_cfg(cfg: Any, out_dir: Path) -> Any:
    """The lab config with a private server: free loopback port, store and artifacts under the run folder."""
    from omegaconf import OmegaConf

    from cvi_lab.harness.server import loopback_config

    if "server" not in cfg:
        raise ModeUnavailable("live mode needs the `server` config group (cvi_lab/conf/server/default.yaml)")
    # resolved here, inside the Hydra app, so the copy does not depend on Hydra's runtime afterwards
    return loopback_config(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)), out_dir / "server")


async def run(cfg: Any, data: Dataset, out_dir: Path) -> RunResult:
    import aiohttp
    from tqdm import tqdm

    from cvi_lab.harness.server import InProcessServer
    from cvi_lab.lab.app import hydra_context

    result = RunResult()
    async with InProcessServer(_server_cfg(cfg, out_dir)) as srv:
        async with aiohttp.ClientSession(base_url=srv.local_url, timeout=aiohttp.ClientTimeout(total=30)) as http:
            persona_id = await _persona(http, hydra_context().get("choices", {}))
            bar = tqdm(total=len(data.utterances), desc="live turns", unit="turn")
            for i, script in enumerate(data.scripts):
                record = i == 0 and bool(cfg.metrics.sample_video or cfg.metrics.lipsync)
                await _call(cfg, data, script, srv, http, persona_id, result, out_dir, record_video=record, bar=bar)
            bar.close()
    return result


async def _json(resp) -> dict:
    body = await resp.json(content_type=None)
    if resp.status >= 400:
        raise RuntimeError(f"{resp.method} {resp.url.path} -> {resp.status}: {body.get('error') or body}")
    return body


async def _persona(http, choices: dict[str, str]) -> str:
    """A persona like the default one, whose layers pin this run's ASR/TTS choices."""
    from cvi_lab.domain.ids import DEFAULT_PERSONA_ID

    async with http.get(f"/v2/personas/{DEFAULT_PERSONA_ID}") as r:
        default = await _json(r)
    body = {"persona_name": "cvi-lab experiment", "system_prompt": default.get("system_prompt") or "",
            "context": default.get("context") or "", "default_replica_id": default.get("default_replica_id"),
            "layers": stage_layers(choices)}
    async with http.post("/v2/personas", json=body) as r:
        return (await _json(r))["persona_id"]


async def _call(cfg: Any, data: Dataset, script: Script, srv, http, persona_id: str, result: RunResult,
                out_dir: Path, record_video: bool, bar) -> None:
    from cvi_lab.harness.call import join, spoken_turn, wait_greeting, wait_replica_done
    from cvi_lab.transport.heard import RATE

    body: dict[str, Any] = {"persona_id": persona_id, "conversation_name": f"lab {script.id}",
                            "properties": {"language": script.language or cfg.participant.language,
                                           "participant_left_timeout": 0}}
    if script.context:
        body["conversational_context"] = script.context
    async with http.post("/v2/conversations", json=body) as r:
        conv = await _json(r)
    images: list[tuple[float, np.ndarray]] = []
    max_frames = 25 * 40

    def keep(frame, arrival: float) -> None:
        if len(images) < max_frames:
            images.append((arrival, frame.to_ndarray(format="rgb24")))

    client = await join(conv, timeout=30, on_video_frame=keep if record_video else None)
    max_reply = float(cfg.participant.max_reply_s)
    try:
        # the greeting (not interruptible, not a measured turn)
        await wait_greeting(client, timeout=max_reply)
        sent: list[tuple[float, float, float | None]] = []  # (send start, speech end, first reply audio)
        leads: list[np.ndarray] = []  # what was sent, per line
        utts = script.utterances
        for i, utt in enumerate(utts):
            lead = participant_audio(cfg, data, utt)[: -int(float(cfg.participant.trail_silence_s) * SAMPLE_RATE) or None]
            # a line to leave unanswered (a cough, an "mm-hm" in silence) waits only as long as a missed turn
            wait = max_reply if utt.expect.take_turn or utt.barge_in_after_s is not None else NO_ANSWER_WAIT_S
            turn = await spoken_turn(client, lead, SAMPLE_RATE, timeout=wait, wait_done=False)
            leads.append(lead)
            first = turn["first_voiced"]
            sent.append((turn["sent_at"], turn["speech_end"], first))
            bar.update(1)
            nxt = utts[i + 1] if i + 1 < len(utts) else None
            if first is not None and nxt is not None and nxt.barge_in_after_s is not None:
                await asyncio.sleep(max(0.0, first + nxt.barge_in_after_s - time.monotonic()))
                continue  # talk over the reply
            if first is not None:  # the whole answer, its utterance event included, before the next question
                await wait_replica_done(client, first, max_reply)
        await asyncio.sleep(0.3)
    finally:
        await client.leave()
        async with http.post(f"/v2/conversations/{conv['conversation_id']}/end") as r:
            await r.read()
    await srv.wait_status(conv["conversation_id"], "ended")  # every turn record is stored by then
    records = {r["turn_idx"]: r["metrics"] for r in srv.turn_metrics(conv["conversation_id"])}
    _collect(script, client, sent, records, result, RATE, float(cfg.participant.lead_silence_s))
    if script is data.scripts[0] and cfg.metrics.turn_views:  # per-turn pictures of the first call
        result.artifacts += _views(result.turns[-len(utts):], client, sent, leads, out_dir, int(cfg.metrics.turn_views))
    if record_video and images:
        _video(client, images, result, out_dir, script, write=bool(cfg.metrics.sample_video))


def _collect(script: Script, client, sent, records: dict[int, dict], result: RunResult, rate: int,
             lead_s: float) -> None:
    """Per-turn results from the participant's recording and the data-channel events, joined by turn_idx to
    the server's per-turn records (`records`: turn_idx -> the engine's marks, as /v2/conversations/{id}/turns
    serves them) for the same per-stage breakdown as offline mode, and the same turn-taking observations
    (`turn_metrics.observe`) on the participant's clock: its speech as sent, the events as they arrived."""
    from cvi_lab.lab.turn_metrics import STILL_SPEAKING_S, cut_after, drop_untimed_latency, observe

    events = [(t, e) for t, e in client.rec.events if isinstance(e, dict)]
    timed = [{**e, "_t": t} for t, e in events]
    result.events += [{"arrival": t, **e} for t, e in events]
    users = [(t, e) for t, e in events if e.get("event_type") == "conversation.utterance"
             and e.get("properties", {}).get("role") == "user"]
    replicas = [(t, e) for t, e in events if e.get("event_type") == "conversation.utterance"
                and e.get("properties", {}).get("role") == "replica"]
    audio = client.rec.audio(rate)
    t_audio0 = client.rec.audio_arrivals[0] if client.rec.audio_arrivals else 0.0
    claimed: set = set()  # turns already a line's: a backchannel's utterance carries the turn it talked over
    for i, utt in enumerate(script.utterances):
        t0, end, first = sent[i] if i < len(sent) else (None, None, None)
        nxt = sent[i + 1][0] if i + 1 < len(sent) else float("inf")
        mine = [e for t, e in users if t0 is not None and t0 <= t < nxt]
        heard = " ".join(e["properties"]["speech"] for e in mine)
        turn_ids = {e.get("turn_idx") for e in mine} - claimed
        claimed |= turn_ids
        said = " ".join(e["properties"]["speech"] for t, e in replicas if e.get("turn_idx") in turn_ids)
        latency = (first - end) if first is not None and end is not None else None  # as the participant hears it
        if end is not None and client.last_voiced_between(end - STILL_SPEAKING_S, end) is not None:
            latency = None  # the replica was still speaking at the speech end: that audio is no response
        tr = TurnResult(script.id, utt.turn, utt.text, heard=heard, replica_text=said, response_latency_s=latency)
        if t0 is not None and end is not None:
            start = client.speech_started_after(t0)
            observe(tr, utt, start if start is not None and start < end else t0 + lead_s, end, nxt, timed, len(mine))
        if utt.barge_in_after_s is not None and t0 is not None:
            start = client.speech_started_after(t0)
            stop = client.voice_stopped_after(start, SILENCE_END_S) if start is not None else None
            tr.barge_in = True
            tr.barge_in_stop_s = (stop - start) if stop is not None and stop > start else None
            if tr.barge_in_stop_s is None and tr.replica_interrupted and start is not None and end is not None:
                # quiet between two clauses when the line began: the engine's cut is when it stopped
                tr.barge_in_stop_s = cut_after(timed, start, end, nxt)
        drop_untimed_latency(tr)
        for tid in sorted(t for t in turn_ids if t is not None):  # the committed turn's record (the last if VAD split it)
            if tid in records:
                join_participant_view(tr, records[tid], tr.response_latency_s)
        if not mine and utt.expect.take_turn:
            tr.error = tr.error or "the replica did not take this turn"
        tr.interrupted = tr.interrupted or any(e.get("event_type") == "conversation.replica_interrupted"
                                               and e.get("turn_idx") in turn_ids for _, e in events)
        if first is not None and not tr.interrupted:
            a = int((first - t_audio0) * rate)
            stop_t = client.last_voiced_between(first, nxt if nxt != float("inf") else None) or first
            b = int((stop_t - t_audio0) * rate)
            if b > a:
                result.replica_audio[(script.id, utt.turn)] = (audio[max(0, a - rate // 20): b], rate)
        result.turns.append(tr)


def _views(turns: list[TurnResult], client, sent, leads: list[np.ndarray], out_dir: Path, limit: int) -> list[Path]:
    """The per-turn views of a live call, on the participant's clock: what it sent from the send start, what
    it received over the same window, the engine's marks from its speech end.

    The received audio is drawn as the stream it is (its samples in order), placed so that its first voiced
    sample after the speech end falls where the participant heard it (`first`, the latency's end): arrival
    times alone come in bursts on a loaded machine and would smear or shift the picture."""
    import bisect

    from cvi_lab.audio import to_float32
    from cvi_lab.lab.turn_view import turn_view, view_end
    from cvi_lab.transport.heard import RATE

    rec, paths = client.rec, []
    origin = rec.audio_arrivals[0] if rec.audio_arrivals else 0.0  # the call's first audio: its 0 s
    for t, (t0, end, first), lead in list(zip(turns, sent, leads))[: max(0, limit)]:
        if end is None:
            continue
        i = bisect.bisect_left(rec.audio_arrivals, t0)
        k = bisect.bisect_right(rec.audio_arrivals, view_end(t, end))
        if i >= k:
            continue
        replica = to_float32(np.concatenate(rec.audio_chunks[i:k]))
        at = rec.first_voiced_sample_after(end, client.voiced_threshold) if first is not None else None
        start = first - (at - rec.audio_offsets[i]) / RATE if at is not None else rec.audio_arrivals[i]
        paths.append(turn_view(t, lead, t0 - origin, end - origin, replica, start - origin, RATE, out_dir))
    return paths


def join_participant_view(tr: TurnResult, record: dict, participant_latency_s: float | None) -> None:
    """The engine's per-stage record for this turn, with the participant's measurement on top: the response
    latency is the participant's (SPEC §4), the engine's own is kept as `engine_response_s`, and the rest of
    the way (uplink, jitter buffers, downlink, playout) is the `transport` stage and span."""
    apply_engine_record(tr, record)
    tr.response_latency_s = participant_latency_s
    if record.get("response_latency_ms") is not None:
        tr.stages["engine_response_s"] = float(record["response_latency_ms"]) / 1000.0
    sent = record.get("first_frame_sent_ms")
    if participant_latency_s is not None and sent is not None:
        tr.stages["transport_s"] = participant_latency_s - float(sent) / 1000.0
        tr.spans.append(("transport", float(sent) / 1000.0, participant_latency_s))


def _video(client, images, result: RunResult, out_dir: Path, script: Script, write: bool) -> None:
    """Frames as received + the audio that arrived with each: the call as the participant saw it."""
    from cvi_lab.lab.video import write_call_video
    from cvi_lab.media import VideoFrame

    from cvi_lab.transport.heard import RATE as rate

    audio = client.rec.audio(rate)
    t_audio0 = client.rec.audio_arrivals[0] if client.rec.audio_arrivals else images[0][0]
    fps = 25
    frames, per_frame = [], []
    for arrival, img in images:
        a = max(0, int((arrival - t_audio0) * rate))
        pcm = audio[a: a + rate // fps]
        frames.append(VideoFrame(img, arrival - images[0][0], pcm, rate))
        per_frame.append(pcm)
    result.frames.append(([f for _, f in images], per_frame, float(fps)))
    if not write:
        return
    path = write_call_video(frames, out_dir / f"call_{script.id}.mp4", fps=fps)
    if path:
        result.artifacts.append(path)
