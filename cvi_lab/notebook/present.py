"""Words and small HTML for what the control panel shows: status, speaking state, captions, summary.

Why its own module: the same text appears in the widget, in a notebook's printed output and in tests, and
everything a server or a person typed is HTML-escaped in one place.
"""

from __future__ import annotations

import html
import statistics
from typing import Any, Sequence

from cvi_lab.notebook.session import Snapshot

TURN_COLUMNS = ("turn_idx", "source", "response_latency_ms", "vad_delay_ms", "turn_ms", "asr_ms", "llm_ttft_ms",
                "clause_wait_ms", "tts_ttfb_ms", "avatar_delay_ms")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def message_html(text: str, kind: str = "error") -> str:
    color = {"error": "#c62828", "info": "#1565c0", "ok": "#2e7d32"}.get(kind, "#333")
    return f'<div style="color:{color};white-space:pre-wrap">{esc(text)}</div>' if text else ""


def status_text(snap: Snapshot) -> str:
    if snap.ended:
        return f"ended: {snap.shutdown_reason or 'unknown reason'}; usage {snap.usage_seconds:.1f} s"
    who = f"{snap.participants} participant{'s' if snap.participants != 1 else ''}"
    joined = "replica in the room" if snap.replica_joined else "replica joining"
    return f"active: {joined}, {who}, {snap.usage_seconds:.0f} s"


def speaking_text(snap: Snapshot) -> str:
    if snap.ended:
        return "call ended"
    if snap.replica_speaking is None:
        return f"speaking state unknown: {snap.live_note or 'no live events'}"
    if snap.replica_speaking:
        return "replica: speaking"
    return "participant: speaking" if snap.user_speaking else "replica: listening"


def speaking_html(snap: Snapshot) -> str:
    text = speaking_text(snap)
    color = "#2e7d32" if snap.replica_speaking else ("#ef6c00" if snap.user_speaking else "#757575")
    return f'<span style="color:{color};font-weight:600">&#9679; {esc(text)}</span>'


def captions_html(snap: Snapshot, last: int = 8) -> str:
    lines = [f"<div><b>{esc(c.role)}</b>: {esc(c.text)}</div>" for c in snap.captions[-last:]]
    if snap.streaming_text and snap.replica_speaking:
        lines.append(f'<div style="color:#777"><b>replica</b>: <i>{esc(snap.streaming_text)}</i></div>')
    if not lines:
        lines = ['<div style="color:#777">(captions appear here when someone speaks)</div>']
    return "".join(lines)


def median_latency_ms(turns: Sequence[dict[str, Any]]) -> float | None:
    values = [float(t["response_latency_ms"]) for t in turns if t.get("response_latency_ms") is not None]
    return statistics.median(values) if values else None


def summary(snap: Snapshot) -> str:
    """One paragraph: how the call ended (or stands), usage, turns and latency."""
    parts = [status_text(snap), f"{len(snap.captions)} utterance(s)"]
    if snap.turns_available:
        med = median_latency_ms(snap.turns)
        parts.append(f"{len(snap.turns)} measured turn(s)" + (f", median response latency {med:.0f} ms" if med else ""))
    else:
        parts.append("per-turn latency not offered by this server")
    parts += [f"error: {e}" for e in snap.errors[-3:]]
    return "; ".join(parts)


def turn_rows(turns: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latency table's rows: the headline columns that are present, in a fixed order."""
    present = [c for c in TURN_COLUMNS if any(c in t for t in turns)]
    return [{c: t.get(c) for c in present} for t in turns]
