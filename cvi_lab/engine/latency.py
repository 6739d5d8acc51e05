"""Per-turn latency record: when each hop of one user turn → replica answer happened.

Why a record and not ad-hoc logs: the headline figure (end of the participant's speech → first audible
replica audio) is the sum of these hops, and experiments compare them stage by stage. Times are the
engine's monotonic clock in seconds; `as_metrics()` turns them into milliseconds relative to the
participant's speech end, plus the derived stage durations, for `record_turn(turn_idx, metrics)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# Order = order of the hops on the critical path (item 6 of the live-call issue).
MARKS = (
    "speech_end",  # participant speech end (from the VAD's sample position, mapped to the clock)
    "vad_end",  # the VAD fired speech_end (after its min silence)
    "turn_decision",  # the end-of-turn decision (detector said complete, or patience ran out)
    "asr_final",  # final transcript ready
    "llm_first_token",
    "first_clause",  # chunker emitted the first clause
    "tts_first_audio",  # first PCM chunk from the TTS
    "first_frame_sent",  # first speaking frame (with audio) left the engine towards the participant
)


@dataclass
class TurnLatency:
    turn_idx: int
    source: str = "voice"  # voice | respond (data channel) | echo
    speech_end: float | None = None
    vad_end: float | None = None
    turn_decision: float | None = None
    asr_final: float | None = None
    llm_first_token: float | None = None
    first_clause: float | None = None
    tts_first_audio: float | None = None
    first_frame_sent: float | None = None
    retrieval_s: float | None = None  # the knowledge-base search of this turn (between asr_final and the LLM)
    extra: dict[str, Any] = field(default_factory=dict)  # asr_s, turn_prob, llm stats, cancelled, ...

    def mark(self, name: str, t: float) -> None:
        """Set a mark once (the first occurrence is the one on the critical path)."""
        if name not in MARKS:
            raise KeyError(f"unknown latency mark {name!r}; known: {', '.join(MARKS)}")
        if getattr(self, name) is None:
            setattr(self, name, t)

    def add_queue_time(self, hop: str, wait_s: float, compute_s: float) -> None:
        """Book one model job of `hop` (asr, turn, tts, llm): its wait for the shared model queue beside its
        compute time, summed over the turn's jobs (`<hop>_wait_ms`, `<hop>_compute_ms`)."""
        for key, s in ((f"{hop}_wait_ms", wait_s), (f"{hop}_compute_ms", compute_s)):
            self.extra[key] = round(self.extra.get(key, 0.0) + s * 1000.0, 1)

    def take_listening_marks(self, committed: "TurnLatency") -> None:
        """A speculative answer, prepared before the commit, takes the committed turn's listening-side marks."""
        self.speech_end, self.vad_end = committed.speech_end, committed.vad_end
        self.turn_decision, self.asr_final = committed.turn_decision, committed.asr_final

    @property
    def origin(self) -> float | None:
        for name in MARKS:
            if getattr(self, name) is not None:
                return getattr(self, name)
        return None

    @property
    def response_latency_s(self) -> float | None:
        if self.speech_end is None or self.first_frame_sent is None:
            return None
        return self.first_frame_sent - self.speech_end

    def as_metrics(self) -> dict[str, Any]:
        """Flat dict: each mark as `<mark>_ms` after the origin (speech end); derived spans (vad_delay_ms,
        asr_ms, turn_ms, llm_ttft_ms, clause_wait_ms, tts_ttfb_ms, avatar_delay_ms, retrieval_ms, response_latency_ms);
        then the extras (among them each hop's queue wait and compute time, `add_queue_time`)."""
        origin = self.origin
        out: dict[str, Any] = {"turn_idx": self.turn_idx, "source": self.source}
        for name in MARKS:
            t = getattr(self, name)
            out[f"{name}_ms"] = None if t is None or origin is None else round((t - origin) * 1000.0, 1)

        def span(a: str, b: str) -> float | None:
            ta, tb = getattr(self, a), getattr(self, b)
            return None if ta is None or tb is None else round((tb - ta) * 1000.0, 1)

        out["vad_delay_ms"] = span("speech_end", "vad_end")
        out["asr_ms"] = span("vad_end", "asr_final")  # ASR starts at the VAD's end
        out["turn_ms"] = span("vad_end", "turn_decision")
        out["llm_ttft_ms"] = span("turn_decision" if self.asr_final is None else "asr_final", "llm_first_token")
        out["clause_wait_ms"] = span("llm_first_token", "first_clause")
        out["tts_ttfb_ms"] = span("first_clause", "tts_first_audio")
        out["avatar_delay_ms"] = span("tts_first_audio", "first_frame_sent")
        out["retrieval_ms"] = None if self.retrieval_s is None else round(self.retrieval_s * 1000.0, 2)
        rl = self.response_latency_s
        out["response_latency_ms"] = None if rl is None else round(rl * 1000.0, 1)
        out.update(self.extra)
        return out


MARK_FIELDS = tuple(f.name for f in fields(TurnLatency) if f.name in MARKS)
