"""Training-side preprocessing: the inference pipeline plus the seeds' augmentations.

The deterministic steps (grey, crop to 80 % of the content box, letterbox, resize,
CLAHE, normalisation) are SpineAILib.workflows.ultrasound.preprocess.Preprocessor, the very code the
workflow runs, imported from there. Training adds augmentations (``Augmenter``):

on the raw frame (colour steps need colour):
  * hue shift and saturation scaling (colour-map machines; grey frames get a random
    colour tint first with probability ``p_tint`` so the steps are not no-ops);
on the square grey image, before CLAHE:
  * brightness (x 0.6..1.6) and contrast (x 0.6..1.6 about the mean), gamma 0.75..1.35
  * left-right flip (p 0.5), up-down flip (p ``p_vflip``, 0.1: the probe sits at the top)
  * rotation +-12 degrees, zoom 0.9..1.15, shift +-6 %
  * mild blur or extra speckle noise
  * burnt-in text and marks (scanner captions that survive the crop), p 0.3
  * JPEG re-encoding at quality 50..100

``TrainTransform(preprocessor, augmenter)(frame, box, rng)`` returns the (1, H, W)
float32 network input; ``EvalTransform`` is the same without augmentation.
"""

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Augmenter:
    p_tint: float = 0.3
    hue_shift: float = 12.0  # OpenCV hue units (0..180)
    saturation: tuple = (0.5, 1.6)
    brightness: tuple = (0.6, 1.6)
    contrast: tuple = (0.6, 1.6)
    gamma: tuple = (0.75, 1.35)
    p_hflip: float = 0.5
    p_vflip: float = 0.1
    rotation_deg: float = 12.0
    zoom: tuple = (0.9, 1.15)
    shift: float = 0.06
    p_blur: float = 0.15
    p_noise: float = 0.2
    p_text: float = 0.3
    p_jpeg: float = 0.5
    jpeg_quality: tuple = (50, 100)

    # -- colour (raw frame) ----------------------------------------------------------

    def colour(self, frame, rng):
        if frame.ndim == 2:  # grey: a random tint first, so hue/saturation have colour to act on
            tint = rng.uniform(0.75, 1.0, size=3)
            frame = np.clip(frame[..., None].astype(np.float32) * tint, 0, 255).astype(np.uint8)
        hsv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = np.mod(hsv[..., 0] + rng.uniform(-self.hue_shift, self.hue_shift), 180.0)
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(*self.saturation), 0, 255)
        return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)

    # -- grey square -----------------------------------------------------------------

    def square(self, image, rng):
        img = image.astype(np.float32)
        img *= rng.uniform(*self.brightness)
        mean = float(img.mean())
        img = (img - mean) * rng.uniform(*self.contrast) + mean
        img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(*self.gamma)
        out = np.clip(img, 0, 255).astype(np.uint8)
        if rng.random() < self.p_hflip:
            out = out[:, ::-1]
        if rng.random() < self.p_vflip:
            out = out[::-1]
        out = self._affine(np.ascontiguousarray(out), rng)
        if rng.random() < self.p_blur:
            k = int(rng.choice([3, 5]))
            out = cv2.GaussianBlur(out, (k, k), 0)
        if rng.random() < self.p_noise:
            noise = rng.rayleigh(1.0, size=out.shape).astype(np.float32)
            out = np.clip(out.astype(np.float32) * (0.75 + 0.25 * noise), 0, 255).astype(np.uint8)
        if rng.random() < self.p_text:
            out = burn_in_text(out, rng)
        if rng.random() < self.p_jpeg:
            q = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok:
                out = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
        return out

    def _affine(self, image, rng):
        h, w = image.shape
        angle = rng.uniform(-self.rotation_deg, self.rotation_deg)
        scale = rng.uniform(*self.zoom)
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
        matrix[:, 2] += rng.uniform(-self.shift, self.shift, size=2) * (w, h)
        return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


_WORDS = ("GEN", "PEN", "RES", "THI", "MI 0.9", "TIS 0.4", "L12", "C5-1", "Gn 60", "DR 60", "2D", "14cm", "30Hz", "LAT", "SAG", "TRV")


def burn_in_text(image, rng):
    """Scanner-style captions, a depth scale and an orientation mark (what real exports carry)."""
    out = image.copy()
    h, w = out.shape
    scale = max(h, w) / 400.0
    for _ in range(int(rng.integers(1, 4))):
        text = str(rng.choice(_WORDS))
        x = int(rng.integers(0, max(1, w - 40)))
        y = int(rng.choice([rng.integers(8, max(9, h // 8)), rng.integers(max(1, h - h // 8), h)]))
        colour = int(rng.integers(150, 256))
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    if rng.random() < 0.5:  # depth ticks on one side
        x = int(w - 3) if rng.random() < 0.5 else 2
        for y in range(int(h * 0.1), h, max(4, h // 10)):
            cv2.line(out, (x - 2, y), (x + 2, y), 200, 1)
    if rng.random() < 0.5:  # orientation mark
        cv2.circle(out, (int(rng.integers(5, w - 5)), int(rng.integers(5, max(6, h // 6)))), max(2, h // 60), 220, -1)
    return out


class EvalTransform:
    """Raw frame -> (1, H, W) float32, exactly as the workflow does."""

    def __init__(self, preprocessor):
        self.pre = preprocessor

    def __call__(self, frame, box, rng=None):
        return self.pre.frame(frame, box)


class TrainTransform:
    """Raw frame -> augmented (1, H, W) float32."""

    def __init__(self, preprocessor, augmenter=None):
        self.pre = preprocessor
        self.aug = augmenter or Augmenter()

    def __call__(self, frame, box, rng):
        if rng.random() < (0.8 if frame.ndim == 3 else self.aug.p_tint):
            frame = self.aug.colour(frame, rng)
        square = self.pre.to_square(frame, box)
        square = self.aug.square(square, rng)
        return self.pre.finish(square)[np.newaxis]


# ---------------------------------------------------------------------------- scanner screen layouts

_HEADER_COLOURS = ((37, 62, 94), (30, 30, 30), (45, 45, 60), (20, 40, 70), (60, 60, 60), (0, 0, 0))
_PANEL_WORDS = ("Gen", "THI", "PEN", "RES", "C5-1", "L12-5", "28Hz", "11cm", "4cm", "2D", "HGen", "Gn 60", "C 61",
                "3/3/4", "MI 0.9", "TIB 0.2", "TIS 0.4", "DR 60", "Frq 12", "Dep 3.5", "+ Dist 1.06 cm", "Page 1/3")


def scanner_screen(frames, rng):
    """Embed a whole cine (N, H, W[, 3]) in one random scanner screen layout, as real
    exports look: the image smaller than the screen, a header bar (often dark blue)
    with captions, side panels of settings text, a grey-scale bar, an orientation
    logo. Same layout for every frame (a video comes from one screen); returns the
    new (N, H2, W2[, 3]) uint8 frames. Teaches the classifier that what lies around
    the image does not matter."""
    n, h, w = frames.shape[:3]
    scale = rng.uniform(0.55, 1.0)
    ih, iw = max(8, int(h * scale)), max(8, int(w * scale))
    header = int(rng.uniform(0.08, 0.18) * h) if rng.random() < 0.6 else 0
    footer = int(rng.uniform(0.05, 0.1) * h) if rng.random() < 0.3 else 0
    left = int(iw * rng.uniform(0.05, 0.7))
    right = int(iw * rng.uniform(0.05, 0.5))
    top_gap, bottom_gap = int(rng.uniform(0, 0.1) * h), int(rng.uniform(0, 0.35) * h)
    H, W = header + top_gap + ih + bottom_gap + footer, left + iw + right
    colour_header = header > 0 and rng.random() < 0.5
    rgb = frames.ndim == 4 or colour_header
    canvas = np.zeros((H, W, 3), np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    size = max(0.3, h / 560.0)
    if header:
        colour = _HEADER_COLOURS[int(rng.integers(len(_HEADER_COLOURS)))] if colour_header else (int(rng.integers(0, 70)),) * 3
        canvas[:header] = colour
        for x in (5, W // 3, 2 * W // 3):
            cv2.putText(canvas, str(rng.choice(_PANEL_WORDS)), (x, max(10, header // 2 + 4)), font, size, (230, 230, 230), 1, cv2.LINE_AA)
    if footer:
        canvas[H - footer :] = (int(rng.integers(20, 60)),) * 3
    y = header + 14
    while y < H - footer - 4 and left > 20:
        if rng.random() < 0.7:
            cv2.putText(canvas, str(rng.choice(_PANEL_WORDS)), (3, y), font, size, (220, 220, 220), 1, cv2.LINE_AA)
        y += int(18 * size / 0.4)
    if right > 12 and rng.random() < 0.5:  # grey-scale bar
        x0 = W - max(4, right // 3)
        bar = np.linspace(255, 0, ih).astype(np.uint8)[:, None]
        canvas[header + top_gap : header + top_gap + ih, x0 : x0 + 4] = bar[..., None]
    if rng.random() < 0.4:  # orientation logo: a small disc
        cv2.circle(canvas, (left + int(rng.uniform(0.1, 0.9) * iw), header + top_gap + 6), max(3, h // 40), (60, 90, 200) if rgb else (160,) * 3, -1)
    out = np.empty((n, H, W, 3) if rgb else (n, H, W), np.uint8)
    base = canvas if rgb else cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY)
    r0, c0 = header + top_gap, left
    for i in range(n):
        image = cv2.resize(frames[i], (iw, ih), interpolation=cv2.INTER_AREA)
        if rgb and image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        out[i] = base
        out[i, r0 : r0 + ih, c0 : c0 + iw] = image
    return out
