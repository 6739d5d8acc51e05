"""GGUF → cached safetensors, once; safetensors → cached CTranslate2, once.

Why: transformers can read a GGUF checkpoint (`gguf_file=`), but it dequantizes every tensor on each load
(~18 s for SmolLM2-135M on 2 cores). We pay that once, save the dequantized model + tokenizer (with the chat
template from the GGUF metadata) under `assets.cache_dir()`, and later loads take well under a second.
The cache key is the GGUF's name, size and a hash of its head and tail, so a different file never reuses a
stale conversion; the write is atomic (temp dir + rename), so an interrupted conversion leaves nothing
half-written behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from cvi_lab import assets
from cvi_lab.stages.base import ModelMissingError

log = logging.getLogger(__name__)

_SAMPLE = 1 << 20  # bytes hashed from each end of the file: cheap, and enough to tell files apart


def gguf_key(path: Path) -> str:
    """Short key of a GGUF file from its name, size, and first/last MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(f"{path.name}:{size}".encode())
    with open(path, "rb") as f:
        h.update(f.read(_SAMPLE))
        f.seek(max(0, size - _SAMPLE))
        h.update(f.read(_SAMPLE))
    return h.hexdigest()[:16]


def converted_dir(gguf: str | Path) -> Path:
    """Directory holding the dequantized safetensors model + tokenizer for `gguf`, converting on first use."""
    gguf = Path(gguf)
    if not gguf.is_file():
        raise ModelMissingError(f"GGUF file {gguf} does not exist")
    out = assets.cache_dir() / f"{gguf.stem}-{gguf_key(gguf)}-hf"
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    log.info("converting %s to safetensors under %s (one time, ~20 s)", gguf.name, out)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    # The loaded model remembers it came from a quantized file; save_pretrained refuses until we forget it.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr in ("hf_quantizer", "quantization_method"):
        if getattr(model, attr, None) is not None:
            try:
                setattr(model, attr, None)
            except Exception:  # pragma: no cover - read-only attribute in some versions
                pass
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except Exception:  # pragma: no cover
            pass
    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))

    return _write_atomically(out, write, done="config.json")


def _write_atomically(out: Path, write, done: str) -> Path:
    """Fill a temp dir beside `out` with `write(tmp)`, then rename it to `out` (a crash leaves nothing half
    written; a concurrent converter that won the race is fine: its `done` file is there)."""
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        write(tmp)
        if out.exists():  # a concurrent converter won, or a broken leftover: replace it
            shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        if (out / done).is_file():  # lost a race to another process: its result is fine
            return out
        raise
    return out


def ct2_dir(hf_dir: str | Path, quantization: str) -> Path:
    """CTranslate2 model converted from the transformers directory `hf_dir` with `quantization`, converting on
    first use (~25 s for SmolLM2-135M) into `assets.cache_dir()`. A hub id (only from the local HF cache) works
    too. Keyed by the source's path, config and weights' sizes, the quantization and the CTranslate2 version;
    written atomically like `converted_dir`."""
    import ctranslate2

    src = Path(hf_dir)
    h = hashlib.sha256(f"{src.resolve() if src.exists() else hf_dir}:{quantization}:{ctranslate2.__version__}".encode())
    if src.is_dir():
        h.update((src / "config.json").read_bytes() if (src / "config.json").is_file() else b"")
        for f in sorted(src.glob("*.safetensors")) + sorted(src.glob("*.bin")):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    out = assets.cache_dir() / f"{src.name}-ct2-{quantization}-{h.hexdigest()[:12]}"
    if (out / "model.bin").is_file():
        return out
    log.info("converting %s to CTranslate2 (%s) under %s (one time, ~30 s)", hf_dir, quantization, out)
    from ctranslate2.converters import TransformersConverter

    def write(tmp: Path) -> None:
        TransformersConverter(str(hf_dir), low_cpu_mem_usage=True).convert(str(tmp), quantization=quantization, force=True)

    return _write_atomically(out, write, done="model.bin")
