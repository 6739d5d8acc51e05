"""`make demo`: a real spoken conversation with the replica, in-process, over loopback WebRTC.

It starts the API server (the full composed config: engine + WebRTC transport), creates a persona and a
conversation with `enable_recording`, joins it with the Python participant client, speaks three questions
(synthesized locally), then prints the transcript (GET /v2/conversations/{id}?verbose=true), the per-turn
latency table (the participant-side response latency + the engine's stored stage timestamps) and where the
call recording is, if the server produced one.

The pieces (`LiveServer`, `speak`, `spoken_turn`, `latency_rows`) are shared with the end-to-end tests
(tests/e2e) and the latency benchmark (benchmarks/bench_latency.py): one way to drive a live call.
"""

from __future__ import annotations

import asyncio
import functools
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cvi_lab.engine.latency import MARKS

DEMO_QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Can you name a famous painter?",
]
SPEECH_RATE = 16_000
# what each engine figure means, in the order of the critical path (cvi_lab/engine/latency.py)
HOPS = [(a, b) for a, b in zip(MARKS, MARKS[1:])]


# ---------------------------------------------------------------------------------------------- participant audio
@functools.lru_cache(maxsize=1)
def _piper_voice():
    from piper import PiperVoice

    from cvi_lab import assets

    return PiperVoice.load(str(assets.locate("piper_joe_onnx")), str(assets.locate("piper_joe_json")))


@functools.lru_cache(maxsize=256)
def _speak_cached(text: str, voice: str, length_scale: float) -> np.ndarray:
    from cvi_lab.audio import resample

    if voice == "espeak":
        from cvi_lab.lab.dataset import VoiceSpec, _espeak

        return _espeak(text, VoiceSpec()).astype(np.float32)
    from piper import SynthesisConfig

    syn = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=length_scale)  # deterministic
    parts = [(c.audio_float_array, c.sample_rate) for c in _piper_voice().synthesize(text, syn)]
    audio = np.concatenate([resample(a, r, SPEECH_RATE) for a, r in parts]) * 0.5
    return audio.astype(np.float32)


def speak(text: str, voice: str = "piper", length_scale: float = 1.0) -> np.ndarray:
    """What the participant says: float32 mono at 16 kHz, with 0.3 s of silence before and after.

    voice "piper": the shipped Piper voice with zero noise (deterministic audio; `length_scale` != 1 makes it a
    different-sounding speaker than the replica); "espeak": espeak-ng (en-us+f3), a clearly different voice."""
    pad = np.zeros(int(0.3 * SPEECH_RATE), np.float32)
    return np.concatenate([pad, _speak_cached(text, voice, float(length_scale)), pad])


# ---------------------------------------------------------------------------------------------- the server
class LiveServer:
    """The real server (create_app over the composed config) on a free loopback port, with an HTTP client.

        async with LiveServer(compose_config([])) as srv:
            conv = await srv.api("POST", "/v2/conversations", {...})
    """

    def __init__(self, cfg: Any, home: str | Path | None = None, **server: Any) -> None:
        self.cfg, self.home, self.server_overrides = cfg, home, server
        self.app = self.base = self.http = None
        self._runner = self._tmp = None

    def _server_cfg(self) -> Any:
        from omegaconf import OmegaConf

        if self.home is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cvi-lab-live-")
            self.home = self._tmp.name
        home = Path(self.home).resolve()
        cfg = OmegaConf.create(OmegaConf.to_container(self.cfg, resolve=False))
        OmegaConf.update(cfg, "server", {"host": "127.0.0.1", "port": 0, "api_keys": [], "public_url": None,
                                         "home": str(home), "store": {"path": str(home / "cvi-lab.db")},
                                         "artifacts_dir": str(home / "artifacts")}, merge=True)
        for key, value in self.server_overrides.items():
            OmegaConf.update(cfg, f"server.{key}", value, merge=True)
        return cfg

    async def __aenter__(self) -> "LiveServer":
        import aiohttp
        from aiohttp import web

        from cvi_lab.api.app import base_url, create_app

        cfg = self._server_cfg()
        self.app = create_app(cfg)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = base_url(self.app["settings"]["server"], port)
        self.app["manager"].base_url = self.base
        self.http = aiohttp.ClientSession(base_url=self.base, timeout=aiohttp.ClientTimeout(total=60))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.http is not None:
            await self.http.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def api(self, method: str, path: str, body: Any = None, ok: bool = True) -> Any:
        async with self.http.request(method, path, json=body) as resp:
            data = await resp.json(content_type=None) if resp.status != 204 else None
            if ok and resp.status >= 400:
                raise RuntimeError(f"{method} {path} -> {resp.status}: {(data or {}).get('error')}")
            return data if ok else (resp.status, data)

    async def wait_status(self, conversation_id: str, status: str = "ended", timeout: float = 30.0) -> dict:
        """Poll the record until it has `status` (or the timeout); returns the last record."""
        deadline = time.monotonic() + timeout
        while True:
            rec = await self.api("GET", f"/v2/conversations/{conversation_id}")
            if rec.get("status") == status or time.monotonic() > deadline:
                return rec
            await asyncio.sleep(0.2)

    def outbound_audio(self, conversation_id: str) -> dict[str, float]:
        """The server's outbound audio counters for a live call (summed over its peers): replica audio dropped
        because the queue overflowed (a producer burst after a stalled loop), and underruns (the queue ran dry
        mid-speech). Zeros when the call has no room (ended, or no transport)."""
        from cvi_lab.transport.signaling import TRANSPORT_KEY

        transport = self.app.get(TRANSPORT_KEY)
        room = transport.rooms.get(conversation_id) if transport is not None else None
        peers = list(room.peers.values()) if room is not None else []
        return {"dropped_ms": round(sum(p.audio_out.dropped_samples for p in peers) / 48.0, 1),
                "cut_on_barge_in_ms": round(sum(p.audio_out.cut_samples for p in peers) / 48.0, 1),
                "underruns": sum(p.audio_out.underruns for p in peers)}

    def turn_metrics(self, conversation_id: str) -> list[dict]:
        """The engine's stored per-turn latency records ({turn_idx, metrics, created_at})."""
        return self.app["store"].turn_metrics(conversation_id)


# ---------------------------------------------------------------------------------------------- one spoken turn
def event_monotonic(event: dict) -> float:
    """An event's `timestamp` (the engine's wall clock, same machine) on this process's monotonic clock."""
    import datetime as dt

    wall = dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
    return wall - (time.time() - time.monotonic())


async def barge_in(client: Any, pcm: np.ndarray, rate: int = SPEECH_RATE, timeout: float = 30.0,
                   window_s: float = 1.2) -> dict:
    """Talk over the replica (it must be speaking) and measure the interruption as the participant hears it.

    Returns talk_at, speech_start (our first voiced sample sent), decision (the engine's
    `conversation.replica_interrupted` event on our monotonic clock, None if it never came), decision_ms (speech
    start → decision), spoke_before (the replica was audible in the second before the decision) and
    silent_after_ms (decision → end of the last voiced sample received within `window_s` after it: 0 when
    nothing more arrived; a replica that kept talking shows ≈ window_s). The whole interrupting utterance is
    sent before returning, so the answer to it cannot start inside the window."""
    talk_at = time.monotonic()
    sending = await client.send_wav(pcm, rate, wait=False)  # a future: done when the last sample went out
    try:
        interrupted = await client.wait_event("conversation.replica_interrupted", timeout=timeout, since=talk_at)
        decision = event_monotonic(interrupted[1]) if interrupted is not None else None
        if decision is not None:
            await client.wait_for(lambda: time.monotonic() > decision + window_s + 0.1, window_s + 5)
    finally:
        await sending
    out = {"talk_at": talk_at, "speech_start": client.speech_started_after(talk_at), "decision": decision,
           "decision_ms": None, "spoke_before": None, "silent_after_ms": None}
    if decision is None:
        return out
    if out["speech_start"] is not None:
        out["decision_ms"] = round(1000.0 * (decision - out["speech_start"]), 1)
    out["spoke_before"] = last_voiced(client, decision - 1.0, decision) is not None
    last = last_voiced(client, decision, decision + window_s)
    out["silent_after_ms"] = 0.0 if last is None else round(1000.0 * (last - decision), 1)
    return out


def last_voiced(client: Any, since: float, until: float | None = None) -> float | None:
    """End time of the last received voiced 10 ms window that arrived in [since, until]."""
    from cvi_lab.transport.client import RATE, WINDOW, _voiced_windows

    rec, last = client.rec, None
    for arrival, chunk in zip(list(rec.audio_arrivals), list(rec.audio_chunks)):
        if arrival < since or (until is not None and arrival > until):
            continue
        w = _voiced_windows(chunk, client.voiced_threshold)
        if len(w):
            last = arrival + (w[-1] + 1) * WINDOW / RATE
    return last


async def wait_replica_done(client: Any, since: float, timeout: float) -> bool:
    """Until a replica.stopped_speaking event arrives after `since` and its audio has gone quiet (0.3 s)."""
    ok = await client.wait_event("conversation.replica.stopped_speaking", timeout=timeout, since=since)
    await client.wait_for(lambda: time.monotonic() - (last_voiced(client, since) or since) > 0.3, 5.0)
    return ok is not None


async def wait_greeting(client: Any, timeout: float = 90.0) -> bool:
    """The greeting started and finished (it cannot be interrupted: talk only after it)."""
    started = await client.wait_event("conversation.replica.started_speaking", timeout=timeout)
    if started is None:
        return False
    return await wait_replica_done(client, started[0], timeout)


async def spoken_turn(client: Any, pcm: np.ndarray, rate: int = SPEECH_RATE, timeout: float = 90.0,
                      wait_done: bool = True) -> dict:
    """Speak `pcm` in real time, wait for the reply's first voiced sample (and, by default, its end).

    Returns sent_at, speech_end, first_voiced (monotonic s) and client_latency_ms (SPEC §4: end of our speech →
    first voiced received sample), or None where the reply did not come."""
    sent_at = time.monotonic()
    await client.send_wav(pcm, rate)
    end = client.speech_ended_at
    first = await client.wait_first_voiced_after(end, timeout=timeout) if end is not None else None
    if first is not None and wait_done:
        await wait_replica_done(client, first, timeout)
    return {"sent_at": sent_at, "speech_end": end, "first_voiced": first,
            "client_latency_ms": None if first is None or end is None else round((first - end) * 1000.0, 1)}


def user_turn_idx(client: Any, since: float, until: float | None = None) -> int | None:
    """turn_idx of the first user utterance event that arrived in [since, until)."""
    for t, e in client.events("conversation.utterance", since=since):
        if until is not None and t >= until:
            break
        if e.get("properties", {}).get("role") == "user":
            return e.get("turn_idx")
    return None


def utterances(client: Any, role: str, since: float = 0.0, until: float | None = None) -> list[tuple[float, dict]]:
    return [(t, e) for t, e in client.events("conversation.utterance", since=since)
            if e.get("properties", {}).get("role") == role and (until is None or t < until)]


def latency_rows(client: Any, turns: list[dict], metrics: list[dict]) -> list[dict]:
    """One row per spoken turn: what we said and heard, client latency, the engine's stored record."""
    by_idx = {m["turn_idx"]: m["metrics"] for m in metrics}
    rows = []
    for i, turn in enumerate(turns):
        until = turns[i + 1]["sent_at"] if i + 1 < len(turns) else None
        idx = user_turn_idx(client, turn["sent_at"], until)
        heard = " ".join(e["properties"]["speech"] for _, e in utterances(client, "user", turn["sent_at"], until))
        said = " ".join(e["properties"]["speech"] for _, e in utterances(client, "replica", turn["sent_at"], until)
                        if e.get("turn_idx") == idx)
        rows.append({"turn": i + 1, "question": turn.get("text", ""), "heard": heard, "answer": said,
                     "turn_idx": idx, "client_latency_ms": turn["client_latency_ms"],
                     "engine": by_idx.get(idx, {})})
    return rows


ENGINE_COLUMNS = [("vad_end_ms", "VAD end"), ("turn_decision_ms", "turn"), ("asr_final_ms", "ASR final"),
                  ("llm_first_token_ms", "LLM 1st tok"), ("first_clause_ms", "1st clause"),
                  ("tts_first_audio_ms", "TTS 1st audio"), ("first_frame_sent_ms", "1st frame sent")]


def latency_table(rows: list[dict]) -> str:
    """Markdown: per turn, client latency and the engine marks (ms after the participant's speech end)."""
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.0f}"

    head = ["turn", "client latency", *(name for _, name in ENGINE_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        e = r["engine"]
        lines.append("| " + " | ".join([str(r["turn"]), f(r["client_latency_ms"]), *(f(e.get(k)) for k, _ in ENGINE_COLUMNS)]) + " |")
    return "\n".join(lines)


def recording_of(record: dict) -> str | None:
    """Where the call recording is, if the record or its events say (application.recording_ready)."""
    for key in ("recording_url", "recording_path", "recording"):
        if record.get(key):
            return str(record[key])
    for e in record.get("events") or []:
        if "recording" in str(e.get("event_type", "")):
            props = e.get("properties") or {}
            for key in ("path", "url", "recording_url", "file", "s3_key"):
                if props.get(key):
                    return str(props[key])
    return None


def transcript_of(record: dict) -> list[tuple[str, str]]:
    out = []
    for e in record.get("events") or []:
        if e.get("event_type") == "conversation.utterance":
            p = e.get("properties") or {}
            out.append((p.get("role", "?"), p.get("speech", "")))
    return out


# ---------------------------------------------------------------------------------------------- the demo
async def run_demo(cfg: Any, questions: list[str] | None = None, home: str | Path | None = None,
                   echo: Callable[[str], None] = print) -> dict:
    """Hold a spoken conversation with the replica and print what happened. Returns a summary dict."""
    from cvi_lab.transport.client import ParticipantClient

    questions = list(questions or DEMO_QUESTIONS)
    echo("[demo] preparing the participant's voice ...")
    audio = [speak(q) for q in questions]
    echo("[demo] starting the server (first run: model conversion/loading takes a while) ...")
    async with LiveServer(cfg, home) as srv:
        persona = await srv.api("POST", "/v2/personas", {
            "persona_name": "Demo guide",
            "system_prompt": "You are a friendly, concise assistant in a live video call. "
                             "Answer in one short spoken sentence.",
            "context": "The user is trying cvi-lab for the first time.",
        } | ({"default_replica_id": d} if (d := await _default_replica(srv)) else {}))
        conv = await srv.api("POST", "/v2/conversations", {
            "persona_id": persona["persona_id"], "conversation_name": "cvi-lab demo",
            "properties": {"enable_recording": True, "max_call_duration": 900, "participant_absent_timeout": 300,
                           "participant_left_timeout": 0}})
        cid = conv["conversation_id"]
        echo(f"[demo] conversation {cid}: {conv['conversation_url']}")
        client = ParticipantClient(conv["conversation_url"], meeting_token=conv.get("meeting_token"))
        await client.join(timeout=120)
        echo("[demo] joined; waiting for the greeting ...")
        turns: list[dict] = []
        try:
            if not await wait_greeting(client, timeout=180):
                echo("[demo] no greeting heard")
            for q, pcm in zip(questions, audio):
                echo(f"[demo] you: {q}")
                turn = await spoken_turn(client, pcm, timeout=120)
                turn["text"] = q
                turns.append(turn)
                lat = turn["client_latency_ms"]
                echo(f"[demo]   reply began {lat:.0f} ms after your speech ended" if lat is not None
                     else "[demo]   no reply heard")
            await asyncio.sleep(0.5)
        finally:
            await srv.api("POST", f"/v2/conversations/{cid}/end")
            await client.leave()
        record = await srv.wait_status(cid, "ended", 30)
        rows = latency_rows(client, turns, srv.turn_metrics(cid))
        # the recording is written after the call ends: give it a moment to show up
        deadline = time.monotonic() + 20
        verbose = await srv.api("GET", f"/v2/conversations/{cid}?verbose=true")
        while recording_of(verbose) is None and record.get("properties", {}).get("enable_recording") is not False \
                and time.monotonic() < deadline and _recording_expected(verbose):
            await asyncio.sleep(0.5)
            verbose = await srv.api("GET", f"/v2/conversations/{cid}?verbose=true")
        recording = recording_of(verbose)

    echo("\n== transcript")
    for role, speech in transcript_of(verbose):
        echo(f"  {role:>8}: {speech}")
    echo("\n== latency (ms; engine marks are after the participant's speech end)")
    echo(latency_table(rows))
    echo(f"\nshutdown_reason: {verbose.get('shutdown_reason')}")
    echo(f"recording: {recording or 'not available'}")
    answered = sum(1 for r in rows if r["client_latency_ms"] is not None)
    return {"conversation_id": cid, "turns": rows, "answered": answered, "transcript": transcript_of(verbose),
            "recording": recording, "shutdown_reason": verbose.get("shutdown_reason")}


def _recording_expected(record: dict) -> bool:
    """A recording is being made if the server mentions one anywhere (otherwise do not wait for it)."""
    return "recording" in str({k: v for k, v in record.items() if k != "properties"}).lower() or any(
        "recording" in str(e.get("event_type", "")) for e in record.get("events") or [])


async def _default_replica(srv: LiveServer) -> str | None:
    from cvi_lab.domain.ids import DEFAULT_REPLICA_ID

    return DEFAULT_REPLICA_ID


def main(cfg: Any) -> int:
    import logging

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="[cvi-lab] %(levelname)s %(name)s: %(message)s")
    try:
        # a store of its own next to the server's (var/demo): the demo never touches a running server's calls,
        # and what it records stays on disk after it exits
        home = Path(str(cfg.server.home)) / "demo" if "server" in cfg else None
        summary = asyncio.run(run_demo(cfg, home=home))
    except Exception as exc:  # noqa: BLE001 - a demo prints why it failed
        print(f"[cvi-lab] demo failed: {type(exc).__name__}: {exc}", flush=True)
        return 1
    return 0 if summary["answered"] == len(summary["turns"]) else 1
