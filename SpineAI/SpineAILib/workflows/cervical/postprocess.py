"""From the network's per-voxel classes to named vertebrae, on the model grid.

1. Vertebrae are the 3-D connected components of everything called vertebra; a component
   holding two or more big classes is neighbours fused through bridges and is split by class;
   pieces lying beside each other (centres closer superior-inferior than half a vertebra)
   are one vertebra in pieces and are joined, and small fragments join the vertebra they
   touch (or are dropped), so they never count as a vertebra of their own.
2. Names: the vertebrae, top to bottom, form one unbroken column (neighbours close to each
   other, none far to the side); of all runs and starting levels the one that agrees with
   most of the network's votes wins (a missing vertebra shows as a double gap and skips a
   name). A column needs two vertebrae of at least MIN_VERTEBRA_ML.
3. Anatomy: a vertebra is named cervical only where it can be one: at most
   MAX_CERVICAL_ML, and not inside a trunk (the body outline in its axial slice at most
   MAX_NECK_WIDTH_MM wide left-right; an outline cut by the field of view counts when even
   the part in view is wider). C6/C7 sit at the
   shoulders, so they are kept only under a plausible C1-C5 or in a plausible neck
   themselves; thoracic names are kept only under a cervical vertebra. Everything
   dropped gets a note.
Canonical arrays ``[inferior, posterior, left]`` (grid.Layout).
"""

from dataclasses import dataclass, field

import numpy as np

from SpineAILib.morphology import component_indices, pieces_by_class

MIN_PIECE_ML = 0.6  # smaller pieces are noise (C1, the smallest vertebra, is about 5 ml)
MAX_VERTEBRA_ML = 150.0  # larger components are not one vertebra (skull, pelvis, fused columns)
MAX_CERVICAL_ML = 45.0  # a whole cervical vertebra is about 5-25 ml; a lumbar one 60-100 ml
MAX_NECK_WIDTH_MM = 220.0  # neck (and head at C1) left-right; an adult trunk is 280 mm or more
BODY_HU = -500.0  # body outline: anything denser than this (air and lung are below)
FUSED_SHARE = 0.1  # a component in which two classes hold at least this share each is split by class
SAME_VERTEBRA_MM = 8.0  # pieces whose centres are closer than this superior-inferior are one vertebra (about half the spacing)
MIN_VERTEBRA_ML = 2.0  # smaller pieces are fragments, never a vertebra of their own
FRAGMENT_SHARE = 0.3  # pieces smaller than this share of the median candidate are fragments, not vertebrae
FRAGMENT_REACH_MM = 15.0  # a fragment this close to a vertebra's centre joins it; farther ones are dropped
TYPICAL_GAP_MM = 17.0  # centre to centre of neighbouring cervical vertebrae, when too few are found
MIN_COLUMN = 2
MAX_SIDEWAYS_MM = 20.0  # neighbours in a column are this close left-right (the column is near the midline)
MAX_STEP_MM = 60.0  # ... and this close in all (three vertebrae: two missing in between)


@dataclass
class Vertebra:
    index: np.ndarray  # flat indices into the model grid
    votes: np.ndarray  # voxels per class (class 0 unused)
    centre: np.ndarray  # canonical model-grid index (continuous)
    centre_mm: np.ndarray  # the same in mm from the grid's first voxel
    volume_ml: float
    name_index: int = 0  # class index it is named as (0 = not named)
    notes: list = field(default_factory=list)


def _vertebra(index, classes, spacing, n_classes):
    kji = np.array(np.unravel_index(index, classes.shape), dtype=float)
    centre = kji.mean(axis=1)
    votes = np.bincount(classes.ravel()[index], minlength=n_classes).astype(np.int64)
    votes[0] = 0
    return Vertebra(index, votes, centre, centre * np.asarray(spacing), len(index) * float(np.prod(spacing)) / 1000.0)


def find_vertebrae(classes, spacing, n_classes):
    """Candidates (before naming) from the model grid's class map, and notes on what was dropped."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    found, notes = [], []
    for index in component_indices(classes > 0):
        if len(index) * voxel_ml < MIN_PIECE_ML:
            continue
        candidate = _vertebra(index, classes, spacing, n_classes)
        # neighbours touching at 2 mm make one component holding several classes (a whole column at times)
        big = candidate.votes * voxel_ml >= MIN_PIECE_ML
        big &= candidate.votes >= FUSED_SHARE * candidate.votes.sum()
        if big.sum() < 2:
            found.append(candidate)
            continue
        for part in pieces_by_class(index, classes, MIN_PIECE_ML / voxel_ml):
            found.append(_vertebra(part, classes, spacing, n_classes))
    kept = []
    for v in found:
        if v.volume_ml > MAX_VERTEBRA_ML:
            notes.append(f"dropped a {v.volume_ml:.0f} ml component: too large for one vertebra")
        else:
            kept.append(v)
    kept = _merge_pieces(sorted(kept, key=lambda v: v.centre_mm[0]))
    return _absorb_fragments(kept, notes), notes


def _join(a, b):
    n_a, n_b = len(a.index), len(b.index)
    w = n_a / (n_a + n_b)
    return Vertebra(np.concatenate([a.index, b.index]), a.votes + b.votes, a.centre * w + b.centre * (1 - w),
                    a.centre_mm * w + b.centre_mm * (1 - w), a.volume_ml + b.volume_ml)  # fmt: skip


def _absorb_fragments(candidates, notes):
    """Small pieces (a vertebra's tip called another level) join the nearest vertebra or go: inside
    the column they would count as vertebrae and shift the names below them."""
    if not candidates:
        return candidates
    typical = float(np.median([v.volume_ml for v in candidates]))
    small = max(MIN_VERTEBRA_ML, FRAGMENT_SHARE * typical)
    major = [v for v in candidates if v.volume_ml >= small]
    for piece in (v for v in candidates if v.volume_ml < small):
        distances = [np.linalg.norm(piece.centre_mm - v.centre_mm) for v in major]
        nearest = int(np.argmin(distances)) if distances else -1
        if nearest >= 0 and distances[nearest] <= FRAGMENT_REACH_MM:
            major[nearest] = _join(major[nearest], piece)
        else:
            notes.append(f"dropped a {piece.volume_ml:.1f} ml fragment away from the column")
    return sorted(major, key=lambda v: v.centre_mm[0])


def _merge_pieces(vertebrae):
    merged = []
    for v in vertebrae:
        last = merged[-1] if merged else None
        if last is not None and v.centre_mm[0] - last.centre_mm[0] < SAME_VERTEBRA_MM:
            merged[-1] = _join(last, v)
        else:
            merged.append(v)
    return merged


def name_column(vertebrae, n_classes):
    """Name the vertebrae (sorted top to bottom) as one unbroken column; returns the named ones."""
    if len(vertebrae) < MIN_COLUMN:
        return []
    centres = np.array([v.centre_mm for v in vertebrae])
    gaps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    typical = float(np.median(gaps)) if len(gaps) >= 3 else TYPICAL_GAP_MM
    typical = min(max(typical, 0.6 * TYPICAL_GAP_MM), 1.6 * TYPICAL_GAP_MM)
    skipped = np.clip(np.rint(gaps / typical) - 1, 0, 2).astype(int)
    offsets = np.concatenate([[0], np.cumsum(skipped + 1)])
    # a run may only join neighbours that can be neighbours in a spine
    linked = [abs(b.centre_mm[2] - a.centre_mm[2]) <= MAX_SIDEWAYS_MM and gap <= MAX_STEP_MM
              for a, b, gap in zip(vertebrae, vertebrae[1:], gaps)]  # fmt: skip
    top = n_classes - 1
    best, choice = -1.0, None
    for i in range(len(vertebrae)):
        for j in range(i + MIN_COLUMN - 1, len(vertebrae)):
            if not all(linked[i:j]):
                break
            span = offsets[i : j + 1] - offsets[i]
            for start in range(1, top - int(span[-1]) + 1):
                score = float(sum(vertebrae[k].votes[start + span[k - i]] for k in range(i, j + 1)))
                if score > best:
                    best, choice = score, (i, j, start, span)
    if choice is None:
        return []
    i, j, start, span = choice
    for k, v in enumerate(vertebrae):
        v.name_index = int(start + span[k - i]) if i <= k <= j else 0
    return [v for v in vertebrae if v.name_index]


def neck_width_mm(hu, spacing, centre):
    """(width, known): the widest left-right extent (mm) of the body outline in the axial slice
    through ``centre`` (model-grid index). Where the outline reaches the edge of the field of
    view the width is only a lower bound: ``known`` is False unless even that bound is wider
    than a neck."""
    k = int(np.clip(round(centre[0]), 0, hu.shape[0] - 1))
    rows = hu[k] > BODY_HU  # (anterior-posterior, left-right)
    width, cut = 0.0, False
    for line in rows:
        inside = np.nonzero(line)[0]
        if not len(inside):
            continue
        first, last = int(inside[0]), int(inside[-1])
        extent = (last - first + 1) * float(spacing[2])
        if extent > width:
            width, cut = extent, first == 0 or last == len(line) - 1
    return width, (not cut) or width > MAX_NECK_WIDTH_MM


def check_anatomy(named, class_names, hu, spacing):
    """Unname vertebrae that cannot be what they are called (see the module docstring); notes."""
    notes = []

    def drop(v, reason):
        notes.append(f"{class_names[v.name_index]} not named: {reason}")
        v.name_index = 0

    neck_ok = {}
    for v in named:
        name = class_names[v.name_index]
        if not name.startswith("C"):
            continue
        if v.volume_ml > MAX_CERVICAL_ML:
            drop(v, f"{v.volume_ml:.0f} ml is too large for a cervical vertebra (at most {MAX_CERVICAL_ML:.0f} ml)")
            continue
        width, known = neck_width_mm(hu, spacing, v.centre)
        neck_ok[id(v)] = width <= MAX_NECK_WIDTH_MM
        if width > MAX_NECK_WIDTH_MM and name not in ("C6", "C7"):
            drop(v, f"the body is {'at least ' if not known else ''}{width:.0f} mm wide left-right there: "
                    "a trunk, not a neck")  # fmt: skip
    upper = [v for v in named if v.name_index and class_names[v.name_index] in ("C1", "C2", "C3", "C4", "C5")]
    for v in named:
        name = class_names[v.name_index] if v.name_index else ""
        if name in ("C6", "C7") and not upper and not neck_ok.get(id(v), False):
            drop(v, "no plausible C1-C5 above it and the body around it is not a neck")
    cervical = [v for v in named if v.name_index and class_names[v.name_index].startswith("C")]
    for v in named:
        name = class_names[v.name_index] if v.name_index else ""
        if name and not name.startswith("C") and not cervical:
            drop(v, "thoracic names are given only below a cervical column")
    return [v for v in named if v.name_index], notes


def clean(probabilities, class_names, spacing, hu):
    """(named vertebrae top to bottom, notes) from softmax ``probabilities`` (C, *grid)."""
    classes = np.argmax(probabilities, axis=0).astype(np.uint8)
    candidates, notes = find_vertebrae(classes, spacing, len(class_names))
    named = name_column(candidates, len(class_names))
    left_out = len(candidates) - len(named)
    if left_out:
        notes.append(f"{left_out} candidate(s) outside the named column were dropped")
    named, anatomy_notes = check_anatomy(named, class_names, hu, spacing)
    return sorted(named, key=lambda v: v.centre_mm[0]), notes + anatomy_notes
