"""Smart Turn v3 end-of-turn model: the ONNX file shipped in the `pipecat-ai` wheel, run with onnxruntime.

The model is a Whisper-tiny encoder with a classifier head: input `input_features` (batch, 80, 800), the
Whisper log-mel of the LAST 8 s of the turn at 16 kHz (shorter turns zero-padded at the front, as Smart Turn's
own inference does), output `logits` (batch, 1), which in the shipped graph is already a sigmoid probability.

Features: librosa's STFT and `librosa.filters.mel` (the filterbank Whisper itself ships), with the dtype steps
of `transformers.WhisperFeatureExtractor(chunk_length=8)`'s numpy path, so the model input is bit-for-bit that
extractor's (tests/stages/test_turn_smart_turn.py). Its torch path (float32 STFT, taken when torch imports,
as in Smart Turn's training) differs by up to ~2e-5; pipecat's vendored numpy copy (complex128 STFT, what this
module reproduced before) by one float32 ulp in ~5 % of values. No torch/transformers import on the hot path;
pipecat is not imported.
"""

from __future__ import annotations

import threading
from pathlib import Path

import librosa
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

# (mels, bins), Slaney scale and area norm. float64 as transformers builds its own; Fortran order so the mel
# product below is the same BLAS call as transformers' `mel_filters.T @ spectrogram`.
_FILTERS = np.asfortranarray(librosa.filters.mel(sr=ASR_SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, dtype=np.float64))


def whisper_log_mel(audio: np.ndarray, n_samples: int, normalize: bool = True) -> np.ndarray:
    """Whisper log-mel (80, n_samples // 160) of exactly `n_samples` of 16 kHz audio (zero-padded at the end).

    The dtype steps are the reference's and they decide the last bit: waveform normalised in float32, STFT in
    float64 stored as complex64, power and mel in float64, log10 rounded to float32 before the range floor."""
    x = np.asarray(audio, dtype=np.float32)[:n_samples]
    if len(x) < n_samples:
        x = np.pad(x, (0, n_samples - len(x)))
    if normalize:  # zero-mean unit-variance waveform, as WhisperFeatureExtractor(do_normalize=True)
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    spec = librosa.stft(x.astype(np.float64), n_fft=N_FFT, hop_length=HOP, window="hann", center=True,
                        pad_mode="reflect").astype(np.complex64)
    power = np.abs(spec, dtype=np.float64) ** 2  # (bins, frames)
    log_spec = np.log10(np.maximum(1e-10, _FILTERS @ power)).astype(np.float32)[:, :-1]  # drop the last frame
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


class SmartTurnV3(TurnDetector):
    """P(turn complete) from the tone and rhythm of the user's last 8 s. Settings mirror
    `cvi_lab/conf/turn/smart_turn_v3.yaml`; the engine reads `threshold` (complete when probability >= threshold)."""

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
