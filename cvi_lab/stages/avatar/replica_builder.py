"""Replica creation: from a portrait image or a short face video to the artifacts the renderer animates.

Why a build step: everything expensive (face/eye/mouth location, person segmentation for the green screen,
background plate) is done once here, so the per-frame renderer only warps a small mouth region, draws eyelids
and composes. Runs offline on the CPU with OpenCV's shipped Haar cascades.

Artifacts written into `out_dir` (each file atomically; `replica.json` last, and only its presence with the
current `ARTIFACT_VERSION` marks a complete replica):
    portrait.png    square RGB head-and-shoulders crop (canonical size 512..1024 px)
    mask.png        person mask (0 = background, 255 = person), same size
    background.png  the portrait with the person inpainted away (used when not green-screening)
    replica.json    landmarks (face box, eyes, mouth corners/seam) in portrait pixels + metadata

The steps live beside it: `replica_sources` (input checks and decoding), `face_landmarks` (face, eyes, mouth),
`person_matting` (mask and background plate); this module frames, writes and marks the replica complete.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import threading
from typing import Callable

import numpy as np

from cvi_lab.media import GREENSCREEN_RGB
from cvi_lab.stages.avatar.face_landmarks import detect_faces, find_eyes, find_mouth, work_image
from cvi_lab.stages.avatar.person_matting import background_plate, person_mask
from cvi_lab.stages.avatar.replica_sources import BUILTIN_ASTRONAUT, ReplicaBuildError, ReplicaLimits, source_image

ARTIFACT_VERSION = 1
ARTIFACT_FILES = ("portrait.png", "mask.png", "background.png", "replica.json")


# ------------------------------------------------------------------------------------------------ framing
def _frame_crop(shape: tuple[int, int], face: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """Square head-and-shoulders crop (x0, y0, side): face centre at 40 % height, side ~4 face widths."""
    H, W = shape
    x, y, w, h = face
    side = int(min(H, W, round(4.0 * w)))
    fcx, fcy = x + w / 2, y + h / 2
    x0 = int(round(np.clip(fcx - side / 2, 0, W - side)))
    y0 = int(round(np.clip(fcy - 0.40 * side, 0, H - side)))
    return x0, y0, side


# ------------------------------------------------------------------------------------------------ writing
def _atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _png(img: np.ndarray) -> bytes:
    import cv2

    arr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise ReplicaBuildError("internal error: could not encode a PNG artifact")
    return buf.tobytes()


def is_complete(out_dir: pathlib.Path | str) -> bool:
    """True when `out_dir` holds a finished replica of the current artifact version."""
    d = pathlib.Path(out_dir)
    try:
        meta = json.loads((d / "replica.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("version") == ARTIFACT_VERSION and all((d / f).exists() for f in ARTIFACT_FILES)


# ------------------------------------------------------------------------------------------------ main entry
def build_replica(
    source: pathlib.Path | str,
    out_dir: pathlib.Path,
    progress: Callable[[int], None] = lambda p: None,
    *,
    limits: ReplicaLimits | None = None,
) -> dict:
    """Build a replica from `source` ("builtin:astronaut", an image or a short video) into `out_dir`.

    Blocking (run it in a thread). Calls `progress(0..100)`. Raises ReplicaBuildError with a user-facing
    message. Returns JSON-able metadata (also stored as replica.json)."""
    import cv2

    limits = limits or ReplicaLimits()
    out_dir = pathlib.Path(out_dir)
    progress(0)
    rgb, face, info = source_image(source, limits, progress)
    progress(40)
    H, W = rgb.shape[:2]
    x0, y0, side = _frame_crop((H, W), face)
    crop = rgb[y0 : y0 + side, x0 : x0 + side]
    S = int(np.clip(side, limits.canonical_min, limits.canonical_max))
    interp = cv2.INTER_AREA if S < side else cv2.INTER_CUBIC
    portrait = cv2.resize(crop, (S, S), interpolation=interp) if S != side else crop.copy()
    k = S / side
    fx, fy, fw, fh = face
    face_p = [(fx - x0) * k, (fy - y0) * k, fw * k, fh * k]
    # landmarks are found again on the canonical portrait (consistent scale for the thresholds)
    grey, _ = work_image(portrait, max_side=S)
    fbox = tuple(int(round(v)) for v in face_p)
    eyes = find_eyes(grey, fbox)
    mouth = find_mouth(portrait, fbox, eyes)
    progress(60)
    mask = person_mask(portrait, face_p)
    # the person must never show the key colour: nudge any key-coloured person pixel by one level
    key = np.array(GREENSCREEN_RGB, np.uint8)
    hit = np.all(portrait == key, axis=-1) & (mask > 0)
    portrait[hit, 1] = 254
    progress(85)
    plate = background_plate(portrait, mask)
    skin = portrait[int(face_p[1] + 0.55 * face_p[3]) : int(face_p[1] + 0.65 * face_p[3]), int(face_p[0] + 0.15 * face_p[2]) : int(face_p[0] + 0.3 * face_p[2])]
    skin_rgb = [float(v) for v in np.median(skin.reshape(-1, 3), axis=0)] if skin.size else [200.0, 160.0, 140.0]
    meta = {
        "version": ARTIFACT_VERSION,
        "size": S,
        "face": [float(v) for v in face_p],
        "eyes": [[float(v) for v in e] for e in eyes],
        "mouth": mouth,
        "skin_rgb": skin_rgb,
        "person_fraction": float((mask > 0).mean()),
        "source_size": [W, H],
        "crop": [x0, y0, side],
        **info,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        (out_dir / "replica.json").unlink()  # a rebuild is incomplete until the new marker is written
    except FileNotFoundError:
        pass
    _atomic_write_bytes(out_dir / "portrait.png", _png(portrait))
    _atomic_write_bytes(out_dir / "mask.png", _png(mask))
    _atomic_write_bytes(out_dir / "background.png", _png(plate))
    progress(95)
    _atomic_write_bytes(out_dir / "replica.json", json.dumps(meta, indent=1).encode())
    progress(100)
    return meta


_DEFAULT_LOCK = threading.Lock()


def default_replica_dir() -> pathlib.Path:
    """The default (astronaut) replica, built under the asset cache on first use (about a second)."""
    from cvi_lab.assets import cache_dir

    out = cache_dir() / "replicas" / "default"
    with _DEFAULT_LOCK:  # two conversations starting at once build it once
        if not is_complete(out):
            build_replica(BUILTIN_ASTRONAUT, out)
    return out


__all__ = [
    "ReplicaBuildError",
    "ReplicaLimits",
    "build_replica",
    "default_replica_dir",
    "detect_faces",
    "is_complete",
    "BUILTIN_ASTRONAUT",
]
