"""Scan-like variants of a lumbar MRI that keep a known truth: other contrasts and other voxel sizes.

Used by ``SpineAITraining.lumbar.stress_test`` (issue 12, item 5). Every function works on the
canonical grid of ``SpineAILib.workflows.lumbar.grid`` (arrays ``[sagittal, row, column]``, rows
superior->inferior, columns anterior->posterior; the 4x4 ``affine`` maps ijk = (column, row,
sagittal) to RAS).

- **contrast** (``contrast_variant``): an intensity remap of the whole volume, plus, for coil
  shading, a smooth multiplicative gain field; the geometry does not move, so the truth label map is
  the case's own, unchanged. The remaps work on the volume normalised between its 1st and 99.5th
  percentiles (``v``, fluid near 1) and go back to the input's dtype and range:

  - ``stir``: fat bright -> dark, fluid bright, as in a fat-suppressed / STIR series: a
    non-monotonic curve (``remap``) that keeps muscle, takes marrow to 0.35 of its level and fat to
    0.08, and lifts the case's fluid level (CSF measured in the canal behind the labelled bodies: on
    the vb2 T2 TSE it lies below the brightest fat, on vb3 at the top) to 1 (a disc nucleus at the
    fluid level stays bright; one at the fat level goes dark: a curve cannot tell them apart);
  - ``spin-echo``: ``v ** 1.6``: fat and marrow dimmer next to fluid (conventional T2 spin echo);
  - ``fast-spin-echo``: ``v ** 0.6``: fat and marrow brighter (T2 FSE/TSE with bright fat);
  - ``t1-like``: the swap: muscle 0.35, marrow 0.7, fat 1, fluid darkened to 0.15 of that (CSF and
    a bright disc dark), air dark;
  - ``shading-posterior``: gain falling log-linearly from 1 at the posterior edge to 0.25 at the
    anterior edge (a spine surface coil under the back);
  - ``shading-top``: gain 1 over the lower half, falling smoothly (cosine) to 0.3 at the top edge
    (the field of view reaching past the coil's upper elements).

- **resolution**: a new grid and so a new affine (the workflow must get the real voxel size), the
  truth going through the same resampling:

  - ``thick_slices``: groups of ``round(thickness / spacing)`` adjacent sagittal slices averaged
    into one thick slice (the remainder split between both sides), the affine's sagittal axis
    scaled by the group size and its origin moved to the first group's centre; the truth of a thick
    slice is, per voxel, the most frequent label of its group (ties: the lower value, so background);
  - ``in_plane_pixels``: each sagittal slice resampled in-plane to about ``pixel_mm`` (align-corners
    grids: first and last samples stay where they were, ``grid.plane_size``; the image bilinear,
    the truth nearest), the affine's row and column axes scaled to the exact new spacing.
"""

import numpy as np

CONTRASTS = ("stir", "spin-echo", "fast-spin-echo", "t1-like", "shading-posterior", "shading-top")
CONTRAST_TITLES = {
    "stir": "contrast STIR-like (fat dark, fluid bright)",
    "spin-echo": "contrast T2 spin-echo-like (gamma 1.6, fat dimmer)",
    "fast-spin-echo": "contrast T2 fast-spin-echo-like (gamma 0.6, fat brighter)",
    "t1-like": "contrast T1-like swap (fluid dark, fat bright)",
    "shading-posterior": "coil shading, anterior edge at 25%",
    "shading-top": "coil shading, top edge at 30%",
}
LOWER, UPPER = 1.0, 99.5  # percentiles that map to 0 and 1 before a remap


def _normalised(image):
    data = np.asarray(image, dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(data, [LOWER, UPPER]))
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((data - lo) / (hi - lo), 0.0, 1.0), lo, hi


def _back(values, image, lo, hi):
    """Normalised values back to the input's intensity range and dtype."""
    out = lo + np.asarray(values, np.float32) * (hi - lo)
    dtype = np.asarray(image).dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return out.astype(dtype)


FLUID_WIDTH = 0.1  # normalised: intensities this close to the fluid level count as fluid


def tissue_levels(v, truth, spacing=(1.0, 1.0, 1.0)):
    """(marrow, fluid) levels of the normalised volume ``v``: the labelled bodies' median, and the 90th percentile of
    the strip 2-20 mm behind the bodies (the spinal canal: CSF) in the middle 8 mm of the bodies' slices."""
    bodies = (truth > 0) & (truth < 26) if truth is not None else None
    if bodies is None or not bodies.any():
        return float(np.median(v)), 1.0
    marrow = float(np.median(v[bodies]))
    centre = int(round(float(np.median(np.nonzero(bodies.any(axis=(1, 2)))[0]))))
    half = max(1, int(round(4.0 / spacing[0])))
    near, far = max(1, int(round(2.0 / spacing[2]))), max(2, int(round(20.0 / spacing[2])))
    strips = []
    for k in range(max(0, centre - half), min(v.shape[0], centre + half + 1)):
        for r in np.nonzero(bodies[k].any(axis=1))[0]:
            back = int(np.nonzero(bodies[k, r])[0].max())
            strips.append(v[k, r, back + near : back + far])
    values = np.concatenate(strips) if strips else np.zeros(0)
    return marrow, float(np.percentile(values, 90)) if len(values) else 1.0


def remap(v, kind, marrow, fluid):
    """The ``stir`` or ``t1-like`` remap of the normalised volume ``v`` for the case's marrow and fluid levels.

    A base curve through x = 0, muscle (0.6 m), marrow (m), fat (m + (1 - m) / 2) and 1, and a bump
    exp(-((v - fluid) / FLUID_WIDTH)^2 / 2) that marks fluid wherever it lies on the scale (above the
    fat on T1-like images, below the brightest fat on T2 TSE with bright fat)."""
    m = float(np.clip(marrow, 0.05, 0.7))
    xs = [0.0, 0.6 * m, m, m + 0.5 * (1.0 - m), 1.0]
    bump = np.exp(-0.5 * ((v - fluid) / FLUID_WIDTH) ** 2)
    if kind == "stir":  # fat (and marrow) dark, fluid bright
        return np.maximum(np.interp(v, xs, [0.0, 0.6 * m, 0.35 * m, 0.08, 0.08]), bump).astype(np.float32)
    return (np.interp(v, xs, [0.0, 0.35, 0.7, 1.0, 1.0]) * (1.0 - 0.85 * bump)).astype(np.float32)  # t1-like


def contrast_variant(image, truth, kind, spacing=(1.0, 1.0, 1.0)):
    """``image`` with the contrast ``kind`` (one of CONTRASTS); ``truth`` (the label map) only gives the marrow
    and fluid levels (global numbers: the remap is the same for every voxel)."""
    v, lo, hi = _normalised(image)
    if kind in ("stir", "t1-like"):
        out = remap(v, kind, *tissue_levels(v, truth, spacing))
    elif kind == "spin-echo":
        out = v**1.6
    elif kind == "fast-spin-echo":
        out = v**0.6
    elif kind in ("shading-posterior", "shading-top"):
        out = v * shading_gain(v.shape, kind)[None]
    else:
        raise ValueError(f"unknown contrast {kind!r}; one of {', '.join(CONTRASTS)}")
    return _back(out, image, lo, hi)


def shading_gain(shape, kind):
    """(rows, columns) multiplicative gain of a coil's shading: smooth, 1 near the coil, low at one edge."""
    _, rows, cols = shape
    if kind == "shading-posterior":  # columns run anterior -> posterior: the coil lies behind the back
        depth = 1.0 - np.linspace(0.0, 1.0, cols)  # 0 at the posterior edge, 1 at the anterior edge
        return np.broadcast_to((0.25**depth)[None, :], (rows, cols)).astype(np.float32)
    if kind == "shading-top":
        t = np.linspace(0.0, 1.0, rows)  # 0 at the top edge
        gain = np.where(t < 0.5, 0.3 + 0.7 * 0.5 * (1 - np.cos(np.pi * t / 0.5)), 1.0)
        return np.broadcast_to(gain[:, None], (rows, cols)).astype(np.float32)
    raise ValueError(f"unknown shading {kind!r}")


def _mode_along(groups):
    """Per voxel, the most frequent value along axis 1 of ``groups`` (ties: the lowest value)."""
    values = np.unique(groups)
    counts = np.stack([(groups == v).sum(axis=1) for v in values])
    return values[np.argmax(counts, axis=0)].astype(groups.dtype)


def thick_slices(image, truth, affine, spacing, thickness_mm):
    """(image, truth, affine, spacing) with sagittal slices about ``thickness_mm`` thick; None if not thicker."""
    group = int(round(thickness_mm / spacing[0]))
    n = image.shape[0] // group
    if group <= 1 or n < 3:
        return None
    first = (image.shape[0] - n * group) // 2
    block = slice(first, first + n * group)
    shape = (n, group) + image.shape[1:]
    averaged = np.asarray(image[block], np.float32).reshape(shape).mean(axis=1)
    dtype = np.asarray(image).dtype
    if np.issubdtype(dtype, np.integer):
        averaged = np.rint(averaged)
    labels = _mode_along(np.asarray(truth[block]).reshape(shape))
    out_affine = np.array(affine, dtype=float)
    out_affine[:3, 3] = affine[:3, 3] + (first + (group - 1) / 2.0) * affine[:3, 2]
    out_affine[:3, 2] = affine[:3, 2] * group
    return averaged.astype(dtype), labels, out_affine, (spacing[0] * group, spacing[1], spacing[2])


def in_plane_pixels(image, truth, affine, spacing, pixel_mm):
    """(image, truth, affine, spacing) with in-plane pixels of about ``pixel_mm`` (rows and columns)."""
    from SpineAILib.workflows.lumbar.grid import resample_slices

    resampled, (sr, sc) = resample_slices(image, spacing, pixel_mm)
    labels, _ = resample_slices(truth, spacing, pixel_mm, mode="nearest")
    dtype = np.asarray(image).dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        resampled = np.clip(np.rint(resampled), info.min, info.max)
    out_affine = np.array(affine, dtype=float)
    out_affine[:3, 1] = affine[:3, 1] * (sr / spacing[1])
    out_affine[:3, 0] = affine[:3, 0] * (sc / spacing[2])
    return resampled.astype(dtype), np.ascontiguousarray(labels), out_affine, (spacing[0], sr, sc)
