"""Per-turn rows of a measured call: what was said and heard, the client latency, the engine's stored record.

Why together: the demo prints these rows and the latency benchmark summarises them; both read the client's
events and the store's per-turn records (cvi_lab/engine/latency.py marks) the same way.
"""

from __future__ import annotations

from typing import Any

from cvi_lab.engine.latency import MARKS
from cvi_lab.harness.call import user_turn_idx, utterances
from cvi_lab.transport.client import ParticipantClient

# what each engine figure means, in the order of the critical path (cvi_lab/engine/latency.py)
HOPS = [(a, b) for a, b in zip(MARKS, MARKS[1:])]
ENGINE_COLUMNS = [("vad_end_ms", "VAD end"), ("turn_decision_ms", "turn"), ("asr_final_ms", "ASR final"),
                  ("llm_first_token_ms", "LLM 1st tok"), ("first_clause_ms", "1st clause"),
                  ("tts_first_audio_ms", "TTS 1st audio"), ("first_frame_sent_ms", "1st frame sent")]


def latency_rows(client: ParticipantClient, turns: list[dict], metrics: list[dict]) -> list[dict]:
    """One row per spoken turn (`spoken_turn` results, with their "text"): what we said and heard, client
    latency, and the engine's stored record for that turn (`metrics`: the store's turn records)."""
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


def latency_table(rows: list[dict]) -> str:
    """Markdown: per turn, client latency and the engine marks (ms after the participant's speech end)."""
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.0f}"

    head = ["turn", "client latency", *(name for _, name in ENGINE_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        e = r["engine"]
        cells = [str(r["turn"]), f(r["client_latency_ms"]), *(f(e.get(k)) for k, _ in ENGINE_COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
