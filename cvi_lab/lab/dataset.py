"""Scripted participants: multi-turn scripts as text, spoken once by a TTS voice unlike the replica's.

Why one format for both kinds: a dataset is a JSONL file with one user utterance per line. A line with an
`audio` field is a real recording (a WAV next to the JSONL); a line without one is synthesized by the
participant voice (espeak-ng, never the replica's Piper voice, so the replica's ASR is not hearing its own
timbre). Synthesized WAVs are cached under `assets.cache_dir()/datasets/<content hash>/`, the hash covering
the texts, the voice and the generator version, so a changed line or voice never reuses stale audio.

Line fields (see experiments/README.md "Dataset format"):
  script (str, required)     conversation id; lines of one script are played in `turn` order
  turn (int, required)       0-based position in the script
  text (str, required)       what the participant says (the reference for ASR WER)
  persona (str)              participant persona label (grouping in reports)
  context (str)              conversational_context given to the replica for this script (first line wins)
  audio (str)                WAV path relative to the JSONL file: a real recording, used as is
  barge_in_after_s (float)   start this utterance while the replica is still answering the previous turn,
                             this many seconds after the replica started speaking (barge-in test)
  language (str)             full language name of the call, e.g. "english" (first line wins)
  voice (str)                espeak-ng voice (with variant) speaking this script's synthesized lines, e.g.
                             "en-gb+m3"; declared on any line of the script (first wins), else dataset.voice
  phenomenon, pause_ms, sound, expect   scenario fields: what the line tests and what should happen
                             (cvi_lab/lab/scenarios.py)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from cvi_lab import assets
from cvi_lab.audio import load_audio, write_wav
from cvi_lab.lab import scenarios as SC

SAMPLE_RATE = 16_000
GENERATOR_VERSION = "espeak-ng-cli/1"
REPLICA_VOICES = ("piper", "joe", "en_us-joe-medium")  # the replica's voice: never a participant's
_KNOWN_FIELDS = {"script", "turn", "text", "persona", "context", "audio", "barge_in_after_s", "language",
                 "phenomenon", "pause_ms", "sound", "expect", "voice"}
SHIPPED = Path(__file__).resolve().parent / "datasets"  # package data: there in an installed wheel too


class DatasetError(ValueError):
    """A dataset file or recording is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class VoiceSpec:
    """The participant voice (espeak-ng). Part of the cache key."""

    voice: str = "en-us+f3"
    speed_wpm: int = 160
    pitch: int = 50

    def for_line(self, name: str | None) -> "VoiceSpec":
        """This spec with a script's own voice name (its rate and pitch stay the dataset's)."""
        return self if name is None else replace(self, voice=name)

    def key(self) -> dict[str, Any]:
        return {"generator": GENERATOR_VERSION, "espeak": _espeak_version(), "voice": self.voice,
                "speed_wpm": self.speed_wpm, "pitch": self.pitch}


@dataclass(frozen=True)
class Utterance:
    script: str
    turn: int
    text: str
    persona: str = ""
    context: str | None = None
    audio: Path | None = None  # a real recording; None = synthesized
    barge_in_after_s: float | None = None
    language: str | None = None
    phenomenon: str = "plain"
    pause_ms: int | None = None  # silence at each "..." of the text (synthesized lines)
    sound: str | None = None  # a non-speech line (scenarios.SOUNDS)
    expect: SC.Expect = field(default_factory=SC.Expect)
    voice: str | None = None  # the script's espeak-ng voice (synthesized lines); None = dataset.voice

    @property
    def uid(self) -> str:
        return f"{self.script}__{self.turn:02d}"

    def canonical(self) -> dict[str, Any]:
        return {"script": self.script, "turn": self.turn, "text": self.text, "persona": self.persona,
                "context": self.context, "barge_in_after_s": self.barge_in_after_s, "language": self.language,
                "audio": self.audio.name if self.audio else None,
                **({"pause_ms": self.pause_ms} if self.pause_ms is not None else {}),
                **({"sound": self.sound} if self.sound is not None else {}),
                **({"voice": self.voice} if self.voice is not None else {})}  # what changes the audio


@dataclass
class Script:
    id: str
    persona: str
    utterances: list[Utterance]
    context: str | None = None
    language: str | None = None


@dataclass
class Dataset:
    """A selection of scripts with their audio at 16 kHz, ready to be spoken into a call."""

    name: str
    path: Path
    scripts: list[Script]
    hash: str
    voice: VoiceSpec
    audio_files: dict[str, Path] = field(default_factory=dict)  # uid -> 16 kHz WAV

    @property
    def utterances(self) -> list[Utterance]:
        return [u for s in self.scripts for u in s.utterances]

    def audio(self, utt: Utterance) -> np.ndarray:
        """The utterance's speech as float32 mono 16 kHz (no added silence)."""
        pcm, _ = load_audio(self.audio_files[utt.uid], SAMPLE_RATE)
        return pcm

    @property
    def kind(self) -> str:
        recorded = sum(1 for u in self.utterances if u.audio is not None)
        return "recorded" if recorded == len(self.utterances) else "synthesized" if recorded == 0 else "mixed"


def resolve_path(path: str | os.PathLike) -> Path:
    """Relative dataset paths are read from the working directory, else from the shipped datasets."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    for base in (Path.cwd(), SHIPPED):
        if (base / p).exists():
            return (base / p).resolve()
    return (Path.cwd() / p).resolve()


def read_utterances(path: str | os.PathLike) -> list[Utterance]:
    """Parse and validate a dataset JSONL file."""
    p = resolve_path(path)
    if not p.is_file():
        raise DatasetError(
            f"dataset file {p} does not exist; give dataset.path=<file.jsonl> "
            f"(shipped, relative to {SHIPPED}: {', '.join(sorted(str(f.relative_to(SHIPPED)) for f in SHIPPED.rglob('*.jsonl')))}; format: experiments/README.md)"
        )
    out: list[Utterance] = []
    seen: set[tuple[str, int]] = set()
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{p}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: each line must be a JSON object")
        unknown = set(row) - _KNOWN_FIELDS
        if unknown:
            raise DatasetError(f"{where}: unknown field(s) {sorted(unknown)}; accepted: {sorted(_KNOWN_FIELDS)}")
        for key, typ in (("script", str), ("turn", int), ("text", str)):
            if not isinstance(row.get(key), typ) or isinstance(row.get(key), bool):
                raise DatasetError(f"{where}: field '{key}' is required and must be a {typ.__name__}")
        if not row["text"].strip() and row.get("sound") is None:
            raise DatasetError(f"{where}: 'text' is empty (only a 'sound' line may say nothing)")
        try:
            SC.check_fields(row)
        except SC.ScenarioError as exc:
            raise DatasetError(f"{where}: {exc}") from None
        key = (row["script"], row["turn"])
        if key in seen:
            raise DatasetError(f"{where}: script {row['script']!r} turn {row['turn']} appears twice")
        seen.add(key)
        audio = None
        if row.get("audio"):
            audio = (p.parent / row["audio"]).resolve()
            if not audio.is_file():
                raise DatasetError(f"{where}: recording {audio} does not exist (paths are relative to {p.parent})")
        line_voice = row.get("voice")
        if line_voice is not None and (not isinstance(line_voice, str) or not line_voice.strip()):
            raise DatasetError(f"{where}: 'voice' must be an espeak-ng voice name such as en-gb+m3")
        if isinstance(line_voice, str) and _is_replica_voice(line_voice):
            raise DatasetError(f"{where}: voice {line_voice!r} is the replica's voice; "
                               "use an espeak-ng voice such as en-us+f3 or en-gb+m3")
        barge = row.get("barge_in_after_s")
        if barge is not None and (not isinstance(barge, (int, float)) or barge < 0):
            raise DatasetError(f"{where}: 'barge_in_after_s' must be a number >= 0")
        out.append(Utterance(script=row["script"], turn=row["turn"], text=row["text"].strip(),
                             persona=str(row.get("persona") or ""), context=row.get("context"), audio=audio,
                             barge_in_after_s=None if barge is None else float(barge), language=row.get("language"),
                             phenomenon=row.get("phenomenon") or "plain", pause_ms=row.get("pause_ms"),
                             sound=row.get("sound"), expect=SC.parse_expect(row.get("expect")),
                             voice=line_voice.strip() if isinstance(line_voice, str) else None))
    if not out:
        raise DatasetError(f"{p}: no utterances")
    return _script_voices(out)


def _script_voices(utterances: list[Utterance]) -> list[Utterance]:
    """One voice per script: the first line declaring one speaks for all its synthesized lines."""
    first: dict[str, str] = {}
    for u in utterances:
        if u.voice is not None:
            first.setdefault(u.script, u.voice)
    return [replace(u, voice=first.get(u.script)) if u.audio is None else u for u in utterances]


def _is_replica_voice(name: str) -> bool:
    return name.split("+")[0].lower() in REPLICA_VOICES


def group_scripts(utterances: Iterable[Utterance]) -> list[Script]:
    """Scripts in first-appearance order, turns sorted."""
    by_id: dict[str, list[Utterance]] = {}
    for u in utterances:
        by_id.setdefault(u.script, []).append(u)
    scripts = []
    for sid, utts in by_id.items():
        utts.sort(key=lambda u: u.turn)
        first = utts[0]
        scripts.append(Script(id=sid, persona=first.persona, utterances=utts,
                              context=next((u.context for u in utts if u.context), None),
                              language=next((u.language for u in utts if u.language), None)))
    return scripts


def select(scripts: list[Script], ids: Iterable[str] | None = None, max_scripts: int | None = None,
           max_turns: int | None = None) -> list[Script]:
    """Subset by script ids (in the given order), then the first `max_scripts`, each cut to `max_turns`."""
    if ids:
        known = {s.id: s for s in scripts}
        missing = [i for i in ids if i not in known]
        if missing:
            raise DatasetError(f"unknown script id(s) {missing}; known: {', '.join(known)}")
        scripts = [known[i] for i in ids]
    if max_scripts is not None:
        scripts = scripts[: int(max_scripts)]
    if max_turns is not None:
        scripts = [Script(s.id, s.persona, s.utterances[: int(max_turns)], s.context, s.language) for s in scripts]
    return scripts


def content_hash(utterances: Iterable[Utterance], voice: VoiceSpec) -> str:
    """Hash of what the participant says and how: texts, recordings' bytes, the voice and generator."""
    h = hashlib.sha256()
    h.update(json.dumps(voice.key(), sort_keys=True).encode())
    for u in utterances:
        h.update(json.dumps(u.canonical(), sort_keys=True).encode())
        if u.audio is not None:
            h.update(_file_sha256(u.audio).encode())
    return h.hexdigest()[:16]


def load_dataset(cfg: Mapping[str, Any]) -> Dataset:
    """Read, select and (once, cached) synthesize the dataset described by the `dataset` config node."""
    voice = VoiceSpec(**dict(cfg.get("voice") or {}))
    if _is_replica_voice(voice.voice):
        raise DatasetError(f"participant voice {voice.voice!r} is the replica's voice; use an espeak-ng voice such as en-us+f3 or en-gb")
    all_utts = read_utterances(cfg["path"])
    scripts = select(group_scripts(all_utts), cfg.get("scripts"), cfg.get("max_scripts"), cfg.get("max_turns"))
    if not scripts:
        raise DatasetError("the dataset selection is empty; check dataset.scripts / max_scripts / max_turns")
    path = resolve_path(cfg["path"])
    files = synthesize(all_utts, voice)
    selected = [u for s in scripts for u in s.utterances]
    return Dataset(name=str(cfg.get("name") or path.parent.name), path=path, scripts=scripts,
                   hash=content_hash(selected, voice), voice=voice,
                   audio_files={u.uid: files[u.uid] for u in selected})


def synthesize(utterances: list[Utterance], voice: VoiceSpec, progress: bool = True) -> dict[str, Path]:
    """uid -> 16 kHz WAV. Recordings are resampled into the cache too; synthesized ones are made once."""
    cache = assets.cache_dir() / "datasets" / content_hash(utterances, voice)
    cache.mkdir(parents=True, exist_ok=True)
    todo = [u for u in utterances if not (cache / f"{u.uid}.wav").exists()]
    if todo:
        from tqdm import tqdm

        for u in tqdm(todo, desc=f"participant audio -> {cache}", unit="utt", disable=not progress):
            pcm = load_audio(u.audio, SAMPLE_RATE)[0] if u.audio is not None else \
                SC.render(u.text, u.pause_ms, u.sound, u.uid,
                          lambda text, v=voice.for_line(u.voice): _espeak(text, v))
            fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-", suffix=".wav")
            os.close(fd)
            write_wav(tmp, pcm, SAMPLE_RATE)
            os.replace(tmp, cache / f"{u.uid}.wav")
        (cache / "manifest.json").write_text(json.dumps(
            {"voice": voice.key(), "utterances": [u.canonical() for u in utterances]}, indent=1))
    return {u.uid: cache / f"{u.uid}.wav" for u in utterances}


def _espeak(text: str, voice: VoiceSpec) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DatasetError("espeak-ng is not installed (it speaks the scripted participants); "
                           "install it with: apt-get install espeak-ng, or give recordings (experiments/README.md)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "u.wav"
        proc = subprocess.run([exe, "-v", voice.voice, "-s", str(voice.speed_wpm), "-p", str(voice.pitch),
                               "-w", str(out), "--stdin"], input=text.encode(), capture_output=True, timeout=60)
        if proc.returncode != 0 or not out.exists():
            raise DatasetError(f"espeak-ng failed for voice {voice.voice!r}: {proc.stderr.decode().strip()}; "
                               "list voices with: espeak-ng --voices=en")
        pcm, _ = load_audio(out, SAMPLE_RATE)
    return pcm


_ESPEAK_VERSION: str | None = None


def _espeak_version() -> str:
    global _ESPEAK_VERSION
    if _ESPEAK_VERSION is None:
        exe = shutil.which("espeak-ng")
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout if exe else ""
            m = re.search(r"text-to-speech:\s*(\S+)", out)
            _ESPEAK_VERSION = m.group(1) if m else ("absent" if not exe else "unknown")
        except Exception:  # noqa: BLE001 - version is only part of a cache key
            _ESPEAK_VERSION = "unknown"
    return _ESPEAK_VERSION


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
