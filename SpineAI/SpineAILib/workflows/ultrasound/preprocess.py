"""Ultrasound frame preprocessing shared by inference (this package) and training.

It lives in SpineAILib because the Slicer module ships SpineAILib only; the
training package (SpineAITraining.ultrasound.preprocess) imports it from here, so a
model always sees at inference exactly what it saw in training.

The pipeline (the seeds' best: crop to 80 %, CLAHE, normalisation):

    frame (grey or RGB uint8, any size)
      -> grey (ITU-R BT.601 luma)
      -> crop: the content box of the cine (what is not black border; burnt-in text
         removed by a morphological opening), then its central 80 %
      -> letterbox to a square (black bars: ultrasound background) and resize to the
         model's input size (INTER_AREA)
      -> CLAHE (clip 2, 8 x 8 tiles) or plain histogram equalisation
      -> float32 (x / 255 - mean) / std

Training inserts its augmentations between the resize and the equalisation
(SpineAITraining.ultrasound.preprocess), on the same uint8 square image.

The content box is computed once per cine (from up to 32 frames), so every frame
of a cine is cropped alike; a live stream estimates it from its first frames.

Screening checks for inputs that are not plain B-mode ultrasound:
``colour_fraction`` (strongly coloured pixels: colour Doppler, colour maps,
photographs) and ``ultrasound_likeness`` (a black background).
"""

from dataclasses import dataclass, field

import numpy as np

DEFAULT_SIZE = (160, 160)

# Stored in a bundle's metadata.json under input.preprocess (plus input.size and input.intensity).
DEFAULT_SPEC = {
    "grey": "luma-bt601",
    "crop": {"method": "content-box-centre", "fraction": 0.8, "threshold": 12},
    "letterbox": True,
    "equalise": {"method": "clahe", "clip_limit": 2.0, "tiles": 8},
    "intensity": {"scale": 1.0 / 255.0, "mean": 0.5, "std": 0.25},
}

# A pixel is "strongly coloured" when its HSV saturation and value both exceed these (0..255).
COLOUR_SATURATION = 90
COLOUR_VALUE = 110
# Above this fraction of the cropped content a frame is treated as colour Doppler / not B-mode.
DOPPLER_FRACTION = 0.02
# Above this it is rather a colour picture (photograph, colour map) than ultrasound.
PHOTO_FRACTION = 0.30
# Ultrasound exports have at least this share of near-black pixels (see ultrasound_likeness).
DARK_FRACTION_MIN = 0.05


@dataclass
class Preprocessor:
    """Turns frames into model input; build it from a bundle's metadata (``from_metadata``)."""

    size: tuple = DEFAULT_SIZE
    crop_fraction: float = 0.8
    content_threshold: int = 12
    letterbox: bool = True
    equalise: str = "clahe"  # "clahe", "hist" or "none"
    clahe_clip: float = 2.0
    clahe_tiles: int = 8
    mean: float = 0.5
    std: float = 0.25
    _clahe: object = field(default=None, repr=False, compare=False)

    # -- construction -----------------------------------------------------------------

    @classmethod
    def from_metadata(cls, input_spec):
        """From a bundle's metadata ``input`` object (size, preprocess, intensity)."""
        spec = dict(DEFAULT_SPEC)
        spec.update(input_spec.get("preprocess") or {})
        crop = spec.get("crop") or {}
        eq = spec.get("equalise") or {"method": "none"}
        intensity = input_spec.get("intensity") or spec["intensity"]
        size = tuple(int(v) for v in input_spec.get("size", DEFAULT_SIZE))
        return cls(
            size=size,
            crop_fraction=float(crop.get("fraction", 1.0)) if crop.get("method", "none") != "none" else 1.0,
            content_threshold=int(crop.get("threshold", 12)),
            letterbox=bool(spec.get("letterbox", True)),
            equalise=str(eq.get("method", "none")),
            clahe_clip=float(eq.get("clip_limit", 2.0)),
            clahe_tiles=int(eq.get("tiles", 8)),
            mean=float(intensity.get("mean", 0.5)),
            std=float(intensity.get("std", 0.25)),
        )

    def metadata(self):
        """The ``input`` part of a bundle's metadata.json describing this preprocessing."""
        return {
            "channels": 1,
            "size": [int(self.size[0]), int(self.size[1])],
            "spacing": None,
            "intensity": {
                "method": f"{self.equalise} then (x/255 - mean)/std",
                "scale": 1.0 / 255.0,
                "mean": self.mean,
                "std": self.std,
            },
            "preprocess": {
                "grey": "luma-bt601",
                "crop": {"method": "content-box-centre", "fraction": self.crop_fraction, "threshold": self.content_threshold},
                "letterbox": self.letterbox,
                "equalise": {"method": self.equalise, "clip_limit": self.clahe_clip, "tiles": self.clahe_tiles},
            },
        }

    # -- the steps ---------------------------------------------------------------------

    def content_box(self, frames):
        """(r0, r1, c0, c1) of the cine's content; see module ``content_box``."""
        return content_box(frames, threshold=self.content_threshold)

    def to_square(self, frame, box=None):
        """grey -> crop (content box, central fraction) -> letterbox -> resize: (H, W) uint8."""
        import cv2

        grey = to_grey(frame)
        if box is None:
            box = (0, grey.shape[0], 0, grey.shape[1])
        r0, r1, c0, c1 = centre_crop_box(box, self.crop_fraction)
        crop = grey[r0:r1, c0:c1]
        if self.letterbox:
            crop = letterbox_square(crop)
        rows, cols = self.size
        interp = cv2.INTER_AREA if crop.shape[0] >= rows else cv2.INTER_LINEAR
        return cv2.resize(np.ascontiguousarray(crop), (cols, rows), interpolation=interp)

    def equalise_uint8(self, square):
        import cv2

        if self.equalise == "clahe":
            if self._clahe is None:
                self._clahe = cv2.createCLAHE(clipLimit=self.clahe_clip, tileGridSize=(self.clahe_tiles, self.clahe_tiles))
            return self._clahe.apply(square)
        if self.equalise == "hist":
            return cv2.equalizeHist(square)
        return square

    def normalise(self, square):
        """uint8 (..., H, W) -> float32 (x/255 - mean)/std."""
        return ((square.astype(np.float32) * (1.0 / 255.0)) - self.mean) / self.std

    def finish(self, square):
        """Equalise and normalise one uint8 square: (H, W) float32."""
        return self.normalise(self.equalise_uint8(square))

    def frame(self, frame, box=None):
        """One raw frame -> (1, H, W) float32 model input."""
        return self.finish(self.to_square(frame, box))[np.newaxis]

    def batch(self, frames, box=None):
        """Raw frames (N, rows, cols[, 3]) -> (N, 1, H, W) float32."""
        out = np.empty((len(frames), 1) + tuple(self.size), dtype=np.float32)
        for n, frame in enumerate(frames):
            out[n, 0] = self.finish(self.to_square(frame, box))
        return out

    def iter_batches(self, frames, batch_size=32, box=None):
        """Yield (start, (n, 1, H, W) float32) over a cine, ``batch_size`` frames at a time
        (memory stays bounded whatever the cine's length and frame size)."""
        if box is None:
            box = self.content_box(frames)
        for start in range(0, len(frames), batch_size):
            yield start, self.batch(frames[start : start + batch_size], box)


# ---------------------------------------------------------------------------- pure helpers


def to_grey(frame):
    """(rows, cols) uint8 as is; (rows, cols, 3) RGB -> BT.601 luma uint8."""
    import cv2

    if frame.ndim == 2:
        return frame if frame.dtype == np.uint8 else np.clip(frame, 0, 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def content_box(frames, threshold=12, max_samples=32):
    """Bounding box (r0, r1, c0, c1) of what is not black border in a cine.

    The per-pixel maximum over up to ``max_samples`` frames, downscaled to at most
    256 px, thresholded at ``threshold``; an opening (kernel 1/40 of the side)
    removes thin burnt-in text and marks, so a caption in a corner does not widen
    the box. An all-dark cine (or a box under 10 % of the frame) gives the whole frame.
    """
    import cv2

    frames = np.asarray(frames)
    if frames.ndim == 2 or (frames.ndim == 3 and frames.shape[-1] == 3):  # one frame, grey or RGB
        frames = frames[np.newaxis]
    n = frames.shape[0]
    rows, cols = frames.shape[1:3]
    picks = np.unique(np.linspace(0, n - 1, min(n, max_samples)).round().astype(int))
    peak = None
    for i in picks:
        grey = to_grey(frames[i])
        peak = grey if peak is None else np.maximum(peak, grey)
    scale = min(1.0, 256.0 / max(rows, cols))
    small = cv2.resize(peak, (max(1, round(cols * scale)), max(1, round(rows * scale))), interpolation=cv2.INTER_AREA) if scale < 1 else peak
    mask = (small > threshold).astype(np.uint8)
    k = max(3, int(round(max(small.shape) / 40)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    ys, xs = np.nonzero(mask)
    whole = (0, rows, 0, cols)
    if ys.size == 0:
        return whole
    r0, r1 = int(ys.min() / scale), int(np.ceil((ys.max() + 1) / scale))
    c0, c1 = int(xs.min() / scale), int(np.ceil((xs.max() + 1) / scale))
    if scale < 1:  # refine the edges at full resolution, within one coarse pixel of them
        pad = int(np.ceil(1.0 / scale)) + 1
        r0, c0 = max(0, r0 - pad), max(0, c0 - pad)
        r1, c1 = min(rows, r1 + pad), min(cols, c1 + pad)
        inside = peak[r0:r1, c0:c1] > threshold
        rows_on, cols_on = np.nonzero(inside.mean(axis=1) > 0.05)[0], np.nonzero(inside.mean(axis=0) > 0.05)[0]
        if rows_on.size and cols_on.size:
            r0, r1, c0, c1 = r0 + rows_on[0], r0 + rows_on[-1] + 1, c0 + cols_on[0], c0 + cols_on[-1] + 1
    r0, c0 = max(0, int(r0)), max(0, int(c0))
    r1, c1 = min(rows, int(r1)), min(cols, int(c1))
    if (r1 - r0) * (c1 - c0) < 0.1 * rows * cols:
        return whole
    return (r0, r1, c0, c1)


def centre_crop_box(box, fraction):
    """The central ``fraction`` (per side) of box (r0, r1, c0, c1), at least 1 px."""
    r0, r1, c0, c1 = (int(v) for v in box)
    if fraction >= 1.0:
        return (r0, r1, c0, c1)
    h, w = r1 - r0, c1 - c0
    nh, nw = max(1, int(round(h * fraction))), max(1, int(round(w * fraction)))
    top, left = r0 + (h - nh) // 2, c0 + (w - nw) // 2
    return (top, top + nh, left, left + nw)


def letterbox_square(image):
    """Pad (black) to a square, image centred: keeps the anatomy's aspect ratio."""
    h, w = image.shape[:2]
    if h == w:
        return image
    side = max(h, w)
    out = np.zeros((side, side) + image.shape[2:], dtype=image.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = image
    return out


# ---------------------------------------------------------------------------- screening


def colour_fraction(frame, box=None):
    """Fraction of strongly coloured pixels (HSV S > 90 and V > 110 of 255; dark UI panels such as a navy header bar stay out) inside the
    central 80 % of ``box``: colour Doppler, colour maps and photographs have many,
    grey B-mode none (codec chroma noise stays far below the saturation cut)."""
    import cv2

    if frame.ndim == 2:
        return 0.0
    if box is not None:
        r0, r1, c0, c1 = centre_crop_box(box, 0.8)
        frame = frame[r0:r1, c0:c1]
    step = max(1, int(max(frame.shape[:2]) // 256))  # subsample big frames: a fraction needs no full resolution
    hsv = cv2.cvtColor(np.ascontiguousarray(frame[::step, ::step]), cv2.COLOR_RGB2HSV)
    coloured = (hsv[..., 1] > COLOUR_SATURATION) & (hsv[..., 2] > COLOUR_VALUE)
    return float(coloured.mean()) if coloured.size else 0.0


def ultrasound_likeness(grey, box=None):
    """Heuristic signs of a B-mode ultrasound frame, for a warning only.

    Returns {"dark_fraction", "speckle", "looks_like_ultrasound"} for the whole frame
    (or the central 80 % of ``box``). Ultrasound exports always have a large
    near-black area (outside the sector or the image, below the penetration depth,
    anechoic regions): ``dark_fraction`` is the share of pixels under 20 of 255, and
    a frame with less than 5 % of them (a photograph, a screenshot, an MRI crop) does
    not look like ultrasound. ``speckle`` (median absolute Laplacian over the bright
    pixels, relative to their mean) is reported but not decisive: a low-resolution CT
    slice has as much fine texture as speckle. The model's calls are never changed by
    this check alone.
    """
    import cv2

    if box is not None:
        r0, r1, c0, c1 = centre_crop_box(box, 0.8)
        grey = grey[r0:r1, c0:c1]
    scale = min(1.0, 256.0 / max(grey.shape))
    if scale < 1:
        grey = cv2.resize(grey, (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    g = grey.astype(np.float32)
    dark = float((g < 20).mean())
    lap = np.abs(cv2.Laplacian(g, cv2.CV_32F, ksize=1))
    bright = g > 40
    speckle = float(np.median(lap[bright]) / max(1.0, g[bright].mean())) if bright.mean() > 0.01 else 0.0
    return {"dark_fraction": round(dark, 4), "speckle": round(speckle, 4), "looks_like_ultrasound": bool(dark >= DARK_FRACTION_MIN)}
