"""Stress test of the lumbar-mri level names: crops, warps and re-scans of real cases that keep a known truth.

    python -m SpineAITraining.lumbar.stress_test --data ../shared/data/mri_lumbar --part test \
        [--bundle BUNDLE] [--sacrum installed|none|BUNDLE] [--kinds fov,curve,missing,contrast,resolution] \
        [--json out.json] [--markdown tables.md]

From each case of the chosen part of the recorded split (``--part train,validation`` to choose
thresholds, ``test`` to report), variants are made on the canonical grid
(``SpineAILib.workflows.lumbar.grid``). The truth is the case's level labels plus its S1 label
(``SpineAITraining/labels/mri_lumbar_s1``, made by ``sacrum_labels``) merged in as VerSe 26; it goes
through the same crop, warp or resampling as the image, and every variant carries its own affine
and voxel size (the workflow gets the real geometry). Kinds (``--kinds``):

- ``fov``, **field of view**: the top of the image cut in the disc above T9, T10, T11, T12, L1 or L2
  (T10 and T9 from T11's position, and T12 on ``vb3`` cases, which label L1-L5 only, from L1's:
  estimated, ±4 mm; no case shows T9 whole, so "from T9" yields nothing on this data) and the bottom
  cut just below L4, just below L5, or left as acquired ("below": the sacrum in view); ``as
  acquired`` is the uncropped case. A labelled level the crop cut by more than 40% leaves the truth
  (not required; a name there is checked against its neighbours); S1 stays in the truth for checking
  an S1 name, and counts as in view when at least 60% of it is;
- ``curve``, **lateral curve**: each axial row of the volume shifted left-right by a smooth function
  of its height (a C curve of 10 mm, an S curve of ±15 mm), as in a scoliosis, the truth warped alike;
- ``missing``, **missing body**: one mid-column body (L2, L3) blanked to the local background (the
  intensities of the non-vertebral voxels around it, resampled), its truth kept only to check a
  name there;
- ``contrast``: the same geometry and truth, other intensities (``scan_variants.contrast_variant``):
  STIR-like (fat dark, fluid bright: a non-monotonic curve), T2 spin-echo-like (gamma 1.6, fat
  dimmer), T2 fast-spin-echo-like (gamma 0.6, fat brighter), a T1-like swap (fluid dark, fat
  bright), coil shading (a smooth gain falling to 25% at the anterior edge, or to 30% at the top);
- ``resolution``: thick sagittal slices (3, 4, 5 mm: groups of 1 mm slices averaged, the truth the
  most frequent label of each group), in-plane pixels of 1.5 and 0.7 mm (resampled, the truth by
  nearest neighbour), and 4 mm slices with 0.7 mm pixels and spin-echo-like contrast together (as
  the 1.5 T source of issue 12); the affine follows (``scan_variants.thick_slices``,
  ``in_plane_pixels``).

Every variant runs through ``segment_vertebrae`` (level model only: the outline refiner never
changes a name), with the sacrum bundle (``--sacrum``: default the installed ``lumbar-mri-sacrum``
when there is one and the pipeline takes a ``sacrum`` argument). A study is **right** when every
name given is right and every labelled level in view (≥ 60% of its voxels; not a blanked one) is
named; **wrong** when any name given is off (the body's true level is read at its centre; an
unlabelled body's, from the labelled bodies next to it and the spacing; an S1 is right when its
centre lies in the true S1 or within ``S1_TOLERANCE_MM`` (5 mm) of it, outside the other bodies);
**withheld** when no name given is wrong and some names were withheld with a reason;
**incomplete** otherwise. S1 is not required (a level model without a sacrum model cannot give
it): the **S1 found** rate is counted over the variants with S1 in view. *Before*: the column's
names as the workflow gave them before the naming checks (``naming.column_names``, the same
prediction); *after*: the names it gives now (and the anchor that named them, ``naming.anchor``).
``--markdown`` writes the tables alone (per type, per kind, per level): paste them into the
hand-written benchmarks/results/lumbar_mri_stress.md rather than pointing it there.
"""

import argparse
import inspect
import json
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from SpineAILib.errors import InputError, run_reporting_errors
from SpineAITraining.lumbar.sacrum_labels import S1  # VerSe 26

KINDS = ("fov", "curve", "missing", "contrast", "resolution")
PARTS = ("train", "validation", "test")
STARTS = ("T9", "T10", "T11", "T12", "L1", "L2")
ENDS = ("L4", "L5", "below")
ESTIMATED_ABOVE = ("T9", "T10", "T11", "T12")  # extrapolated upwards from the body below when unlabelled
LEVEL_ORDER = ("T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
CUT_MM = 2.0  # the cut lies this far into the disc above the first body / below the last
PRESENT_SHARE = 0.6
BLANK = ("L2", "L3")
OUTCOMES = ("right", "wrong", "withheld", "incomplete")
BELOW_S1 = 27  # an estimated level under S1 (S2...): no name is right there
S1_TOLERANCE_MM = 5.0
THICK_MM = (3.0, 4.0, 5.0)
PIXELS_MM = (1.5, 0.7)
SACRUM_TASK = "lumbar-mri/sacrum"
SACRUM_BUNDLE = "lumbar-mri-sacrum"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m SpineAITraining.lumbar.stress_test", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, help="level bundle (default: the installed lumbar-mri one)")
    p.add_argument("--sacrum", default="installed",
                   help="sacrum (S1) bundle folder or id for segment_vertebrae, 'installed' (the installed "
                   f"{SACRUM_BUNDLE} bundle when there is one and the pipeline takes it) or 'none'")  # fmt: skip
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--part", default="test", help="test, validation, train or a comma-separated list")
    p.add_argument("--cases", help="comma-separated case ids (default: every case of the part)")
    p.add_argument("--max-cases", type=int, help="the first N cases only")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"which variants, comma-separated: {', '.join(KINDS)}")
    p.add_argument("--only", help="only the variants whose type contains this text")
    p.add_argument("--json", type=Path, help="every variant's outcome and evidence")
    p.add_argument("--markdown", type=Path, help="the per-type tables")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    unknown = set(args.kinds.split(",")) - set(KINDS)
    if unknown:
        p.error(f"unknown --kinds {', '.join(sorted(unknown))}; choose from {', '.join(KINDS)}")
    unknown = set(args.part.split(",")) - set(PARTS)
    if unknown:
        p.error(f"unknown --part {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    return args


# -- variants -----------------------------------------------------------------------------


@dataclass
class Variant:
    """One scan made from a case: canonical image and truth (VerSe values, S1 = 26), its affine and voxel size."""

    kind: str  # one of KINDS
    type: str  # the row of the per-type table
    image: np.ndarray
    truth: np.ndarray
    affine: np.ndarray  # canonical ijk (column, row, sagittal) -> RAS
    spacing: tuple  # (sagittal, row, column) mm
    start: str = ""
    end: str = ""
    blanked: tuple = None  # ("blank", value) for a missing-body variant
    s1_in_view: bool = False


def canonical_affine(spacing):
    """A plain canonical affine for ``spacing`` (sagittal, row, column): columns run posterior, rows inferior,
    sagittal slices right; origin 0."""
    affine = np.eye(4)
    affine[:3, :3] = [[0.0, 0.0, spacing[0]], [-spacing[2], 0.0, 0.0], [0.0, -spacing[1], 0.0]]
    return affine


def _rows_of(truth, value):
    rows = np.nonzero((truth == value).any(axis=(0, 2)))[0]
    return (int(rows.min()), int(rows.max())) if len(rows) else None


def body_rows(truth, spacing):
    """{name: (top row, bottom row)} of the labelled bodies T9-L5, with T12-T9 estimated upwards where unlabelled
    (from the body below: its own height plus a 4 mm disc; only where the estimate lies inside the image),
    and the set of labelled values (S1 included)."""
    from SpineAILib.terminology import vertebra_name

    rows = {}
    for value in np.unique(truth):
        if value and value != S1:
            rows[vertebra_name(int(value))] = _rows_of(truth, value)
    disc = int(round(4.0 / spacing[1]))
    for name in reversed(ESTIMATED_ABOVE):
        below = LEVEL_ORDER[LEVEL_ORDER.index(name) + 1]
        if name not in rows and below in rows:
            top, bottom = rows[below]
            height = bottom - top + 1
            if top - disc - height >= 0:
                rows[name] = (top - disc - height, top - disc - 1)
        if name not in rows:
            break
    return {n: rows[n] for n in LEVEL_ORDER if n in rows}, {int(v) for v in np.unique(truth) if v}


def crop(image, truth, spacing, rows, start, end):
    """(image, truth, row offset) cropped so the field of view starts at ``start`` and ends at ``end``; None if not possible."""
    cut = max(1, int(round(CUT_MM / spacing[1])))
    if start is None:
        r0 = 0
    elif start in rows:
        r0 = max(0, rows[start][0] - cut)
        if start in ("T9", "T10") and rows[start][0] - cut < 0:  # estimated: the whole body and the cut in view
            return None
    else:
        return None
    if end == "below":
        r1 = image.shape[1]
    elif end in rows:
        r1 = min(image.shape[1], rows[end][1] + 1 + cut)
    else:
        return None
    if r1 - r0 < 60 / spacing[1]:
        return None
    return image[:, r0:r1], truth[:, r0:r1], r0


def lateral_curve(image, truth, spacing, amplitude_mm, s_curve):
    """Every axial row shifted left-right by a smooth function of its height (scoliosis-like)."""
    n, rows, _ = image.shape
    t = np.linspace(0.0, 1.0, rows)
    shift = amplitude_mm * (np.sin(2 * np.pi * t) if s_curve else np.sin(np.pi * t)) / spacing[0]
    source = np.arange(n)[:, None] - shift[None, :]  # (sagittal, row): where each output voxel comes from
    k0 = np.floor(source).astype(int)
    w = (source - k0)[:, :, None]
    rr = np.arange(rows)[None, :]
    lo, hi = np.clip(k0, 0, n - 1), np.clip(k0 + 1, 0, n - 1)
    data = image.astype(np.float32)
    warped = (1 - w) * data[lo, rr] + w * data[hi, rr]
    nearest = np.rint(source).astype(int)
    inside = ((nearest >= 0) & (nearest < n))[:, :, None]
    labels = np.where(inside, truth[np.clip(nearest, 0, n - 1), rr], 0)
    return warped.astype(image.dtype), labels.astype(truth.dtype)


def blank_body(image, truth, spacing, value, seed=0):
    """``value``'s body (grown by 1 mm) blanked to the dark end of its local background: the lowest tenth of the
    non-vertebral voxels within 5 mm of it, with a little noise (a body without signal, which the model misses)."""
    from SpineAILib.morphology import dilation

    body = truth == value
    nz = np.nonzero(body)
    margin = [int(np.ceil(6.5 / s)) + 1 for s in spacing]
    lo = [max(0, int(a.min()) - g) for a, g in zip(nz, margin)]
    hi = [min(m, int(a.max()) + 1 + g) for a, m, g in zip(nz, body.shape, margin)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    grown = np.zeros_like(body)
    grown[box] = dilation(body[box], 1.0, spacing)
    ring = np.zeros_like(body)
    ring[box] = dilation(grown[box], 5.0, spacing)
    ring &= ~grown & (truth == 0)
    out = image.copy()
    samples = image[ring].astype(np.float32)
    if len(samples):  # dark, like a body without signal (the lowest tenth of its surroundings), with a little noise
        low, spread = np.percentile(samples, 10), 0.1 * float(samples.std())
        fill = low + spread * np.random.default_rng(seed).standard_normal(int(grown.sum()))
        out[grown] = np.clip(fill, image.min(), image.max()).astype(image.dtype)
    return out


def s1_share(truth, spacing, full_s1_mm3):
    """The share of the case's S1 (by volume) that ``truth`` (on a grid of ``spacing``) holds."""
    if not full_s1_mm3:
        return 0.0
    return float((truth == S1).sum()) * float(np.prod(spacing)) / full_s1_mm3


def variants(image, truth, spacing, kinds, affine=None):
    """Yield every ``Variant`` of one case (canonical arrays; ``affine``: the case's canonical affine)."""
    from SpineAILib.terminology import vertebra_number

    from SpineAITraining.lumbar import scan_variants as sv

    affine = canonical_affine(spacing) if affine is None else np.asarray(affine, float)
    rows, _ = body_rows(truth, spacing)
    full = {int(v): int((truth == v).sum()) for v in np.unique(truth) if v}
    full_s1 = full.get(S1, 0) * float(np.prod(spacing))

    def made(kind, title, img, tru, aff=affine, spc=spacing, **extra):
        return Variant(kind, title, img, tru, aff, tuple(spc), s1_in_view=s1_share(tru, spc, full_s1) >= PRESENT_SHARE,
                       **extra)  # fmt: skip

    def cropped(title, start, end, result):
        img, tru, offset = result
        tru = tru.copy()
        for v in np.unique(tru):  # a level the crop cut by more than 40% is not required (S1 stays: its share is kept)
            if v and v != S1 and (tru == v).sum() < PRESENT_SHARE * full.get(int(v), 1):
                tru[tru == v] = 0
        aff = affine.copy()
        aff[:3, 3] += offset * affine[:3, 1]  # rows cut from the top
        return made("fov", title, img, tru, aff, start=start, end=end)

    if "fov" in kinds:
        yield made("fov", "as acquired", image, truth)
        for end in ENDS[:2]:
            result = crop(image, truth, spacing, rows, None, end)
            if result is not None:
                yield cropped(f"starts as acquired, ends {end}", "", end, result)
        for start in STARTS:
            for end in ENDS:
                result = crop(image, truth, spacing, rows, start, end)
                if result is not None:
                    yield cropped(f"starts {start}, ends {end}", start, end, result)
    if "curve" in kinds:
        for amplitude, s_curve, title in ((10.0, False, "lateral C curve 10 mm"), (15.0, True, "lateral S curve ±15 mm")):
            warped, labels = lateral_curve(image, truth, spacing, amplitude, s_curve)
            yield made("curve", title, warped, labels)
    if "missing" in kinds:
        for name in BLANK:
            value = vertebra_number(name)
            if np.any(truth == value):
                yield made("missing", f"missing {name} body", blank_body(image, truth, spacing, value), truth,
                           blanked=("blank", value))  # fmt: skip
    if "contrast" in kinds:
        for contrast in sv.CONTRASTS:
            yield made("contrast", sv.CONTRAST_TITLES[contrast], sv.contrast_variant(image, truth, contrast, spacing), truth)
    if "resolution" in kinds:
        for thickness in THICK_MM:
            result = sv.thick_slices(image, truth, affine, spacing, thickness)
            if result is not None:
                yield made("resolution", f"resolution {thickness:g} mm slices", *result)
        for pixel in PIXELS_MM:
            if abs(pixel - spacing[1]) > 0.05 or abs(pixel - spacing[2]) > 0.05:
                yield made("resolution", f"resolution {pixel:g} mm pixels", *sv.in_plane_pixels(image, truth, affine, spacing, pixel))
        result = sv.thick_slices(sv.contrast_variant(image, truth, "spin-echo", spacing), truth, affine, spacing, 4.0)
        if result is not None:
            yield made("resolution", "resolution 4 mm slices, 0.7 mm pixels, spin-echo-like",
                       *sv.in_plane_pixels(*result, 0.7))  # fmt: skip


# -- scoring ------------------------------------------------------------------------------


def _centres(bodies, ras_to_canonical):
    """Each body's centre as canonical (sagittal, row, column) voxel coordinates."""
    return [(ras_to_canonical @ np.r_[b["centre_ras"], 1.0])[:3][::-1] for b in bodies]


def _true_value_at(truth, kji, spacing, radius_mm=4.0):
    k, j, i = (int(round(v)) for v in kji)
    reach = [max(1, int(round(radius_mm / s))) for s in spacing]
    box = truth[max(0, k - reach[0]) : k + reach[0] + 1, max(0, j - reach[1]) : j + reach[1] + 1,
                max(0, i - reach[2]) : i + reach[2] + 1]  # fmt: skip
    values = box[box > 0]
    return int(np.bincount(values).argmax()) if len(values) else 0


def _ordinal(value):
    """Levels in order down the spine: S1 follows L5 (24); VerSe 25 is L6, which no case has."""
    return S1 - 1 if value == S1 else value


def _from_ordinal(ordinal):
    return S1 if ordinal == S1 - 1 else (BELOW_S1 if ordinal > S1 - 1 else ordinal)


def true_levels(bodies, truth, ras_to_canonical, spacing):
    """The true VerSe value of each predicted body (top to bottom), unlabelled ones from their labelled neighbours
    (negative: estimated; BELOW_S1 under the sacrum)."""
    centres = _centres(bodies, ras_to_canonical)
    values = [_true_value_at(truth, c, spacing) for c in centres]
    rows_mm = np.array([c[1] * spacing[1] for c in centres])
    labelled = [i for i, v in enumerate(values) if v]
    if labelled and len(labelled) < len(values):
        ordinals = [_ordinal(values[i]) for i in labelled]
        steps = np.diff(rows_mm[labelled]) / np.maximum(1, np.diff(ordinals)) if len(labelled) > 1 else [32.0]
        step = float(np.median(steps)) if len(steps) else 32.0
        step = step if step > 1.0 else 32.0
        for i, v in enumerate(values):
            if not v:
                j = min(labelled, key=lambda m: abs(rows_mm[m] - rows_mm[i]))
                values[i] = -_from_ordinal(_ordinal(values[j]) + int(np.rint((rows_mm[i] - rows_mm[j]) / step)))
    return values


def s1_placed(kji, truth, spacing, tolerance_mm=S1_TOLERANCE_MM):
    """An S1 centred at ``kji`` (canonical voxels) is right: in the true S1 or within ``tolerance_mm`` of it, and not
    inside another labelled body."""
    index = [int(round(v)) for v in kji]
    if all(0 <= i < n for i, n in zip(index, truth.shape)) and truth[tuple(index)] not in (0, S1):
        return False
    reach = [int(np.ceil(tolerance_mm / s)) for s in spacing]
    lo = [max(0, i - r) for i, r in zip(index, reach)]
    hi = [max(0, min(n, i + r + 1)) for i, r, n in zip(index, reach, truth.shape)]
    box = truth[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] == S1
    if not box.any():
        return False
    offsets = (np.argwhere(box) + np.array(lo) - np.asarray(kji, float)) * np.asarray(spacing, float)
    return float(np.sqrt((offsets**2).sum(axis=1)).min()) <= tolerance_mm


RANK = {"missed": 0, "withheld": 1, "right": 2, "wrong": 3}  # one level, several bodies: the worst that happened


def score(bodies, truth, ras_to_canonical, spacing, required, use_column):
    """(outcome, details, levels) for one variant; ``use_column``: score the column's names (before the checks).

    ``levels``: {true level: right / wrong / withheld / missed} for every required level and every labelled level
    a body lay on. An S1 name (a sacrum model's; never a column name) is checked with ``s1_placed``."""
    from SpineAILib.terminology import vertebra_name, vertebra_number

    key = "column_name" if use_column else "name"
    scored = [b for b in bodies if not (use_column and b.get("column_name") is None)]  # the sacrum model's S1
    values = true_levels(scored, truth, ras_to_canonical, spacing) if scored else []
    centres = _centres(scored, ras_to_canonical)
    wrong, withheld, named, levels = [], 0, set(), {}

    def mark(value, state):
        if value > 0:
            name = vertebra_name(value)
            if RANK[state] > RANK.get(levels.get(name), -1):
                levels[name] = state

    for body, value, centre in zip(scored, values, centres):
        given = body.get(key)
        if given is None:
            withheld += 1
            mark(value, "withheld")
            continue
        number = vertebra_number(given)
        if number == S1:
            if s1_placed(centre, truth, spacing):
                named.add(S1)
                mark(S1, "right")
            else:
                wrong.append(f"S1 on true {abs(value)}{'(est)' if value < 0 else ''}")
                mark(value, "wrong")
        elif number == abs(value):
            named.add(number)
            mark(value, "right")
        elif value:  # a labelled body's level, or an unlabelled one's estimated from its labelled neighbours
            wrong.append(f"{given} on true {abs(value)}{'(est)' if value < 0 else ''}")
            mark(value, "wrong")
    for value in required - named:
        mark(value, "missed")
    missing = sorted(required - named)
    if wrong:
        return "wrong", wrong, levels
    if withheld:
        return "withheld", [], levels
    return ("right" if not missing else "incomplete"), missing, levels


def with_s1(result):
    """The result's bodies top to bottom, with the S1 of ``result.vertebrae`` (label 26) added when the naming's
    bodies do not list it (it then has no column name)."""
    bodies = [dict(b) for b in result.naming.get("bodies", [])]
    if not any(b.get("name") == "S1" for b in bodies):
        for v in result.vertebrae:
            if v.get("label") == S1 or v.get("name") == "S1":
                bodies.append({"column_name": None, "name": "S1", "centre_ras": v["centre_ras"]})
    return bodies


def s1_outcome(bodies, truth, ras_to_canonical, spacing, in_view):
    """'found' (an S1 given in the true S1), 'misplaced' (given elsewhere), 'missed' (in view, none given) or
    'none' (not in view, none given)."""
    given = [c for b, c in zip(bodies, _centres(bodies, ras_to_canonical)) if b.get("name") == "S1"]
    if given:
        return "found" if any(s1_placed(c, truth, spacing) for c in given) else "misplaced"
    return "missed" if in_view else "none"


def evaluate_variant(bundle, image_canonical, truth, affine, spacing, blanked, sacrum=None, s1_in_view=None):
    from SpineAILib.images import VolumeImage
    from SpineAILib.terminology import vertebra_name
    from SpineAILib.workflows.lumbar.pipeline import segment_vertebrae

    image = VolumeImage(voxels=np.ascontiguousarray(image_canonical), ijk_to_ras=np.asarray(affine, float), modality="MR")
    t0 = time.perf_counter()
    result = segment_vertebrae(image, bundle, **({"sacrum": sacrum} if sacrum is not None else {}))
    seconds = time.perf_counter() - t0
    # required: the labelled levels in view (the crops already dropped those cut by more than 40%); not S1 (a level
    # model without a sacrum model cannot name it: counted apart) and not a blanked body
    required = {int(v) for v in np.unique(truth) if v and v != S1 and not (blanked and v == blanked[1])}
    in_view = bool(np.any(truth == S1)) if s1_in_view is None else bool(s1_in_view)
    inverse = np.linalg.inv(affine)
    bodies = with_s1(result)
    before = score(bodies, truth, inverse, spacing, required, use_column=True)
    after = score(bodies, truth, inverse, spacing, required, use_column=False)
    naming = result.naming
    return {"before": before[0], "before_detail": before[1], "after": after[0], "after_detail": after[1],
            "before_levels": before[2], "after_levels": after[2],
            "required": [vertebra_name(v) for v in sorted(required)],
            "s1_in_view": in_view, "s1": s1_outcome(bodies, truth, inverse, spacing, in_view),
            "anchor": naming.get("anchor", "column"), "status": naming["status"], "reasons": naming["reasons"],
            "column_names": naming["column_names"], "named": [v["name"] for v in result.vertebrae],
            "evidence": naming["evidence"], "gaps": naming["gaps"], "seconds": round(seconds, 2)}  # fmt: skip


# -- the sacrum bundle ----------------------------------------------------------------------


def pipeline_takes_sacrum():
    """Whether ``segment_vertebrae`` takes a ``sacrum`` bundle argument (sacrum-anchored naming)."""
    from SpineAILib.workflows.lumbar.pipeline import segment_vertebrae

    return "sacrum" in inspect.signature(segment_vertebrae).parameters


def _sacrum_module():
    try:
        from SpineAILib.workflows.lumbar import sacrum
    except ImportError:
        return None
    return sacrum


def default_sacrum_path():
    """The installed sacrum (S1) bundle folder, or None."""
    module = _sacrum_module()
    if module is not None and hasattr(module, "sacrum_bundle_path"):
        return module.sacrum_bundle_path()
    from SpineAILib.errors import BundleError
    from SpineAILib.models.catalogue import list_models, sub_model_path

    try:
        for entry in list_models():
            if entry["bundle_id"] == SACRUM_BUNDLE and entry["location"]:
                return Path(entry["location"])
    except BundleError:  # a catalogue that does not load: look for the folder
        return sub_model_path(SACRUM_TASK, SACRUM_BUNDLE)
    return sub_model_path(SACRUM_TASK, SACRUM_BUNDLE)


def load_sacrum(choice, device):
    """(the sacrum bundle for segment_vertebrae or None, what was used in words) for ``--sacrum`` ``choice``:
    a folder, an installed bundle id, 'installed' (the default) or 'none'."""
    choice = None if choice in (None, "", "installed") else choice
    if choice and choice.lower() == "none":
        return None, "none (--sacrum none)"
    if not pipeline_takes_sacrum():
        if choice:
            raise SystemExit("--sacrum: SpineAILib.workflows.lumbar.pipeline.segment_vertebrae takes no sacrum argument")
        return None, "none (segment_vertebrae takes no sacrum argument)"
    path = Path(choice) if choice else default_sacrum_path()
    if choice and not path.exists():
        from SpineAILib.models.catalogue import list_models

        found = [e["location"] for e in list_models() if e["bundle_id"] == choice and e["location"]]
        if not found:
            raise SystemExit(f"--sacrum {choice}: neither a folder nor an installed bundle id")
        path = Path(found[0])
    if path is None:
        return None, f"none (no {SACRUM_BUNDLE} bundle installed)"
    module = _sacrum_module()
    if module is not None and hasattr(module, "load_sacrum"):
        return module.load_sacrum(device, path), str(path)
    from SpineAILib.models.bundle import load_bundle

    bundle = load_bundle(path, device=device)  # as the level bundle here
    return bundle, f"`{bundle.metadata['bundle_id']}` {bundle.metadata.get('version', '')} ({path})"


# -- cases and tables -----------------------------------------------------------------------


def case_arrays(case, s1_folder=None):
    """(layout, canonical image, canonical truth: the case's labelled levels plus its S1 label as 26 when there is one)."""
    from SpineAILib.io import load
    from SpineAILib.workflows.lumbar.grid import SagittalLayout

    from SpineAITraining.lumbar.sacrum_labels import LABELS_DIR, with_s1

    image, labels = load(case.image), load(case.labels)
    layout = SagittalLayout.of(image.voxels.shape, image.ijk_to_ras)
    canonical = layout.to_canonical(np.asarray(image.voxels))
    levels = np.asarray(labels.voxels)
    levels = type(labels)(voxels=np.where(np.isin(levels, list(case.labelled_values)), levels, 0),
                          ijk_to_ras=labels.ijk_to_ras, is_labelmap=True)  # fmt: skip
    truth, _ = with_s1(case.case_id, levels, s1_folder or LABELS_DIR)
    return layout, canonical, layout.to_canonical(truth).astype(np.uint8)


def run_case(case, bundle, kinds, only=None, sacrum=None, s1_folder=None):
    layout, canonical, truth = case_arrays(case, s1_folder)
    out = []
    for v in variants(canonical, truth, layout.spacing, kinds, layout.canonical_to_ras):
        if only and only not in v.type:
            continue
        record = evaluate_variant(bundle, v.image, v.truth, v.affine, v.spacing, v.blanked, sacrum, v.s1_in_view)
        record.update({"case": case.case_id, "source": case.source, "kind": v.kind, "type": v.type, "start": v.start,
                       "end": v.end, "spacing": [round(s, 3) for s in v.spacing]})  # fmt: skip
        out.append(record)
        print(f"{case.case_id:7s} {v.type[:40]:40s} before {record['before']:10s} after {record['after']:10s} "
              f"S1 {record['s1']:9s} {record['anchor']:6s} {' '.join(record['column_names'])} {record['reasons'][:1]}",
              flush=True)  # fmt: skip
    return out


def group(title):
    if title.startswith("starts"):
        return "field of view " + title.split(",")[0].replace("starts ", "from ") + ", to " + title.split("ends ")[1]
    return title


def _outcomes(rs, key):
    return " / ".join(str(sum(r[key] == o for r in rs)) for o in OUTCOMES)


def _levels_right(rs, key):
    total = sum(len(r["required"]) for r in rs)
    right = sum(r[f"{key}_levels"].get(n) == "right" for r in rs for n in r["required"])
    return f"{right}/{total} ({100.0 * right / total:.0f}%)" if total else "—"


def _s1_found(rs):
    in_view = [r for r in rs if r["s1_in_view"]]
    text = f"{sum(r['s1'] == 'found' for r in in_view)}/{len(in_view)}" if in_view else "—"
    misplaced = sum(r["s1"] == "misplaced" for r in rs)
    return text + (f" ({misplaced} misplaced)" if misplaced else "")


def _anchors(rs):
    counts = OrderedDict()
    for r in rs:
        counts[r["anchor"]] = counts.get(r["anchor"], 0) + 1
    return ", ".join(f"{a} {n}" for a, n in sorted(counts.items()))


HEADER = ("| {what} | studies | before: right / wrong / withheld / incomplete | after: right / wrong / withheld / "
          "incomplete | levels named right, before | after | S1 found (in view) | anchor |\n|---|---|---|---|---|---|---|---|")  # fmt: skip


def _row(name, rs):
    return (f"| {name} | {len(rs)} | {_outcomes(rs, 'before')} | {_outcomes(rs, 'after')} | {_levels_right(rs, 'before')} | "
            f"{_levels_right(rs, 'after')} | {_s1_found(rs)} | {_anchors(rs)} |")  # fmt: skip


def table(records):
    """Markdown: per variant type, per kind, and per level (after the checks)."""
    rows = OrderedDict()
    for r in records:
        rows.setdefault(group(r["type"]), []).append(r)
    lines = [HEADER.format(what="type")]
    lines += [_row(name, rs) for name, rs in rows.items()]
    lines.append(_row("**all**", records))
    kinds = OrderedDict((k, [r for r in records if r.get("kind") == k]) for k in KINDS)
    lines += ["", HEADER.format(what="kind")]
    lines += [_row(k, rs) for k, rs in kinds.items() if rs]
    lines.append(_row("**all**", records))
    lines += ["", "| level | in view | named right, before | named right, after | wrong, after | withheld, after |",
              "|---|---|---|---|---|---|"]
    for name in LEVEL_ORDER:
        req = [r for r in records if name in r["required"]]
        if not req:
            continue
        after = [r["after_levels"].get(name) for r in records]
        lines.append(f"| {name} | {len(req)} | {sum(r['before_levels'].get(name) == 'right' for r in req)} | "
                     f"{sum(r['after_levels'].get(name) == 'right' for r in req)} | {after.count('wrong')} | "
                     f"{after.count('withheld')} |")  # fmt: skip
    in_view = [r for r in records if r["s1_in_view"]]
    lines.append(f"| S1 | {len(in_view)} | — | {sum(r['s1'] == 'found' for r in in_view)} | "
                 f"{sum(r['s1'] == 'misplaced' for r in records)} | {sum(r['after_levels'].get('S1') == 'withheld' for r in records)} |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from SpineAILib.models.bundle import load_bundle
    from SpineAILib.models.catalogue import resolve_bundle

    from SpineAITraining.lumbar import mri_lumbar

    bundle = load_bundle(args.bundle or resolve_bundle("lumbar-mri"), device=args.device, expected_task="lumbar-mri")
    sacrum, sacrum_text = load_sacrum(args.sacrum, args.device)
    print(f"level bundle {bundle.metadata['bundle_id']} {bundle.metadata.get('version', '')}; sacrum bundle {sacrum_text}")
    cases = [c for part in args.part.split(",") for c in mri_lumbar.split_cases(args.data, part)]
    mri_lumbar.require_cases(cases, args.data, args.part)
    if args.cases:
        wanted = set(args.cases.split(","))
        missing = wanted - {c.case_id for c in cases}
        if missing:
            raise InputError(f"--cases {', '.join(sorted(missing))}: not in the {args.part} part found in {args.data}")
        cases = [c for c in cases if c.case_id in wanted]
    if args.max_cases:
        cases = cases[: args.max_cases]
    kinds = set(args.kinds.split(","))
    records = []
    for case in cases:
        records.extend(run_case(case, bundle, kinds, args.only, sacrum))
    text = (f"Level bundle `{bundle.metadata['bundle_id']}` {bundle.metadata.get('version', '')}, sacrum bundle "
            f"{sacrum_text}; part {args.part}, {len(cases)} cases, kinds {','.join(k for k in KINDS if k in kinds)}. "
            "Outcome cells: right / wrong / withheld / incomplete.\n\n" + table(records))  # fmt: skip
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"part": args.part, "cases": [c.case_id for c in cases], "sacrum": sacrum_text,
                                         "records": records}, indent=1, default=str))  # fmt: skip
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(run_reporting_errors("stress_test", main))
