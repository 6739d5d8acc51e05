"""Smart Turn v3 end-of-turn model: the ONNX file shipped in the `pipecat-ai` wheel, run with onnxruntime.

The model is a Whisper-tiny encoder with a classifier head: input `input_features` (batch, 80, 800), the
Whisper log-mel of the LAST 8 s of the turn at 16 kHz (shorter turns zero-padded at the front, as pipecat
does), output `logits` (batch, 1), which in the shipped graph is already a sigmoid probability. We compute
the features in numpy (no torch/transformers import on the hot path), bit-for-bit the recipe of
`transformers.WhisperFeatureExtractor(chunk_length=8)` with waveform normalisation; pipecat is not imported.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from cvi_lab import assets
from cvi_lab.stages.base import (
    ASR_SAMPLE_RATE,
    ModelMissingError,
    StageInputError,
    TurnDetector,
    check_pcm,
    run_blocking,
)

N_FFT, HOP, N_MELS = 400, 160, 80


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (what Whisper uses): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    mel = 3.0 * f / 200.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) * (27.0 / np.log(6.4)), mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), 200.0 * m / 3.0)


def mel_filters(sample_rate: int = ASR_SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Whisper's mel filterbank, shape (n_fft // 2 + 1, n_mels): Slaney scale, Slaney area normalisation."""
    pts = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2.0), n_mels + 2))
    fft_freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    slopes = pts[None, :] - fft_freqs[:, None]
    diff = np.diff(pts)
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    return fb * (2.0 / (pts[2 : n_mels + 2] - pts[:n_mels]))[None, :]


_FILTERS = mel_filters()
_WINDOW = np.hanning(N_FFT + 1)[:-1]  # periodic Hann, as torch.hann_window


def whisper_log_mel(audio: np.ndarray, n_samples: int, normalize: bool = True) -> np.ndarray:
    """Whisper log-mel (80, n_samples // 160) of exactly `n_samples` of 16 kHz audio (zero-padded at the end)."""
    x = np.asarray(audio, dtype=np.float32)[:n_samples]
    if len(x) < n_samples:
        x = np.pad(x, (0, n_samples - len(x)))
    if normalize:  # zero-mean unit-variance waveform, as WhisperFeatureExtractor(do_normalize=True)
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), (N_FFT // 2, N_FFT // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2  # (frames, bins)
    log_spec = np.log10(np.maximum(power @ _FILTERS, 1e-10)).T[:, :-1]  # (mels, frames); drop the last frame
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


class SmartTurnV3(TurnDetector):
    """P(turn complete) from the tone and rhythm of the user's last 8 s. Settings mirror
    `conf/turn/smart_turn_v3.yaml`; the engine reads `threshold` (complete when probability >= threshold)."""

    sample_rate = ASR_SAMPLE_RATE
    languages = ("*",)  # trained on 23 languages; works on prosody, not words

    def __init__(
        self,
        threshold: float = 0.5,
        max_seconds: float = 8.0,
        cpu_threads: int = 1,
        model_path: str | None = None,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise StageInputError(f"SmartTurnV3: threshold {threshold} is not accepted; use a value in [0, 1]")
        self.threshold = float(threshold)
        self.max_samples = int(round(max_seconds * self.sample_rate))
        self.cpu_threads = int(cpu_threads)
        self.model_path = model_path
        self._session = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                path = Path(self.model_path) if self.model_path else assets.locate("smart_turn_v3_onnx")
                if not path.is_file():
                    raise ModelMissingError(
                        f"SmartTurnV3: model file {path} does not exist; leave model_path unset to use "
                        "smart-turn-v3.2-cpu.onnx shipped in pipecat-ai (pip install --no-deps pipecat-ai)"
                    )
                so = ort.SessionOptions()
                so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                so.inter_op_num_threads = 1
                so.intra_op_num_threads = self.cpu_threads
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                self._session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
                self._input = self._session.get_inputs()[0].name
        return self._session

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(80, 800) features of the last `max_seconds` of the turn, zero-padded at the front."""
        x = audio[-self.max_samples :]
        if len(x) < self.max_samples:
            x = np.pad(x, (self.max_samples - len(x), 0))
        return whisper_log_mel(x, self.max_samples)

    def predict_sync(self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE) -> float:
        x = check_pcm(audio, sample_rate, self.sample_rate, "SmartTurnV3.predict")
        if len(x) == 0:
            raise StageInputError("SmartTurnV3.predict: audio is empty; pass the current user turn (16 kHz mono)")
        session = self._load()
        (prob,) = session.run(None, {self._input: self.features(x)[None]})
        return float(np.clip(prob.reshape(-1)[0], 0.0, 1.0))

    async def warmup(self) -> None:
        await run_blocking(self.predict_sync, np.zeros(self.sample_rate // 2, np.float32))

    async def predict(self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE, silence_s: float = 0.0) -> float:
        """`silence_s` is not used: the model hears the trailing silence in the audio itself."""
        return await run_blocking(self.predict_sync, audio, sample_rate)
