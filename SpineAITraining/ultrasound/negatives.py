"""Synthetic non-spine negatives: images a spine model must not call cord or CSF on.

Users will feed the workflow things that are not infant lumbar spine ultrasound:
a cardiac echo (dark chambers that look like fluid), a CT slice exported as an
image, a photograph. The generator makes only spine scans, so the classifier also
trains on cines made here, labelled bad_quality = 1, spinal_cord = 0, csf = 0
("not a usable spine view": the LP workflow's bad-quality call means "do not use
this frame for the puncture", and a bad frame shows neither cord nor CSF).

Kinds (``KINDS``):
* ``cardiac``: a curvilinear fan of speckled myocardium around two to four beating
  anechoic chambers with bright valve lines, grey or colour-mapped;
* ``abdominal``: a fan or rectangle of liver-like speckle with vessels and a
  bladder-like anechoic oval, no bone and no acoustic shadows;
* ``ct``: a CT-like axial slice (smooth soft tissue, bright bone ring, dark air) on black;
* ``photo``: smooth colourful shapes and gradients filling the frame.

None of them is built from, or tuned on, the real files in ../shared/data.
"""

import cv2
import numpy as np

KINDS = ("cardiac", "abdominal", "ct", "photo")


def _speckle(rng, shape, smooth=1.2):
    raw = np.abs(rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.float32)
    return cv2.GaussianBlur(raw, (0, 0), smooth) if smooth else raw


def _fan_mask(h, w, rng):
    cy = -rng.uniform(0.05, 0.3) * h
    cx = w / 2 + rng.uniform(-0.05, 0.05) * w
    r0, r1 = rng.uniform(0.1, 0.25) * h - cy, rng.uniform(0.85, 0.98) * h - cy
    half = np.radians(rng.uniform(30, 45))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(y - cy, x - cx)
    a = np.arctan2(x - cx, y - cy)
    return (r > r0) & (r < r1) & (np.abs(a) < half)


def _log_compress(amplitude, rng, dr_db=None):
    dr = dr_db or rng.uniform(45, 65)
    db = 20 * np.log10(np.maximum(amplitude, 1e-4))
    top = np.percentile(db, 99.9) + rng.uniform(6.0, 16.0)  # headroom: tissue mid-grey, not white
    return np.clip((db - (top - dr)) / dr, 0, 1)


def _finish_us(value, mask, rng, colour):
    value = value ** rng.uniform(1.6, 3.0)  # scanner grey map: tissue mid-grey to dark, echoes bright
    img = np.clip(value * 255.0 * rng.uniform(0.8, 1.1), 0, 255) * mask
    img = img.astype(np.uint8)
    if colour:
        tint = rng.uniform(0.75, 1.0, size=3)
        img = np.clip(img[..., None] * tint, 0, 255).astype(np.uint8)
    return img


def cardiac_cine(rng, n_frames, size, colour=False):
    h, w = size
    mask = _fan_mask(h, w, rng)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    n_ch = int(rng.integers(2, 5))
    chambers = [
        (rng.uniform(0.3, 0.75) * h, rng.uniform(0.3, 0.7) * w, rng.uniform(0.08, 0.18) * h, rng.uniform(0.06, 0.14) * w, rng.uniform(-0.6, 0.6))
        for _ in range(n_ch)
    ]
    period = rng.uniform(8, 20)
    frames = []
    for t in range(n_frames):
        beat = 1.0 + 0.15 * np.sin(2 * np.pi * t / period)
        tissue = _speckle(rng, (h, w)) * rng.uniform(0.6, 1.0)
        blood = np.zeros((h, w), np.float32)
        wall = np.zeros((h, w), np.float32)
        for cy, cx, ry, rx, rot in chambers:
            c, s = np.cos(rot), np.sin(rot)
            u = ((x - cx) * c + (y - cy) * s) / (rx * beat)
            v = (-(x - cx) * s + (y - cy) * c) / (ry * beat)
            d = np.sqrt(u * u + v * v)
            blood = np.maximum(blood, (d < 1).astype(np.float32))
            wall = np.maximum(wall, np.exp(-((d - 1.1) / 0.12) ** 2))
        amp = tissue * (1 - 0.97 * blood) * (1 + 2.5 * wall)
        for _ in range(2):  # valve leaflets: bright short lines inside chambers
            cy, cx = chambers[int(rng.integers(len(chambers)))][:2]
            amp += 6 * np.exp(-(((y - cy) / 1.5) ** 2 + ((x - cx) / (0.05 * w)) ** 2)) * rng.uniform(0.5, 1)
        depth = np.exp(-y / (h * rng.uniform(0.8, 1.6)))
        frames.append(_finish_us(_log_compress(amp * depth + 0.01 * _speckle(rng, (h, w), 0), rng), mask, rng, colour))
    return np.stack(frames)


def abdominal_cine(rng, n_frames, size, colour=False):
    h, w = size
    mask = _fan_mask(h, w, rng) if rng.random() < 0.6 else np.ones((h, w), bool)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    oval = (rng.uniform(0.4, 0.8) * h, rng.uniform(0.3, 0.7) * w, rng.uniform(0.1, 0.25) * h, rng.uniform(0.12, 0.3) * w)
    vessels = [(rng.uniform(0.2, 0.9) * h, rng.uniform(0.1, 0.9) * w, rng.uniform(0.02, 0.05) * h) for _ in range(int(rng.integers(1, 4)))]
    base = _speckle(rng, (h, w), 2.0)
    frames = []
    for t in range(n_frames):
        dy, dx = 2 * np.sin(t / 6.0), 2 * np.cos(t / 7.0)
        tissue = 0.6 * base + 0.4 * _speckle(rng, (h, w))
        fluid = (((y - oval[0] - dy) / oval[2]) ** 2 + ((x - oval[1] - dx) / oval[3]) ** 2 < 1).astype(np.float32)
        for vy, vx, vr in vessels:
            fluid = np.maximum(fluid, ((y - vy - dy) ** 2 + (x - vx - dx) ** 2 < vr**2).astype(np.float32))
        enhance = 1 + 0.6 * np.clip(np.cumsum(fluid, axis=0) / (0.2 * h), 0, 1)  # posterior enhancement, not a shadow
        amp = tissue * (1 - 0.97 * fluid) * enhance
        depth = np.exp(-y / (h * rng.uniform(0.9, 1.8)))
        frames.append(_finish_us(_log_compress(amp * depth, rng), mask, rng, colour))
    return np.stack(frames)


def ct_cine(rng, n_frames, size, colour=False):
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h * rng.uniform(0.45, 0.55), w * 0.5
    ry, rx = h * rng.uniform(0.3, 0.42), w * rng.uniform(0.38, 0.47)
    frames = []
    for t in range(n_frames):
        body = (((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1).astype(np.float32)
        img = body * (100 + 12 * cv2.GaussianBlur(rng.normal(size=(h, w)).astype(np.float32), (0, 0), 3))
        lungs = [(cy - 0.1 * h, cx + s * 0.2 * w) for s in (-1, 1)] if rng.random() < 0.5 else []
        for ly, lx in lungs:
            img[((y - ly) / (0.18 * h)) ** 2 + ((x - lx) / (0.12 * w)) ** 2 < 1] = 10
        vy, vx, vr = cy + 0.18 * ry + t * 0.2, cx, 0.07 * min(h, w)
        ring = np.abs(np.hypot(y - vy, x - vx) - vr) < 0.35 * vr
        img[ring] = 230
        img += rng.normal(0, 3, size=(h, w)).astype(np.float32) * body
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def photo_cine(rng, n_frames, size, colour=True):
    h, w = size
    base = np.zeros((h, w, 3), np.float32)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for c in range(3):
        base[..., c] = rng.uniform(40, 200) + rng.uniform(-60, 60) * (y / h) + rng.uniform(-60, 60) * (x / w)
    for _ in range(int(rng.integers(3, 8))):
        colour_ = rng.uniform(0, 255, size=3)
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(w // 10, w // 3)), int(rng.integers(h // 10, h // 3)))
        cv2.ellipse(base, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour_.tolist(), -1)
    base = cv2.GaussianBlur(base, (0, 0), 1.5)
    frames = []
    for t in range(n_frames):
        shifted = np.roll(base, (t // 2, t // 3), axis=(0, 1))
        frame = np.clip(shifted + rng.normal(0, 4, size=shifted.shape), 0, 255).astype(np.uint8)
        frames.append(frame if colour else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
    return np.stack(frames)


def negative_cine(seed, kind=None, n_frames=24, size=(224, 224)):
    """(frames, labels (N, 3) uint8 = (1, 0, 0), kind) for one synthetic non-spine cine."""
    rng = np.random.default_rng([int(seed), 4243])
    kind = kind or str(rng.choice(KINDS, p=(0.4, 0.3, 0.15, 0.15)))
    make = {"cardiac": cardiac_cine, "abdominal": abdominal_cine, "ct": ct_cine, "photo": photo_cine}[kind]
    colour = bool(rng.random() < (0.8 if kind == "photo" else 0.3))
    frames = make(rng, n_frames, size, colour=colour)
    labels = np.zeros((n_frames, 3), np.uint8)
    labels[:, 0] = 1
    return frames, labels, kind
