"""Synthetic infant lumbar spine ultrasound cines with per-frame labels, masks and boxes.

No infant spine ultrasound can reach this project, so the LP-ultrasound workflow
trains and is tested on cines made here. A cine is one patient (``anatomy.Subject``)
scanned by one machine (``machines.MACHINES``) in one view, with the probe moving:

* physics, per frame, in beam space (depth samples x beams): the plane cuts the
  3-D anatomy; scatterer strength times complex Gaussian noise plus coherent
  specular echoes, times the round-trip transmission (bone absorbs -> shadows), the
  residual depth attenuation and the time-gain compensation, plus electronic noise;
  blurred by the machine's point-spread function; envelope (Rayleigh speckle in
  tissue, Rician on bright reflectors); log compression to the machine's dynamic
  range, gain and grey map; frame averaging. Curvilinear machines are then
  scan-converted into a fan (black outside), linear ones fill a rectangle; a
  scanner-style margin (text, depth ticks, orientation mark) surrounds the image.
* the probe slides/rocks smoothly (in-plane and out-of-plane), so spinous-process
  shadows sweep over the canal and the cord appears and disappears; speckle
  decorrelates with motion.
* bad-quality episodes: probe in air (reverberation lines only), partial contact
  (one side dark with reverberations), motion blur, gain far off (saturated or black).

Labels follow what is visible: ``csf``/``spinal_cord`` are 1 when at least
``MIN_VISIBLE_MM2`` of CSF / cord lies in the field, outside acoustic shadows, in a
frame that is not bad; ``bad_quality`` frames show neither. Masks hold exactly the
visible pixels of a labelled structure (empty when its label is 0).
"""

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from SpineAILib.vocabulary import ULTRASOUND_LABELS as LABELS

from .anatomy import Subject, evaluate
from .machines import MACHINES, colormap_lut, get_machine

VIEWS = ("sagittal_midline", "sagittal_paramedian", "transverse")
VIEW_WEIGHTS = (0.45, 0.25, 0.30)
BAD_KINDS = ("air", "partial_contact", "motion_blur", "gain_high", "gain_low")
MIN_VISIBLE_MM2 = {"spinal_cord": 3.0, "csf": 4.0}
SHADOW_VISIBLE = 0.25  # round-trip transmission below which a structure counts as hidden in a shadow
WHITE_DB = 14.0  # echo level (dB re. unit scatterer) shown as white at gain 0


@dataclass
class GeneratedCine:
    frames: np.ndarray  # (N, H, W) uint8, or (N, H, W, 3) uint8 for colour-map machines
    frame_times_ms: np.ndarray  # (N,)
    labels: np.ndarray  # (N, 3) uint8 in LABELS order
    cord_masks: np.ndarray  # (N, H, W) bool
    csf_masks: np.ndarray  # (N, H, W) bool
    boxes: dict  # {"spinal_cord": (N, 4) xyxy pixels or NaN rows, "csf": (N, 4)}
    machine: str
    view: str
    pixel_spacing: tuple  # (row, col) mm
    bad_kinds: list = field(default_factory=list)  # per frame: "" or one of BAD_KINDS
    seed: int = 0

    @property
    def n_frames(self):
        return int(self.frames.shape[0])

    def to_cine(self):
        from SpineAILib.images import Cine

        return Cine(
            frames=self.frames,
            frame_times_ms=self.frame_times_ms,
            pixel_spacing=tuple(float(s) for s in self.pixel_spacing),
            description=f"synthetic infant lumbar spine ultrasound ({self.machine}, {self.view})",
            source="SpineAITraining.ultrasound.generator",
            metadata={
                "seed": self.seed,
                "machine": self.machine,
                "view": self.view,
                "labels": LABELS,
                "frame_labels": self.labels.tolist(),
            },
        )


# ============================================================================ geometry


@dataclass
class _Geometry:
    """Where beam-space samples lie in the probe frame and where the image goes on screen."""

    U: np.ndarray  # (Ds, B) lateral position in the probe frame, mm
    Zp: np.ndarray  # (Ds, B) depth (perpendicular to the skin) in the probe frame, mm
    D: np.ndarray  # (Ds, B) distance from the probe face along the beam, mm
    dz_mm: float  # depth step along a beam
    sigma_px: tuple  # PSF sigma (axial rows, lateral beams) in beam-space samples
    viewport: tuple  # (y0, x0, h, w) on the output canvas
    map_x: np.ndarray  # (h, w) float32: beam index per viewport pixel (scan conversion)
    map_y: np.ndarray  # (h, w) depth sample per viewport pixel
    inside: np.ndarray  # (h, w) bool: pixel lies in the image (fan or rectangle)
    mm_per_px: float
    size: tuple  # (H, W)


_GEOMETRY_CACHE = {}


def _geometry(machine, size):
    key = (machine.name, tuple(size))
    if key in _GEOMETRY_CACHE:
        return _GEOMETRY_CACHE[key]
    H, W = size
    top = max(int(round(0.07 * H)), 6)
    bottom = max(int(round(0.02 * H)), 2)
    side = max(int(round(0.05 * W)), 4)
    ah, aw = H - top - bottom, W - 2 * side
    depth = machine.depth_mm
    if machine.geometry == "linear":
        ppm = min(ah / depth, aw / machine.width_mm)
        h, w = int(round(depth * ppm)), int(round(machine.width_mm * ppm))
        ds = max(int(round(h * machine.render_scale)), 16)
        nb = machine.n_beams or max(int(round(w * machine.render_scale)), 16)
        u = (np.arange(nb) / (nb - 1) - 0.5) * machine.width_mm
        d = np.arange(ds) / (ds - 1) * depth
        U, D = np.meshgrid(u.astype(np.float32), d.astype(np.float32))
        Zp = D.copy()
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        map_x = xx * (nb - 1) / max(w - 1, 1)
        map_y = yy * (ds - 1) / max(h - 1, 1)
        inside = np.ones((h, w), bool)
        beam_mm = machine.width_mm / (nb - 1)
    else:
        half = math.radians(machine.fov_deg) / 2.0
        r0, r1 = machine.radius_mm, machine.radius_mm + depth
        height_mm = r1 - r0 * math.cos(half)
        width_mm = 2.0 * r1 * math.sin(half)
        ppm = min(ah / height_mm, aw / width_mm)
        h, w = int(round(height_mm * ppm)), int(round(width_mm * ppm))
        ds = max(int(round(depth * ppm * machine.render_scale)), 16)
        nb = machine.n_beams
        phi = -half + np.arange(nb) / (nb - 1) * 2 * half
        d = np.arange(ds) / (ds - 1) * depth
        PHI, D = np.meshgrid(phi.astype(np.float32), d.astype(np.float32))
        U = (r0 + D) * np.sin(PHI)
        Zp = D * np.cos(PHI)  # skin conforms to the curved face: depth below the skin
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        x_mm = (xx - (w - 1) / 2.0) / ppm
        y_mm = yy / ppm + r0 * math.cos(half)  # distance below the virtual apex
        r = np.hypot(x_mm, y_mm)
        ang = np.arctan2(x_mm, y_mm)
        map_x = ((ang + half) / (2 * half) * (nb - 1)).astype(np.float32)
        map_y = ((r - r0) / depth * (ds - 1)).astype(np.float32)
        inside = (map_x >= 0) & (map_x <= nb - 1) & (map_y >= 0) & (map_y <= ds - 1)
        beam_mm = (2 * half / (nb - 1)) * (r0 + depth / 3.0)
    dz_mm = depth / (ds - 1)
    sig_ax = max(machine.axial_res_mm / dz_mm, 1.0)
    sig_lat = max(machine.lateral_res_mm / beam_mm, 1.7)
    y0 = top + (ah - h) // 2 if machine.geometry == "linear" else top
    x0 = (W - w) // 2
    geom = _Geometry(
        U=U.astype(np.float32), Zp=Zp.astype(np.float32), D=D.astype(np.float32), dz_mm=dz_mm,
        sigma_px=(sig_ax, sig_lat), viewport=(y0 if machine.geometry == "curvilinear" else top, x0, h, w),
        map_x=map_x.astype(np.float32), map_y=map_y.astype(np.float32), inside=inside,
        mm_per_px=1.0 / ppm, size=(H, W),
    )
    _GEOMETRY_CACHE[key] = geom
    return geom


# ============================================================================ probe motion


def _smooth_walk(rng, n, amplitude, n_waves=3, max_cycles=1.5):
    """Smooth random motion over n frames: a drift plus a few slow waves."""
    t = np.linspace(0.0, 1.0, n)
    out = rng.uniform(-1, 1) * amplitude * 0.6 * t
    for _ in range(n_waves):
        f = rng.uniform(0.2, max_cycles)
        out = out + rng.uniform(0.2, 1.0) * amplitude / n_waves * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out


def _trajectory(rng, view, n, bad):
    """Per-frame probe pose: s0 (along spine), l0 (left-right), tilt (in-plane), oblique angle.

    Where the sonographer starts decides what the cine can show: above the conus (cord),
    the LP interspaces (CSF and cauda equina), the sacrum (no CSF), or too far lateral
    (muscle and facets only); from there the probe drifts and rocks.
    """
    region = rng.choice(["cord", "lp", "sacral", "lateral"], p=[0.32, 0.38, 0.15, 0.15])
    s_start = {"cord": rng.uniform(-35.0, -6.0), "lp": rng.uniform(-4.0, 35.0),
               "sacral": rng.uniform(55.0, 75.0), "lateral": rng.uniform(-30.0, 40.0)}[region]
    lateral = float(rng.uniform(12.0, 24.0) * rng.choice([-1.0, 1.0])) if region == "lateral" else 0.0
    if view == "transverse":
        s0 = s_start + _smooth_walk(rng, n, rng.uniform(5.0, 16.0))
        l0 = lateral + rng.normal(0.0, 1.0) + _smooth_walk(rng, n, rng.uniform(1.0, 4.0))
        oblique = np.radians(rng.uniform(-12, 12) + _smooth_walk(rng, n, 6.0))  # cranial/caudal beam tilt
    else:
        s0 = s_start + _smooth_walk(rng, n, rng.uniform(4.0, 14.0))
        if view == "sagittal_midline":
            l0 = lateral + rng.normal(0.0, 0.6) + _smooth_walk(rng, n, rng.uniform(0.5, 2.5))
            oblique = np.radians(rng.normal(0.0, 2.0) + _smooth_walk(rng, n, 2.0))
        else:  # paramedian oblique: off midline at the skin, beam aimed medially
            sgn = np.sign(lateral) if lateral else rng.choice([-1.0, 1.0])
            l0 = sgn * (rng.uniform(6.0, 10.0) + abs(lateral) + _smooth_walk(rng, n, rng.uniform(1.0, 5.0)))
            oblique = sgn * np.radians(rng.uniform(15.0, 28.0) + _smooth_walk(rng, n, 5.0))
    tilt = np.radians(rng.uniform(-5, 5) + _smooth_walk(rng, n, 4.0))
    # fast shaky motion during motion-blur episodes
    shake = np.array([k == "motion_blur" for k in bad])
    if shake.any():
        jitter = rng.normal(0.0, 2.0, n) * shake
        s0 = s0 + jitter * (view != "transverse")
        l0 = l0 + jitter * (view == "transverse")
    return {"s0": s0, "l0": l0, "tilt": tilt, "oblique": oblique}


def _bad_schedule(rng, n):
    """Per-frame bad-quality kind ('' = good): lift-offs at the ends, episodes in the middle.

    Episode lengths scale with the cine length (48 frames = 1), so short cines keep
    about the same share of bad frames (about a quarter).
    """
    bad = [""] * n
    k = n / 48.0

    def length(lo, hi):
        return max(1, int(round(rng.integers(lo, hi) * k)))

    def put(start, size, kind):
        for i in range(max(start, 0), min(start + size, n)):
            bad[i] = kind

    if rng.random() < 0.35:  # probe being placed: air, then partial contact
        a = length(2, 9)
        put(0, a, "air")
        put(a, length(1, 4), "partial_contact")
    if rng.random() < 0.3:  # probe lifted at the end
        a = length(2, 9)
        put(n - a, a, "air")
        p = length(1, 4)
        put(n - a - p, p, "partial_contact")
    for _ in range(rng.poisson(1.4 * k)):
        kind = rng.choice(["motion_blur", "gain_high", "gain_low", "partial_contact", "air"], p=[0.28, 0.2, 0.2, 0.2, 0.12])
        size = length(3, 10)
        put(int(rng.integers(0, max(n - size, 1))), size, str(kind))
    return bad


# ============================================================================ rendering


def _reverberation(geom, rng, strength=1.0):
    """Probe-in-air A-lines: ring-down haze near the face and equally spaced, fading echoes
    between the probe's lens layers (real in-air frames show dozens of such lines),
    with darker vertical bands where gel bubbles or dead elements sit."""
    d = geom.D[:, 0]
    step = rng.uniform(0.5, 2.5)
    width = rng.uniform(0.06, 0.14)
    fade_mm = rng.uniform(0.2, 0.6) * d[-1]  # depth where the ring-down has fallen ~55 dB
    envelope = 2.0 * 10.0 ** (-(d / fade_mm) * 55.0 / 20.0)
    k = np.arange(1, int(d[-1] / step) + 2)
    lines = np.exp(-0.5 * ((d[:, None] - k[None, :] * step) / width) ** 2).sum(axis=1)
    rev = envelope * (rng.uniform(0.15, 0.5) + lines) + 1.5 * np.exp(-d / 0.4)
    nb = geom.D.shape[1]
    lateral = 1.0 + 0.15 * np.sin(np.linspace(0, rng.uniform(2, 6), nb) + rng.uniform(0, 6))
    for _ in range(rng.poisson(1.5)):  # bubbles / poor element contact
        c, w = rng.uniform(0, nb), rng.uniform(1.5, 6.0)
        lateral *= 1.0 - rng.uniform(0.3, 0.8) * np.exp(-0.5 * ((np.arange(nb) - c) / w) ** 2)
    return (strength * rev[:, None] * lateral[None, :]).astype(np.float32)


class _Renderer:
    def __init__(self, machine, size, subject, view, rng):
        self.m = machine
        self.g = _geometry(machine, size)
        self.subj = subject
        self.view = view
        self.rng = rng
        ds, nb = self.g.U.shape
        self.noise = rng.standard_normal((ds, nb, 2)).astype(np.float32)
        self.prev_display = None
        f = machine.frequency_mhz
        d_cm = self.g.D[:, :1] / 10.0
        att_db = machine.attenuation_db_cm_mhz * f * 2.0 * d_cm
        residual_db = -(1.0 - machine.tgc_compensation) * att_db
        knots = rng.normal(0.0, 2.0, 6)  # the user's TGC sliders
        tgc_db = np.interp(np.linspace(0, 1, ds), np.linspace(0, 1, 6), knots)[:, None]
        self.profile = (10.0 ** ((residual_db + tgc_db) / 20.0)).astype(np.float32)
        self.noise_amp = (10.0 ** ((machine.noise_db + 14.0 * d_cm / (machine.depth_mm / 10.0)) / 20.0)).astype(np.float32)
        self.video_gain = rng.normal(0.0, 3.0)
        self.lut = colormap_lut(machine.colormap) if machine.is_color else None

    def world(self, pose):
        g = self.g
        c, s = math.cos(pose["tilt"]), math.sin(pose["tilt"])
        u = g.U * c - g.Zp * s
        z = g.U * s + g.Zp * c
        if self.view == "transverse":
            S = pose["s0"] + math.tan(pose["oblique"]) * z
            L = pose["l0"] + u
        else:
            S = pose["s0"] + u
            L = pose["l0"] - math.tan(pose["oblique"]) * z
        return S, L, z

    def frame(self, pose, bad, motion_mm):
        g, m, rng = self.g, self.m, self.rng
        S, L, Z = self.world(pose)
        props = evaluate(self.subj, S, L, Z, g.D, self.view == "transverse")
        mu = props["mu"]
        cum = np.cumsum(mu, axis=0) * g.dz_mm - 0.5 * mu * g.dz_mm
        trans = np.exp(-2.0 * cum).astype(np.float32)

        # speckle decorrelates as the probe moves (and fully for a jump)
        a = float(np.clip(np.exp(-motion_mm / 0.6), 0.0, 0.97))
        fresh = rng.standard_normal(self.noise.shape).astype(np.float32)
        self.noise = a * self.noise + math.sqrt(1.0 - a * a) * fresh
        amp = np.sqrt(props["sigma"]) * trans * self.profile
        spec = props["rho"] * trans * self.profile
        re = amp * self.noise[..., 0] + spec
        im = amp * self.noise[..., 1]

        contact = np.ones(g.U.shape[1], np.float32)
        if bad in ("air", "partial_contact"):
            nb = g.U.shape[1]
            if bad == "air":
                contact[:] = 0.0
            else:
                frac = rng.uniform(0.25, 0.6)
                edge = int(frac * nb)
                ramp = np.clip((np.arange(nb) - edge) / 6.0 + 0.5, 0, 1).astype(np.float32)
                contact = ramp if rng.random() < 0.5 else ramp[::-1].copy()
            rev = _reverberation(g, rng)
            air = 1.0 - contact[None, :]
            re = re * contact[None, :] + rev * air * (1.0 + 0.2 * fresh[..., 0])
            im = im * contact[None, :] + rev * air * 0.2 * fresh[..., 1]
        e = rng.standard_normal(self.noise.shape).astype(np.float32)
        re = re + self.noise_amp * e[..., 0]
        im = im + self.noise_amp * e[..., 1]
        field = cv2.GaussianBlur(np.dstack([re, im]), (0, 0), sigmaX=g.sigma_px[1], sigmaY=g.sigma_px[0])
        env = np.sqrt(field[..., 0] ** 2 + field[..., 1] ** 2) * 1.4  # blur lowers the mean; restore

        gain = m.gain_db + self.video_gain
        if bad == "air":
            gain += rng.normal(0.0, 6.0)
        if bad == "gain_high":
            gain += rng.uniform(22.0, 38.0)
        elif bad == "gain_low":
            gain -= rng.uniform(28.0, 42.0)
        db = 20.0 * np.log10(env + 1e-6) + gain
        v = np.clip((db - WHITE_DB) / m.dynamic_range_db + 1.0, 0.0, 1.0) ** m.gamma
        if m.temporal_persistence and self.prev_display is not None and bad != "air":
            p = m.temporal_persistence * a
            v = (1 - p) * v + p * self.prev_display
        self.prev_display = v

        visible = trans > SHADOW_VISIBLE
        visible &= contact[None, :] > 0.5
        cord = props["cord"] & visible
        csf = props["csf"] & visible
        return v.astype(np.float32), cord, csf

    def to_screen(self, v, cord, csf, bad):
        """Beam space -> canvas (scan conversion for fans), grey map/colour, margin overlays."""
        g = self.g
        H, W = g.size
        y0, x0, h, w = g.viewport
        img = cv2.remap(v, g.map_x, g.map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        masks = cv2.remap(
            np.dstack([cord, csf, np.zeros_like(cord)]).astype(np.float32), g.map_x, g.map_y,
            interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )
        img[~g.inside] = 0.0
        if bad == "motion_blur":
            k = int(self.rng.integers(9, 25))
            kernel = np.zeros((k, k), np.float32)
            angle = self.rng.uniform(-20, 20)
            kernel[k // 2, :] = 1.0
            rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), angle, 1.0)
            kernel = cv2.warpAffine(kernel, rot, (k, k))
            kernel /= kernel.sum()
            img = cv2.filter2D(img, -1, kernel) * g.inside
        canvas = np.zeros((H, W), np.uint8)
        canvas[y0:y0 + h, x0:x0 + w] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        cord_full = np.zeros((H, W), bool)
        csf_full = np.zeros((H, W), bool)
        cord_full[y0:y0 + h, x0:x0 + w] = (masks[..., 0] > 0.5) & g.inside
        csf_full[y0:y0 + h, x0:x0 + w] = (masks[..., 1] > 0.5) & g.inside
        self._overlay(canvas)
        if self.lut is not None:
            canvas = self.lut[canvas]
        return canvas, cord_full, csf_full

    def _overlay(self, canvas):
        g, m = self.g, self.m
        H, W = g.size
        y0, x0, h, w = g.viewport
        scale = 0.28 * H / 224.0
        cv2.putText(canvas, m.label, (int(0.06 * W), max(int(0.05 * H), 8)), cv2.FONT_HERSHEY_SIMPLEX, scale, 170, 1, cv2.LINE_AA)
        # depth ticks every 5 mm, right of the image
        xt = min(x0 + w + 2, W - 9)
        ppm = 1.0 / g.mm_per_px
        first = y0 if m.geometry == "linear" else y0 + int(round(m.radius_mm * (1 - math.cos(math.radians(m.fov_deg) / 2)) * ppm))
        for k in range(0, int(m.depth_mm) + 1, 5):
            y = int(round(first + k * ppm))
            if 6 <= y < H - 6:
                canvas[y, xt:xt + 2 + (k % 10 == 0) * 2] = 150
        # orientation mark near the top-left of the image
        cx = x0 + 6 if m.geometry == "linear" else x0 + w // 2 - int(0.25 * w)
        cv2.circle(canvas, (cx, max(y0 - 4, 4)), 2, 200, -1)


def _boxes(masks):
    out = np.full((masks.shape[0], 4), np.nan, np.float32)
    for i, m in enumerate(masks):
        if m.any():
            rows = np.flatnonzero(m.any(axis=1))
            cols = np.flatnonzero(m.any(axis=0))
            out[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return out


def generate_cine(seed: int, machine: str = "linear_hf", view: str | None = None, n_frames: int = 48, size: tuple = (224, 224)) -> GeneratedCine:
    """One synthetic cine: a random infant, probe motion and bad episodes, all fixed by ``seed``."""
    from SpineAILib.errors import InputError

    profile = get_machine(machine)
    if n_frames < 1:
        raise InputError(f"n_frames must be at least 1, got {n_frames}")
    H, W = int(size[0]), int(size[1])
    if H < 48 or W < 48:
        raise InputError(f"frame size {H}x{W} is too small (at least 48x48)")
    rng = np.random.default_rng([int(seed), 7919])
    if view is None:
        view = str(rng.choice(VIEWS, p=VIEW_WEIGHTS))
    elif view not in VIEWS:
        raise InputError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    subject = Subject.sample(rng)
    bad = _bad_schedule(rng, n_frames)
    traj = _trajectory(rng, view, n_frames, bad)
    r = _Renderer(profile, (H, W), subject, view, rng)
    frames = np.zeros((n_frames, H, W, 3) if profile.is_color else (n_frames, H, W), np.uint8)
    cord_masks = np.zeros((n_frames, H, W), bool)
    csf_masks = np.zeros((n_frames, H, W), bool)
    labels = np.zeros((n_frames, 3), np.uint8)
    px_area = r.g.mm_per_px ** 2
    prev = None
    for i in range(n_frames):
        pose = {k: float(v[i]) for k, v in traj.items()}
        motion = 5.0 if prev is None else abs(pose["s0"] - prev["s0"]) + abs(pose["l0"] - prev["l0"]) + 10.0 * abs(pose["tilt"] - prev["tilt"])
        prev = pose
        v, cord, csf = r.frame(pose, bad[i], motion)
        img, cord_full, csf_full = r.to_screen(v, cord, csf, bad[i])
        frames[i] = img
        if bad[i]:
            labels[i] = (1, 0, 0)
            continue
        has_cord = cord_full.sum() * px_area >= MIN_VISIBLE_MM2["spinal_cord"]
        has_csf = csf_full.sum() * px_area >= MIN_VISIBLE_MM2["csf"]
        labels[i] = (0, int(has_cord), int(has_csf))
        if has_cord:
            cord_masks[i] = cord_full
        if has_csf:
            csf_masks[i] = csf_full
    return GeneratedCine(
        frames=frames,
        frame_times_ms=np.arange(n_frames, dtype=np.float64) * (1000.0 / profile.frame_rate),
        labels=labels,
        cord_masks=cord_masks,
        csf_masks=csf_masks,
        boxes={"spinal_cord": _boxes(cord_masks), "csf": _boxes(csf_masks)},
        machine=profile.name,
        view=view,
        pixel_spacing=(r.g.mm_per_px, r.g.mm_per_px),
        bad_kinds=list(bad),
        seed=int(seed),
    )


# ============================================================================ seeds' folder layout


def write_seed_layout(out_dir, n_videos: int, seed: int = 0, machines=None, frames_per_video: int = 48, size=(224, 224)) -> Path:
    """Write ``n_videos`` generated cines in the seeds' layout and return the folder.

    ``out_dir/<video>/frame_0001.png ...``; ``out_dir/labels.csv`` (video, frame_file,
    bad_quality, spinal_cord, fluid); ``out_dir/<video>/masks/frame_0001_cord.png`` and
    ``_csf.png`` (0/255); ``out_dir/machines.csv`` (video, machine, view). Machines
    cycle through ``machines`` (default: all of MACHINES).
    """
    from SpineAILib.errors import InputError

    out = Path(out_dir)
    machines = list(machines or MACHINES)
    for name in machines:
        get_machine(name)
    if n_videos < 1:
        raise InputError(f"n_videos must be at least 1, got {n_videos}")
    out.mkdir(parents=True, exist_ok=True)
    label_rows, machine_rows = [], []
    for v in range(n_videos):
        machine = machines[v % len(machines)]
        video_seed = int(seed) * 100003 + v
        cine = generate_cine(video_seed, machine=machine, n_frames=frames_per_video, size=size)
        vid = f"US{v:04d}"
        vdir = out / vid
        mdir = vdir / "masks"
        mdir.mkdir(parents=True, exist_ok=True)
        for i in range(cine.n_frames):
            name = f"frame_{i + 1:04d}"
            img = cine.frames[i]
            if img.ndim == 3:
                img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            _imwrite(vdir / f"{name}.png", img)
            _imwrite(mdir / f"{name}_cord.png", cine.cord_masks[i].astype(np.uint8) * 255)
            _imwrite(mdir / f"{name}_csf.png", cine.csf_masks[i].astype(np.uint8) * 255)
            b, c, f = (int(x) for x in cine.labels[i])
            label_rows.append((vid, f"{name}.png", b, c, f))
        machine_rows.append((vid, machine, cine.view))
    with open(out / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("video", "frame_file", "bad_quality", "spinal_cord", "fluid"))
        w.writerows(label_rows)
    with open(out / "machines.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("video", "machine", "view"))
        w.writerows(machine_rows)
    return out


def _imwrite(path, image):
    from SpineAILib.errors import OutputError

    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OutputError(f"{path}: cannot write this PNG file")
