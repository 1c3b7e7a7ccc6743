"""Post-hoc calibration of the severity grades and the image check, from the bundle's metadata.

A grader trained on synthetic studies calls real, healthy spines Moderate too often
(issue 18). A bundle may carry ``grading.calibration`` in its metadata.json:

    {"method": "...",
     "groups": {"spinal": {"temperature": T, "shift": [0, b1, b2]}, ...},
     "checks": {"spinal": {"check": "centre_fluid", "min_z": 0.5, "band": 0.125}},
     "fitted_on": "...", "command": "..."}

``groups``: per condition group the grade probabilities become
softmax(log p / T + shift), a temperature and a log-prior shift (a shift of -1 on
Moderate divides its odds by e); a group without an entry is left as the network
gives it. ``checks``: a grade is withheld ("not assessed" with the reason) when the
crop does not show what the grade is about. ``centre_fluid`` (canal crops, cut from
sagittal T2/STIR where cerebrospinal fluid is bright): the median over the crop's
rows of a central band of its middle slice, in the crop's z-scores, must reach
``min_z``; a crop centred on a disc or vertebral body (the canal point missed the
canal) or on a series whose fluid is dark (T1 taken for T2) fails. A narrowed canal
still passes: the narrowing covers a few rows, the median looks along the whole crop.
An older bundle without ``calibration`` runs unchanged.
"""

import numpy as np

from SpineAILib.workflows.lumbar.severity.submission import GRADES, GROUPS

CENTRE_FLUID_REASON = ("not assessed: no fluid column at the crop's centre (median {value:.2f} < {limit:.2f} "
                       "z): the canal point misses the spinal canal, or the series is not T2-like there")


def calibration_of(metadata):
    """The bundle's ``grading.calibration`` dict, or None (older bundles)."""
    calibration = (metadata or {}).get("grading", {}).get("calibration")
    return calibration if isinstance(calibration, dict) else None


def _group_name(group):
    return group if isinstance(group, str) else GROUPS[int(group)]


def calibrate(probabilities, groups, calibration):
    """(N, 3) probabilities -> calibrated (N, 3); ``groups``: N group indices or names."""
    p = np.asarray(probabilities, dtype=float)
    entries = (calibration or {}).get("groups") or {}
    if not entries or p.size == 0:
        return p
    out = p.copy()
    for i, group in enumerate(groups):
        entry = entries.get(_group_name(group))
        if not entry:
            continue
        temperature = float(entry.get("temperature", 1.0))
        shift = np.asarray(entry.get("shift", [0.0] * len(GRADES)), dtype=float)
        z = np.log(np.clip(p[i], 1e-12, 1.0)) / temperature + shift
        z = np.exp(z - z.max())
        out[i] = z / z.sum()
    return out


def centre_fluid(crop, band=0.125):
    """Median over rows of the central band (``band`` of the width) of the crop's middle slice."""
    crop = np.asarray(crop, dtype=float)
    image = crop[crop.shape[0] // 2] if crop.ndim == 3 else crop
    width = image.shape[1]
    half = max(1, int(round(band * width / 2)))
    centre = width // 2
    return float(np.median(image[:, centre - half : centre + half].mean(axis=1)))


def check_crop(crop, group, calibration):
    """The reason to withhold this crop's grade, or "" (it passes, or the bundle has no check)."""
    spec = ((calibration or {}).get("checks") or {}).get(_group_name(group))
    if not spec or crop is None:
        return ""
    if spec.get("check") == "centre_fluid":
        value, limit = centre_fluid(crop, float(spec.get("band", 0.125))), float(spec["min_z"])
        return CENTRE_FLUID_REASON.format(value=value, limit=limit) if value < limit else ""
    return ""
