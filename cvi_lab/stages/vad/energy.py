"""Energy-threshold VAD: the baseline every learned VAD is compared with.

A frame whose RMS level is above `threshold_dbfs` is speech, below `threshold_dbfs - hysteresis_db` is
silence, in between keeps the state. No model, no warmup cost; fooled by any loud noise.
"""

from __future__ import annotations

import numpy as np

from cvi_lab.stages.base import ASR_SAMPLE_RATE, VAD, StageInputError, VADEvent, check_pcm
from cvi_lab.stages.vad.segmenter import Segmenter


class EnergyVAD(VAD):
    """Streaming energy VAD. Settings mirror `cvi_lab/conf/vad/energy.yaml`."""

    sample_rate = ASR_SAMPLE_RATE

    def __init__(
        self,
        threshold_dbfs: float = -40.0,
        hysteresis_db: float = 6.0,
        frame_ms: float = 20,
        min_silence_ms: float = 250,
        min_speech_ms: float = 60,
        speech_pad_ms: float = 30,
    ) -> None:
        if frame_ms <= 0:
            raise StageInputError(f"EnergyVAD: frame_ms {frame_ms} is not accepted; use a positive duration")
        self.threshold_dbfs = float(threshold_dbfs)
        self.hysteresis_db = float(hysteresis_db)
        sr = self.sample_rate
        self.frame = max(1, int(round(sr * frame_ms / 1000)))
        self._seg = Segmenter(sr, sr * min_speech_ms / 1000, sr * min_silence_ms / 1000, sr * speech_pad_ms / 1000)
        self.reset()

    async def warmup(self) -> None:
        return None

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)
        self._done = 0
        self._seg.reset()
        self.speech_probability = 0.0

    @property
    def speaking(self) -> bool:
        return self._seg.speaking

    @property
    def pending_end(self) -> int | None:
        return self._seg.pending_end

    def push(self, pcm: np.ndarray) -> list[VADEvent]:
        x = check_pcm(pcm, self.sample_rate, self.sample_rate, "EnergyVAD.push")
        buf = np.concatenate([self._pending, x]) if len(self._pending) else x
        n = len(buf) // self.frame
        events: list[VADEvent] = []
        if n:
            frames = buf[: n * self.frame].reshape(n, self.frame).astype(np.float64)
            db = 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1e-12)
            lo = self.threshold_dbfs - self.hysteresis_db
            for level in db:
                decision = True if level >= self.threshold_dbfs else (False if level < lo else None)
                # a soft "probability": 0 at the silence level, 1 at the speech level
                self.speech_probability = float(np.clip((level - lo) / max(self.hysteresis_db, 1e-6), 0.0, 1.0))
                ev = self._seg.step(self._done, self._done + self.frame, decision)
                self._done += self.frame
                if ev is not None:
                    events.append(ev)
        self._pending = buf[n * self.frame :].copy()
        return events
