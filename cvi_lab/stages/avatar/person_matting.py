"""Person mask (GrabCut seeded from the face box) and the background plate behind the person (replica build).

Why GrabCut: it needs no model download and the face box gives good seeds; the mask only has to be right
at the outline the green screen keys on.
"""

from __future__ import annotations

import numpy as np


def person_mask(rgb: np.ndarray, face: tuple[float, float, float, float], seed: int = 0) -> np.ndarray:
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


def background_plate(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
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
