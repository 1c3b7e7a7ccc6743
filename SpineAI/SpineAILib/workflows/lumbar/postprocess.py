"""From slice-wise class predictions to one named body per level, in 3-D.

The 2-D model labels each sagittal slice on its own, so a body can be called L3
in some slices and L4 in others, and stray pixels appear. Here:
1. bodies are the 3-D connected components of everything predicted as vertebra
   (a component that holds two big classes is two bodies fused through a bridge:
   it is split by class);
2. implausible bodies are dropped: smaller than a lumbar/lower-thoracic body can
   be (this also keeps cervical vertebrae from being called lumbar);
3. each body's votes are its voxels per class (majority vote across slices), and
   the bodies are named as one unbroken column, top to bottom, with the run and
   starting level that agree with the most votes (``assign_names``); a body that
   cannot be placed in that column is dropped, never given a duplicate name.
Everything works on canonical arrays ``[sagittal, row S->I, column A->P]``.
"""

from dataclasses import dataclass

import numpy as np

from SpineAILib.morphology import component_indices, pieces_by_class

MIN_BODY_ML = 1.5  # smaller pieces are noise (a lumbar body is 25-50 ml; partial ones at a FOV edge count)
MIN_BODY_AREA_MM2 = 250.0  # largest sagittal cross-section; cervical bodies stay under about 250 mm2
MIN_BODY_HEIGHT_MM = 10.0  # superior-inferior extent
FUSED_SHARE = 0.2  # a component whose second class has this share of its voxels is split by class
TYPICAL_SPACING_MM = 35.0  # centre to centre of neighbouring lumbar bodies, used when fewer than three are found
SAME_BODY_MM = 15.0  # centres closer than this (superior-inferior) are one body: bodies are 20-30 mm tall


@dataclass
class Body:
    index: np.ndarray  # flat indices into the canonical array
    votes: np.ndarray  # voxels per class (class 0 unused)
    row_mm: float  # centroid, superior-inferior, mm from the top
    volume_ml: float
    area_mm2: float
    height_mm: float
    name_index: int = 0  # assigned class (0 = dropped)


def measure_body(index, classes, shape, spacing, n_classes):
    k, r, c = np.unravel_index(index, shape)
    votes = np.bincount(classes.ravel()[index], minlength=n_classes).astype(np.int64)
    votes[0] = 0
    per_slice = np.bincount(k, minlength=shape[0])
    return Body(
        index=index,
        votes=votes,
        row_mm=float(r.mean() * spacing[1]),
        volume_ml=len(index) * float(np.prod(spacing)) / 1000.0,
        area_mm2=float(per_slice.max()) * spacing[1] * spacing[2],
        height_mm=float((r.max() - r.min() + 1) * spacing[1]),
    )


def find_bodies(classes, spacing, n_classes):
    """Candidate bodies (before plausibility and naming) from canonical class predictions."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    bodies = []
    for index in component_indices(classes > 0):
        if len(index) * voxel_ml < MIN_BODY_ML:
            continue
        body = measure_body(index, classes, classes.shape, spacing, n_classes)
        shares = np.sort(body.votes)[::-1] / max(1, body.votes.sum())
        if shares[1] < FUSED_SHARE:
            bodies.append(body)
            continue
        # Fused neighbours: one body per class inside the component.
        for part in pieces_by_class(index, classes, MIN_BODY_ML / voxel_ml):
            bodies.append(measure_body(part, classes, classes.shape, spacing, n_classes))
    return bodies


def plausible(body):
    return body.area_mm2 >= MIN_BODY_AREA_MM2 and body.height_mm >= MIN_BODY_HEIGHT_MM


def _merge_fragments(bodies):
    """Join neighbours whose centres lie closer (superior-inferior) than two bodies can: one body in pieces.

    The model may call a body's lateral slices one level and its middle slices
    another; split by class, the two pieces sit side by side, not one above the other.
    Their votes are pooled, so the body's majority decides.
    """
    merged = []
    for body in bodies:
        last = merged[-1] if merged else None
        if last is not None and body.row_mm - last.row_mm < SAME_BODY_MM:
            index = np.concatenate([last.index, body.index])
            weight = len(last.index) / len(index)
            merged[-1] = Body(index, last.votes + body.votes, last.row_mm * weight + body.row_mm * (1 - weight),
                              last.volume_ml + body.volume_ml, max(last.area_mm2, body.area_mm2),
                              max(last.height_mm, body.height_mm))  # fmt: skip
        else:
            merged.append(body)
    return merged


def assign_names(bodies, n_classes):
    """Name the bodies as one unbroken column: a run of neighbours top to bottom gets consecutive classes.

    Vertebrae have no gaps, so bodies are never dropped from the middle of the column
    (only from its ends, e.g. a sacral segment or T10 that the model called a lumbar
    level); a missing body shows as a gap of about twice the usual spacing and skips a
    class there. Of all runs and starting classes, the one that agrees with the most
    votes wins. Bodies left out get class 0.
    """
    bodies = _merge_fragments(sorted(bodies, key=lambda b: b.row_mm))
    if not bodies:
        return bodies
    gaps_mm = np.diff([b.row_mm for b in bodies])
    spacing = float(np.median(gaps_mm)) if len(gaps_mm) >= 2 else TYPICAL_SPACING_MM
    skipped = np.clip(np.rint(gaps_mm / spacing) - 1, 0, 2).astype(int)  # missing bodies between neighbours
    offsets = np.concatenate([[0], np.cumsum(skipped + 1)])  # class steps from the first body
    top = n_classes - 1
    best, choice = -1.0, None
    for i in range(len(bodies)):
        for j in range(i, len(bodies)):
            span = offsets[i : j + 1] - offsets[i]
            for start in range(1, top - int(span[-1]) + 1):
                score = sum(float(bodies[k].votes[start + span[k - i]]) for k in range(i, j + 1))
                if score > best:
                    best, choice = score, (i, j, start, span)
    i, j, start, span = choice
    for k, body in enumerate(bodies):
        body.name_index = int(start + span[k - i]) if i <= k <= j else 0
    return bodies


def clean_levels(classes, spacing, n_classes, dropped=None):
    """Canonical class map -> (cleaned class map, bodies kept top to bottom, notes on what was dropped).

    ``dropped``, a list, receives the plausible bodies left out below the named column
    (evidence for naming.check_names: a sacrum or a sixth lumbar body the column had no name for).
    """
    notes = []
    bodies = []
    for body in find_bodies(classes, spacing, n_classes):
        if plausible(body):
            bodies.append(body)
        else:
            notes.append(f"dropped a {body.volume_ml:.1f} ml candidate: largest sagittal section "
                         f"{body.area_mm2:.0f} mm2, height {body.height_mm:.0f} mm (too small for a lumbar body)")  # fmt: skip
    bodies = assign_names(bodies, n_classes)
    out = np.zeros(classes.shape, np.uint8)
    kept = []
    for body in bodies:
        if body.name_index:
            out.ravel()[body.index] = body.name_index
            kept.append(body)
        else:
            notes.append(f"dropped a {body.volume_ml:.1f} ml body at the end of the column that fits no level")
            if dropped is not None and kept:
                dropped.append(body)
    return out, kept, notes
