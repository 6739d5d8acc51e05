"""Write a call's replica frames (each carrying the audio that plays with it) as one MP4 artifact.

Why from the frames' own audio: `VideoFrame.audio` is what the transport sends with that frame, so the file
shows audio and video exactly as aligned by the engine, which is what a reader checks lip-sync against.
"""

from __future__ import annotations

import fractions
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from cvi_lab.audio import resample, to_int16

AUDIO_RATE = 48_000


def write_call_video(frames: Sequence, path: str | Path, fps: int = 25, max_seconds: float = 120.0,
                     participant: Iterable[tuple[float, np.ndarray, int]] = ()) -> Path | None:
    """H.264 + AAC MP4 of `frames` (objects with image, audio, audio_rate). `participant`: optional
    (start_s, pcm, rate) pieces mixed into the soundtrack so the file is the whole call. None if no frames."""
    import av

    frames = list(frames)[: int(max_seconds * fps)]
    if not frames:
        return None
    path = Path(path)
    h, w = frames[0].image.shape[:2]
    audio = _soundtrack(frames, fps)
    for start, pcm, rate in participant:
        x = resample(np.asarray(pcm, np.float32), rate, AUDIO_RATE)
        i = int(start * AUDIO_RATE)
        if 0 <= i < len(audio):
            n = min(len(x), len(audio) - i)
            audio[i: i + n] += x[:n]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "28"}
        aus = out.add_stream("aac", rate=AUDIO_RATE)
        aus.layout = "mono"
        for f in frames:
            img = np.ascontiguousarray(f.image[: vs.height, : vs.width, :3])
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        pcm = to_int16(audio)
        step = 1024
        for i in range(0, len(pcm), step):
            chunk = pcm[i: i + step]
            af = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            af.sample_rate, af.pts, af.time_base = AUDIO_RATE, i, fractions.Fraction(1, AUDIO_RATE)
            for packet in aus.encode(af):
                out.mux(packet)
        for packet in aus.encode():
            out.mux(packet)
    return path


def _soundtrack(frames: Sequence, fps: int) -> np.ndarray:
    """The frames' audio at AUDIO_RATE. Joined at the renderer's own rate and resampled once: resampling each
    40 ms frame alone leaves an edge transient at every frame boundary, a buzz at the frame rate."""
    rates = {int(f.audio_rate) for f in frames}
    if len(rates) > 1:  # frames from renderers at different rates: one resampling per frame
        return np.concatenate([resample(np.asarray(f.audio, np.float32), f.audio_rate, AUDIO_RATE)
                               if len(f.audio) else np.zeros(AUDIO_RATE // fps, np.float32) for f in frames])
    (rate,) = rates
    native = [np.asarray(f.audio, np.float32) if len(f.audio) else np.zeros(rate // fps, np.float32) for f in frames]
    return resample(np.concatenate(native), rate, AUDIO_RATE)
