"""What the scripted participant says: deterministic speech synthesized locally, float32 mono at 16 kHz.

Why here: the demo, the e2e tests and the benchmarks must speak the same audio run after run (zero-noise
Piper, or espeak-ng for a voice clearly unlike the replica's), so a measured difference is the server's.
"""

from __future__ import annotations

import functools

import numpy as np

SPEECH_RATE = 16_000
PAD_S = 0.3  # silence before and after each utterance, as a person leaves it


@functools.lru_cache(maxsize=1)
def _piper_voice():
    from piper import PiperVoice

    from cvi_lab import assets

    return PiperVoice.load(str(assets.locate("piper_joe_onnx")), str(assets.locate("piper_joe_json")))


@functools.lru_cache(maxsize=256)
def _speak_cached(text: str, voice: str, length_scale: float) -> np.ndarray:
    from cvi_lab.audio import resample

    if voice == "espeak":
        from cvi_lab.lab.dataset import VoiceSpec, _espeak

        return _espeak(text, VoiceSpec()).astype(np.float32)
    from piper import SynthesisConfig

    syn = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=length_scale)  # deterministic
    parts = [(c.audio_float_array, c.sample_rate) for c in _piper_voice().synthesize(text, syn)]
    audio = np.concatenate([resample(a, r, SPEECH_RATE) for a, r in parts]) * 0.5
    return audio.astype(np.float32)


def speak(text: str, voice: str = "piper", length_scale: float = 1.0) -> np.ndarray:
    """`text` spoken at SPEECH_RATE, with PAD_S of silence before and after.

    voice "piper": the shipped Piper voice with zero noise (deterministic audio; `length_scale` != 1 makes it a
    different-sounding speaker than the replica); "espeak": espeak-ng (en-us+f3), a clearly different voice."""
    pad = np.zeros(int(PAD_S * SPEECH_RATE), np.float32)
    return np.concatenate([pad, _speak_cached(text, voice, float(length_scale)), pad])
