"""A per-turn picture: both sides' waveform and spectrogram on one time axis, with the turn's moments marked.

Why: "the replica answered while I paused" is seen at a glance on a picture of the participant's speech,
the replica's audio and the engine's marks (VAD end, turn decision, first token, first audio) against the
participant's end of speech, and is hard to read from numbers. librosa's display tools draw the waveform
and the spectrogram on a shared seconds axis; PNG through Agg (headless runs), one file per turn, logged as
MLflow artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cvi_lab.lab.metrics import TurnResult  # noqa: E402

# the engine's spans (TurnResult.spans, s after the speech end) whose end is a moment worth marking
SPAN_MARKS = {"vad": "VAD end", "turn": "turn decision", "llm": "first token", "tts": "first audio (TTS)",
              "avatar": "first frame out"}
_MARK_COLORS = {"speech end": "black", "VAD end": "#7f7f7f", "turn decision": "#d62728", "first token": "#ff7f0e",
                "first audio (TTS)": "#2ca02c", "first frame out": "#9467bd", "heard by participant": "#1f77b4"}


def marks_of(t: TurnResult, speech_end: float) -> dict[str, float]:
    """The turn's moments on the call's time axis: the speech end, the ends of the engine's spans, and the
    first replica audio the participant received."""
    out = {"speech end": speech_end}
    for name, _start, end in t.spans:
        if name in SPAN_MARKS:
            out[SPAN_MARKS[name]] = speech_end + end
    if t.response_latency_s is not None:
        out["heard by participant"] = speech_end + t.response_latency_s
    return out


def draw(participant: np.ndarray, participant_start: float, participant_rate: int, replica: np.ndarray,
         replica_start: float, replica_rate: int, marks: Mapping[str, float], path: str | Path,
         title: str = "", speed: float = 1.0) -> Path:
    """Four rows on one seconds axis (participant waveform + spectrogram, replica waveform + spectrogram),
    each mark a vertical line across all of them. The participant's audio was fed `speed` times faster
    than real time (offline mode): its time axis is compressed by that, its frequencies are not."""
    import librosa
    import librosa.display

    fig, axes = plt.subplots(4, 1, figsize=(11, 7.5), sharex=True, gridspec_kw={"height_ratios": [1, 1.4, 1, 1.4]})
    sides = [("participant", np.asarray(participant, np.float32), participant_start, participant_rate, speed),
             ("replica", np.asarray(replica, np.float32), replica_start, replica_rate, 1.0)]
    for row, (name, pcm, start, rate, pace) in enumerate(sides):
        wave_ax, spec_ax = axes[2 * row], axes[2 * row + 1]
        if len(pcm) == 0:
            wave_ax.text(0.5, 0.5, f"no {name} audio", transform=wave_ax.transAxes, ha="center")
            spec_ax.set_ylabel(f"{name}\nHz")
            continue
        sr = int(rate)
        librosa.display.waveshow(pcm, sr=int(round(sr * pace)), ax=wave_ax, offset=start, color="#1f77b4" if row == 0 else "#2ca02c")
        wave_ax.set_ylabel(name)
        wave_ax.set_xlabel("")
        spec = librosa.amplitude_to_db(np.abs(librosa.stft(pcm, n_fft=512, hop_length=128)), ref=np.max)
        spec_ax.imshow(spec, origin="lower", aspect="auto", cmap="magma",
                       extent=(start, start + len(pcm) / (sr * pace), 0, sr / 2))
        spec_ax.set_ylim(0, min(8000, sr / 2))
        spec_ax.set_ylabel(f"{name}\nHz")
    for label, at in sorted(marks.items(), key=lambda kv: kv[1]):
        for ax in axes:
            ax.axvline(at, color=_MARK_COLORS.get(label, "#17becf"), lw=1.2, ls="--",
                       label=label if ax is axes[0] else None)
    axes[0].legend(loc="upper left", fontsize=7, ncol=4, framealpha=0.8)
    axes[-1].set_xlabel("seconds in the call")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def turn_view(t: TurnResult, participant: np.ndarray, participant_start: float, speech_end: float,
              replica: np.ndarray, replica_start: float, replica_rate: int, out_dir: Path, speed: float = 1.0) -> Path:
    """One turn's picture, `out_dir/turns/turn_<script>__<turn>.png`: the participant's audio (16 kHz, fed
    at `speed`) from `participant_start`, the replica's from `replica_start`, on the call's clock."""
    title = f"{t.script} turn {t.turn} ({t.phenomenon}): {t.reference[:70]}"
    return draw(participant, participant_start, 16_000, replica, replica_start, replica_rate,
                marks_of(t, speech_end), out_dir / "turns" / f"turn_{t.script}__{t.turn:02d}.png", title, speed)


def view_end(t: TurnResult, speech_end: float) -> float:
    """Where a turn's picture ends: 2 s after the first replica audio, and at least 3 s after the speech end."""
    return speech_end + max(3.0, (t.response_latency_s or 0.0) + 2.0)


def call_views(turns: Sequence[TurnResult], res, audio: Mapping[str, np.ndarray], speed: float, out_dir: Path,
               limit: int) -> list[Path]:
    """Up to `limit` per-turn views of one offline call: `res` the driver's result (its `says` and received
    frames on the call's clock), `audio` uid -> what the participant was fed (16 kHz) at `speed`."""
    says = {s["label"]: s for s in res.says}
    paths = []
    for t in list(turns)[: max(0, int(limit))]:
        uid = f"{t.script}__{t.turn:02d}"
        say = says.get(uid)
        if say is None or uid not in audio:
            continue
        end = view_end(t, say["speech_end"])
        window = [i for i, ft in enumerate(res.frame_times) if say["start"] <= ft < end]
        replica = np.concatenate([res.frame_audio[i] for i in window]) if window else np.zeros(0, np.float32)
        replica_start = res.frame_times[window[0]] if window else say["start"]
        paths.append(turn_view(t, audio[uid], say["start"], say["speech_end"], replica, replica_start,
                               res.audio_rate or 22_050, out_dir, speed))
    return paths
