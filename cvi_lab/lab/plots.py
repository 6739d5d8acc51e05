"""Figures: a latency waterfall per run and latency-vs-quality across runs.

Why PNG files through matplotlib's Agg backend: runs happen headless (sweeps, CI), and MLflow shows PNG
artifacts inline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cvi_lab.lab.metrics import TurnResult  # noqa: E402

_STAGE_COLORS = {
    "vad": "#c7c7c7", "turn": "#7f7f7f", "asr": "#1f77b4", "llm": "#ff7f0e", "chunker": "#ffbb78",
    "tts": "#2ca02c", "avatar": "#9467bd", "transport": "#8c564b",
}


def waterfall(turns: Sequence[TurnResult], path: str | Path, title: str = "") -> Path:
    """One row per turn: each stage's span, in ms from the end of the participant's speech, and the
    response latency marked; shows where the time of a turn goes."""
    rows = [t for t in turns if t.spans or t.response_latency_s is not None]
    fig, ax = plt.subplots(figsize=(9, 0.4 * max(len(rows), 2) + 2.2))
    seen: set[str] = set()
    for i, t in enumerate(rows):
        for name, start, end in t.spans:
            color = _STAGE_COLORS.get(name, _STAGE_COLORS.get(name.split("_")[0], "#17becf"))
            height = 0.3 if name == "asr" else 0.6  # ASR overlaps the end-of-turn wait: draw it thinner
            ax.barh(i, (end - start) * 1000, left=start * 1000, height=height, color=color,
                    label=name if name not in seen else None, alpha=0.85)
            seen.add(name)
        if t.response_latency_s is not None:
            ax.plot([t.response_latency_s * 1000] * 2, [i - 0.4, i + 0.4], color="red", lw=2,
                    label="response latency" if "_lat" not in seen else None)
            seen.add("_lat")
    ax.set_yticks(range(len(rows)), [f"{t.script}#{t.turn}" for t in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("ms from end of participant speech")
    ax.set_title(title or "latency waterfall")
    if seen:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=8, frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_vs_quality(points: Sequence[dict], x: str, y: str, label: str, path: str | Path, title: str = "",
                       better: str = "lower") -> Path:
    """Scatter of runs: `x` (a latency metric, lower is better) against `y` (a quality metric, `better` says
    which way), each point named by `label`, with the trade-off front: the runs no other run beats on both."""
    shown = [p for p in points if p.get(x) is not None and p.get(y) is not None]
    fig, ax = plt.subplots(figsize=(7, 5))
    for p in shown:
        ax.scatter(p[x], p[y], s=40)
        ax.annotate(str(p.get(label, "")), (p[x], p[y]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    front = pareto_front([(p[x], p[y]) for p in shown], better)
    if len(front) > 1:
        ax.step([a for a, _ in front], [b for _, b in front], where="post", color="tab:red", lw=1, alpha=0.6,
                label="trade-off front")
        ax.legend(fontsize=7)
    ax.set_xlabel(x)
    ax.set_ylabel(f"{y} ({better} is better)")
    ax.set_title(title or f"{y} vs {x}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pareto_front(points: Sequence[tuple[float, float]], better: str = "lower") -> list[tuple[float, float]]:
    """The points no other point beats on both axes (x lower is better; y as `better` says), by x."""
    sign = 1.0 if better == "lower" else -1.0
    front: list[tuple[float, float]] = []
    for px, py in sorted(points, key=lambda p: (p[0], sign * p[1])):
        if not front or sign * py < sign * front[-1][1]:
            front.append((px, py))
    return front
