"""Frames the classifier must not be trusted on: colour Doppler, photographs, non-ultrasound.

Colour frames (more than 2 % strongly coloured pixels in the cropped content) are
called bad quality; grey images that do not look like B-mode ultrasound (little
black background, no speckle) get a warning.
"""

import numpy as np

from SpineAILib.workflows.ultrasound.preprocess import (
    DOPPLER_FRACTION,
    PHOTO_FRACTION,
    colour_fraction,
    to_grey,
    ultrasound_likeness,
)


def screen(cine, box):
    """{'forced_bad': (N,) bool, 'colour_frames', 'photo_like_frames', 'looks_like_ultrasound', 'warnings'}."""
    n = cine.n_frames
    forced = np.zeros(n, dtype=bool)
    warnings = []
    colour, photo = 0, 0
    fractions = []
    if cine.is_color:
        for i, frame in enumerate(cine.frames):
            f = colour_fraction(frame, box)
            fractions.append(f)
            if f > DOPPLER_FRACTION:
                forced[i] = True
                colour += 1
                photo += f > PHOTO_FRACTION
    picks = np.unique(np.linspace(0, n - 1, min(n, 8)).round().astype(int))
    traits = [ultrasound_likeness(to_grey(cine.frames[i])) for i in picks]
    looks = sum(t["looks_like_ultrasound"] for t in traits) >= max(1, len(traits) // 2)
    if photo:
        warnings.append(
            f"{photo} of {n} frames are mostly colour and do not look like ultrasound (a photograph or colour picture?); "
            "they are called bad_quality with no spinal cord or CSF"
        )
    if colour - photo:
        warnings.append(
            f"{colour - photo} of {n} frames carry colour Doppler or colour overlays; the classifier reads grey B-mode only, "
            "so these frames are called bad_quality with no spinal cord or CSF (export B-mode without colour flow)"
        )
    if not looks and not photo:
        warnings.append(
            "the input does not look like B-mode ultrasound (no black background, which every ultrasound export has): "
            "a photograph or a screenshot? the calls may be meaningless"
        )
    return {
        "forced_bad": forced,
        "colour_frames": int(colour),
        "photo_like_frames": int(photo),
        "max_colour_fraction": round(float(max(fractions)) if fractions else 0.0, 4),
        "looks_like_ultrasound": bool(looks),
        "traits": traits[0] if traits else {},
        "warnings": warnings,
    }
