"""Face, eye and mouth location on a still image with OpenCV's shipped Haar cascades (replica build step).

Why here and not in the renderer: the renderer only warps what these find, once per replica; everything in this
module runs at build time on the CPU.
"""

from __future__ import annotations

import os

import numpy as np


_CASCADES: dict[str, object] = {}


def cascade(name: str):
    """One shared classifier per cascade file shipped in OpenCV (loading one takes tens of milliseconds)."""
    import cv2

    if name not in _CASCADES:
        _CASCADES[name] = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, name))
    return _CASCADES[name]


def work_image(rgb: np.ndarray, max_side: int = 1024) -> tuple[np.ndarray, float]:
    """Grey, equalised, at most `max_side` px (detection speed); returns it and the scale factor."""
    import cv2

    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    small = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else rgb
    grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    return grey, s


def detect_faces(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal faces (x, y, w, h) in source pixels, largest first; two cascades must roughly agree."""
    grey, s = work_image(rgb)
    min_side = 20
    a = cascade("haarcascade_frontalface_default.xml").detectMultiScale(grey, 1.08, 6, minSize=(min_side, min_side))
    b = cascade("haarcascade_frontalface_alt2.xml").detectMultiScale(grey, 1.08, 4, minSize=(min_side, min_side))
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


# ------------------------------------------------------------------------------------------------ landmarks
def find_eyes(grey: np.ndarray, face: tuple[int, int, int, int]) -> list[list[float]]:
    """Eye centres and widths [[cx, cy, w], [cx, cy, w]] (image-left eye first); geometric fallback."""
    x, y, w, h = face
    roi = grey[y + int(0.15 * h) : y + int(0.6 * h), x : x + w]
    found = cascade("haarcascade_eye.xml").detectMultiScale(roi, 1.05, 3, minSize=(max(8, w // 8), max(8, w // 8)))
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


def find_mouth(rgb: np.ndarray, face: tuple[int, int, int, int], eyes: list[list[float]]) -> dict:
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
