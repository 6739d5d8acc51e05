"""Turn-taking metrics: what a user notices first in a call, scored against what each scenario line expects.

Why apart from `metrics.aggregate`: these numbers need the line's expectation (`scenarios.Expect`) and what
was observed around it in the call (`observe`, from the events with their arrival times), not only the
per-turn latency record. Definitions (rates are fractions of the lines they apply to; a rate with no line to
apply to is left out, never reported as 0):

- false cut-off: a line that must be heard to its end (`expect.hold`) was answered before its speech ended,
  or split into more than one user turn;
- missed turn: a line the replica should answer (`expect.take_turn`) got no answer within MISSED_TURN_S of
  its speech end (for a line spoken over the replica: no answer to it at all);
- end-of-turn delay: the engine's turn decision after the speech end, on lines answered and not cut off;
- false barge-in: the replica was cut by a line that must not stop it (backchannel, cough, noise);
  recovery: after such a cut, the replica speaks again within MISSED_TURN_S of the line's end;
- barge-in success: a line that must stop the replica did; stop time: its start -> the replica's audio stopping
  (when the replica was already quiet then, between two clauses, the audio says nothing of the reaction: the
  engine's cut, its `replica_interrupted` event, is the stop);
- response latency (`metrics.aggregate`) leaves out lines the replica was still speaking over (a backchannel
  it talked through, an answer begun at a pause: `drop_untimed_latency`, and audio within STILL_SPEAKING_S
  of the speech end) and lines it was silent after until the next line began (a cough left unanswered: the
  next audio is the next line's answer): no response to time;
- spurious turn: a line the replica should not answer (a cough, an "mm-hm") was answered.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from cvi_lab.lab.metrics import TurnResult, percentile

MISSED_TURN_S = 3.0
INTERRUPT_WINDOW_S = 3.0  # an engine cut this long after a line's speech end still counts as caused by it
STILL_SPEAKING_S = 0.1  # replica audio this close before a speech end: it was still talking


def observe(t: TurnResult, utt: Any, speech_start: float, speech_end: float, window_end: float,
            events: Iterable[dict], user_turns: int) -> None:
    """Fill the turn's scenario observations from the call's events (each with `_t`, seconds on the same
    clock as the speech times). `window_end` is when the next line started (inf for the last line)."""
    t.phenomenon = utt.phenomenon
    t.expect = utt.expect
    t.user_turns = user_turns
    cut_until = cut_window_end(speech_end, window_end)
    for e in events:
        kind, at = e["event_type"], e["_t"]
        if kind == "conversation.replica.started_speaking" and speech_start < at < speech_end:
            t.replica_started_early = True
        elif kind == "conversation.replica_interrupted" and speech_start <= at < cut_until:
            t.replica_interrupted = True


def still_speaking(audible_at: list[float], speech_end: float) -> bool:
    """The replica was audible within STILL_SPEAKING_S before the speech end (`audible_at`: times of its
    audible audio on the same clock): the next audio is the same speech going on, not a response."""
    return any(speech_end - STILL_SPEAKING_S <= a <= speech_end for a in audible_at)


def drop_untimed_latency(t: TurnResult) -> None:
    """No response latency for a line spoken over the replica that did not stop it, or answered before its
    end: the audio after it is the answer going on, not a response to time."""
    if (t.barge_in and not t.replica_interrupted) or t.replica_started_early:
        t.response_latency_s = None


def cut_window_end(speech_end: float, window_end: float) -> float:
    """Until when an engine cut counts as caused by a line: INTERRUPT_WINDOW_S past its end, or the next line."""
    return min(window_end, speech_end + INTERRUPT_WINDOW_S)


def cut_after(events: Iterable[dict], start: float, speech_end: float, window_end: float) -> float | None:
    """Seconds from `start` to the engine's first `conversation.replica_interrupted` the line caused."""
    until = cut_window_end(speech_end, window_end)
    for e in events:
        if e["event_type"] == "conversation.replica_interrupted" and start <= e["_t"] < until:
            return e["_t"] - start
    return None


def _rate(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def is_cut_off(t: TurnResult) -> bool:
    return t.replica_started_early or t.user_turns > 1


def is_missed(t: TurnResult) -> bool:
    if not t.replica_text:
        return True
    if t.barge_in or t.replica_started_early:  # answered (or talked over): latency says nothing here
        return False
    return t.response_latency_s is None or t.response_latency_s > MISSED_TURN_S


def conversation_metrics(turns: list[TurnResult]) -> dict[str, float]:
    """Run-level turn-taking metrics (latencies in ms) from turns that carry scenario observations."""
    m: dict[str, float | None] = {}
    hold = [t for t in turns if t.expect.hold and not t.error]
    m["false_cutoff_rate"] = _rate([is_cut_off(t) for t in hold])
    paused = [t for t in hold if t.phenomenon == "mid_pause"]
    m["false_cutoff_rate_mid_pause"] = _rate([is_cut_off(t) for t in paused])
    take = [t for t in turns if t.expect.take_turn]
    m["missed_turn_rate"] = _rate([is_missed(t) for t in take])
    eot = [t.end_of_turn_s * 1000 for t in take if t.end_of_turn_s is not None and not is_cut_off(t) and not is_missed(t)]
    m["end_of_turn_delay_p50_ms"] = percentile(eot, 50)
    m["end_of_turn_delay_mean_ms"] = float(np.mean(eot)) if eot else None
    keep_talking = [t for t in turns if t.barge_in and t.expect.replica_stops is False]
    m["false_barge_in_rate"] = _rate([t.replica_interrupted for t in keep_talking])
    cut = [t for t in keep_talking if t.replica_interrupted]
    m["false_barge_in_recovery_rate"] = _rate([t.response_latency_s is not None and t.response_latency_s <= MISSED_TURN_S
                                               for t in cut])
    stop = [t for t in turns if t.barge_in and t.expect.replica_stops is True]
    m["barge_in_success_rate"] = _rate([t.replica_interrupted for t in stop])
    stops = [t.barge_in_stop_s * 1000 for t in stop if t.replica_interrupted and t.barge_in_stop_s is not None]
    m["barge_in_success_stop_p50_ms"] = percentile(stops, 50)
    m["barge_in_success_stop_max_ms"] = float(np.max(stops)) if stops else None
    silent = [t for t in turns if not t.expect.take_turn]
    m["spurious_turn_rate"] = _rate([bool(t.replica_text) and t.user_turns > 0 for t in silent])
    return {k: float(v) for k, v in m.items() if v is not None}
