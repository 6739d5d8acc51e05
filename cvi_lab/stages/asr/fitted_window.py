"""Whisper on an encoder window fitted to the utterance instead of its fixed 30 s.

Why: Whisper pads every input to 30 s, and on a 2-core CPU the encoder over those 3000 frames is most of the
ASR's time (~560 of ~800 ms for a 2.4 s question with tiny.en here), though a turn lasts a few seconds. The
encoder accepts fewer frames (the trick whisper.cpp exposes as `audio_ctx`): the utterance plus
`pad_s` of padding, rounded up to whole seconds (few distinct shapes, so the kernels' caches hold), encodes
~5x faster and decodes the same words (benchmarks/results/stages.md: the Piper round trip and jfk.flac,
before and after). Audio is padded with zeros before the log-mel, as Whisper pads.

Greedy or beam decoding without timestamps, one segment, Whisper's no-speech gate as faster-whisper applies
it; longer utterances, an initial prompt or hotwords use faster-whisper's own `transcribe`.
"""

from __future__ import annotations

import math

import numpy as np

SAMPLES_PER_FRAME = 160  # 10 ms hop at 16 kHz
FULL_WINDOW = 3000  # frames: Whisper's 30 s


def fitted_frames(n_samples: int, pad_s: float) -> int:
    """Encoder frames for an utterance of `n_samples`: its length + `pad_s`, rounded up to whole seconds."""
    seconds = math.ceil(n_samples / 16_000 + pad_s)
    return min(FULL_WINDOW, max(1, seconds) * 100)


def transcribe_fitted(model, audio: np.ndarray, language: str | None, beam_size: int, pad_s: float,
                      no_speech_threshold: float | None, log_prob_threshold: float | None) -> tuple[str, str, float]:
    """(text, language, language probability) of one utterance with faster-whisper's `WhisperModel` parts."""
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer

    frames = fitted_frames(len(audio), pad_s)
    padded = np.pad(audio, (0, max(0, frames * SAMPLES_PER_FRAME - len(audio))))
    features = model.feature_extractor(padded)[:, :frames]
    encoded = model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], np.float32)))
    probability = 1.0
    if language is None:  # multilingual model, no language given: detect it on the same frames
        (top, probability), *_ = model.model.detect_language(encoded)[0]
        language = top[2:-2]
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    result = model.model.generate(encoded, [prompt], beam_size=beam_size, return_scores=True,
                                  return_no_speech_prob=True, suppress_blank=True, suppress_tokens=[-1],
                                  max_length=448 - len(prompt))[0]
    ids = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
    avg_logprob = result.scores[0]
    if (no_speech_threshold is not None and result.no_speech_prob > no_speech_threshold
            and (log_prob_threshold is None or avg_logprob < log_prob_threshold)):
        ids = []  # Whisper's gate: probably no speech, and not decoded with confidence
    return tokenizer.decode(ids).strip(), language, float(probability)
