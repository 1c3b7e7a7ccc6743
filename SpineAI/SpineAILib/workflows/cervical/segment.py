"""CT in, named vertebrae out: the segmentation bundle's whole inference path.

Resample to the bundle's grid (SpineAILib.ct_grid), window the Hounsfield units, run the 3-D UNet
with sliding-window inference over the body's bounding box (MONAI's gaussian blending,
in numpy: SpineAILib.models.engine.sliding_window), name the vertebrae
(postprocess.py), and bring the result back onto the input's own grid: per named
vertebra its foreground probability, interpolated linearly into the input voxels of its
neighbourhood only, slab by slab (smooth boundaries, and memory that grows with the
spine, not with the volume). Used by the workflow, the trainer's evaluation and the
benchmark, so the metrics are those of what users run.
"""

import time
from dataclasses import dataclass

import numpy as np

from SpineAILib.ct_grid import Layout, ModelGrid, linear_along, to_model_grid
from SpineAILib.images import VolumeImage, check_allocation
from SpineAILib.terminology import vertebra_number
from SpineAILib.workflows.cervical.postprocess import BODY_HU, clean

DIVISOR = 16  # the UNet halves the grid up to four times
OWNER_REACH = 2  # model voxels a vertebra's probability reaches beyond its own voxels
UPSAMPLE_SLAB_VOXELS = 1 << 22  # channels x voxels interpolated at a time


@dataclass
class Segmentation:
    labelmap: VolumeImage  # on the input grid, VerSe numbers
    vertebrae: list  # dicts: name, label, volume_ml, centre_ras (top to bottom)
    notes: list
    timings: dict
    layout: Layout
    grid: ModelGrid
    hu: np.ndarray  # the CT on the model grid (canonical, float32 HU)
    centres: dict  # name -> canonical (continuous) index of the vertebra's centre


def window(hu, intensity):
    """Hounsfield units -> 0..1 with the bundle's window (clipped)."""
    low, high = float(intensity["low"]), float(intensity["high"])
    return np.clip((hu - low) / (high - low), 0.0, 1.0).astype(np.float32)


def body_box(hu, margin=4):
    """(lo, hi) model-grid index box of the body (anything denser than air), with a margin."""
    body = hu > BODY_HU
    if not body.any():
        return [0, 0, 0], list(hu.shape)
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.nonzero(body.any(axis=other))[0]
        lo.append(max(0, int(present[0]) - margin))
        hi.append(min(hu.shape[axis], int(present[-1]) + 1 + margin))
    return lo, hi


def predict_probabilities(model, x, roi_size, device, overlap=0.25):
    """Softmax probabilities (C, *x.shape) of the network over ``x`` (0..1 windowed, model grid)."""
    from SpineAILib.models.engine import as_runner, sliding_window, softmax

    runner = as_runner(model, device)  # an engine model (ONNX Runtime or torch) or a trainer's torch module
    roi = [min(int(r), -(-n // DIVISOR) * DIVISOR) for r, n in zip(roi_size, x.shape)]
    logits = sliding_window(np.ascontiguousarray(x, dtype=np.float32)[None, None], roi, runner, overlap=overlap)
    return softmax(logits, axis=1)[0]


def segment(image, bundle, layout=None, progress=None):
    """Run the segmentation bundle on ``image`` (a CT VolumeImage); returns a Segmentation."""
    meta = bundle.metadata
    names = list(meta["labels"])
    values = np.array([0] + [vertebra_number(n) for n in names[1:]], np.uint8)
    spec = meta["input"]
    timings = {}
    progress = progress or (lambda f: None)

    t0 = time.perf_counter()
    layout = layout or Layout.of(image.voxels.shape, image.ijk_to_ras)
    grid = ModelGrid.of(layout, float(spec["spacing"][0]))
    hu = to_model_grid(layout.view(image.voxels), grid)
    timings["resample_s"] = round(time.perf_counter() - t0, 3)
    progress(0.15)

    t0 = time.perf_counter()
    lo, hi = body_box(hu)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    probabilities = np.zeros((len(names),) + hu.shape, np.float32)
    probabilities[0] = 1.0
    if all(b - a > 0 for a, b in zip(lo, hi)):
        roi = spec.get("roi_size") or spec.get("patch_size")
        probabilities[(slice(None),) + box] = predict_probabilities(bundle.model, window(hu[box], spec["intensity"]),
                                                                    roi, bundle.device)  # fmt: skip
    timings["predict_s"] = round(time.perf_counter() - t0, 3)
    timings["model_grid"] = list(grid.shape)
    timings["model_spacing_mm"] = [round(s, 3) for s in grid.spacing]
    progress(0.7)

    t0 = time.perf_counter()
    named, notes = clean(probabilities, names, grid.spacing, hu)
    timings["postprocess_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    labelmap = to_input_grid(image, layout, grid, probabilities[0], named, values)
    timings["upsample_s"] = round(time.perf_counter() - t0, 3)
    progress(1.0)

    voxel_ml = float(np.prod(image.spacing)) / 1000.0
    counts = np.bincount(labelmap.voxels.ravel(), minlength=256) if named else np.zeros(256, np.int64)
    model_to_ras = grid.to_ras(layout)
    vertebrae, centres = [], {}
    for v in named:
        name = names[v.name_index]
        centre = model_to_ras @ np.array([v.centre[2], v.centre[1], v.centre[0], 1.0])
        centres[name] = np.array([grid.canonical_index(a, v.centre[a]) for a in range(3)])
        vertebrae.append({
            "name": name,
            "label": int(values[v.name_index]),
            "volume_ml": round(int(counts[values[v.name_index]]) * voxel_ml, 2),
            "centre_ras": [round(float(c), 2) for c in centre[:3]],
        })  # fmt: skip
    return Segmentation(labelmap, vertebrae, notes, timings, layout, grid, hu, centres)


def owners(shape, named):
    """Model-grid map: which named vertebra (1..n) each voxel near the spine belongs to (0: none)."""
    from SpineAILib.morphology import max_filter

    owner = np.zeros(shape, np.int32)
    for number, v in enumerate(named, start=1):
        owner.ravel()[v.index] = number
    for _ in range(OWNER_REACH):  # grow into unowned voxels (a larger number wins where two meet)
        grown = max_filter(owner, (1, 1, 1), fill=0)
        owner = np.where(owner > 0, owner, grown)
    return owner


def to_input_grid(image, layout, grid, background, named, values):
    """The uint8 label map of the named vertebrae on ``image``'s grid (VerSe numbers)."""
    check_allocation(image.voxels.shape, np.uint8, what="the vertebra label map")
    out = np.zeros(image.voxels.shape, np.uint8)
    result = VolumeImage(voxels=out, ijk_to_ras=image.ijk_to_ras.copy(), modality=image.modality,
                         description="Vertebrae", source=image.source, is_labelmap=True)  # fmt: skip
    if not named:
        return result
    owner = owners(background.shape, named)
    near = owner > 0
    lut = np.array([0] + [values[v.name_index] for v in named], np.uint8)
    # model-grid box around the owned voxels -> canonical index box
    m_lo, m_hi, c_lo, c_hi = [], [], [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.nonzero(near.any(axis=other))[0]
        lo, hi = max(0, int(present[0]) - 1), min(near.shape[axis], int(present[-1]) + 2)
        m_lo.append(lo)
        m_hi.append(hi)
        c_lo.append(max(0, int(np.floor(grid.canonical_index(axis, lo - 0.5)))))
        c_hi.append(min(layout.shape[axis], int(np.ceil(grid.canonical_index(axis, hi - 0.5))) + 1))
    box = tuple(slice(a, b) for a, b in zip(m_lo, m_hi))
    fg = 1.0 - background[box]
    owned = owner[box]
    channels = np.stack([background[box]] + [np.where(owned == n, fg, 0.0) for n in range(1, len(named) + 1)])
    channels = channels.astype(np.float32)
    view = layout.view(out)
    positions = [grid.model_index(a, np.arange(c_lo[a], c_hi[a])) - m_lo[a] for a in range(3)]
    per_row = channels.shape[0] * len(positions[1]) * len(positions[2])
    rows = max(1, UPSAMPLE_SLAB_VOXELS // max(1, per_row))
    for r0 in range(0, len(positions[0]), rows):  # full-size rows a slab at a time
        slab = linear_along(channels, 1, positions[0][r0 : r0 + rows])
        slab = linear_along(linear_along(slab, 2, positions[1]), 3, positions[2])
        view[c_lo[0] + r0 : c_lo[0] + r0 + slab.shape[1], c_lo[1] : c_hi[1], c_lo[2] : c_hi[2]] = lut[np.argmax(slab, 0)]
    return result
