"""Live mode: the API server in-process on loopback, one real WebRTC call per script, real time.

Why measure here and not in the engine: SPEC §4 defines response latency at the participant's side of the
connection, so `ParticipantClient` timestamps are the truth (last voiced 10 ms of our speech sent → first
voiced 10 ms of the replica received); the engine's own records are kept as per-stage detail.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from cvi_lab.lab.dataset import SAMPLE_RATE, Dataset, Script
from cvi_lab.lab.metrics import TurnResult
from cvi_lab.lab.runner import ModeUnavailable, RunResult, participant_audio, stage_layers

log = logging.getLogger("cvi_lab.lab")
SILENCE_END_S = 0.6  # received audio quiet this long = the replica stopped (participant's view)


def _server_cfg(cfg: Any, out_dir: Path) -> Any:
    """The lab config with a private server: free loopback port, store and artifacts under the run folder."""
    from omegaconf import OmegaConf

    if "server" not in cfg:
        raise ModeUnavailable("live mode needs the `server` config group (conf/server/default.yaml)")
    scfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    home = (out_dir / "server").resolve()
    scfg.server.host, scfg.server.port, scfg.server.api_keys, scfg.server.public_url = "127.0.0.1", 0, [], None
    scfg.server.home = str(home)
    scfg.server.store.path = str(home / "cvi-lab.db")
    scfg.server.artifacts_dir = str(home / "artifacts")
    # the engine and the WebRTC transport as server plug-ins, unless the server config already lists them
    plugins = {"runtimes": "cvi_lab.engine.runtime.engine_runtime", "installers": "cvi_lab.api.plugins.install_transport"}
    for key, path in plugins.items():
        if not scfg.server.get(key):
            module = path.rsplit(".", 1)[0]
            if importlib.util.find_spec(module) is None:
                raise ModeUnavailable(f"live mode needs {path} (server.{key}), which is not installed; use mode=offline")
            scfg.server[key] = [path]
    return scfg


async def run(cfg: Any, data: Dataset, out_dir: Path) -> RunResult:
    from cvi_lab.api.app import serve
    from cvi_lab.lab.app import hydra_context

    scfg = _server_cfg(cfg, out_dir)
    loop = asyncio.get_running_loop()
    ready: asyncio.Future = loop.create_future()
    stop = asyncio.Event()
    server = asyncio.ensure_future(serve(scfg, ready=lambda url: ready.done() or ready.set_result(url), stop=stop))
    done, _ = await asyncio.wait({server, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        stop.set()
        code = server.result() if server.done() else "timeout"
        raise RuntimeError(f"the in-process server did not start (exit {code}); see the log above")
    base = ready.result()
    result = RunResult()
    try:
        import aiohttp
        from tqdm import tqdm

        async with aiohttp.ClientSession(base_url=base, timeout=aiohttp.ClientTimeout(total=30)) as http:
            persona_id = await _persona(http, hydra_context().get("choices", {}))
            bar = tqdm(total=len(data.utterances), desc="live turns", unit="turn")
            for i, script in enumerate(data.scripts):
                await _call(cfg, data, script, http, persona_id, result, out_dir, record_video=(i == 0), bar=bar)
            bar.close()
    finally:
        stop.set()
        await asyncio.wait_for(server, 60)
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


async def _call(cfg: Any, data: Dataset, script: Script, http, persona_id: str, result: RunResult,
                out_dir: Path, record_video: bool, bar) -> None:
    from cvi_lab.transport.client import RATE, ParticipantClient

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

    client = ParticipantClient(conv["conversation_url"], meeting_token=conv.get("meeting_token"),
                               on_video_frame=keep if record_video else None)
    await client.join()
    max_reply = float(cfg.participant.max_reply_s)
    try:
        # the greeting (not interruptible, not a measured turn)
        if await client.wait_event("conversation.replica.started_speaking", timeout=max_reply):
            await client.wait_event("conversation.replica.stopped_speaking", timeout=max_reply)
        sent: list[tuple[float, float, float | None]] = []  # (send start, speech end, first reply audio)
        utts = script.utterances
        for i, utt in enumerate(utts):
            t0 = time.monotonic()
            lead = participant_audio(cfg, data, utt)[: -int(float(cfg.participant.trail_silence_s) * SAMPLE_RATE) or None]
            await client.send_wav(lead, SAMPLE_RATE)
            end = client.speech_ended_at
            first = await client.wait_first_voiced_after(end, timeout=max_reply) if end is not None else None
            sent.append((t0, end, first))
            bar.update(1)
            nxt = utts[i + 1] if i + 1 < len(utts) else None
            if first is not None and nxt is not None and nxt.barge_in_after_s is not None:
                await asyncio.sleep(max(0.0, first + nxt.barge_in_after_s - time.monotonic()))
                continue  # talk over the reply
            await _wait_quiet(client, first or time.monotonic(), max_reply)
        await asyncio.sleep(0.3)
    finally:
        await client.leave()
        async with http.post(f"/v2/conversations/{conv['conversation_id']}/end") as r:
            await r.read()
    _collect(script, client, sent, result, RATE)
    if record_video and images:
        _video(client, images, result, out_dir, script)


async def _wait_quiet(client, since: float, timeout: float) -> None:
    """Until the replica's audio has been quiet for SILENCE_END_S after `since` (or `timeout`)."""
    def quiet() -> bool:
        last = _last_voiced(client, since)
        return time.monotonic() - (last or since) >= SILENCE_END_S and (last is not None or time.monotonic() - since > 3)
    await client.wait_for(quiet, timeout)


def _last_voiced(client, since: float, until: float | None = None) -> float | None:
    from cvi_lab.transport.client import WINDOW, RATE, _voiced_windows

    rec, last = client.rec, None
    for arrival, chunk in zip(rec.audio_arrivals, rec.audio_chunks):
        if arrival < since or (until is not None and arrival > until):
            continue
        w = _voiced_windows(chunk, client.voiced_threshold)
        if len(w):
            last = arrival + (w[-1] + 1) * WINDOW / RATE
    return last


def _collect(script: Script, client, sent, result: RunResult, rate: int) -> None:
    """Per-turn results from the participant's recording and the data-channel events."""
    events = [(t, e) for t, e in client.rec.events if isinstance(e, dict)]
    result.events += [{"arrival": t, **e} for t, e in events]
    users = [(t, e) for t, e in events if e.get("event_type") == "conversation.utterance"
             and e.get("properties", {}).get("role") == "user"]
    replicas = [(t, e) for t, e in events if e.get("event_type") == "conversation.utterance"
                and e.get("properties", {}).get("role") == "replica"]
    audio = client.rec.audio(rate)
    t_audio0 = client.rec.audio_arrivals[0] if client.rec.audio_arrivals else 0.0
    for i, utt in enumerate(script.utterances):
        t0, end, first = sent[i] if i < len(sent) else (None, None, None)
        nxt = sent[i + 1][0] if i + 1 < len(sent) else float("inf")
        heard = " ".join(e["properties"]["speech"] for t, e in users if t0 is not None and t0 <= t < nxt)
        turn_ids = {e.get("turn_idx") for t, e in users if t0 is not None and t0 <= t < nxt}
        said = " ".join(e["properties"]["speech"] for t, e in replicas if e.get("turn_idx") in turn_ids)
        tr = TurnResult(script.id, utt.turn, utt.text, heard=heard, replica_text=said,
                        response_latency_s=(first - end) if first is not None and end is not None else None)
        tr.interrupted = any(e.get("event_type") == "conversation.replica_interrupted" and e.get("turn_idx") in turn_ids
                             for _, e in events)
        if utt.barge_in_after_s is not None and t0 is not None:
            start = client.speech_started_after(t0)
            stop = _stop_after(client, start) if start is not None else None
            tr.barge_in = True
            tr.barge_in_stop_s = (stop - start) if stop is not None else None
        if first is not None and not tr.interrupted:
            a = int((first - t_audio0) * rate)
            stop_t = _last_voiced(client, first, nxt if nxt != float("inf") else None) or first
            b = int((stop_t - t_audio0) * rate)
            if b > a:
                result.replica_audio[(script.id, utt.turn)] = (audio[max(0, a - rate // 20): b], rate)
        result.turns.append(tr)


def _stop_after(client, start: float) -> float | None:
    """When the replica's received audio went quiet (for SILENCE_END_S) after the participant began talking."""
    from cvi_lab.transport.client import WINDOW, RATE, _voiced_windows

    rec, last_voiced = client.rec, start
    for arrival, chunk in zip(rec.audio_arrivals, rec.audio_chunks):
        if arrival < start:
            continue
        voiced = _voiced_windows(chunk, client.voiced_threshold)
        if len(voiced):
            last_voiced = arrival + (voiced[-1] + 1) * WINDOW / RATE
        elif arrival - last_voiced >= SILENCE_END_S:
            return last_voiced
    return None


def _video(client, images, result: RunResult, out_dir: Path, script: Script) -> None:
    """Frames as received + the audio that arrived with each: the call as the participant saw it."""
    from cvi_lab.lab.video import write_call_video
    from cvi_lab.media import VideoFrame

    rate = 48_000
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
    path = write_call_video(frames, out_dir / f"call_{script.id}.mp4", fps=fps)
    if path:
        result.artifacts.append(path)
