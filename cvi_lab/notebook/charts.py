"""Latency charts for the notebooks: one call's turns as a waterfall, and a sweep's runs side by side.

Why matplotlib's object API (Figure + Agg canvas, no pyplot): the control panel redraws from a polling
thread into an Image widget as PNG bytes, which must not touch the notebook's pyplot state or backend.
"""

from __future__ import annotations

import io
from typing import Any, Sequence

from matplotlib.figure import Figure

try:  # the engine's names for the hops of a turn, in critical-path order
    from cvi_lab.engine.latency import MARKS
except ImportError:  # pragma: no cover - engine not installed
    MARKS = ("speech_end", "vad_end", "turn_decision", "asr_final", "llm_first_token", "first_clause",
             "tts_first_audio", "first_frame_sent")

HOP_LABELS = {
    "vad_end": "VAD", "turn_decision": "end of turn", "asr_final": "ASR", "llm_first_token": "LLM first token",
    "first_clause": "first clause", "tts_first_audio": "TTS first audio", "first_frame_sent": "avatar + send",
}
COLORS = dict(zip(HOP_LABELS, ("#9e9e9e", "#8d6e63", "#42a5f5", "#ab47bc", "#7e57c2", "#ef6c00", "#26a69a")))


def hops(turn: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(hop, start_ms, end_ms) along the turn's timeline, from its `<mark>_ms` values (origin = speech end)."""
    points = sorted((float(turn[f"{m}_ms"]), m) for m in MARKS if turn.get(f"{m}_ms") is not None)
    out, prev = [], 0.0
    for t, mark in points:
        if mark == MARKS[0]:
            continue
        out.append((mark, prev, max(prev, t)))
        prev = max(prev, t)
    return out


def response_ms(turn: dict[str, Any]) -> float | None:
    value = turn.get("response_latency_ms")
    if value is None and turn.get("first_frame_sent_ms") is not None and turn.get("speech_end_ms") is not None:
        value = float(turn["first_frame_sent_ms"]) - float(turn["speech_end_ms"])
    return None if value is None else float(value)


def latency_figure(turns: Sequence[dict[str, Any]], title: str = "response latency per turn",
                   width: float = 6.4) -> Figure:
    """Horizontal waterfall: one row per turn, one coloured segment per hop, the total written at the end."""
    rows = list(turns)[-12:]  # the latest turns; older ones stay in the table
    fig = Figure(figsize=(width, 1.6 + 0.38 * max(1, len(rows))), dpi=90)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    if not rows:
        ax.text(0.5, 0.5, "no turns yet: speak to the replica", ha="center", va="center", color="#777",
                transform=ax.transAxes)
        ax.set_xticks([]), ax.set_yticks([])
        fig.tight_layout()
        return fig
    seen: set[str] = set()
    for y, turn in enumerate(rows):
        for mark, a, b in hops(turn):
            ax.barh(y, b - a, left=a, color=COLORS.get(mark, "#bbb"), edgecolor="white", height=0.6,
                    label=HOP_LABELS.get(mark, mark) if mark not in seen else None)
            seen.add(mark)
        total = response_ms(turn)
        if total is not None:
            if not hops(turn):
                ax.barh(y, total, color="#26a69a", height=0.6)
            ax.text(total, y, f" {total:.0f} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"turn {t.get('turn_idx', i)}" for i, t in enumerate(rows)], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms after the end of the participant's speech", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.margins(x=0.15)
    if seen:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.42), ncols=4, frameon=False)
    fig.tight_layout()
    return fig


def runs_figure(runs: Sequence[dict[str, Any]], labels: Sequence[str], title: str = "response latency by run") -> Figure:
    """A sweep's runs side by side: p50 bar, p95 tick, and the stage medians that make up the answer."""
    parts = [("asr_p50_ms", "ASR", "#42a5f5"), ("llm_ttfb_p50_ms", "LLM TTFB", "#ab47bc"),
             ("tts_ttfb_p50_ms", "TTS TTFB", "#ef6c00")]
    fig = Figure(figsize=(7.5, 3.2), dpi=90)
    left, right = fig.subplots(1, 2)
    xs = range(len(runs))
    p50 = [r["metrics"].get("response_latency_p50_ms") or 0.0 for r in runs]
    p95 = [r["metrics"].get("response_latency_p95_ms") for r in runs]
    left.bar(xs, p50, color="#26a69a", label="p50")
    left.scatter([x for x, v in zip(xs, p95) if v is not None], [v for v in p95 if v is not None], marker="_",
                 s=300, color="black", label="p95", zorder=3)
    left.set_title(title, fontsize=10)
    left.set_ylabel("ms")
    left.legend(fontsize=7, frameon=False)
    bottom = [0.0] * len(runs)
    for key, name, color in parts:
        values = [float(r["metrics"].get(key) or 0.0) for r in runs]
        right.bar(xs, values, bottom=bottom, color=color, label=name)
        bottom = [b + v for b, v in zip(bottom, values)]
    right.set_title("stage medians", fontsize=10)
    right.legend(fontsize=7, frameon=False)
    for ax in (left, right):
        ax.set_xticks(list(xs), [lab.replace(",", "\n") for lab in labels], fontsize=7)
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig


def figure_png(fig: Figure, dpi: int | None = None) -> bytes:
    """PNG bytes of a Figure (Agg canvas), for an ipywidgets Image or IPython.display.Image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
