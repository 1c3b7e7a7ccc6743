"""Heat maps as colours: scaled to 0..1, an OpenCV colour map, and a blend onto a grey or RGB frame.

Used by the scene (a heat-map volume's colour table), the overlay pictures and the
viewers; the heat maps themselves come from ``explain`` (Grad-CAM).
"""

import numpy as np

# OpenCV colour maps by name (cv2.COLORMAP_<NAME>); looked up when called.
COLORMAPS = ("jet", "inferno", "turbo", "hot", "magma", "plasma", "viridis", "rainbow", "bone")


def normalise(heat):
    """``heat`` scaled to 0..1 (min -> 0, max -> 1); all zeros when it is flat or not finite."""
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(heat.min(initial=0.0)), float(heat.max(initial=0.0))
    if high - low <= 1e-12:
        return np.zeros_like(heat)
    return (heat - low) / (high - low)


def _colormap_code(colormap):
    import cv2

    code = getattr(cv2, f"COLORMAP_{str(colormap).upper()}", None)
    if code is None:
        raise ValueError(f"unknown colormap {colormap!r}; choose from {', '.join(COLORMAPS)}")
    return code


def heatmap_to_rgb(heat, colormap="jet"):
    """``heat`` (any shape, values 0..1) coloured with an OpenCV colour map -> uint8 RGB (..., 3)."""
    import cv2

    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    if heat.ndim == 0:
        raise ValueError("heatmap_to_rgb needs an array, not a scalar")
    grey = (heat * 255.0 + 0.5).astype(np.uint8)
    flat = grey.reshape(-1, grey.shape[-1]) if grey.ndim >= 2 else grey[None]
    bgr = cv2.applyColorMap(np.ascontiguousarray(flat), _colormap_code(colormap))
    return np.ascontiguousarray(bgr[..., ::-1]).reshape(*heat.shape, 3)


def _resize(heat, shape):
    import cv2

    if heat.shape == tuple(shape):
        return heat
    return cv2.resize(heat, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)


def overlay_heatmap(frame, heat, alpha=0.4, colormap="jet", min_heat=0.0):
    """Blend the coloured ``heat`` (0..1, resized to the frame if needed) onto ``frame``.

    ``frame``: (H, W) grey or (H, W, 3) RGB, uint8 or float 0..255. ``alpha``: opacity of
    the colour at full heat. Pixels with heat below ``min_heat`` keep the frame as it is.
    Returns (H, W, 3) uint8 RGB.
    """
    frame = np.asarray(frame)
    if frame.ndim == 2:
        rgb = np.repeat(frame[..., None], 3, axis=2)
    elif frame.ndim == 3 and frame.shape[2] in (3, 4):
        rgb = frame[..., :3]
    else:
        raise ValueError(f"frame must be (H, W) or (H, W, 3), got {frame.shape}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in 0..1, got {alpha}")
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heat must be a 2-D map, got shape {heat.shape}")
    heat = np.clip(_resize(heat, rgb.shape[:2]), 0.0, 1.0)
    colour = heatmap_to_rgb(heat, colormap).astype(np.float32)
    weight = np.where(heat >= float(min_heat), float(alpha), 0.0)[..., None].astype(np.float32)
    blended = rgb.astype(np.float32) * (1.0 - weight) + colour * weight
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
