"""Silero VAD v5, run from the ONNX file shipped in the `silero-vad` pip package with onnxruntime.

Why ONNX and not `import silero_vad`: the package sets torch to one thread process-wide on import, and its
JIT model is ~2.4x slower than the same network in onnxruntime. The network scores 512-sample windows
(32 ms at 16 kHz) with 64 samples of left context and a recurrent state; we keep both, so frames of any
length can be pushed and the sample counter stays exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvi_lab import assets
from cvi_lab.stages.base import ASR_SAMPLE_RATE, VAD, ModelMissingError, StageInputError, VADEvent, check_pcm
from cvi_lab.stages.vad.segmenter import Segmenter

WINDOW = 512
CONTEXT = 64


class SileroVAD(VAD):
    """Streaming Silero VAD. Settings mirror `cvi_lab/conf/vad/silero.yaml`.

    threshold: a window with probability >= threshold is speech; < threshold - 0.15 (`neg_threshold`) is
    silence; in between keeps the current state (silero's own hysteresis).
    min_silence_ms: silence needed before speech_end fires (the engine starts ASR then).
    min_speech_ms: speech needed before speech_start fires (ignores clicks).
    speech_pad_ms: widen each segment by this much on both sides."""

    sample_rate = ASR_SAMPLE_RATE

    def __init__(
        self,
        threshold: float = 0.5,
        neg_threshold: float | None = None,
        min_silence_ms: float = 250,
        min_speech_ms: float = 64,
        speech_pad_ms: float = 30,
        model_path: str | None = None,
        cpu_threads: int = 1,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise StageInputError(f"SileroVAD: threshold {threshold} is not accepted; use a value in (0, 1)")
        self.threshold = float(threshold)
        self.neg_threshold = float(neg_threshold) if neg_threshold is not None else max(0.01, threshold - 0.15)
        self.model_path = model_path
        self.cpu_threads = int(cpu_threads)
        sr = self.sample_rate
        self._seg = Segmenter(sr, sr * min_speech_ms / 1000, sr * min_silence_ms / 1000, sr * speech_pad_ms / 1000)
        self._session = None
        self.reset()

    # ------------------------------------------------------------ model
    def _load(self):
        if self._session is None:
            import onnxruntime as ort

            path = Path(self.model_path) if self.model_path else assets.locate("silero_vad_onnx")
            if not path.is_file():
                raise ModelMissingError(
                    f"SileroVAD: model file {path} does not exist; leave model_path unset to use the one shipped "
                    "in the silero-vad pip package"
                )
            opts = ort.SessionOptions()
            opts.inter_op_num_threads = 1
            opts.intra_op_num_threads = self.cpu_threads
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
            self._sr = np.array(self.sample_rate, dtype=np.int64)
        return self._session

    async def warmup(self) -> None:
        self._load()
        self._score(np.zeros(WINDOW, dtype=np.float32))
        self.reset()

    def _score(self, window: np.ndarray) -> float:
        x = np.concatenate([self._context, window])[None, :]
        out, self._state = self._load().run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = window[-CONTEXT:]
        return float(out[0, 0])

    # ------------------------------------------------------------ streaming
    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._done = 0  # samples scored so far
        self._seg.reset()
        self.speech_probability = 0.0

    @property
    def speaking(self) -> bool:
        return self._seg.speaking

    @property
    def pending_end(self) -> int | None:
        return self._seg.pending_end

    @property
    def samples_seen(self) -> int:
        """Samples pushed since the last reset (scored or still pending)."""
        return self._done + len(self._pending)

    def push(self, pcm: np.ndarray) -> list[VADEvent]:
        x = check_pcm(pcm, self.sample_rate, self.sample_rate, "SileroVAD.push")
        buf = np.concatenate([self._pending, x]) if len(self._pending) else x
        events: list[VADEvent] = []
        n = len(buf) // WINDOW
        for i in range(n):
            win = np.ascontiguousarray(buf[i * WINDOW : (i + 1) * WINDOW], dtype=np.float32)
            p = self._score(win)
            self.speech_probability = p
            decision = True if p >= self.threshold else (False if p < self.neg_threshold else None)
            ev = self._seg.step(self._done, self._done + WINDOW, decision)
            self._done += WINDOW
            if ev is not None:
                events.append(ev)
        self._pending = buf[n * WINDOW :].copy()
        return events
