"""Frame decisions -> speech_start / speech_end events, shared by every VAD backend.

Why a separate piece: the backends differ only in how they score a frame (a neural probability, an energy
level); the hysteresis, the minimum speech / silence durations, the padding and the exact sample bookkeeping
are the same, and are where off-by-one timestamp bugs live, so they are written (and tested) once.
"""

from __future__ import annotations

from cvi_lab.stages.base import VADEvent


class Segmenter:
    """Turns per-frame decisions into boundary events with sample-accurate timestamps.

    Each frame is `[start, end)` in samples since the stream began and is judged `True` (speech),
    `False` (silence) or `None` (undecided, e.g. between the two hysteresis thresholds: keeps the state).
    - speech_start fires once speech has lasted `min_speech` samples; its `sample` is where that speech run
      began, minus `pad` (never before 0 or the previous end).
    - speech_end fires once silence has lasted `min_silence` samples (so the engine can act at once); its
      `sample` is where the silence began plus `pad` (not where the timer fired).
    """

    def __init__(self, sample_rate: int, min_speech: int, min_silence: int, pad: int) -> None:
        self.sample_rate = sample_rate
        self.min_speech = max(0, int(min_speech))
        self.min_silence = max(0, int(min_silence))
        self.pad = max(0, int(pad))
        self.reset()

    def reset(self) -> None:
        self.speaking = False
        self._run_start: int | None = None  # first sample of the current candidate speech run
        self._silence_start: int | None = None  # first sample of the current silence inside speech
        self._last_end = 0

    @property
    def pending_end(self) -> int | None:
        """While speaking and silence has begun: the sample the coming speech_end will carry if the silence
        lasts (None otherwise). The engine starts transcribing there instead of waiting out `min_silence`."""
        if not self.speaking or self._silence_start is None:
            return None
        return self._silence_start + self.pad

    def step(self, start: int, end: int, speech: bool | None) -> VADEvent | None:
        if not self.speaking:
            if speech:
                if self._run_start is None:
                    self._run_start = start
                if end - self._run_start >= self.min_speech:
                    self.speaking = True
                    self._silence_start = None
                    at = max(0, self._last_end, self._run_start - self.pad)
                    self._run_start = None
                    return VADEvent("speech_start", at, self.sample_rate)
            else:
                self._run_start = None
            return None
        if speech:
            self._silence_start = None
        elif speech is False:
            if self._silence_start is None:
                self._silence_start = start
            if end - self._silence_start >= self.min_silence:
                at = min(end, self._silence_start + self.pad)
                self.speaking = False
                self._silence_start = None
                self._last_end = at
                return VADEvent("speech_end", at, self.sample_rate)
        return None
