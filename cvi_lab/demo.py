"""`make demo`: a real spoken conversation with the replica, in-process, over loopback WebRTC.

It starts the API server (the full composed config: engine + WebRTC transport), creates a persona and a
conversation with `enable_recording`, joins it with the Python participant client, speaks three questions
(synthesized locally), then prints the transcript (GET /v2/conversations/{id}?verbose=true), the per-turn
latency table (the participant-side response latency + the engine's stored stage timestamps) and where the
call recording is, if the server produced one.

The server, the participant's voice and the measurement are the harness's (cvi_lab/harness), shared with the
lab's live mode, the notebook, the end-to-end tests and the benchmarks: one way to drive a live call.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable

from cvi_lab.harness.call import join, spoken_turn, wait_greeting
from cvi_lab.harness.server import private_server
from cvi_lab.harness.turns import latency_rows, latency_table
from cvi_lab.harness.voice import speak

DEMO_QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Can you name a famous painter?",
]
RECORDING_WAIT_S = 20.0  # the recording is written after the call ends: give it this long to show up


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
    from cvi_lab.domain.ids import DEFAULT_REPLICA_ID

    questions = list(questions or DEMO_QUESTIONS)
    echo("[demo] preparing the participant's voice ...")
    audio = [speak(q) for q in questions]
    echo("[demo] starting the server (first run: model conversion/loading takes a while) ...")
    async with private_server(cfg, home) as srv:
        persona = await srv.api("POST", "/v2/personas", {
            "persona_name": "Demo guide",
            "system_prompt": "You are a friendly, concise assistant in a live video call. "
                             "Answer in one short spoken sentence.",
            "context": "The user is trying cvi-lab for the first time.",
            "default_replica_id": DEFAULT_REPLICA_ID})
        conv = await srv.api("POST", "/v2/conversations", {
            "persona_id": persona["persona_id"], "conversation_name": "cvi-lab demo",
            "properties": {"enable_recording": True, "max_call_duration": 900, "participant_absent_timeout": 300,
                           "participant_left_timeout": 0}})
        cid = conv["conversation_id"]
        echo(f"[demo] conversation {cid}: {conv['conversation_url']}")
        client = await join(conv, timeout=120)
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
        deadline = time.monotonic() + RECORDING_WAIT_S
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
