"""Whisper through Hugging Face transformers, for users who bring their own weights (a fine-tune, a distil
model): a local `save_pretrained` directory, or a hub id that is already in the local HF cache.

Never downloads unless `local_files_only: false` is set on purpose: cvi-lab runs offline. Uses the model's
`generate` directly rather than the ASR pipeline so that language detection can return the ISO code and its
probability like the faster-whisper backend does. Slower than CTranslate2 on CPU; here for flexibility.
Note: torch's intra-op thread count is process-wide, so this backend does not change it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from cvi_lab.stages.asr.faster_whisper import check_language, rms_dbfs
from cvi_lab.stages.base import ASR, ASR_SAMPLE_RATE, ModelMissingError, StageInputError, Transcript, check_pcm, run_blocking


class HFWhisperASR(ASR):
    """Settings mirror `cvi_lab/conf/asr/hf_whisper.yaml`. `languages` is known once the model is loaded (warmup)."""

    sample_rate = ASR_SAMPLE_RATE

    def __init__(
        self,
        model: str = "openai/whisper-tiny.en",
        language: str | None = None,
        languages: Sequence[str] | None = None,
        local_files_only: bool = True,
        max_new_tokens: int = 128,
        num_beams: int = 1,
        silence_dbfs: float = -60.0,
    ) -> None:
        self.model = str(model)
        self.language = language
        self.local_files_only = bool(local_files_only)
        self.max_new_tokens = int(max_new_tokens)
        self.num_beams = int(num_beams)
        self.silence_dbfs = float(silence_dbfs)
        self._declared = tuple(languages) if languages is not None else None
        self.languages = self._declared or (("en",) if self.model.endswith(".en") else ("*",))
        self._m = None
        self._lock = threading.Lock()

    def _source(self) -> str:
        path = Path(self.model).expanduser()
        if self.model.startswith(("/", ".", "~")) or path.exists():
            if not (path / "config.json").is_file():
                raise ModelMissingError(
                    f"HFWhisperASR: local model directory {path} does not exist or has no config.json; accepted: "
                    "a directory written by save_pretrained (config.json, weights, tokenizer, "
                    "preprocessor_config.json) or a hub id already in the local Hugging Face cache"
                )
            return str(path)
        return self.model

    def _load(self):
        with self._lock:
            if self._m is None:
                import torch  # noqa: F401  (transformers needs it; imported here so the module stays light)
                from transformers import WhisperForConditionalGeneration, WhisperProcessor

                src = self._source()
                try:
                    processor = WhisperProcessor.from_pretrained(src, local_files_only=self.local_files_only)
                    model = WhisperForConditionalGeneration.from_pretrained(src, local_files_only=self.local_files_only)
                except (OSError, ValueError) as exc:
                    raise ModelMissingError(
                        f"HFWhisperASR: cannot load {self.model!r} offline ({type(exc).__name__}: {str(exc)[:200]}); "
                        "pass a local directory, put the model in the Hugging Face cache yourself, or set "
                        "local_files_only: false to let transformers download it"
                    ) from exc
                model.eval()
                gen = model.generation_config
                lang_to_id = dict(getattr(gen, "lang_to_id", None) or {})
                multilingual = bool(getattr(gen, "is_multilingual", False)) and bool(lang_to_id)
                self._lang_ids = {tok.strip("<|>"): i for tok, i in lang_to_id.items()} if multilingual else {}
                if self._declared is None:
                    self.languages = tuple(self._lang_ids) + ("*",) if multilingual else ("en",)
                self._m = (processor, model)
        return self._m

    def _detect(self, model, feats) -> tuple[str, float]:
        import torch

        start = torch.tensor([[model.generation_config.decoder_start_token_id]])
        logits = model(input_features=feats, decoder_input_ids=start).logits[0, -1]
        codes = list(self._lang_ids)
        probs = torch.softmax(logits[[self._lang_ids[c] for c in codes]], dim=-1)
        best = int(probs.argmax())
        return codes[best], float(probs[best])

    def transcribe_sync(self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE, language: str | None = None) -> Transcript:
        import torch

        x = check_pcm(audio, sample_rate, self.sample_rate, "HFWhisperASR.transcribe")
        if len(x) == 0:
            raise StageInputError("HFWhisperASR.transcribe: audio is empty; pass one utterance of 16 kHz mono PCM")
        processor, model = self._load()
        lang = check_language(language if language is not None else self.language, self.languages, "HFWhisperASR")
        if rms_dbfs(x) < self.silence_dbfs:
            return Transcript("", lang or (None if self._lang_ids else "en"))
        feats = processor.feature_extractor(x, sampling_rate=self.sample_rate, return_tensors="pt").input_features
        prob = 1.0 if lang else None
        kwargs: dict = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams}
        with torch.inference_mode():
            if self._lang_ids:
                if lang is None:
                    lang, prob = self._detect(model, feats)
                kwargs.update(language=lang, task="transcribe")
            ids = model.generate(feats, **kwargs)
        text = processor.tokenizer.batch_decode(ids, skip_special_tokens=True)[0].strip()
        return Transcript(text, lang or "en", prob if prob is not None else 1.0)

    async def warmup(self) -> None:
        tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(self.sample_rate // 2) / self.sample_rate)
        await run_blocking(self.transcribe_sync, tone.astype(np.float32))

    async def transcribe(self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE, language: str | None = None) -> Transcript:
        return await run_blocking(self.transcribe_sync, audio, sample_rate, language)
