"""Replica sources: the user's portrait image, short face video or builtin, checked against the input limits
and decoded into one RGB frame with the one face to animate.

Why separate: every user-facing error of replica creation about the input (size, type, length, faces) is
raised here, before any expensive step.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from cvi_lab.stages.avatar.face_landmarks import cascade, detect_faces

BUILTIN_ASTRONAUT = "builtin:astronaut"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_EXTS = (".mp4", ".mov", ".webm", ".avi")


class ReplicaBuildError(Exception):
    """Replica creation failed; `str(err)` is the user-facing `error_message` (what was wrong, what works)."""


@dataclass
class ReplicaLimits:
    """Input limits (the API maps its settings onto these). Checked before decoding where possible."""

    max_image_bytes: int = 25 * 1024 * 1024
    max_video_bytes: int = 200 * 1024 * 1024
    max_pixels: int = 50_000_000  # per image / video frame (decompression-bomb guard)
    max_video_seconds: float = 120.0
    min_face_px: int = 48  # face box width in source pixels
    video_candidates: int = 24  # frames examined when picking the best frontal frame
    canonical_min: int = 512  # stored portrait side (upscaled to at least this)
    canonical_max: int = 1024


def accepted_inputs() -> str:
    return f"accepted: images ({', '.join(IMAGE_EXTS)}) or short videos ({', '.join(VIDEO_EXTS)})"


# ------------------------------------------------------------------------------------------------ loading
def load_image(path: pathlib.Path, limits: ReplicaLimits) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:  # lazy: reads the header only
            w, h = im.size
            if w * h > limits.max_pixels:
                raise ReplicaBuildError(
                    f"image too large: {w}x{h} = {w * h / 1e6:.1f} megapixels; the limit is "
                    f"{limits.max_pixels / 1e6:.0f} megapixels (resize it, e.g. to 1024x1024)"
                )
            im.load()
            im = ImageOps.exif_transpose(im)
            rgb = np.asarray(im.convert("RGB"))
    except ReplicaBuildError:
        raise
    except Exception as exc:  # PIL raises many types for broken files
        raise ReplicaBuildError(f"cannot read image {path.name}: {exc}; {accepted_inputs()}") from None
    return np.ascontiguousarray(rgb)


def video_frames(path: pathlib.Path, limits: ReplicaLimits) -> list[np.ndarray]:
    """Up to `video_candidates` RGB frames spread over a short video."""
    import av

    try:
        container = av.open(str(path))
    except Exception as exc:
        raise ReplicaBuildError(f"cannot read video {path.name}: {exc}; {accepted_inputs()}") from None
    with container:
        if not container.streams.video:
            raise ReplicaBuildError(f"video {path.name} has no video stream; {accepted_inputs()}")
        stream = container.streams.video[0]
        w, h = stream.codec_context.width, stream.codec_context.height
        if w * h > limits.max_pixels:
            raise ReplicaBuildError(f"video frames too large: {w}x{h}; the limit is {limits.max_pixels / 1e6:.0f} megapixels")
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1e6
        if duration is not None and duration > limits.max_video_seconds:
            raise ReplicaBuildError(
                f"video too long: {duration:.0f} s; the limit is {limits.max_video_seconds:.0f} s (a short clip of the face is enough)"
            )
        n_total = stream.frames or int((duration or 10.0) * float(stream.average_rate or 25))
        step = max(1, n_total // max(1, limits.video_candidates))
        frames: list[np.ndarray] = []
        try:
            for i, frame in enumerate(container.decode(stream)):
                if frame.time is not None and frame.time > limits.max_video_seconds:
                    break
                if i % step == 0:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    if len(frames) >= limits.video_candidates:
                        break
        except Exception as exc:
            if not frames:
                raise ReplicaBuildError(f"cannot decode video {path.name}: {exc}; {accepted_inputs()}") from None
    if not frames:
        raise ReplicaBuildError(f"video {path.name} has no decodable frames; {accepted_inputs()}")
    return frames


# ------------------------------------------------------------------------------------------------ the face
def choose_face(rgb: np.ndarray, limits: ReplicaLimits, what: str) -> tuple[int, int, int, int]:
    faces = detect_faces(rgb)
    if not faces:
        raise ReplicaBuildError(
            f"no face found in the {what}; use a well-lit, frontal head-and-shoulders portrait with one face"
        )
    main = faces[0]
    rivals = [f for f in faces[1:] if f[2] >= 0.5 * main[2]]
    if rivals:
        raise ReplicaBuildError(
            f"several faces found in the {what} ({1 + len(rivals)}); use a portrait with exactly one person"
        )
    if main[2] < limits.min_face_px:
        raise ReplicaBuildError(
            f"face too small: {main[2]} px wide; at least {limits.min_face_px} px is needed "
            "(use a closer or higher-resolution portrait)"
        )
    return main


# ------------------------------------------------------------------------------------------------ main entry
def source_image(source: pathlib.Path | str, limits: ReplicaLimits, progress: Callable[[int], None]) -> tuple[np.ndarray, tuple, dict]:
    """Decode the source; return (rgb, face box, info)."""
    if isinstance(source, str) and source == BUILTIN_ASTRONAUT:
        from skimage import data

        rgb = np.ascontiguousarray(data.astronaut())
        progress(10)
        return rgb, choose_face(rgb, limits, "image"), {"source": BUILTIN_ASTRONAUT, "kind": "image"}
    if isinstance(source, str) and source.startswith("builtin:"):
        raise ReplicaBuildError(f"unknown builtin replica {source!r}; accepted: {BUILTIN_ASTRONAUT!r}, or a file path")
    path = pathlib.Path(source)
    if not path.is_file():
        raise ReplicaBuildError(f"file not found: {path}; {accepted_inputs()}")
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTS + VIDEO_EXTS:
        raise ReplicaBuildError(f"unsupported file type {ext or '(none)'!r} for {path.name}; {accepted_inputs()}")
    size = path.stat().st_size
    limit = limits.max_image_bytes if ext in IMAGE_EXTS else limits.max_video_bytes
    if size > limit:
        raise ReplicaBuildError(
            f"file too large: {path.name} is {size / 2**20:.1f} MiB; the limit for "
            f"{'images' if ext in IMAGE_EXTS else 'videos'} is {limit / 2**20:.0f} MiB"
        )
    if size == 0:
        raise ReplicaBuildError(f"file {path.name} is empty; {accepted_inputs()}")
    info = {"source": str(path), "kind": "image" if ext in IMAGE_EXTS else "video"}
    if ext in IMAGE_EXTS:
        rgb = load_image(path, limits)
        progress(10)
        return rgb, choose_face(rgb, limits, "image"), info
    frames = video_frames(path, limits)
    progress(10)
    return best_video_frame(frames, limits, info, progress)


def best_video_frame(frames, limits, info, progress):
    import cv2

    best, errors = None, []
    for i, rgb in enumerate(frames):
        try:
            face = choose_face(rgb, limits, "video")
        except ReplicaBuildError as exc:
            errors.append(str(exc))
        else:
            x, y, w, h = face
            grey = cv2.cvtColor(rgb[y : y + h, x : x + w], cv2.COLOR_RGB2GRAY)
            sharp = float(cv2.Laplacian(grey, cv2.CV_64F).var())
            eyes_found = len(cascade("haarcascade_eye.xml").detectMultiScale(grey[: h * 6 // 10], 1.05, 3))
            score = min(eyes_found, 2) * 1000 + w + 0.1 * sharp
            if best is None or score > best[0]:
                best = (score, i, rgb, face)
        progress(10 + int(25 * (i + 1) / len(frames)))
    if best is None:
        # report the most frequent reason (e.g. "no face found in the video")
        reason = max(set(errors), key=errors.count)
        raise ReplicaBuildError(reason)
    info = info | {"frame_index": best[1], "frames_examined": len(frames)}
    return best[2], best[3], info
