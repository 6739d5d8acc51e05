"""The default avatar: animates one portrait on the CPU (mouth from speech, blinks, sway, breathing).

Why parametric: it runs at hundreds of fps per core with no weights, is deterministic for a seed, and gives
the lab a lip-sync baseline that a neural model (another `cvi_lab/conf/avatar/*.yaml`) has to beat.

Per frame: (1) the mouth region (~2x3 mouth widths) is remapped: the lower lip and jaw drop by `openness`,
the upper lip lifts a little, roundness narrows the mouth; the gap is drawn as an inner mouth (dark cavity,
teeth unless the portrait already shows them, tongue); (2) eyelids are drawn from an eye-free skin patch
made at start-up; (3) the whole portrait and its person mask get one small affine warp (sway + breathing);
(4) compose last over the background plate, or over exact RGB [0, 255, 155] with `apply_greenscreen`.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Sequence

import numpy as np

from cvi_lab.stages.avatar.drive import MouthDriver, viseme_segments
from cvi_lab.stages.avatar.expression import NEUTRAL_EXPRESSION, Expression
from cvi_lab.stages.avatar.streaming import FrameCue, Segment, StreamingAvatar
from cvi_lab.stages.base import StageInputError
from cvi_lab.media import GREENSCREEN_RGB, TTSChunk

GREEN = GREENSCREEN_RGB


def _smoothstep(z: np.ndarray) -> np.ndarray:
    z = np.clip(z, 0.0, 1.0)
    return z * z * (3.0 - 2.0 * z)


def _bump(d: np.ndarray) -> np.ndarray:
    """1 at 0, 0 at |d| >= 1, smooth."""
    return 1.0 - _smoothstep(np.abs(d))


class PortraitRenderer(StreamingAvatar):
    """Parametric portrait animation driven by TTS audio (and visemes when the TTS gives phonemes)."""

    def __init__(
        self,
        replica_dir: str | pathlib.Path | None = None,
        fps: int = 25,
        width: int = 512,
        height: int = 512,
        seed: int = 0,
        audio_rate: int = 22050,
        apply_greenscreen: bool = False,
        render_in_thread: bool = True,
        # mouth
        mouth_max_open: float = 0.3,  # lower-lip drop at full openness, in mouth widths
        mouth_round: float = 0.22,  # horizontal narrowing at full roundness
        mouth_floor_db: float = -48.0,
        mouth_range_db: float = 24.0,
        mouth_gamma: float = 0.8,
        mouth_release: float = 0.35,
        use_visemes: bool = True,
        # idle motion
        blink_interval_s: Sequence[float] = (2.0, 6.0),
        blink_duration_s: float = 0.2,
        sway_deg: float = 0.8,
        sway_px: float = 0.004,  # translation amplitude, fraction of the width
        sway_hz: float = 0.11,
        breathing_hz: float = 0.23,
        breathing_scale: float = 0.004,
        speech_nod: float = 0.004,  # extra downward nod with loud speech, fraction of the height
    ) -> None:
        super().__init__(fps=fps, width=width, height=height, audio_rate=audio_rate, seed=seed, render_in_thread=render_in_thread)
        import cv2

        from cvi_lab.stages.avatar.replica_builder import default_replica_dir, is_complete

        rdir = default_replica_dir() if replica_dir is None else pathlib.Path(replica_dir)
        if not is_complete(rdir):
            raise StageInputError(f"avatar: {rdir} is not a completed replica (build it with cvi-lab replica create)")
        meta = json.loads((rdir / "replica.json").read_text())
        self.replica_dir, self.meta = rdir, meta
        self.apply_greenscreen = bool(apply_greenscreen)
        self.mouth_max_open, self.mouth_round = mouth_max_open, mouth_round
        self.use_visemes = use_visemes
        self.blink_interval = (float(blink_interval_s[0]), float(blink_interval_s[1]))
        self.blink_duration = blink_duration_s
        self.sway_deg, self.sway_px, self.sway_hz = sway_deg, sway_px, sway_hz
        self.breathing_hz, self.breathing_scale, self.speech_nod = breathing_hz, breathing_scale, speech_nod
        self.driver = MouthDriver(self.audio_rate, mouth_floor_db, mouth_range_db, mouth_gamma, mouth_release)
        self.expression = NEUTRAL_EXPRESSION

        def read(name: str, flags=cv2.IMREAD_COLOR) -> np.ndarray:
            img = cv2.imread(str(rdir / name), flags)
            if img is None:
                raise StageInputError(f"avatar: cannot read {rdir / name}; rebuild the replica")
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img

        portrait, mask, plate = read("portrait.png"), read("mask.png", cv2.IMREAD_GRAYSCALE), read("background.png")
        # fit the square portrait to width x height: crop to the aspect around the face, then scale
        S = portrait.shape[0]
        fx, fy, fw, fh = meta["face"]
        aspect = self.width / self.height
        cw, ch = (S, int(round(S / aspect))) if aspect >= 1 else (int(round(S * aspect)), S)
        ox = int(np.clip(fx + fw / 2 - cw / 2, 0, S - cw))
        oy = int(np.clip(fy + fh / 2 - 0.42 * ch, 0, S - ch))
        k = self.width / cw
        self.k = k

        def fit(img, interp):
            img = img[oy : oy + ch, ox : ox + cw]
            return cv2.resize(img, (self.width, self.height), interpolation=interp)

        down = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
        self.base = np.ascontiguousarray(fit(portrait, down))
        self.plate = np.ascontiguousarray(fit(plate, down))
        self.mask = np.ascontiguousarray(fit(mask, cv2.INTER_LINEAR))
        key = np.array(GREEN, np.uint8)
        hit = np.all(self.base == key, axis=-1) & (self.mask >= 128)
        self.base[hit, 1] = 254
        P = lambda x, y: ((x - ox) * k, (y - oy) * k)  # noqa: E731
        self.face = (*P(fx, fy), fw * k, fh * k)
        self._setup_mouth(meta["mouth"], P)
        self._setup_eyes(meta["eyes"], P)
        # head pivot: the neck
        self.pivot = (self.face[0] + self.face[2] / 2, self.face[1] + 1.25 * self.face[3])
        rng = np.random.default_rng(self.seed)
        self._phases = rng.uniform(0, 2 * math.pi, 8)
        self._freq_jitter = rng.uniform(0.8, 1.25, 8)
        self._blink_rng = np.random.default_rng(self.seed + 7919)
        self._blinks: list[float] = []
        self._next_blink = float(self._blink_rng.uniform(0.8, self.blink_interval[1]))
        self._nod = 0.0
        self._key = np.empty_like(self.base)
        self._key[:] = key
        self.last_pose = (0.0, 0.0)

    # ------------------------------------------------------------------ set-up
    def _setup_mouth(self, mouth: dict, P) -> None:
        seam = [P(x, y) for x, y in mouth["seam"]]
        self.mouth_cx, self.mouth_cy = P(mouth["cx"], mouth["cy"])
        mw = max(8.0, mouth["width"] * self.k)
        self.mw = mw
        self.teeth_visible = bool(mouth.get("teeth_visible"))
        xs = np.array([p[0] for p in seam])
        ys = np.array([p[1] for p in seam])
        coef = np.polyfit(xs - self.mouth_cx, ys, 2) if len(set(xs.tolist())) == 3 else np.array([0, 0, self.mouth_cy])
        H, W = self.height, self.width
        x0 = int(max(0, self.mouth_cx - 1.0 * mw))
        x1 = int(min(W, self.mouth_cx + 1.0 * mw))
        y0 = int(max(0, min(ys) - 0.65 * mw))
        y1 = int(min(H, self.mouth_cy + 1.5 * mw))
        self.roi = (x0, y0, x1, y1)
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        self.gx, self.gy = gx, gy
        dx = gx - self.mouth_cx
        xc = np.clip(dx, xs.min() - self.mouth_cx, xs.max() - self.mouth_cx)
        self.seam_y = (coef[0] * xc * xc + coef[1] * xc + coef[2]).astype(np.float32)  # per pixel (depends on x)
        self.d = (gy - self.seam_y).astype(np.float32)  # signed distance below the seam
        self.half_w = 0.5 * mw
        # horizontal roundness window (zero at the ROI border) and jaw/upper falloff lengths
        self.win = (_bump(dx / (0.98 * mw)) * _bump(self.d / np.where(self.d > 0, 1.45 * mw, 0.62 * mw))).astype(np.float32)
        self.jaw_len, self.upper_len = 1.1 * mw, 0.45 * mw
        # inner-mouth colour by relative depth v in [0, 1] (top of the gap → bottom)
        v = np.linspace(0, 1, 256)[:, None]
        dark = np.array([50, 17, 19.0])
        wall = np.array([118, 48, 50.0])
        tongue = np.array([165, 72, 80.0])
        teeth = np.array([222, 214, 200.0])
        lut = dark + (wall - dark) * np.exp(-((v - 0.0) / 0.12) ** 2) + (wall - dark) * np.exp(-((v - 1.0) / 0.12) ** 2)
        lut = lut + (tongue - lut) * (_smoothstep((v - 0.62) / 0.3) * 0.75)
        self.lut = lut.astype(np.float32)
        self.lut_teeth = lut.copy().astype(np.float32)
        if not self.teeth_visible:  # closed-lip portrait: upper teeth under the upper lip
            band = (v < 0.2).astype(np.float32) * (1 - _smoothstep((v - 0.14) / 0.06))
            self.lut_teeth = (lut * (1 - band) + teeth * band).astype(np.float32)

    def _setup_eyes(self, eyes: list, P) -> None:
        import cv2

        self.eyes = []
        for ex, ey, ew in eyes:
            cx, cy = P(ex, ey)
            a, b = 0.39 * ew * self.k, 0.2 * ew * self.k
            x0, x1 = int(max(0, cx - a - 4)), int(min(self.width, cx + a + 5))
            y0, y1 = int(max(0, cy - 2.6 * b - 4)), int(min(self.height, cy + 1.6 * b + 5))
            if x1 - x0 < 4 or y1 - y0 < 4:
                continue
            roi = self.base[y0:y1, x0:x1]
            gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
            u = (gx - cx) / a
            inside = np.clip(1 - u * u, 0, None)
            top = cy - 1.25 * b * np.sqrt(inside)  # the upper lid's lash line sits above the eye opening
            bot = cy + b * np.sqrt(inside) * 0.8
            ell = ((np.abs(u) < 1) & (gy >= top - 1) & (gy <= bot + 1)).astype(np.uint8) * 255
            # the closed lid: the eye inpainted from the skin around it, slightly darkened (lid shadow)
            grow = cv2.dilate(ell, np.ones((3, 3), np.uint8))
            filled = cv2.inpaint(roi, grow, 3, cv2.INPAINT_TELEA).astype(np.float32)
            # inpainting pulls in lashes and eye corners (too dark): pull it toward the lid skin above the eye
            band = (np.abs(u) < 0.8) & (gy > cy - 2.4 * b) & (gy < cy - 1.3 * b)
            skin = np.median(roi[band].reshape(-1, 3), axis=0).astype(np.float32) if band.sum() > 8 else filled.mean((0, 1))
            shade = (1.0 - 0.08 * np.clip((gy - (cy - b)) / (1.8 * b), 0, 1))[..., None]
            lid = (0.3 * filled + 0.7 * skin) * shade
            self.eyes.append({"roi": (x0, y0, x1, y1), "top": top.astype(np.float32), "bot": bot.astype(np.float32),
                              "u": u.astype(np.float32), "gy": gy, "lid": lid, "a": a})

    async def warmup(self) -> None:
        """Render one throw-away frame (touches every code path) without advancing the stream."""
        from cvi_lab.stages.base import run_blocking

        await run_blocking(self.render_frame, 0, np.zeros(self.samples_in_frame(0), np.float32), FrameCue())
        self.driver.reset()

    # ------------------------------------------------------------------ pieces
    def annotate(self, samples: np.ndarray, chunk: TTSChunk) -> list[Segment]:
        return viseme_segments(samples, self.audio_rate, chunk) if self.use_visemes else []

    def set_expression(self, expression: Expression) -> None:
        """`ExpressiveAvatar`: lowered lids, a tilt, a lowered head, livelier or calmer motion, a wider or smaller
        mouth, from the next frame on (one attribute swap: safe against the render thread)."""
        self.expression = expression

    def _blink_amount(self, t: float) -> float:
        while self._next_blink <= t + 1.0:
            self._blinks.append(self._next_blink)
            gap = float(self._blink_rng.uniform(*self.blink_interval))
            if self._blink_rng.random() < 0.12:  # now and then a double blink
                gap = self.blink_duration * 1.6
            self._next_blink += gap
        self._blinks = [b for b in self._blinks if b > t - 1.0]
        amount = 0.0
        for start in self._blinks:
            z = (t - start) / self.blink_duration
            if 0 <= z <= 1:
                amount = max(amount, float(_smoothstep(np.array(z / 0.4))) if z < 0.4 else float(1 - _smoothstep(np.array((z - 0.4) / 0.6))))
        return amount

    def _draw_mouth(self, img: np.ndarray, openness: float, roundness: float) -> None:
        import cv2

        x0, y0, x1, y1 = self.roi
        D_max = openness * self.mouth_max_open * self.mw
        r = roundness * self.mouth_round
        sx = self.gx + (self.gx - self.mouth_cx) * (r * self.win)  # roundness: sample wider = look narrower
        prof = np.clip(1.0 - ((sx - self.mouth_cx) / self.half_w) ** 2, 0.0, 1.0) ** 0.7
        D = D_max * prof
        U = 0.12 * D
        d = self.d
        below = d - D
        sy = np.where(
            below > 0,
            self.gy - D * (1.0 - _smoothstep(below / self.jaw_len)),
            self.gy + U * (1.0 - _smoothstep((-U - d) / self.upper_len)),
        ).astype(np.float32)
        src = img[y0:y1, x0:x1].copy()
        out = cv2.remap(src, (sx - x0).astype(np.float32), sy - y0, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        gap = D + U
        cav = (d > -U - 1) & (d < D + 1) & (gap > 0.5)
        if cav.any():
            v = np.clip((d[cav] + U[cav]) / np.maximum(gap[cav], 1e-3), 0, 1)
            lut = self.lut_teeth if D_max > 0.08 * self.mw else self.lut
            col = lut[(v * 255).astype(np.int32)]
            col *= (0.55 + 0.45 * prof[cav] ** 0.5)[:, None]  # corners darker
            # anti-aliased edges: 1 px ramp at the lips
            alpha = np.clip(np.minimum(d[cav] + U[cav], D[cav] - d[cav]) + 0.5, 0, 1)[:, None]
            alpha *= np.clip(gap[cav], 0, 1)[:, None]
            px = out[cav].astype(np.float32)
            out[cav] = (px + (col - px) * alpha).astype(np.uint8)
        img[y0:y1, x0:x1] = out

    def _draw_eyes(self, img: np.ndarray, amount: float) -> None:
        for e in self.eyes:
            x0, y0, x1, y1 = e["roi"]
            top, bot, gy = e["top"], e["bot"], e["gy"]
            lid_y = top + amount * (bot - top)
            inside = (np.abs(e["u"]) < 1.0) & (gy >= top - 2.0) & (gy <= lid_y + 1.0)
            if not inside.any():
                continue
            roi = img[y0:y1, x0:x1].astype(np.float32)
            # feathered 2 px at the outline so the lid blends into the skin around it
            cover = np.clip(lid_y - gy + 0.5, 0, 1) * np.clip((gy - top + 2.0) / 2.0, 0, 1) * inside
            cover *= np.clip((1 - np.abs(e["u"])) * e["a"] / 2.0, 0, 1)
            out = roi + (e["lid"] - roi) * cover[..., None]
            lash = np.clip(1.3 - np.abs(gy - lid_y), 0, 1) * inside * np.clip((1 - np.abs(e["u"])) * 3, 0, 1) * min(1.0, amount * 3)
            out *= (1.0 - 0.55 * lash)[..., None]
            img[y0:y1, x0:x1] = np.clip(out, 0, 255).astype(np.uint8)

    def _affine(self, t: float) -> np.ndarray:
        ph, fj = self._phases, self._freq_jitter
        f, x = self.sway_hz, self.expression
        ang = x.tilt_deg + x.motion * self.sway_deg * (0.65 * math.sin(2 * math.pi * f * fj[0] * t + ph[0]) + 0.35 * math.sin(2 * math.pi * 2.3 * f * fj[1] * t + ph[1]))
        tx = x.motion * self.sway_px * self.width * (0.7 * math.sin(2 * math.pi * 0.8 * f * fj[2] * t + ph[2]) + 0.3 * math.sin(2 * math.pi * 1.9 * f * fj[3] * t + ph[3]))
        ty = (x.motion * self.sway_px * self.width * 0.5 * math.sin(2 * math.pi * 1.3 * f * fj[4] * t + ph[4])
              + (x.motion * self._nod + x.head_drop) * self.height)
        breath = self.breathing_scale * math.sin(2 * math.pi * self.breathing_hz * fj[5] * t + ph[5])
        px, py = self.pivot
        a = math.radians(ang)
        c, s = math.cos(a), math.sin(a)
        R = np.array([[c, -s, px - c * px + s * py + tx], [s, c, py - s * px - c * py + ty], [0, 0, 1]])
        B = np.array([[1, 0, 0], [0, 1 + breath, -breath * self.height], [0, 0, 1]])  # breathing: scale about the bottom
        return (B @ R)[:2].astype(np.float32)

    # ------------------------------------------------------------------ frame
    def render_frame(self, index: int, audio: np.ndarray, cue: FrameCue) -> np.ndarray:
        import cv2

        t = index / self.fps
        if cue.cleared:
            self.driver.close_now()
        openness, roundness = self.driver.step(audio if cue.speaking else audio[:0], cue.label)
        expression = self.expression
        openness = min(1.0, openness * expression.mouth_gain)
        self.last_pose = (openness, roundness)
        self._nod = 0.85 * self._nod + 0.15 * self.speech_nod * openness
        img = self.base.copy()
        if openness > 0.01 or abs(roundness) > 0.05:
            self._draw_mouth(img, openness, roundness)
        blink = max(self._blink_amount(t), expression.lid_drop)
        if blink > 0.02:
            self._draw_eyes(img, blink)
        M = self._affine(t)
        size = (self.width, self.height)
        warped = cv2.warpAffine(img, M, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(self.mask, M, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if self.apply_greenscreen:
            person = mask >= 128
            out = self._key.copy()
            cv2.copyTo(warped, person.view(np.uint8), out)
            # a person pixel must never equal the key exactly (interpolation can land on it)
            hit = (out[..., 1] == 255) & (out[..., 0] == 0) & (out[..., 2] == 155) & person
            if hit.any():
                out[hit, 1] = 254
            return out
        alpha = mask.astype(np.float32) * (1.0 / 255.0)
        return cv2.blendLinear(warped, self.plate, alpha, 1.0 - alpha)
