"""CMU PocketSphinx (en-US acoustic model + LM shipped in the pip package): the classic HMM baseline.

Fast to load and light on memory, far less accurate than Whisper; it is here to measure that gap.
Near-silent audio is answered with an empty transcript (the decoder otherwise guesses a word).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from cvi_lab import assets
from cvi_lab.audio import to_int16
from cvi_lab.stages.asr.faster_whisper import check_language, rms_dbfs
from cvi_lab.stages.base import ASR, ASR_SAMPLE_RATE, ModelMissingError, StageInputError, Transcript, check_pcm, run_blocking


class PocketSphinxASR(ASR):
    """Settings mirror `cvi_lab/conf/asr/pocketsphinx_en.yaml`."""

    sample_rate = ASR_SAMPLE_RATE
    languages = ("en",)

    def __init__(self, silence_dbfs: float = -50.0, model_dir: str | None = None, beam: float | None = None) -> None:
        self.silence_dbfs = float(silence_dbfs)
        self.model_dir = model_dir
        self.beam = beam
        self._decoder = None
        self._lock = threading.Lock()

    def _paths(self) -> tuple[Path, Path, Path]:
        hmm = Path(self.model_dir) if self.model_dir else assets.locate("pocketsphinx_en_us").parent
        lm, dic = hmm.parent / "en-us.lm.bin", hmm.parent / "cmudict-en-us.dict"
        for p in (hmm / "mdef", lm, dic):
            if not p.exists():
                raise ModelMissingError(
                    f"PocketSphinxASR: model file {p} does not exist; leave model_dir unset to use the en-US "
                    "model shipped in the pocketsphinx pip package"
                )
        return hmm, lm, dic

    def _load(self):
        if self._decoder is None:
            from pocketsphinx import Decoder

            hmm, lm, dic = self._paths()
            kw = {"beam": self.beam} if self.beam is not None else {}
            self._decoder = Decoder(hmm=str(hmm), lm=str(lm), dict=str(dic), loglevel="FATAL", **kw)
        return self._decoder

    def transcribe_sync(self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE, language: str | None = None) -> Transcript:
        x = check_pcm(audio, sample_rate, self.sample_rate, "PocketSphinxASR.transcribe")
        if len(x) == 0:
            raise StageInputError("PocketSphinxASR.transcribe: audio is empty; pass one utterance of 16 kHz mono PCM")
        check_language(language, self.languages, "PocketSphinxASR")
        with self._lock:  # one decoder, one utterance at a time
            dec = self._load()
            if rms_dbfs(x) < self.silence_dbfs:
                return Transcript("", "en", 1.0)
            dec.start_utt()
            dec.process_raw(to_int16(x).tobytes(), no_search=False, full_utt=True)
            dec.end_utt()
            hyp = dec.hyp()
        return Transcript(hyp.hypstr.strip() if hyp else "", "en", 1.0)

    async def warmup(self) -> None:
        await run_blocking(self.transcribe_sync, np.full(self.sample_rate // 4, 0.01, np.float32))

    async def transcribe(self, audio: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE, language: str | None = None) -> Transcript:
        return await run_blocking(self.transcribe_sync, audio, sample_rate, language)
