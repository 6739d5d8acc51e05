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
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

ARTIFACT_VERSION = 1
BUILTIN_ASTRONAUT = "builtin:astronaut"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_EXTS = (".mp4", ".mov", ".webm", ".avi")
ARTIFACT_FILES = ("portrait.png", "mask.png", "background.png", "replica.json")


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


def _accepted() -> str:
    return f"accepted: images ({', '.join(IMAGE_EXTS)}) or short videos ({', '.join(VIDEO_EXTS)})"


# ------------------------------------------------------------------------------------------------ loading
def _load_image(path: pathlib.Path, limits: ReplicaLimits) -> np.ndarray:
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
        raise ReplicaBuildError(f"cannot read image {path.name}: {exc}; {_accepted()}") from None
    return np.ascontiguousarray(rgb)


def _video_frames(path: pathlib.Path, limits: ReplicaLimits) -> list[np.ndarray]:
    """Up to `video_candidates` RGB frames spread over a short video."""
    import av

    try:
        container = av.open(str(path))
    except Exception as exc:
        raise ReplicaBuildError(f"cannot read video {path.name}: {exc}; {_accepted()}") from None
    with container:
        if not container.streams.video:
            raise ReplicaBuildError(f"video {path.name} has no video stream; {_accepted()}")
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
                raise ReplicaBuildError(f"cannot decode video {path.name}: {exc}; {_accepted()}") from None
    if not frames:
        raise ReplicaBuildError(f"video {path.name} has no decodable frames; {_accepted()}")
    return frames


# ------------------------------------------------------------------------------------------------ detection
def _cascade(name: str):
    import cv2

    return cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, name))


_CASCADES: dict[str, object] = {}


def _get(name: str):
    if name not in _CASCADES:
        _CASCADES[name] = _cascade(name)
    return _CASCADES[name]


def _work_image(rgb: np.ndarray, max_side: int = 1024) -> tuple[np.ndarray, float]:
    """Grey, equalised, at most `max_side` px (detection speed); returns it and the scale factor."""
    import cv2

    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    small = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else rgb
    grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    return grey, s


def detect_faces(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal faces (x, y, w, h) in source pixels, largest first; two cascades must roughly agree."""
    grey, s = _work_image(rgb)
    min_side = 20
    a = _get("haarcascade_frontalface_default.xml").detectMultiScale(grey, 1.08, 6, minSize=(min_side, min_side))
    b = _get("haarcascade_frontalface_alt2.xml").detectMultiScale(grey, 1.08, 4, minSize=(min_side, min_side))
    faces = []
    for x, y, w, h in list(a):
        # keep a face only if the second cascade found one overlapping it (cuts false positives on clothes)
        if any(_iou((x, y, w, h), tuple(o)) > 0.3 for o in list(b)):
            faces.append((x, y, w, h))
    faces = [tuple(int(round(v / s)) for v in f) for f in faces]
    faces.sort(key=lambda f: -f[2] * f[3])
    return faces  # type: ignore[return-value]


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / float(aw * ah + bw * bh - inter)


def _choose_face(rgb: np.ndarray, limits: ReplicaLimits, what: str) -> tuple[int, int, int, int]:
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


# ------------------------------------------------------------------------------------------------ landmarks
def _eyes(grey: np.ndarray, face: tuple[int, int, int, int]) -> list[list[float]]:
    """Eye centres and widths [[cx, cy, w], [cx, cy, w]] (image-left eye first); geometric fallback."""
    x, y, w, h = face
    roi = grey[y + int(0.15 * h) : y + int(0.6 * h), x : x + w]
    found = _get("haarcascade_eye.xml").detectMultiScale(roi, 1.05, 3, minSize=(max(8, w // 8), max(8, w // 8)))
    left = [e for e in found if e[0] + e[2] / 2 < w / 2 and w * 0.12 < e[2] < w * 0.45]
    right = [e for e in found if e[0] + e[2] / 2 >= w / 2 and w * 0.12 < e[2] < w * 0.45]
    eyes: list[list[float]] = []
    for side, fallback_x in ((left, 0.31), (right, 0.69)):
        if side:
            ex, ey, ew, eh = max(side, key=lambda e: e[2])
            eyes.append([x + ex + ew / 2, y + int(0.15 * h) + ey + eh * 0.55, float(ew)])
        else:
            eyes.append([x + fallback_x * w, y + 0.40 * h, 0.26 * w])
    # the two eyes should sit at similar heights; if not, trust the geometric estimate for the odd one
    if abs(eyes[0][1] - eyes[1][1]) > 0.12 * h:
        eyes = [[x + 0.31 * w, y + 0.40 * h, 0.26 * w], [x + 0.69 * w, y + 0.40 * h, 0.26 * w]]
    return eyes


def _mouth(rgb: np.ndarray, face: tuple[int, int, int, int], eyes: list[list[float]]) -> dict:
    """Mouth corners and the seam (the dark line between the lips or the teeth), from lip colour + darkness."""
    import cv2

    x, y, w, h = face
    cx = (eyes[0][0] + eyes[1][0]) / 2
    iod = abs(eyes[1][0] - eyes[0][0])
    eye_y = (eyes[0][1] + eyes[1][1]) / 2
    exp_y = eye_y + 1.05 * iod  # typical eye-line to mouth distance
    x0, x1 = int(max(0, cx - 0.75 * iod)), int(min(rgb.shape[1], cx + 0.75 * iod))
    y0, y1 = int(max(0, exp_y - 0.38 * iod)), int(min(rgb.shape[0], exp_y + 0.42 * iod))
    region = rgb[y0:y1, x0:x1]
    default = {"cx": cx, "cy": exp_y, "width": 0.9 * iod, "height": 0.3 * iod, "teeth_visible": False, "method": "geometry"}
    if region.size == 0 or region.shape[0] < 6 or region.shape[1] < 6:
        return default | {"seam": [[cx - 0.45 * iod, exp_y], [cx, exp_y], [cx + 0.45 * iod, exp_y]]}
    lab = cv2.cvtColor(region, cv2.COLOR_RGB2LAB).astype(np.float32)
    L, A = lab[..., 0], lab[..., 1]
    # skin reference: the cheeks beside the mouth region (a* median of the outer columns)
    ref_a = float(np.median(np.concatenate([A[:, : max(2, A.shape[1] // 8)].ravel(), A[:, -max(2, A.shape[1] // 8) :].ravel()])))
    ref_l = float(np.median(L))
    lip = (A - ref_a) > 6.0  # lips are redder than the cheeks beside them
    m = lip.astype(np.uint8) * 255
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    n, lab_img, stats, cents = cv2.connectedComponentsWithStats(m)
    best, best_score = None, -1.0
    for i in range(1, n):
        bx, by, bw, bh, area = stats[i]
        if bw < 0.35 * iod or bw > 1.4 * iod or bh > 0.7 * iod or area < 0.02 * iod * iod:
            continue
        ccx, ccy = cents[i][0] + x0, cents[i][1] + y0
        dist = abs(ccx - cx) / iod + abs(ccy - exp_y) / iod
        score = area / (iod * iod) - dist
        if score > best_score:
            best, best_score = i, score
    if best is None:
        mx0, mx1 = cx - 0.45 * iod, cx + 0.45 * iod
        my0, my1 = exp_y - 0.12 * iod, exp_y + 0.12 * iod
        method = "geometry"
    else:
        bx, by, bw, bh, _ = stats[best]
        mx0, mx1, my0, my1 = x0 + bx, x0 + bx + bw, y0 + by, y0 + by + bh
        method = "lip-colour"
    mw, mh = mx1 - mx0, my1 - my0
    mcx = (mx0 + mx1) / 2
    # teeth show at rest (a smile) when the lip outline encloses bright, not-red pixels
    teeth_visible, bright = False, None
    if best is not None:
        comp = (lab_img == best).astype(np.uint8)
        hull = cv2.convexHull(cv2.findNonZero(comp))
        inside = np.zeros_like(comp)
        cv2.fillConvexPoly(inside, hull, 1)
        bright = (L > ref_l + 5) & (A < ref_a + 4) & (inside > 0) & (comp == 0)
        teeth_visible = bool(bright.sum() > 0.15 * max(1, inside.sum()))
    # seam = where the jaw splits: the lower edge of visible upper teeth, else the darkest row (lip line)
    grey = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), (3, 3), 0)
    cols = np.linspace(mx0 + 0.12 * mw, mx1 - 0.12 * mw, 11)
    ys, xs = [], []
    top = int(max(0, my0 + 0.15 * mh))
    bot = int(min(rgb.shape[0] - 1, my1 - 0.1 * mh))
    for c in cols:
        ci = int(round(c))
        if teeth_visible and bright is not None:
            rows = np.nonzero(bright[:, min(bright.shape[1] - 1, max(0, ci - x0))])[0]
            if rows.size:
                ys.append(float(y0 + rows.max()))
                xs.append(float(c))
            continue
        col = grey[top : bot + 1, ci]
        if col.size:
            ys.append(top + float(np.argmin(col)))
            xs.append(float(c))
    if len(xs) >= 3:
        coef = np.polyfit(xs, ys, 2)
        resid = np.abs(np.polyval(coef, xs) - ys)
        keep = resid <= max(2.0, np.percentile(resid, 70))
        if keep.sum() >= 3:
            coef = np.polyfit(np.array(xs)[keep], np.array(ys)[keep], 2)
        seam = [[float(sx), float(np.clip(np.polyval(coef, sx), my0, my1))] for sx in (mx0, mcx, mx1)]
    else:
        seam = [[mx0, (my0 + my1) / 2], [mcx, (my0 + my1) / 2], [mx1, (my0 + my1) / 2]]
    return {
        "cx": float(mcx),
        "cy": float(seam[1][1]),
        "width": float(mw),
        "height": float(mh),
        "box": [float(mx0), float(my0), float(mx1), float(my1)],
        "seam": seam,
        "teeth_visible": teeth_visible,
        "method": method,
    }


# ------------------------------------------------------------------------------------------------ framing + mask
def _frame_crop(shape: tuple[int, int], face: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """Square head-and-shoulders crop (x0, y0, side): face centre at 40 % height, side ~4 face widths."""
    H, W = shape
    x, y, w, h = face
    side = int(min(H, W, round(4.0 * w)))
    fcx, fcy = x + w / 2, y + h / 2
    x0 = int(round(np.clip(fcx - side / 2, 0, W - side)))
    y0 = int(round(np.clip(fcy - 0.40 * side, 0, H - side)))
    return x0, y0, side


def _person_mask(rgb: np.ndarray, face: tuple[float, float, float, float], seed: int = 0) -> np.ndarray:
    """GrabCut seeded from the face box (head ellipse + body below the chin); uint8 0/255 at rgb's size."""
    import cv2

    S = rgb.shape[0]
    work = 256
    k = work / S
    small = cv2.resize(rgb, (work, work), interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    fx, fy, fw, fh = (v * k for v in face)
    fcx, fcy = fx + fw / 2, fy + fh / 2
    gc = np.full((work, work), cv2.GC_PR_BGD, np.uint8)
    # probable person: head with hair + a trapezoid body from the chin down
    cv2.ellipse(gc, (int(fcx), int(fcy - 0.1 * fh)), (int(0.85 * fw), int(0.95 * fh)), 0, 0, 360, cv2.GC_PR_FGD, -1)
    chin = fy + fh
    body = np.array(
        [[fcx - 0.45 * fw, chin - 0.1 * fh], [fcx + 0.45 * fw, chin - 0.1 * fh], [fcx + 2.0 * fw, work], [fcx - 2.0 * fw, work]],
        np.int32,
    )
    cv2.fillPoly(gc, [body], cv2.GC_PR_FGD)
    # sure person: the inner face, the neck, a block of chest at the bottom centre
    cv2.ellipse(gc, (int(fcx), int(fcy)), (int(0.33 * fw), int(0.42 * fh)), 0, 0, 360, cv2.GC_FGD, -1)
    cv2.rectangle(gc, (int(fcx - 0.15 * fw), int(chin - 0.05 * fh)), (int(fcx + 0.15 * fw), int(chin + 0.35 * fh)), cv2.GC_FGD, -1)
    cv2.rectangle(gc, (int(fcx - 0.5 * fw), int(max(chin + 0.9 * fh, work - 0.25 * fh))), (int(fcx + 0.5 * fw), work - 1), cv2.GC_FGD, -1)
    # sure background: the top border and the upper side borders
    b = max(2, work // 64)
    gc[:b, :] = cv2.GC_BGD
    upper = int(min(work, chin))
    if fcx - 1.1 * fw > b:
        gc[:upper, :b] = cv2.GC_BGD
    if fcx + 1.1 * fw < work - b:
        gc[:upper, -b:] = cv2.GC_BGD
    cv2.setRNGSeed(seed)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(bgr, gc, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        pass  # degenerate colours: fall back to the seeds themselves
    fg = np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    # keep the component containing the face, fill holes, smooth the outline
    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg)
    face_label = lab[int(np.clip(fcy, 0, work - 1)), int(np.clip(fcx, 0, work - 1))]
    if face_label > 0:
        fg = (lab == face_label).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    inv = (1 - fg).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(inv)
    for i in range(1, n):  # background holes not touching the border are person (e.g. dark clothes)
        x, y, w, h, _ = stats[i]
        if x > 0 and y > 0 and x + w < work and y + h < work:
            fg[lab == i] = 1
    up = cv2.resize(fg.astype(np.float32), (S, S), interpolation=cv2.INTER_LINEAR)
    up = cv2.GaussianBlur(up, (0, 0), max(1.0, S / 256))
    return np.where(up >= 0.5, 255, 0).astype(np.uint8)


def _background_plate(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The portrait with the person inpainted away (low-res fill is enough: only edges ever show)."""
    import cv2

    S = rgb.shape[0]
    work = 128
    small = cv2.resize(rgb, (work, work), interpolation=cv2.INTER_AREA)
    m = cv2.resize(mask, (work, work), interpolation=cv2.INTER_NEAREST)
    m = cv2.dilate(m, np.ones((5, 5), np.uint8))
    filled = cv2.inpaint(small, m, 5, cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(filled, (0, 0), 2.0)
    up = cv2.resize(filled, (S, S), interpolation=cv2.INTER_CUBIC)
    big = cv2.dilate(mask, np.ones((max(3, S // 64),) * 2, np.uint8)) > 0
    return np.where(big[..., None], up, rgb)


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
def _source_image(source: pathlib.Path | str, limits: ReplicaLimits, progress: Callable[[int], None]) -> tuple[np.ndarray, tuple, dict]:
    """Decode the source; return (rgb, face box, info)."""
    if isinstance(source, str) and source == BUILTIN_ASTRONAUT:
        from skimage import data

        rgb = np.ascontiguousarray(data.astronaut())
        progress(10)
        return rgb, _choose_face(rgb, limits, "image"), {"source": BUILTIN_ASTRONAUT, "kind": "image"}
    if isinstance(source, str) and source.startswith("builtin:"):
        raise ReplicaBuildError(f"unknown builtin replica {source!r}; accepted: {BUILTIN_ASTRONAUT!r}, or a file path")
    path = pathlib.Path(source)
    if not path.is_file():
        raise ReplicaBuildError(f"file not found: {path}; {_accepted()}")
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTS + VIDEO_EXTS:
        raise ReplicaBuildError(f"unsupported file type {ext or '(none)'!r} for {path.name}; {_accepted()}")
    size = path.stat().st_size
    limit = limits.max_image_bytes if ext in IMAGE_EXTS else limits.max_video_bytes
    if size > limit:
        raise ReplicaBuildError(
            f"file too large: {path.name} is {size / 2**20:.1f} MiB; the limit for "
            f"{'images' if ext in IMAGE_EXTS else 'videos'} is {limit / 2**20:.0f} MiB"
        )
    if size == 0:
        raise ReplicaBuildError(f"file {path.name} is empty; {_accepted()}")
    info = {"source": str(path), "kind": "image" if ext in IMAGE_EXTS else "video"}
    if ext in IMAGE_EXTS:
        rgb = _load_image(path, limits)
        progress(10)
        return rgb, _choose_face(rgb, limits, "image"), info
    frames = _video_frames(path, limits)
    progress(10)
    return _best_video_frame(frames, limits, info, progress)


def _best_video_frame(frames, limits, info, progress):
    import cv2

    best, errors = None, []
    for i, rgb in enumerate(frames):
        try:
            face = _choose_face(rgb, limits, "video")
        except ReplicaBuildError as exc:
            errors.append(str(exc))
        else:
            x, y, w, h = face
            grey = cv2.cvtColor(rgb[y : y + h, x : x + w], cv2.COLOR_RGB2GRAY)
            sharp = float(cv2.Laplacian(grey, cv2.CV_64F).var())
            eyes_found = len(_get("haarcascade_eye.xml").detectMultiScale(grey[: h * 6 // 10], 1.05, 3))
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
    rgb, face, info = _source_image(source, limits, progress)
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
    grey, _ = _work_image(portrait, max_side=S)
    fbox = tuple(int(round(v)) for v in face_p)
    eyes = _eyes(grey, fbox)
    mouth = _mouth(portrait, fbox, eyes)
    progress(60)
    mask = _person_mask(portrait, face_p)
    # the person must never show the key colour: nudge any key-coloured person pixel by one level
    key = np.array([0, 255, 155], np.uint8)
    hit = np.all(portrait == key, axis=-1) & (mask > 0)
    portrait[hit, 1] = 254
    progress(85)
    plate = _background_plate(portrait, mask)
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
