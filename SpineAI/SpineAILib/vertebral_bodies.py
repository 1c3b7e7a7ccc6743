"""Vertebral body measurements on CT: heights, Genant grade, volume, trabecular attenuation, L1 bone density.

One job: measure the vertebral bodies of a vertebra label map (VerSe numbers, see
``terminology.VERTEBRAE``) on the CT it was drawn on (Hounsfield units, same voxel grid).
No model, no workflow: ``measure_vertebral_bodies(ct, labelmap)`` returns one JSON-ready dict
per vertebra, ``l1_bone_density`` reads the opportunistic osteoporosis flag from them and
``tsv_text`` writes them as a table (columns in ``TSV_COLUMNS``). All lengths in mm, RAS.

Method, per vertebra:

1. **Body.** A label may hold the whole vertebra (TotalSegmentator) or its body only. The
   spinal canal is found as the first gap, going backwards, in the label's midline slab
   (voxels within ``MIDLINE_HALF_WIDTH_MM`` of its sagittal mid-plane, all heights together):
   in the midline nothing bony lies between the body's posterior wall and the lamina. The body
   is what lies in front of that gap (the largest connected piece of it), which also cuts the
   pedicles off at the posterior wall; a label without a gap is all body. Wings left in front of
   the cut (roots of L5's transverse processes) are dropped by an opening of ``WING_RADIUS_MM``
   whose bulk is grown back by the same radius inside the label, so the body keeps its outline.
   The posterolateral corners behind the midline wall go with the arch (a small under-count of
   body volume).
2. **Axes.** A first superior-inferior axis is the body's principal axis (covariance of its voxel
   positions) closest to the spine's direction there, which is taken from the centres of the
   vertebra's labelled neighbours (image superior when it has none) and orients it; a body's
   axis more than ``MAX_AXIS_TURN_DEG`` off the spine is its shape, not its tilt, and the
   spine's direction is used. The anterior axis is the patient's anterior (RAS) made
   perpendicular to it: a lumbar body is barely wider than deep, so its other principal axes
   are not a reliable AP axis (axial rotation is not corrected; heights, chords along the
   superior axis, hardly change with it). Body and axes are found twice: the second cut uses
   the axes of the first body. The axis the heights are measured along is then the endplate
   normal: planes are fitted to the two endplates (where a 5 x 5 grid of lines along the axis,
   over the central 60 % of the body, leaves it) and the axis becomes the mean of their normals,
   twice. A wedge's principal axis leans towards its collapsed endplate (by 19 degrees for a
   40 % wedge); the mean endplate normal splits the angle between the endplates, and the
   anterior/posterior height ratio of a planar wedge is the same measured along it as along
   its intact wall.
3. **Heights** are chords of the body along its superior axis in its mid-sagittal plane (through
   the body's centre, normal to its lateral axis), where the body mask interpolated trilinearly
   crosses 0.5 (sub-voxel, so oblique bodies and anisotropic voxels do not round to whole
   voxels). Depth (and width) are chords along the anterior (lateral) axis at mid-height. The
   anterior height is the median of lines over 5-15 % of the depth in from the anterior wall
   (three depths x three lateral offsets of +-8 % of the width), the middle one over 45-55 %,
   the posterior one over 85-95 %: the 6-point morphometry points, a little in from the
   rounded corners. A body that reaches the edge of the image is "cut by the field of view":
   its heights, grade and attenuation are not measured (its volumes are, flagged).
4. **Attenuation** is read in an ellipsoid centred in the body, ``CORE_FRACTION`` (60 %) of its
   middle height, depth and width, intersected with the body eroded by ``CORTEX_MM`` so the
   cortex and the endplates never enter it: mean, median and SD in HU, and the voxel count.
   Voxels further than ``FOCUS_ROBUST_SDS`` robust SDs (at least ``FOCUS_MIN_HU``) from the
   core's median are a focus (bone island, sclerosis, a contrast-filled vein, a lytic spot) that
   a reader places the ROI around: they are left out of the mean and SD, counted and noted.
   With metal in or within ``METAL_REACH_MM`` of the label (``METAL_HU``: screws, cement, a
   prosthesis) no attenuation is read, and the note says why.
5. **Genant grade** (semi-quantitative, ``GENANT_SOURCE``) from the height loss
   1 - min(anterior, middle) / own posterior height, and 1 - min(anterior, middle, posterior) /
   the neighbours' mean posterior height where neighbours were measured (a crush lowers the
   posterior wall too); the larger loss grades, and ``genant_reference`` says which. L5's posterior
   wall is normally lower than its front and than L4's (lordosis): it is not compared with the
   neighbours' (``POSTERIOR_NORMALLY_SHORT``), nor is it one of L4's references; its anterior and
   middle heights still are compared.
6. **L1 bone density** (``l1_bone_density``): L1's mean core attenuation against Pickhardt et
   al.'s thresholds (``PICKHARDT_SOURCE``), with the contrast caveat.

Not measured (noted instead): C1 (no body), C2 (its body carries the dens), S1 (the label is
the whole sacrum); Genant grades thoracic and lumbar vertebrae only (where it was defined).
Labels that are not VerSe vertebra numbers are ignored.
"""

import itertools

import numpy as np

from SpineAILib.errors import InputError
from SpineAILib.measure import plane_normal
from SpineAILib.morphology import dilation, largest_component, max_filter, opening
from SpineAILib.terminology import VERTEBRAE

# Body isolation (step 1).
MIDLINE_HALF_WIDTH_MM = 4.0  # the midline slab: well inside the canal's width (about 15-25 mm)
MIN_CANAL_GAP_MM = 4.0  # a gap this deep (and at least 1.5 voxels) in the midline is the canal
MIN_BODY_DEPTH_MM = 8.0  # a gap closer than this to the front is a cleft in the body, not the canal
MIN_BODY_VOXELS = 20  # fewer: nothing to measure
WING_RADIUS_MM = 4.0  # processes thinner than about twice this are not body (as workflows/lumbar/discs.py)
# Axes and lines (steps 2-3).
MAX_AXIS_TURN_DEG = 30.0
PATIENT_ANTERIOR = np.array([0.0, 1.0, 0.0])  # RAS
ENDPLATE_LINES = 5  # per side of the grid of lines that find the endplates
ENDPLATE_ITERATIONS = 2
BAND_FRACTIONS = {  # fractions of the depth, in from the anterior wall, of each height's lines
    "anterior": (0.05, 0.10, 0.15),
    "middle": (0.45, 0.50, 0.55),
    "posterior": (0.85, 0.90, 0.95),
}
LATERAL_OFFSETS = (-0.08, 0.0, 0.08)  # of the width, either side of the mid-sagittal plane
MID_HEIGHT_OFFSETS = (-0.15, 0.0, 0.15)  # of the height, for the depth and width lines
# Attenuation core (step 4).
CORE_FRACTION = 0.6  # ellipsoid diameters as a fraction of the body's height, depth and width
CORTEX_MM = 2.0  # erosion before the core: cortex (about 1 mm) plus partial volume
MIN_CORE_VOXELS = 5
FOCUS_ROBUST_SDS = 5.0  # robust SD = 1.4826 x median absolute deviation
FOCUS_MIN_HU = 50.0  # never closer to the median than this (a noise-free core has no spread)
# Metal (screws, rods, cement with barium, a disc prosthesis): denser than any bone (cortex about 1000-1900 HU).
# Metal in the vertebra or touching it brightens its core and throws streaks across it, so its attenuation is not
# read (a reader places no ROI in an instrumented vertebra). Only within METAL_REACH_MM of the label: a calcified
# aorta or contrast in the bowel nearby is no reason. Found by a held-out phantom with pedicle screws at L1 that
# read 564 HU for a planted 282.
METAL_HU = 2500.0
METAL_REACH_MM = 3.0
METAL_NOTE = "metal in or beside the vertebra"  # the note's start; l1_bone_density repeats the note as its reason

# Genant semi-quantitative grades: height loss of about 20-25 % grade 1 (mild), 25-40 % grade 2
# (moderate), 40 % or more grade 3 (severe); below 20 % grade 0 (normal).
GENANT_SOURCE = ("Genant HK, Wu CY, van Kuijk C, Nevitt MC. Vertebral fracture assessment using a "
                 "semiquantitative technique. J Bone Miner Res 1993;8(9):1137-1148")
GENANT_THRESHOLDS = ((0.40, 3), (0.25, 2), (0.20, 1))  # (lowest height loss, grade), most severe first
CRUSH_LOSS = 0.20  # posterior height this much below the neighbours': the whole body is lower (crush)
BICONCAVE_MARGIN = 0.05  # middle this much below the anterior height: biconcave (else both are down: wedge)
GENANT_LEVELS = frozenset([*range(8, 25), 25, 28])  # T1-T12, L1-L5, L6, T13
# L5 (and an L6) sits on the sacrum in lordosis: its posterior wall is normally lower than its front and
# than L4's, so a healthy L5 compared posterior-to-neighbours would read as a crush.
POSTERIOR_NORMALLY_SHORT = frozenset([24, 25])

# Opportunistic low bone density at L1, trabecular attenuation on CT (Pickhardt et al. 2013,
# DXA as reference): <= 160 HU about 90 % sensitive for osteoporosis, <= 110 HU about 90 % specific.
PICKHARDT_SOURCE = ("Pickhardt PJ, Pooler BD, Lauder T, del Rio AM, Bruce RJ, Binkley N. Opportunistic "
                    "screening for osteoporosis using abdominal computed tomography scans obtained for "
                    "other indications. Ann Intern Med 2013;158(8):588-595")
L1_OSTEOPOROSIS_HU = 110.0  # at or below: osteoporosis likely (about 90 % specificity)
L1_NORMAL_HU = 160.0  # above: osteoporosis unlikely (at or below: about 90 % sensitivity)
CONTRAST_CAVEAT = ("contrast-enhanced scans (portal venous phase) read higher than unenhanced ones, so the "
                   "flag is less sensitive there: a value above a threshold is less reassuring")

# Cranial to caudal; T13 and L6 take their places only where they are labelled.
_SPINE_ORDER = (*range(1, 20), 28, *range(20, 25), 25, 26)
_NO_BODY = {1: "C1 (atlas) has no vertebral body", 2: "C2: its body carries the dens, heights not measured",
            26: "S1: the label is the whole sacrum, body measurements not defined"}
CUT_NOTE = "cut by the field of view"

TSV_COLUMNS = (
    ("name", "vertebra (VerSe naming: C1-C7, T1-T12, L1-L5, S1; T13, L6)"),
    ("label", "VerSe label number"),
    ("cut_by_field_of_view", "yes: the body reaches the image edge, heights, grade and HU not measured"),
    ("anterior_height_mm", "body height along its superior axis, 5-15 % of the depth in from the front"),
    ("middle_height_mm", "the same at 45-55 % of the depth"),
    ("posterior_height_mm", "the same at 85-95 % of the depth"),
    ("depth_mm", "anterior-posterior chord at mid-height, mid-sagittal"),
    ("width_mm", "left-right chord at mid-height"),
    ("genant_grade", "0-3 (Genant 1993); empty when not graded"),
    ("genant_morphology", "wedge, biconcave or crush (grades 1-3)"),
    ("genant_reference", "own posterior height, or the neighbours' mean posterior height (named)"),
    ("genant_borderline", "yes: another grade is within half a voxel of each height"),
    ("height_loss_percent", "the height loss that gave the grade"),
    ("volume_ml", "the whole label"),
    ("body_volume_ml", "the body: the label in front of the spinal canal"),
    ("hu_mean", "mean attenuation (HU) of the trabecular core, foci left out"),
    ("hu_median", "median attenuation (HU) of the whole trabecular core"),
    ("core_voxels", "voxels in the trabecular core"),
    ("core_focus_voxels", "core voxels left out of the mean as a focus (bone island, vessel, ...)"),
    ("notes", "why something is not measured; '; '-separated"),
)


def measure_vertebral_bodies(ct, labelmap, height_tolerance_mm=0.0):
    """One dict per VerSe vertebra in ``labelmap``, cranial to caudal (see the module docstring).

    ``height_tolerance_mm``: how far the outline's heights may be off beyond half a voxel (an outline
    from rules or a model, measured against known heights); a grade within it of another is borderline.

    ``ct``: VolumeImage in HU; ``labelmap``: VolumeImage of VerSe numbers on the same grid.
    Keys: the ``TSV_COLUMNS`` names (``cut_by_field_of_view`` a bool, ``notes`` a list) and
    ``label_touches_edge``, ``centre_ras``, ``superior_axis``, ``anterior_axis``, ``height_lines``
    ({"anterior"|"middle"|"posterior": [inferior RAS, superior RAS]}, to draw),
    ``height_loss_own`` / ``height_loss_neighbours`` (fractions), ``hu_sd``, ``core_focus_voxels``,
    ``axis_resolution_mm`` (voxel size along the superior axis), ``genant_grade_range`` and
    ``genant_borderline`` (see ``genant``). A body cut by the field of view keeps only its label volume,
    centre (of the part in view) and the note.
    """
    _check_grid(ct, labelmap)
    labels = np.asarray(labelmap.voxels)
    hu = np.asarray(ct.voxels)
    matrix = np.asarray(labelmap.ijk_to_ras, float)
    boxes = _label_boxes(labels)
    centres = {value: _ras(matrix, np.argwhere(labels[_slices(box)] == value).mean(axis=0) + box[0])
               for value, box in boxes.items()}  # fmt: skip
    rows = [_measure_one(value, labels, hu, matrix, boxes[value], _spine_direction(value, centres))
            for value in _ordered(boxes)]  # fmt: skip
    _grade_all(rows, height_tolerance_mm)
    return rows


def genant(anterior, middle, posterior, neighbour_posterior=None, neighbours=(), resolution_mm=0.0,
           posterior_normally_short=False):
    """Genant grade from three heights (mm): {grade, morphology, reference, height_loss, losses,
    grade_range, borderline}.

    Loss against the body's own posterior height: 1 - min(anterior, middle) / posterior; against
    the neighbours' mean posterior height (``neighbour_posterior``, their names in ``neighbours``):
    1 - min(anterior, middle, posterior) / that. The larger loss grades (own reference on a tie).
    Morphology: crush when the posterior height itself is 20 % or more below the neighbours',
    else biconcave when the middle is 5 % or more below the anterior height, else wedge.
    ``grade_range``: the grades the heights give when each may be off by half of ``resolution_mm``
    (the voxel size along the body's axis); ``borderline`` when they differ (the grade is within
    the image's resolution of another). ``posterior_normally_short`` (L5, whose posterior wall is
    normally lower than its front and than L4's): its posterior height is not compared with the
    neighbours' (a healthy L5 would read as a crush); its anterior and middle heights still are.
    """
    own, by_neighbours = _losses(anterior, middle, posterior, neighbour_posterior, posterior_normally_short)
    loss, reference = own, "own posterior height"
    if by_neighbours is not None and _grade_of(by_neighbours) > _grade_of(own):
        loss, reference = by_neighbours, f"neighbours' mean posterior height ({', '.join(neighbours)})"
    grade = _grade_of(loss)
    morphology = None
    if grade:
        crush = (neighbour_posterior is not None and not posterior_normally_short
                 and 1.0 - posterior / neighbour_posterior >= CRUSH_LOSS)
        morphology = "crush" if crush and reference != "own posterior height" else (
            "biconcave" if middle < (1.0 - BICONCAVE_MARGIN) * anterior else "wedge")
    half = resolution_mm / 2.0
    # lowest loss: the low heights a half voxel higher, the references a half voxel lower; and the reverse
    best = _losses(anterior + half, middle + half, posterior - half,
                   None if neighbour_posterior is None else neighbour_posterior - half, posterior_normally_short)
    worst = _losses(anterior - half, middle - half, posterior + half,
                    None if neighbour_posterior is None else neighbour_posterior + half, posterior_normally_short)
    grade_range = [max(_grade_of(x) for x in best if x is not None), max(_grade_of(x) for x in worst if x is not None)]
    return {"grade": grade, "morphology": morphology, "reference": reference, "height_loss": loss,
            "losses": {"own": own, "neighbours": by_neighbours}, "grade_range": grade_range,
            "borderline": grade_range[0] != grade_range[1]}


def _losses(anterior, middle, posterior, neighbour_posterior, posterior_normally_short=False):
    own = 1.0 - min(anterior, middle) / posterior
    if neighbour_posterior is None:
        return own, None
    lowest = min(anterior, middle) if posterior_normally_short else min(anterior, middle, posterior)
    return own, 1.0 - lowest / neighbour_posterior


def l1_bone_density(vertebrae):
    """The opportunistic low-bone-density flag at L1 from ``measure_vertebral_bodies``' rows.

    {vertebra, hu_mean, flag ("low" | "indeterminate" | "normal" | None), text, thresholds_hu,
    source, caveat}; when L1 is missing, cut by the field of view or has no core, flag is None and
    text says why.
    """
    out = {"vertebra": "L1", "hu_mean": None, "flag": None,
           "thresholds_hu": {"osteoporosis_likely_at_or_below": L1_OSTEOPOROSIS_HU, "normal_above": L1_NORMAL_HU},
           "source": PICKHARDT_SOURCE, "caveat": CONTRAST_CAVEAT}  # fmt: skip
    l1 = next((v for v in vertebrae if v["name"] == "L1"), None)
    if l1 is None:
        return {**out, "text": "L1 is not labelled in this image: bone density not assessed"}
    if l1["cut_by_field_of_view"]:
        return {**out, "text": f"L1 is {CUT_NOTE}: bone density not assessed"}
    if l1["hu_mean"] is None:
        why = next((n for n in l1.get("notes", []) if n.startswith(METAL_NOTE)), "its trabecular core could not be measured")
        return {**out, "text": f"L1: {why}; bone density not assessed"}
    value = l1["hu_mean"]
    if value <= L1_OSTEOPOROSIS_HU:
        flag, meaning = "low", f"at or below {L1_OSTEOPOROSIS_HU:.0f} HU: osteoporosis likely"
    elif value <= L1_NORMAL_HU:
        flag, meaning = "indeterminate", (f"{L1_OSTEOPOROSIS_HU:.0f}-{L1_NORMAL_HU:.0f} HU: indeterminate, "
                                          "osteopenia or osteoporosis possible")
    else:
        flag, meaning = "normal", f"above {L1_NORMAL_HU:.0f} HU: osteoporosis unlikely"
    text = f"L1 trabecular attenuation {value:.0f} HU, {meaning} (Pickhardt et al. 2013; {CONTRAST_CAVEAT})"
    return {**out, "hu_mean": value, "flag": flag, "text": text}


def tsv_row(vertebra):
    """One vertebra's cells, in ``TSV_COLUMNS`` order (empty for None, yes/no for booleans)."""
    def cell(value):
        if value is None:
            return ""
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, (list, tuple)):
            return "; ".join(str(v) for v in value)
        return str(value).replace("\t", " ").replace("\n", " ")

    return [cell(vertebra.get(name)) for name, _ in TSV_COLUMNS]


def tsv_text(vertebrae):
    """The whole table: a header row of ``TSV_COLUMNS`` names, one row per vertebra."""
    lines = ["\t".join(name for name, _ in TSV_COLUMNS)] + ["\t".join(tsv_row(v)) for v in vertebrae]
    return "\n".join(lines) + "\n"


# --- geometry ------------------------------------------------------------------------------------

def _check_grid(ct, labelmap):
    if tuple(ct.voxels.shape) != tuple(labelmap.voxels.shape) or not np.allclose(
            ct.ijk_to_ras, labelmap.ijk_to_ras, atol=1e-3):
        raise InputError(f"the label map ({labelmap.voxels.shape}) is not on the CT's voxel grid "
                         f"({ct.voxels.shape}): resample it onto the CT first")


def _ras(matrix, kji):
    """RAS of (N, 3) or (3,) voxel positions (k, j, i), fractional allowed."""
    kji = np.asarray(kji, float)
    return kji[..., ::-1] @ matrix[:3, :3].T + matrix[:3, 3]


def _kji(inverse, ras):
    return (np.asarray(ras, float) @ inverse[:3, :3].T + inverse[:3, 3])[..., ::-1]


def _slices(box):
    lo, hi = box
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _label_boxes(labels):
    """{VerSe number: (lo, hi) voxel bounding box} in one pass over the map."""
    flat = labels.ravel()
    index = np.flatnonzero(flat)
    values = flat[index]
    boxes = {}
    for value in np.unique(values):
        if int(value) not in VERTEBRAE:
            continue
        kji = np.stack(np.unravel_index(index[values == value], labels.shape), axis=1)
        boxes[int(value)] = (kji.min(axis=0), kji.max(axis=0) + 1)
    return boxes


def _ordered(values):
    return [v for v in _SPINE_ORDER if v in values]


def _neighbours(value, present):
    """(cranial, caudal) labelled neighbours of ``value`` in the spine's order, None where absent."""
    order = [v for v in _SPINE_ORDER if v in present or v not in (25, 28)]  # T13 / L6 only when labelled
    at = order.index(value)
    above = order[at - 1] if at > 0 and order[at - 1] in present else None
    below = order[at + 1] if at + 1 < len(order) and order[at + 1] in present else None
    return above, below


def _spine_direction(value, centres):
    """Unit superior direction of the spine at ``value`` from its neighbours' centres (the sacrum, whose
    centre lies far behind and below the lumbosacral disc, only when there is nothing else)."""
    above, below = _neighbours(value, centres)
    if below == 26 and above is not None:
        below = None
    upper = centres[above] if above is not None else centres[value]
    lower = centres[below] if below is not None else centres[value]
    direction = upper - lower
    norm = np.linalg.norm(direction)
    return direction / norm if norm > 1e-6 else np.array([0.0, 0.0, 1.0])


def _unit(v):
    return v / np.linalg.norm(v)


def _frame(points, superior, anterior=None):
    """(superior, anterior, lateral) unit axes of a body from its voxel positions (step 2)."""
    _, vectors = np.linalg.eigh(np.cov((points - points.mean(axis=0)).T))
    fit = np.abs(vectors.T @ superior)
    s = vectors[:, int(np.argmax(fit))] if fit.max() >= np.cos(np.radians(MAX_AXIS_TURN_DEG)) else superior
    s = _unit(s if s @ superior >= 0 else -s)
    # A lumbar body is barely wider than deep and its outline is not symmetric once the arch is cut
    # off: its other principal axes wander by 10-20 degrees, so anterior is the patient's.
    anterior = PATIENT_ANTERIOR if anterior is None else anterior
    a = _unit(anterior - (anterior @ s) * s)
    return s, a, np.cross(s, a)


def _canal_cut(points, centre, anterior, lateral, spacing_max):
    """Anterior coordinate (from ``centre``) behind which the arch begins, or None (no canal: all body)."""
    a = (points - centre) @ anterior
    r = (points - centre) @ lateral
    slab = np.abs(r - np.median(r)) <= max(MIDLINE_HALF_WIDTH_MM, spacing_max)
    values = np.sort(a[slab])[::-1]  # front to back
    if len(values) < 2:
        return None
    steps = values[:-1] - values[1:]
    for i in np.nonzero(steps > max(MIN_CANAL_GAP_MM, 1.5 * spacing_max))[0]:
        if values[0] - values[i] >= MIN_BODY_DEPTH_MM:
            return values[i] - 0.5 * spacing_max  # just behind the posterior wall
    return None


def _without_wings(body, spacing_kji):
    """The largest piece of ``body`` without the thin wings the cut leaves in front of it (the roots of
    L5's broad transverse processes): an opening finds the bulk, and the body is what lies within the
    opening's radius of it, so the body's own outline keeps every voxel."""
    bulk = largest_component(opening(body, WING_RADIUS_MM, spacing_kji))
    if not bulk.any():  # too thin to open (a sliver at the edge of the view): keep it whole
        return largest_component(body)
    return largest_component(body & dilation(bulk, WING_RADIUS_MM, spacing_kji))


def _isolate_body(mask, matrix, lo, superior, spacing_kji):
    """(body mask over the crop, (s, a, r) axes) of a label's crop (steps 1-2, twice)."""
    spacing_max = max(spacing_kji)
    kji = np.argwhere(mask)
    points = _ras(matrix, kji + lo)
    body = mask
    s, a, r = _frame(points, superior)
    for _ in range(2):
        centre = points.mean(axis=0)
        cut = _canal_cut(points, centre, a, r, spacing_max)
        body = mask
        if cut is not None:
            body = np.zeros_like(mask)
            keep = kji[(points - centre) @ a >= cut]
            body[keep[:, 0], keep[:, 1], keep[:, 2]] = True
            body = _without_wings(body, spacing_kji)
        if body.sum() < MIN_BODY_VOXELS:
            return body, (s, a, r)
        s, a, r = _frame(_ras(matrix, np.argwhere(body) + lo), superior)
    return body, (s, a, r)


class _Sampler:
    """Trilinear look-up of a crop's mask (0 outside) at RAS points."""

    def __init__(self, mask, matrix, lo):
        self.values = mask.astype(np.float32)
        self.inverse = np.linalg.inv(matrix)
        self.lo = np.asarray(lo)

    def __call__(self, points):
        kji = _kji(self.inverse, points) - self.lo
        base = np.floor(kji).astype(int)
        frac = kji - base
        out = np.zeros(len(points))
        shape = np.array(self.values.shape)
        for corner in itertools.product((0, 1), repeat=3):
            index = base + corner
            weight = np.prod(np.where(corner, frac, 1.0 - frac), axis=1)
            ok = np.all((index >= 0) & (index < shape), axis=1)
            out[ok] += weight[ok] * self.values[index[ok, 0], index[ok, 1], index[ok, 2]]
        return out


def _chord(sample, origin, direction, reach, step):
    """(t_low, t_high) where the line origin + t * direction enters and leaves the run of the mask that
    holds t = 0 (or the inside sample nearest it), interpolated to the 0.5 crossing; None if none."""
    t = np.arange(-reach, reach + step / 2, step)
    v = sample(origin + t[:, None] * direction)
    inside = v >= 0.5
    if not inside.any():
        return None
    candidates = np.nonzero(inside)[0]
    at = int(candidates[np.argmin(np.abs(t[candidates]))])
    before = np.nonzero(~inside[:at])[0]
    after = np.nonzero(~inside[at:])[0]
    first = int(before[-1]) + 1 if len(before) else 0
    last = at + int(after[0]) - 1 if len(after) else len(t) - 1

    def crossing(out_index, in_index):
        if out_index < 0 or out_index >= len(t):
            return t[in_index]
        return t[in_index] + (t[out_index] - t[in_index]) * (v[in_index] - 0.5) / (v[in_index] - v[out_index])

    return crossing(first - 1, first), crossing(last + 1, last)


def _median_chord(sample, origins, direction, reach, step):
    chords = [c for c in (_chord(sample, o, direction, reach, step) for o in origins) if c is not None]
    if not chords:
        return None
    return float(np.median([c[0] for c in chords])), float(np.median([c[1] for c in chords]))


def _endplate_frame(body, matrix, lo, axes, superior, spacing):
    """(s, a, r) with s the mean normal of the two endplates (step 2): planes fitted to where lines along
    the current axis, over the central 60 % of the body's depth and width, leave it at either end."""
    s, a, r = axes
    points = _ras(matrix, np.argwhere(body) + lo)
    centre = points.mean(axis=0)
    rel = points - centre
    reach = float(np.linalg.norm(rel, axis=1).max()) + 2.0 * max(spacing)
    step = min(0.25, min(spacing) / 4.0)
    sample = _Sampler(body, matrix, lo)
    for _ in range(ENDPLATE_ITERATIONS):
        spans = [np.percentile(rel @ axis, [5, 95]) for axis in (a, r)]
        grid = [np.linspace(lo_ + 0.2 * (hi_ - lo_), hi_ - 0.2 * (hi_ - lo_), ENDPLATE_LINES) for lo_, hi_ in spans]
        ends = [(o, _chord(sample, o, s, reach, step))
                for o in (centre + x * a + y * r for x in grid[0] for y in grid[1])]  # fmt: skip
        ends = [(o + c[0] * s, o + c[1] * s) for o, c in ends if c is not None]
        if len(ends) < 3:
            break
        normals = []
        for side in (0, 1):
            try:
                n = plane_normal([e[side] for e in ends])
            except ValueError:
                return s, a, r
            normals.append(n if n @ s >= 0 else -n)
        candidate = _unit(normals[0] + normals[1])
        if candidate @ superior < np.cos(np.radians(MAX_AXIS_TURN_DEG)):
            break  # endplates that far off the spine are no guide: keep the principal axis
        s = candidate
        a = _unit(PATIENT_ANTERIOR - (PATIENT_ANTERIOR @ s) * s)
        r = np.cross(s, a)
    return s, a, r


def _heights(body, matrix, lo, axes, spacing):
    """Body frame measurements (step 3): depth, width, three heights with their drawing lines, and the
    core ellipsoid's centre and semi-axes; None when a chord is not found."""
    s, a, r = axes
    points = _ras(matrix, np.argwhere(body) + lo)
    centre = points.mean(axis=0)
    rel = points - centre
    extent = {name: float(np.ptp(rel @ axis)) for name, axis in (("s", s), ("a", a), ("r", r))}
    reach = float(np.linalg.norm(rel, axis=1).max()) + 2.0 * max(spacing)
    step = min(0.25, min(spacing) / 4.0)
    sample = _Sampler(body, matrix, lo)
    heights_off = [f * extent["s"] for f in MID_HEIGHT_OFFSETS]
    lateral_off = [f * extent["r"] for f in LATERAL_OFFSETS]
    depth_chord = _median_chord(sample, [centre + h * s + w * r for h in heights_off for w in lateral_off], a, reach, step)
    if depth_chord is None:
        return None
    back, front = depth_chord
    depth = front - back
    mid_a = (front + back) / 2.0
    width_chord = _median_chord(sample, [centre + h * s + mid_a * a for h in heights_off], r, reach, step)
    if width_chord is None:
        return None
    width = width_chord[1] - width_chord[0]
    mid_r = (width_chord[0] + width_chord[1]) / 2.0
    out = {"depth_mm": depth, "width_mm": width, "lines": {}}
    for band, fractions in BAND_FRACTIONS.items():
        origins = [centre + (front - f * depth) * a + (mid_r + w) * r for f in fractions for w in lateral_off]
        chord = _median_chord(sample, origins, s, reach, step)
        if chord is None:
            return None
        out[f"{band}_height_mm"] = chord[1] - chord[0]
        middle_line = centre + (front - fractions[1] * depth) * a + mid_r * r
        out["lines"][band] = [middle_line + chord[0] * s, middle_line + chord[1] * s]
        if band == "middle":
            mid_s = (chord[0] + chord[1]) / 2.0
    out["core_centre"] = centre + mid_s * s + mid_a * a + mid_r * r
    out["core_semi_axes"] = [CORE_FRACTION / 2.0 * out["middle_height_mm"], CORE_FRACTION / 2.0 * depth,
                             CORE_FRACTION / 2.0 * width]  # fmt: skip
    return out


def _core_hu(body, hu, matrix, lo, axes, centre, semi_axes, spacing_kji):
    """HU values of the voxels of the body, eroded by CORTEX_MM, inside the core ellipsoid (step 4)."""
    half = [max(1, int(round(CORTEX_MM / sp))) for sp in spacing_kji]
    eroded = ~max_filter(~body, half, fill=True)
    kji = np.argwhere(eroded)
    rel = _ras(matrix, kji + lo) - centre
    inside = sum(((rel @ axis) / semi) ** 2 for axis, semi in zip(axes, semi_axes)) <= 1.0
    kji = kji[inside]
    return hu[kji[:, 0], kji[:, 1], kji[:, 2]].astype(np.float64)


# --- one vertebra --------------------------------------------------------------------------------

def _measure_one(value, labels, hu, matrix, box, superior):
    name = VERTEBRAE[value]
    spacing_ijk = np.linalg.norm(matrix[:3, :3], axis=0)
    spacing_kji = tuple(spacing_ijk[::-1])
    voxel_ml = abs(float(np.linalg.det(matrix[:3, :3]))) / 1000.0
    margin = 2
    lo = np.maximum(box[0] - margin, 0)
    hi = np.minimum(box[1] + margin, labels.shape)
    mask = labels[_slices((lo, hi))] == value
    row = {name_: None for name_, _ in TSV_COLUMNS}
    row.update(name=name, label=value, volume_ml=_round(mask.sum() * voxel_ml, 2), notes=[],
               label_touches_edge=bool(np.any(box[0] == 0) or np.any(box[1] == labels.shape)),
               cut_by_field_of_view=False, centre_ras=None, superior_axis=None, anterior_axis=None,
               height_lines=None, height_loss_own=None, height_loss_neighbours=None, hu_sd=None,
               core_focus_voxels=None, axis_resolution_mm=None, genant_borderline=None,
               genant_grade_range=None)  # fmt: skip
    if value in _NO_BODY:
        row["notes"].append(_NO_BODY[value])
        return row
    if mask.sum() < MIN_BODY_VOXELS:  # a few stray voxels have no shape to find axes in
        row["notes"].append("no vertebral body found in the label")
        return row
    body, axes = _isolate_body(mask, matrix, lo, superior, spacing_kji)
    nz = np.argwhere(body)
    if len(nz) < MIN_BODY_VOXELS:
        row["notes"].append("no vertebral body found in the label")
        return row
    row["centre_ras"] = _round_list(_ras(matrix, nz.mean(axis=0) + lo), 2)  # of what is in view, to centre views
    whole = nz + lo
    if np.any(whole.min(axis=0) == 0) or np.any(whole.max(axis=0) == np.array(labels.shape) - 1):
        row["cut_by_field_of_view"] = True
        row["notes"].append(CUT_NOTE)
        return row
    row["body_volume_ml"] = _round(len(nz) * voxel_ml, 2)
    axes = _endplate_frame(body, matrix, lo, axes, superior, spacing_ijk)
    row["superior_axis"], row["anterior_axis"] = _round_list(axes[0], 4), _round_list(axes[1], 4)
    # the voxel's size along the body's axis (RMS over its edges): how finely the heights are resolved
    row["axis_resolution_mm"] = _round(np.sqrt(np.sum((axes[0] @ matrix[:3, :3]) ** 2)), 2)
    frame = _heights(body, matrix, lo, axes, spacing_ijk)
    if frame is None:
        row["notes"].append("the body's outline could not be measured")
        return row
    for key in ("anterior_height_mm", "middle_height_mm", "posterior_height_mm", "depth_mm", "width_mm"):
        row[key] = _round(frame[key], 1)
    row["height_lines"] = {band: [_round_list(p, 2) for p in ends] for band, ends in frame["lines"].items()}
    hu_box = hu[_slices((lo, hi))]
    reach = [max(1, int(np.ceil(METAL_REACH_MM / sp))) for sp in spacing_kji]
    metal = int(np.count_nonzero((hu_box >= METAL_HU) & max_filter(mask, reach, fill=False)))
    if metal:
        row["notes"].append(f"{METAL_NOTE} ({metal} voxels of {METAL_HU:.0f} HU or more: screws, cement, a "
                            "prosthesis?): attenuation not read (the metal and its streaks)")  # fmt: skip
        return row
    core = _core_hu(body, hu_box, matrix, lo, axes, frame["core_centre"], frame["core_semi_axes"], spacing_kji)
    row["core_voxels"] = int(len(core))
    fields, note = _attenuation(core)
    row.update(fields)
    if note:
        row["notes"].append(note)
    return row


def _attenuation(core):
    """({hu_mean, hu_median, hu_sd, core_focus_voxels}, note or None) of a core's HU values (step 4)."""
    if len(core) < MIN_CORE_VOXELS:
        return {}, "trabecular core too small to read attenuation"
    median = float(np.median(core))
    robust_sd = 1.4826 * float(np.median(np.abs(core - median)))
    kept = core[np.abs(core - median) <= max(FOCUS_ROBUST_SDS * robust_sd, FOCUS_MIN_HU)]
    foci = len(core) - len(kept)
    fields = {"hu_mean": _round(kept.mean(), 1), "hu_median": _round(median, 1), "hu_sd": _round(kept.std(), 1),
              "core_focus_voxels": foci}  # fmt: skip
    note = (f"{foci} of {len(core)} core voxels are a focus (bone island, sclerosis, vessel or lytic spot): "
            "left out of the mean") if foci else None  # fmt: skip
    return fields, note


def _grade_all(rows, tolerance_mm=0.0):
    """Genant grades (step 5), once every row has its heights (the neighbours' are needed); borderline where
    another grade is within half a voxel or ``tolerance_mm`` (the larger) of each height."""
    by_value = {row["label"]: row for row in rows}
    for row in rows:
        if row["label"] not in GENANT_LEVELS or row["posterior_height_mm"] is None:
            continue
        # L5's posterior wall is normally low (POSTERIOR_NORMALLY_SHORT): no reference for L4's either
        neighbours = [by_value[v] for v in _neighbours(row["label"], by_value)
                      if v is not None and v in GENANT_LEVELS and v not in POSTERIOR_NORMALLY_SHORT
                      and by_value[v]["posterior_height_mm"] is not None]
        reference = np.mean([n["posterior_height_mm"] for n in neighbours]) if neighbours else None
        off = max(row["axis_resolution_mm"] / 2.0, tolerance_mm)
        result = genant(row["anterior_height_mm"], row["middle_height_mm"], row["posterior_height_mm"],
                        reference, [n["name"] for n in neighbours], 2.0 * off,
                        posterior_normally_short=row["label"] in POSTERIOR_NORMALLY_SHORT)  # fmt: skip
        row.update(genant_grade=result["grade"], genant_morphology=result["morphology"],
                   genant_reference=result["reference"], height_loss_percent=_round(100.0 * result["height_loss"], 1),
                   height_loss_own=_round(result["losses"]["own"], 3),
                   height_loss_neighbours=_round(result["losses"]["neighbours"], 3),
                   genant_borderline=result["borderline"], genant_grade_range=result["grade_range"])  # fmt: skip
        if result["borderline"]:
            low, high = result["grade_range"]
            why = "half a voxel" if off > tolerance_mm else "the outline's tolerance"
            row["notes"].append(f"Genant grade {result['grade']} is borderline: {low}-{high} with each height "
                                f"{why} ({off:.1f} mm) off")


def _grade_of(loss):
    return next((grade for threshold, grade in GENANT_THRESHOLDS if loss >= threshold - 1e-9), 0)


def _round(value, digits):
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


def _round_list(values, digits):
    return [round(float(v), digits) for v in values]
