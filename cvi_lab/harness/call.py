"""Measuring a live call from the participant's side: join, wait for the greeting, say something, time it.

Why at the participant: SPEC §4 defines response latency there (end of our speech sent → first voiced
sample of the reply received), and a barge-in is over when the participant stops hearing the replica. The
scripted participant is `cvi_lab.transport.client.ParticipantClient`; these helpers drive it the one way the
demo, the lab's live mode, the benchmarks and the e2e tests share. Times are `time.monotonic()` seconds.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np

from cvi_lab.harness.voice import SPEECH_RATE
from cvi_lab.transport.client import ParticipantClient

REPLY_QUIET_S = 0.3  # received audio quiet this long after replica.stopped_speaking = the reply is over


async def join(conversation: dict, timeout: float = 60.0, **client: Any) -> ParticipantClient:
    """A participant joined to a created conversation (its conversation_url and meeting_token)."""
    participant = ParticipantClient(conversation["conversation_url"], meeting_token=conversation.get("meeting_token"),
                                    **client)
    return await participant.join(timeout=timeout)


def event_monotonic(event: dict) -> float:
    """An event's `timestamp` (the engine's wall clock, same machine) on this process's monotonic clock."""
    wall = dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
    return wall - (time.time() - time.monotonic())


async def wait_replica_done(client: ParticipantClient, since: float, timeout: float) -> bool:
    """Until a replica.stopped_speaking event arrives after `since` and its audio has gone quiet."""
    ok = await client.wait_event("conversation.replica.stopped_speaking", timeout=timeout, since=since)
    await client.wait_quiet(since, REPLY_QUIET_S, 5.0)
    return ok is not None


async def wait_greeting(client: ParticipantClient, timeout: float = 90.0) -> bool:
    """The greeting started and finished (it cannot be interrupted: talk only after it)."""
    started = await client.wait_event("conversation.replica.started_speaking", timeout=timeout)
    if started is None:
        return False
    return await wait_replica_done(client, started[0], timeout)


async def spoken_turn(client: ParticipantClient, pcm: np.ndarray | str | Path, rate: int | None = SPEECH_RATE,
                      timeout: float = 90.0, wait_done: bool = True) -> dict:
    """Speak `pcm` (mono PCM at `rate`, or an audio file at its own rate) in real time, wait for the reply's
    first voiced sample (and, by default, its end).

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


async def barge_in(client: ParticipantClient, pcm: np.ndarray, rate: int = SPEECH_RATE, timeout: float = 30.0,
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
    out["spoke_before"] = client.last_voiced_between(decision - 1.0, decision) is not None
    last = client.last_voiced_between(decision, decision + window_s)
    out["silent_after_ms"] = 0.0 if last is None else round(1000.0 * (last - decision), 1)
    return out


def utterances(client: ParticipantClient, role: str, since: float = 0.0,
               until: float | None = None) -> list[tuple[float, dict]]:
    """The `conversation.utterance` events of `role` ("user" | "replica") that arrived in [since, until)."""
    return [(t, e) for t, e in client.events("conversation.utterance", since=since)
            if e.get("properties", {}).get("role") == role and (until is None or t < until)]


def user_turn_idx(client: ParticipantClient, since: float, until: float | None = None) -> int | None:
    """turn_idx of the first user utterance event that arrived in [since, until)."""
    first = utterances(client, "user", since, until)
    return first[0][1].get("turn_idx") if first else None
