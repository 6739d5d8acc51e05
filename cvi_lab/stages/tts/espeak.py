"""espeak-ng TTS: formant synthesis for the languages without a Piper voice, with word and phoneme timings.

How: through espeak-ng's C API (ctypes), from the copy of the library that piper-tts already ships
(`piper/espeakbridge.so` links espeak-ng statically and exports its API) with piper's bundled
`espeak-ng-data`: nothing to install beyond pip, works offline. The library is copied once under
`assets.cache_dir()` and loaded from there, so its global state is separate from the copy that Piper's
phonemizer uses in the same process. `library: system` uses Debian's libespeak-ng.so.1 instead.

Why the C API and not the `espeak-ng` CLI: its synth callback gives word and phoneme events with audio
positions (the avatar uses them), and returning 1 from the callback aborts synthesis, so cancellation is
prompt. espeak-ng is not thread-safe: one lock per loaded library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from cvi_lab import assets
from cvi_lab.stages.base import TTS, ModelMissingError, StageInputError, run_blocking
from cvi_lab.media import Timing, TTSChunk
from cvi_lab.stages.tts.style import NEUTRAL_VOICE, VoiceStyle
from cvi_lab.stages.tts.text import CHUNKINGS, check_text, split_text

# espeak_lib.h constants
AUDIO_OUTPUT_SYNCHRONOUS = 2
INIT_PHONEME_EVENTS, INIT_PHONEME_IPA, INIT_DONT_EXIT = 0x0001, 0x0002, 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_SENTENCE, EVENT_END, EVENT_MSG_TERMINATED, EVENT_PHONEME = 0, 1, 2, 5, 6, 7
PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class VoiceInfo:
    name: str  # e.g. "Spanish_(Spain)"
    identifier: str  # file under voices/, e.g. "roa/es"
    languages: list[str]  # e.g. ["es"]


def _piper_library() -> tuple[Path, Path]:
    """(private copy of piper's espeakbridge.so, piper's espeak-ng-data dir)."""
    data = assets.locate("piper_espeak_data").parent
    src = data.parent / "espeakbridge.so"
    if not src.is_file():
        raise ModelMissingError(f"espeak: {src} not found; install piper-tts (it ships espeak-ng) or use library: system")
    st = src.stat()
    key = hashlib.sha256(f"{src}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    dst = assets.cache_dir() / f"libespeak-ng-piper-{key}.so"
    if not dst.is_file():
        tmp = dst.with_suffix(f".tmp{os.getpid()}")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return dst, data


class _Engine:
    """One loaded espeak-ng library (global C state) + a lock; shared by all EspeakTTS using the same library."""

    _engines: dict[str, "_Engine"] = {}
    _engines_lock = threading.Lock()

    @classmethod
    def get(cls, library: str) -> "_Engine":
        with cls._engines_lock:
            if library not in cls._engines:
                cls._engines[library] = cls(library)
            return cls._engines[library]

    def __init__(self, library: str) -> None:
        if library in ("auto", "piper"):
            try:
                lib_path, data = _piper_library()
            except ModelMissingError:
                if library == "piper":
                    raise
                lib_path, data = None, None
            if lib_path is None:
                library = "system"
        if library == "system":
            found = ctypes.util.find_library("espeak-ng")
            if not found:
                raise ModelMissingError("espeak: libespeak-ng not found; install piper-tts (pip) or apt install libespeak-ng1")
            lib_path, data = found, None
        elif library not in ("auto", "piper"):
            lib_path, data = Path(library), None
        try:
            self.lib = lib = ctypes.CDLL(str(lib_path))
        except OSError as exc:
            raise ModelMissingError(
                f"espeak: cannot load the espeak-ng library {lib_path} ({exc}); use library: auto, piper or system"
            ) from exc
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        path = str(data).encode() if data else None
        rate = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, path, INIT_PHONEME_EVENTS | INIT_PHONEME_IPA | INIT_DONT_EXIT
        )
        if rate <= 0:
            raise ModelMissingError(f"espeak: initializing espeak-ng from {lib_path} (data {data}) failed ({rate})")
        self.sample_rate = int(rate)
        self.lock = threading.Lock()
        self._pcm: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        self._stop: threading.Event | None = None
        self._cb = _CALLBACK(self._on_audio)  # keep a reference: the C side holds a raw pointer
        lib.espeak_SetSynthCallback(self._cb)
        self.voices = self._list_voices()

    def _list_voices(self) -> list[VoiceInfo]:
        out, arr, i = [], self.lib.espeak_ListVoices(None), 0
        while arr[i]:
            v = arr[i].contents
            # `languages` = (priority byte, NUL-terminated code) pairs; only the first pair is reliably
            # terminated in the returned structs, and it is the voice's primary language.
            raw = ctypes.string_at(v.languages, 64)
            first = raw[1 : raw.index(b"\0", 1)].decode("utf-8", "replace") if len(raw) > 1 and raw[0] else ""
            out.append(VoiceInfo(v.name.decode("utf-8", "replace"), v.identifier.decode("utf-8", "replace"), [first] if first else []))
            i += 1
        return out

    def resolve(self, voice: str) -> str | None:
        """A language code ("fr-fr"), voice name ("French (France)") or identifier ("roa/fr"), optionally with
        "+variant", -> the identifier espeak_SetVoiceByName accepts; None if unknown."""
        base, plus, variant = voice.strip().partition("+")
        key = base.lower()
        for match in (
            lambda v: key in (lang.lower() for lang in v.languages),
            lambda v: key in (v.name.lower(), v.name.lower().replace(" ", "_"), v.identifier.lower()),
            lambda v: key == v.identifier.lower().rsplit("/", 1)[-1],
        ):
            for v in self.voices:
                if match(v):
                    return v.identifier + (plus + variant if variant else "")
        return None

    def _on_audio(self, wav, n, events) -> int:
        if n > 0 and wav:
            self._pcm.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events and events[i].type != EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type in (EVENT_WORD, EVENT_PHONEME):
                label = e.id.string.decode("utf-8", "replace") if e.type == EVENT_PHONEME else ""
                self._events.append((e.type, e.text_position, e.length, e.audio_position, label))
            i += 1
        return 1 if (self._stop is not None and self._stop.is_set()) else 0

    def set_voice(self, voice: str) -> bool:
        return self.lib.espeak_SetVoiceByName(voice.encode()) == 0

    def synth(self, text: str, voice: str, params: dict[str, int], stop: threading.Event | None):
        """Blocking: PCM int16 and raw events for one piece of text (caller holds no lock)."""
        with self.lock:
            if not self.set_voice(voice):
                raise StageInputError(f"espeak: voice {voice!r} is not accepted")
            for name, value in params.items():
                self.lib.espeak_SetParameter(PARAM[name], int(value), 0)
            self._pcm, self._events, self._stop = [], [], stop
            data = text.encode("utf-8")
            buf = ctypes.create_string_buffer(data)
            err = self.lib.espeak_Synth(buf, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            pcm = np.concatenate(self._pcm) if self._pcm else np.zeros(0, np.int16)
            events, self._pcm, self._events, self._stop = self._events, [], [], None
        if err not in (0,) and not (stop is not None and stop.is_set()):
            raise StageInputError(f"espeak: synthesis failed (error {err}) for text {text[:60]!r}")
        return pcm, events


class EspeakTTS(TTS):
    """Settings mirror `cvi_lab/conf/tts/espeak.yaml`.

    voice: an espeak-ng voice name or language ("en-us", "es", "fr-fr", "de", "pt-br", "Spanish_(Spain)", ...).
    rate: words per minute (espeak default 175); pitch / pitch_range: 0-100; volume: 0-200 (100 = normal).
    word_gap: extra pause between words in units of 10 ms.
    chunking: "sentence" (default: espeak is fast) or "clause".
    library: "auto" (piper's bundled espeak-ng, else the system one) | "piper" | "system" | a path to a .so.
    """

    def __init__(
        self,
        voice: str = "en-us",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        volume: int = 100,
        word_gap: int = 0,
        chunking: str = "sentence",
        min_clause_words: int = 3,
        library: str = "auto",
    ) -> None:
        if chunking not in CHUNKINGS:
            raise StageInputError(f"EspeakTTS: chunking {chunking!r} is not accepted; use one of {', '.join(CHUNKINGS)}")
        if not 80 <= int(rate) <= 450:
            raise StageInputError(f"EspeakTTS: rate {rate} is not accepted; use 80-450 words per minute")
        self.engine = _Engine.get(library)
        self.sample_rate = self.engine.sample_rate
        self.voice = self._check_voice(str(voice))  # the espeak identifier, e.g. "roa/fr"
        self.voice_name = str(voice)
        self.languages = (str(voice).split("+")[0].split("-")[0].lower(),)
        self.params = {"rate": rate, "pitch": pitch, "range": pitch_range, "volume": volume, "wordgap": word_gap}
        self.chunking, self.min_clause_words = chunking, int(min_clause_words)

    def available_voices(self) -> list[str]:
        """Language codes espeak-ng speaks (each usable as `voice`)."""
        return sorted({lang for v in self.engine.voices for lang in v.languages})

    def _check_voice(self, voice: str) -> str:
        ident = self.engine.resolve(voice)
        ok = ident is not None
        if ok:
            with self.engine.lock:
                ok = self.engine.set_voice(ident)
        if not ok:
            langs = self.available_voices()
            common = [c for c in ("en-us", "en-gb", "es", "es-419", "fr-fr", "de", "it", "pt", "pt-br", "nl", "pl", "ru", "ja", "cmn", "hi") if c in langs]
            raise StageInputError(
                f"EspeakTTS: voice {voice!r} is unknown; accepted: an espeak-ng language code, voice name or file, "
                f"e.g. {', '.join(common)} ({len(langs)} languages in all: {', '.join(langs)})"
            )
        return ident

    def styled_params(self, style: VoiceStyle) -> dict[str, int]:
        """The espeak parameters in a style: rate scaled by `speed` (within espeak's 80-450), pitch moved by
        `pitch` within 0-100, pitch range scaled by `variation` (within 0-100)."""
        if style == NEUTRAL_VOICE:
            return self.params
        p = dict(self.params)
        p["rate"] = int(round(min(450, max(80, p["rate"] * style.speed))))
        p["pitch"] = int(round(min(100, max(0, p["pitch"] + style.pitch * 50))))
        p["range"] = int(round(min(100, max(0, p["range"] * style.variation))))
        return p

    def synthesize(self, text: str, stop: threading.Event | None = None,
                   style: VoiceStyle = NEUTRAL_VOICE) -> TTSChunk:
        """Blocking: one piece of text -> one chunk with word and phoneme timings."""
        pcm, events = self.engine.synth(text, self.voice, self.styled_params(style), stop)
        samples = pcm.astype(np.float32) / 32768.0
        total = len(samples) / self.sample_rate
        data = text.encode("utf-8")
        words: list[Timing] = []
        phonemes: list[Timing] = []
        for kind, pos, length, ms, label in events:
            t = min(ms / 1000.0, total)
            if kind == EVENT_WORD:
                # text_position counts characters from 1 (UTF-8 input: espeak counts characters, not bytes)
                word = text[pos - 1 : pos - 1 + length] if pos > 0 else ""
                words.append(Timing(word or data[max(pos - 1, 0) : pos - 1 + length].decode("utf-8", "replace"), t, t))
            else:
                phonemes.append(Timing(label, t, t))
        for seq in (words, phonemes):
            for a, b in zip(seq, seq[1:]):
                a.end = b.start
            if seq:
                seq[-1].end = total
        # a word ends with its last phoneme, not at the next word (pauses after commas are not part of it)
        for w, nxt in zip(words, words[1:] + [None]):
            inside = [p for p in phonemes if w.start <= p.start < (nxt.start if nxt else total) and p.label.strip("_ ")]
            if inside:
                w.end = inside[-1].end
        phonemes = [p for p in phonemes if p.label.strip()]
        ipa = "".join(p.label for p in phonemes)
        return TTSChunk(samples, self.sample_rate, text=text, words=words, phonemes=phonemes, phoneme_string=ipa)

    async def warmup(self) -> None:
        await run_blocking(self.synthesize, "Hi.")

    async def stream(self, text: str) -> AsyncIterator[TTSChunk]:
        """One chunk per sentence (or clause); cancelling aborts the synthesis in progress."""
        async for chunk in self.stream_styled(text, NEUTRAL_VOICE):
            yield chunk

    async def stream_styled(self, text: str, style: VoiceStyle) -> AsyncIterator[TTSChunk]:
        """`stream` in a style (`StyledVoice`): rate, pitch and pitch range follow it."""
        pieces = split_text(check_text(text, "EspeakTTS"), self.chunking, self.min_clause_words)
        stop = threading.Event()
        try:
            for piece in pieces:
                chunk = await run_blocking(self.synthesize, piece, stop, style)
                if len(chunk.samples):
                    yield chunk
        finally:
            stop.set()  # the callback returns 1 on its next buffer: espeak aborts the sentence
