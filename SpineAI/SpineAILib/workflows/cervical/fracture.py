"""Per-vertebra fracture probabilities, the patient's, and where the classifier looked.

Each named cervical vertebra is cut out as a 3-D crop centred on it (the bundle says the
size and spacing, e.g. 48^3 at 1.25 mm = 60 mm, enough for the arch and processes) with
two channels: the CT in a bone window and that vertebra's mask, so the classifier knows
which of the vertebrae in the crop it is asked about. The patient's probability combines
the vertebrae's by the rule the trainer chose on validation ("noisy_or" or "max"); both are
Platt-scaled as fitted on validation (the RSNA 2022 metric punishes overconfidence). The
Grad-CAM of each crop, scaled by its probability (a vertebra called intact stays dark), is
painted back where the crop was cut. Shared by the workflow and the trainer.
"""

import numpy as np

from SpineAILib.ct_grid import linear_along, resample_linear, resample_nearest
from SpineAILib.images import VolumeImage
from SpineAILib.vocabulary import CERVICAL_VERTEBRAE
from SpineAILib.workflows.cervical import FRACTURE_BUNDLE_DIR, FRACTURE_TASK

MAX_HEATMAP_VOXELS = 1 << 27  # larger inputs get the heat map on the model grid (512 MiB of float32 otherwise)


def fracture_bundle_path():
    from SpineAILib.models.catalogue import sub_model_path

    return sub_model_path(FRACTURE_TASK, FRACTURE_BUNDLE_DIR)


def crop_positions(centre, size, spacing_mm, layout_spacing):
    """Canonical (continuous) indices of a crop's voxels along each axis."""
    offsets = (np.arange(size, dtype=float) - (size - 1) / 2.0) * spacing_mm
    return [float(centre[a]) + offsets / float(layout_spacing[a]) for a in range(3)]


def crop_arrays(ct_view, label_view, layout_spacing, centre, value, size, spacing_mm):
    """(HU float32, mask bool), each (size,)*3 at ``spacing_mm``, centred on ``centre`` (canonical index)."""
    positions = crop_positions(centre, size, spacing_mm, layout_spacing)
    hu = resample_linear(ct_view, positions, antialias_step=[spacing_mm / s for s in layout_spacing])
    return hu, resample_nearest(label_view, positions) == value


def network_input(hu, mask, intensity):
    """The classifier's two channels: the CT in the bundle's window (0..1) and the vertebra's mask."""
    low, high = float(intensity["low"]), float(intensity["high"])
    ct = np.clip((np.asarray(hu, np.float32) - low) / (high - low), 0.0, 1.0)
    return np.stack([ct, np.asarray(mask, np.float32)]).astype(np.float32)


def crop(ct_view, label_view, layout_spacing, centre, value, spec):
    """(2, s, s, s) float32 network input for the vertebra labelled ``value`` around ``centre``."""
    hu, mask = crop_arrays(ct_view, label_view, layout_spacing, centre, value, int(spec["size"][0]), float(spec["spacing"][0]))
    return network_input(hu, mask, spec["intensity"])


def predict(model, crops, device, batch=8):
    """Fracture probability per crop (sigmoid of the single logit)."""
    from SpineAILib.models.engine import as_runner, sigmoid

    out = []
    runner = as_runner(model, device)  # an engine model (ONNX Runtime or torch) or a trainer's torch module
    for start in range(0, len(crops), batch):
        x = np.ascontiguousarray(np.stack(crops[start : start + batch]), dtype=np.float32)
        out.append(sigmoid(runner(x).reshape(len(x), -1)[:, 0]))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def patient_probability(probabilities, rule="noisy_or", calibration=None):
    """Any fracture among the vertebrae: 1 - prod(1 - p) ("noisy_or") or max(p) ("max"), then the
    bundle's patient calibration when it has one; None without vertebrae."""
    p = np.clip(np.asarray(probabilities, dtype=float), 0.0, 1.0)
    if not len(p):
        return None
    combined = float(p.max()) if rule == "max" else float(1.0 - np.prod(1.0 - p))
    return float(calibrate(combined, calibration)) if calibration else combined


def calibrate(p, coefficients):
    """Platt scaling fitted on validation: sigmoid(a * logit(p) + b); ``coefficients`` (a, b) or None."""
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    if not coefficients:
        return p
    a, b = (float(c) for c in coefficients)
    return 1.0 / (1.0 + np.exp(-(a * np.log(p / (1 - p)) + b)))


def settings(metadata):
    """(patient rule, {'vertebra': (a, b) or None, 'patient': (a, b) or None}) from a fracture bundle."""
    fracture = metadata.get("fracture", {})
    calibration = fracture.get("calibration") or {}
    return str(fracture.get("patient_rule", "noisy_or")), {k: calibration.get(k) for k in ("vertebra", "patient")}


def score_vertebrae(image, segmentation, loaded):
    """One entry per cervical level C1-C7: name, present, probability, crop centre; crops kept for Grad-CAM."""
    layout = segmentation.layout
    ct_view = layout.view(image.voxels)
    label_view = layout.view(segmentation.labelmap.voxels)
    spec = loaded.metadata["input"]
    found = {v["name"]: v for v in segmentation.vertebrae}
    entries, crops = [], []
    for name in CERVICAL_VERTEBRAE:
        if name not in found or name not in segmentation.centres:
            entries.append({"name": name, "present": False})
            continue
        centre = segmentation.centres[name]
        crops.append(crop(ct_view, label_view, layout.spacing, centre, found[name]["label"], spec))
        entries.append({"name": name, "present": True, "centre": centre, "crop": len(crops) - 1})
    probabilities = calibrate(predict(loaded.model, crops, loaded.device), settings(loaded.metadata)[1]["vertebra"])
    for entry in entries:
        if entry["present"]:
            entry["probability"] = float(probabilities[entry["crop"]])
    return entries, crops


def heatmap(image, segmentation, loaded, entries, crops):
    """Grad-CAM of the fracture logit per scored vertebra x its probability, painted back (0..1).

    On the input's grid (so the web app and Slicer lay it over the CT voxel for voxel);
    inputs over MAX_HEATMAP_VOXELS get it on the model grid instead. None when nothing was scored.
    """
    from SpineAILib.explain import class_maps

    scored = [e for e in entries if e["present"]]
    if not scored:
        return None
    layout, grid = segmentation.layout, segmentation.grid
    spec = loaded.metadata["input"]
    size, spacing_mm = int(spec["size"][0]), float(spec["spacing"][0])
    if image.voxels.size <= MAX_HEATMAP_VOXELS:
        heat = np.zeros(image.voxels.shape, np.float32)
        target, scale, offset, matrix = layout.view(heat), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), image.ijk_to_ras.copy()
    else:
        heat = np.zeros(grid.shape, np.float32)
        target, scale, offset = heat, grid.scale, tuple(0.5 * s - 0.5 for s in grid.scale)
        matrix = grid.to_ras(layout)
    maps = class_maps(loaded, np.stack([crops[e["crop"]] for e in scored]), [0])[0]  # CAM (= Grad-CAM here)
    for entry, cam in zip(scored, maps):
        cam = cam * float(entry["probability"])
        _paint(target, cam, entry["centre"], size, spacing_mm, layout.spacing, scale, offset)
    return VolumeImage(voxels=np.clip(heat, 0.0, 1.0), ijk_to_ras=matrix, description="Fracture Grad-CAM",
                       source=image.source, metadata={"kind": "heatmap", "range": [0.0, 1.0]})  # fmt: skip


def _paint(target, cam, centre, size, spacing_mm, layout_spacing, scale, offset):
    """Put a crop's map into ``target`` (canonical order; voxel t sits at canonical index t * scale + offset)."""
    half = (size - 1) / 2.0
    box, positions = [], []
    for a in range(3):
        reach = half * spacing_mm / layout_spacing[a]  # canonical voxels from the centre to the crop's edge
        lo = max(0, int(np.ceil((centre[a] - reach - offset[a]) / scale[a])))
        hi = min(target.shape[a], int(np.floor((centre[a] + reach - offset[a]) / scale[a])) + 1)
        if hi <= lo:
            return
        t = np.arange(lo, hi) * scale[a] + offset[a]
        box.append(slice(lo, hi))
        positions.append((t - centre[a]) * layout_spacing[a] / spacing_mm + half)
    values = cam.astype(np.float32)
    for a in range(3):
        values = linear_along(values, a, positions[a])
    region = target[tuple(box)]
    np.maximum(region, values, out=region)
