"""Outlines of the named vertebral bodies from the 1 mm boundary model.

The level model names bodies from whole slices at 1.5 mm and draws their outlines
about 1 mm off. The refiner bundle (`spineai-train lumbar-refiner`) answers only
"vertebral body or not" at 1 mm; here it redraws each named body:
1. each body gets a zone: its sagittal footprint (all its slices projected onto
   one plane) grown by ``margin_mm``, split between neighbouring bodies by nearest
   footprint, within the body's own lateral extent grown by the same margin;
2. the refiner runs on the sagittal slices those zones cover; a body becomes the
   largest connected piece of "body" voxels (P >= 0.5) in its zone. A slice where
   the level model missed part of a body (called it background) can be filled in,
   because the zone comes from the whole body's footprint;
3. a body the refiner shrinks below ``MIN_KEPT_SHARE`` of its first outline keeps
   that first outline (the refiner failed there, the names stay as they were).
Names are never changed here: only which voxels carry them. The margin is the
refiner bundle's ``thresholds.zone_margin_mm``, chosen on the validation cases
(``evaluate_lumbar_mri --sweep-refiner``).
"""

import numpy as np

from SpineAILib.morphology import largest_component
from SpineAILib.workflows.lumbar.grid import normalise, pad_to_multiple, resample_slices
from SpineAILib.workflows.lumbar.postprocess import measure_body
from SpineAILib.workflows.lumbar.predict import DIVISOR

TASK = "lumbar-mri/refiner"
BUNDLE_DIR_NAME = "lumbar-mri-body-refiner"
MIN_KEPT_SHARE = 0.5
CONTEXT_MM = 24.0  # image around the zones that the refiner sees
DEFAULT_MARGIN_MM = 4.0  # a bundle's thresholds.zone_margin_mm (tuned on validation) overrides it


def refiner_bundle_path():
    """The installed outline refiner bundle, or None (the workflow then keeps the level model's outlines)."""
    from SpineAILib.models.catalogue import sub_model_path

    return sub_model_path(TASK, BUNDLE_DIR_NAME)


def load_refiner(device, path=None):
    """The refiner bundle at ``path`` (default: the installed one), or None when there is none."""
    from SpineAILib.models.engine import load_model

    path = path or refiner_bundle_path()
    return None if path is None else load_model(path, device=device, expected_task=TASK)


def predict_body_probability(model, canonical, spacing, region, device, batch_size=8, intensity=None):
    """P(vertebral body) on the canonical grid (float32, zero outside the slices/box ``region`` touches).

    The volume is normalised as a whole (as in training), the bounding box of ``region``
    plus CONTEXT_MM is resampled to the model's 1 mm, run slice by slice, and the
    probabilities interpolated back (align-corners grids, as ``resample_slices``).
    """
    from SpineAILib.models.engine import as_runner, interpolate, softmax

    runner = as_runner(model, device)
    out = np.zeros(canonical.shape, np.float32)
    if not region.any():
        return out
    intensity = intensity or {}
    ks = np.nonzero(region.any(axis=(1, 2)))[0]
    rows, cols = np.nonzero(region.any(axis=(0, 2)))[0], np.nonzero(region.any(axis=(0, 1)))[0]
    pad_r, pad_c = int(round(CONTEXT_MM / spacing[1])), int(round(CONTEXT_MM / spacing[2]))
    r0, r1 = max(0, rows[0] - pad_r), min(canonical.shape[1], rows[-1] + pad_r + 1)
    c0, c1 = max(0, cols[0] - pad_c), min(canonical.shape[2], cols[-1] + pad_c + 1)
    normalised, _ = normalise(canonical, intensity.get("lower_percentile", 0.5), intensity.get("upper_percentile", 99.5))
    box = normalised[ks[0] : ks[-1] + 1, r0:r1, c0:c1]
    slices, _ = resample_slices(box, spacing, 1.0)
    for start in range(0, len(slices), batch_size):
        chunk = np.ascontiguousarray(slices[start : start + batch_size], dtype=np.float32)[:, None]
        padded, (r, c) = pad_to_multiple(chunk, DIVISOR)
        probability = softmax(runner(padded)[:, :, :r, :c], 1)[:, 1:2]
        probability = interpolate(probability, (r1 - r0, c1 - c0), align_corners=True)
        k = ks[0] + start
        out[k : k + len(chunk), r0:r1, c0:c1] = probability[:, 0]
    return out


def body_zones(footprints, steps):
    """2-D zone map: each footprint (label 1..n, 0 elsewhere) grown ``steps`` pixels, neighbours split by nearest."""
    zones = footprints.copy()
    for _ in range(steps):
        empty = zones == 0
        if not empty.any():
            break
        padded = np.pad(zones, 1)
        neighbours = np.max([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]], axis=0)
        zones = np.where(empty, neighbours, zones)
    return zones


def refine_bodies(cleaned, bodies, canonical, spacing, refiner):
    """Redraw the named ``bodies`` (postprocess.Body, kept top to bottom) with the ``refiner`` bundle;
    (class map, bodies, notes)."""
    margin_mm = float((refiner.metadata.get("thresholds") or {}).get("zone_margin_mm", DEFAULT_MARGIN_MM))
    if not bodies:
        return cleaned, bodies, []
    shape = cleaned.shape
    footprints = np.zeros(shape[1:], np.int32)
    lateral = []
    lateral_margin = int(round(margin_mm / spacing[0]))
    for number, body in enumerate(bodies, start=1):
        k, r, c = np.unravel_index(body.index, shape)
        footprints[r, c] = np.where(footprints[r, c] == 0, number, footprints[r, c])
        lateral.append((max(0, k.min() - lateral_margin), min(shape[0], k.max() + lateral_margin + 1)))
    zones2d = body_zones(footprints, max(1, int(round(margin_mm / min(spacing[1:])))))
    zones = np.zeros(shape, np.int32)
    for number, (k0, k1) in enumerate(lateral, start=1):
        zones[k0:k1][:, zones2d == number] = number
    probability = predict_body_probability(refiner.model, canonical, spacing, zones > 0, refiner.device,
                                           intensity=refiner.metadata["input"].get("intensity"))  # fmt: skip
    is_body = probability >= 0.5
    out = np.zeros(shape, np.uint8)
    kept, notes = [], []
    n_classes = max(b.name_index for b in bodies) + 1
    for number, body in enumerate(bodies, start=1):
        piece = largest_component(is_body & (zones == number))
        index = np.flatnonzero(piece)
        if len(index) < MIN_KEPT_SHARE * len(body.index):
            notes.append(f"kept the level model's outline of a body ({len(index)} of {len(body.index)} voxels from the refiner)")
            index = body.index
        out.ravel()[index] = body.name_index
    for body in bodies:
        index = np.flatnonzero(out.ravel() == body.name_index)
        refined = measure_body(index, out, shape, spacing, n_classes)
        refined.name_index = body.name_index
        kept.append(refined)
    return out, kept, notes
