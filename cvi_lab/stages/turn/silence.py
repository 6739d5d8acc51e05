"""Silence-timeout end-of-turn: the baseline (what most voice bots do): done after `timeout_s` of silence."""

from __future__ import annotations

import numpy as np

from cvi_lab.stages.base import ASR_SAMPLE_RATE, StageInputError, TurnDetector, check_pcm


class SilenceTurn(TurnDetector):
    """1.0 when the trailing silence reached `timeout_s`, else 0.0. The engine reads `threshold`."""

    sample_rate = ASR_SAMPLE_RATE
    languages = ("*",)

    def __init__(self, timeout_s: float = 0.7, threshold: float = 0.5) -> None:
        if timeout_s < 0:
            raise StageInputError(f"SilenceTurn: timeout_s {timeout_s} is not accepted; use seconds >= 0")
        self.timeout_s = float(timeout_s)
        self.threshold = float(threshold)

    async def warmup(self) -> None:
        return None

    async def predict(self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE, silence_s: float = 0.0) -> float:
        check_pcm(audio, sample_rate, self.sample_rate, "SilenceTurn.predict")
        if silence_s < 0:
            raise StageInputError(f"SilenceTurn.predict: silence_s {silence_s} is not accepted; use seconds >= 0")
        return 1.0 if silence_s >= self.timeout_s else 0.0
