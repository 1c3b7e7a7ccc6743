"""Disc levels from a vertebra label map: centre points and grading boxes, in RAS millimetres.

A disc centre is the midpoint between the inferior endplate centre of the upper
body and the superior endplate centre of the lower body. Endplate centres are
where the line joining the two bodies' centres leaves the upper body and enters
the lower one, which holds for tilted endplates (lordosis) too. Bodies are first
reduced to their core (an opening removes thin posterior elements when a label
map includes them, then the largest piece is kept), so the centres are those of
the vertebral bodies. A level is computed only when both its bodies are labelled;
otherwise it is reported not visible with the missing body named: never guessed.
``estimate_disc_below`` is the one marked exception (a disc under the last body when the
body below it is not labelled: L5/S1 when no S1 was found, or without a sacrum model).
Works on any VolumeImage label map (VerSe numbers), whatever its orientation.
"""

import numpy as np

from SpineAILib.morphology import largest_component, opening
from SpineAILib.terminology import DISC_LEVELS, vertebra_name, vertebra_number

CORE_RADIUS_MM = 4.0  # half-edge of the opening: removes arches/processes (about 5-8 mm thick), keeps bodies
STEP_MM = 0.25
ROI_SIZE_MM = (40.0, 40.0, 20.0)  # left-right, anterior-posterior, along the spine: a grading crop
MAX_DISC_GAP_MM = 25.0  # endplates farther apart than this are not neighbours (a body is missing)
# Estimating a disc below the last labelled body (L5/S1 when the model has no sacrum label):
DEFAULT_DISC_MM = 10.0  # height when the disc above was not measured
DISC_HEIGHT_RANGE_MM = (4.0, 16.0)
MAX_AXIS_TURN_DEG = 30.0  # the body's own axis, unless it turns further than this from the spine's axis above
MIN_BELOW_MM = 10.0  # of image needed below the estimated disc: the top of the body below must be in view


def disc_pairs():
    """[(level, upper name, lower name)] for L1/L2 ... L5/S1."""
    return [(level, *level.split("/")) for level in DISC_LEVELS]


class LabelGeometry:
    """Voxel <-> RAS for one label map, and each body's core mask."""

    def __init__(self, labelmap):
        self.voxels = np.asarray(labelmap.voxels)
        self.matrix = np.asarray(labelmap.ijk_to_ras, float)
        self.inverse = np.linalg.inv(self.matrix)
        k_spacing, j_spacing, i_spacing = labelmap.spacing[2], labelmap.spacing[1], labelmap.spacing[0]
        self.spacing_kji = (k_spacing, j_spacing, i_spacing)
        self._cores = {}

    def ras(self, kji):
        kji = np.atleast_2d(np.asarray(kji, float))
        ijk1 = np.c_[kji[:, ::-1], np.ones(len(kji))]
        return (ijk1 @ self.matrix.T)[:, :3]

    def core(self, value):
        """(bool mask over the bounding box, box origin in kji) of the body's core, or None."""
        if value not in self._cores:
            mask = self.voxels == value
            if not mask.any():
                self._cores[value] = None
                return None
            nz = np.nonzero(mask)
            margin = [int(np.ceil(CORE_RADIUS_MM / s)) + 1 for s in self.spacing_kji]
            lo = [max(0, int(a.min()) - m) for a, m in zip(nz, margin)]
            hi = [min(n, int(a.max()) + 1 + m) for a, n, m in zip(nz, mask.shape, margin)]
            box = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
            core = largest_component(opening(box, CORE_RADIUS_MM, self.spacing_kji))
            if not core.any():  # too thin to open (a sliver at the edge of the view): keep it whole
                core = largest_component(box)
            self._cores[value] = (core, np.array(lo))
        return self._cores[value]

    def centre(self, value):
        core, origin = self.core(value)
        return self.ras(np.argwhere(core).mean(axis=0) + origin)[0]

    def in_volume(self, points_ras):
        ijk = (np.c_[points_ras, np.ones(len(points_ras))] @ self.inverse.T)[:, :3]
        kji = ijk[:, ::-1]
        return np.all((kji >= -0.5) & (kji <= np.array(self.voxels.shape) - 0.5), axis=1)

    def axis(self, value, toward):
        """Unit RAS vector perpendicular to the body's endplates (its least-spread principal axis: a lumbar body is
        lower than it is deep or wide), pointing the way of ``toward``."""
        core, origin = self.core(value)
        kji = np.argwhere(core)
        kji = kji[:: max(1, len(kji) // 20000)]  # a subsample gives the same axes
        points = self.ras(kji + origin)
        _, vectors = np.linalg.eigh(np.cov((points - points.mean(axis=0)).T))
        axis = vectors[:, 0]
        return axis if float(axis @ np.asarray(toward, float)) >= 0 else -axis

    def inside(self, value, points_ras):
        core, origin = self.core(value)
        ijk = (np.c_[points_ras, np.ones(len(points_ras))] @ self.inverse.T)[:, :3]
        kji = np.rint(ijk[:, ::-1]).astype(int) - origin
        ok = np.all((kji >= 0) & (kji < np.array(core.shape)), axis=1)
        result = np.zeros(len(points_ras), bool)
        result[ok] = core[kji[ok, 0], kji[ok, 1], kji[ok, 2]]
        return result


def _present(geometry, name):
    try:
        value = vertebra_number(name)
    except KeyError:
        return None
    return value if geometry.core(value) is not None else None


def disc_levels(labelmap):
    """One dict per level L1/L2 ... L5/S1: level, visible, and either centre/normal/endplates or a reason.

    ``normal`` is the unit vector from the lower body's centre to the upper's (RAS),
    the axis of the spine at that disc; ``height_mm`` the gap between the endplates.
    """
    geometry = LabelGeometry(labelmap)
    levels = []
    for level, upper, lower in disc_pairs():
        missing = [name for name in (upper, lower) if _present(geometry, name) is None]
        if missing:
            levels.append({"level": level, "visible": False,
                           "reason": f"{' and '.join(missing)} not found in the image"})  # fmt: skip
            continue
        levels.append(_disc(geometry, level, vertebra_number(upper), vertebra_number(lower)))
    return levels


def _endplates(geometry, upper, lower):
    """(upper body's inferior endplate centre, lower body's superior one, mm between them, unit direction down)."""
    c_up, c_low = geometry.centre(upper), geometry.centre(lower)
    span = float(np.linalg.norm(c_low - c_up))
    direction = (c_low - c_up) / (span or 1.0)
    t = np.arange(0.0, span + STEP_MM, STEP_MM)
    points = c_up + t[:, None] * direction
    in_up, in_low = geometry.inside(upper, points), geometry.inside(lower, points)
    entry = int(np.argmax(in_low)) if in_low.any() else len(t) - 1
    before = np.nonzero(in_up[:entry])[0]
    exit_ = int(before[-1]) if len(before) else 0
    return points[exit_], points[entry], float(t[entry] - t[exit_]), direction


def endplate_gap_mm(upper_index, lower_index, shape, spacing):
    """mm between two bodies' facing endplates, measured as ``disc_levels`` measures a disc's height.

    The bodies are flat voxel indices into a grid of ``shape`` and ``spacing`` (mm per numpy axis),
    e.g. the lumbar pipeline's canonical one (naming: how close the lowest body sits on S1).
    """
    from SpineAILib.images import VolumeImage

    labels = np.zeros(shape, np.uint8)
    labels.ravel()[lower_index] = 2
    labels.ravel()[upper_index] = 1
    ijk_to_ras = np.diag([spacing[2], spacing[1], spacing[0], 1.0])  # numpy axes (k, j, i): i is the last
    geometry = LabelGeometry(VolumeImage(voxels=labels, ijk_to_ras=ijk_to_ras, is_labelmap=True))
    if geometry.core(1) is None or geometry.core(2) is None:
        return float("inf")
    return _endplates(geometry, 1, 2)[2]


def _disc(geometry, level, upper, lower):
    upper_endplate, lower_endplate, gap, direction = _endplates(geometry, upper, lower)
    if gap > MAX_DISC_GAP_MM:
        return {"level": level, "visible": False,
                "reason": f"{vertebra_name(upper)} and {vertebra_name(lower)} are {gap:.0f} mm apart: not neighbours"}  # fmt: skip
    return {
        "level": level,
        "visible": True,
        "centre": (upper_endplate + lower_endplate) / 2.0,
        "normal": -direction,
        "upper_endplate": upper_endplate,
        "lower_endplate": lower_endplate,
        "height_mm": gap,
    }


def estimate_disc_below(labelmap, discs, level="L5/S1", lower_note="is not segmented by this model"):
    """``discs`` with ``level`` estimated where the body below it is not labelled (no S1 found, or no sacrum model).

    The disc is placed under the upper body's inferior endplate, along that body's own axis (a
    lumbar body's endplates are tilted at the lumbosacral junction, so the axis of the bodies
    above would miss it), half the disc height down; the height is that of the disc above it,
    clipped to 4-16 mm. It is reported only when the image goes on at least 10 mm beyond that
    disc (so the top of the body below is in view) and the upper body is not cut off by the
    image's edge; otherwise the level stays not visible, with the reason. An estimated level is
    marked ``estimated`` with the method, so it is never taken for a measured one. ``lower_note``
    says why the body below is not labelled, in the reasons ("S1 was not found").
    """
    _, upper, lower = next(p for p in disc_pairs() if p[0] == level)
    index = next(i for i, d in enumerate(discs) if d["level"] == level)
    if discs[index]["visible"]:
        return discs
    geometry = LabelGeometry(labelmap)
    upper_value = _present(geometry, upper)
    out = list(discs)
    if upper_value is None:
        out[index] = {**discs[index], "reason": f"{upper} not found in the image ({lower} {lower_note})"}
        return out
    above = [d for d in discs if d["level"].endswith("/" + upper) and d["visible"]]
    above_name = above[0]["level"].split("/")[0] if above else None
    above_value = _present(geometry, above_name) if above_name else None
    toward = (geometry.centre(upper_value) - geometry.centre(above_value)) if above_value else np.array([0.0, 0.0, -1.0])
    height = above[0]["height_mm"] if above else DEFAULT_DISC_MM
    estimate = extrapolated_disc(geometry, level, upper_value, height, toward)
    if not estimate["visible"]:
        estimate["reason"] = f"{lower} {lower_note} and {estimate['reason']}"
    out[index] = estimate
    return out


def extrapolated_disc(geometry, level, upper_value, reference_height_mm, toward):
    """The disc below body ``upper_value`` from that body alone (see estimate_disc_below)."""
    upper = vertebra_name(upper_value)
    chain = np.asarray(toward, float) / np.linalg.norm(toward)
    axis = geometry.axis(upper_value, chain)
    if float(axis @ chain) < np.cos(np.radians(MAX_AXIS_TURN_DEG)):  # a body's own axis that far off is its shape, not its tilt
        axis = chain
    centre = geometry.centre(upper_value)
    t = np.arange(0.0, 80.0, STEP_MM)
    points = centre + t[:, None] * axis
    inside = geometry.inside(upper_value, points)
    leaves = np.nonzero(~inside)[0]
    exit_ = int(leaves[0]) - 1 if len(leaves) else len(t) - 1
    endplate = points[max(exit_, 0)]
    height = float(np.clip(reference_height_mm, *DISC_HEIGHT_RANGE_MM))
    not_visible = {"level": level, "visible": False}
    edge = endplate + axis * 2.0  # a body cut off by the image's edge has no inferior endplate to measure from
    if not geometry.in_volume(edge[None])[0]:
        return {**not_visible, "reason": f"{upper} reaches the edge of the image (its inferior endplate is not in view)"}
    if not geometry.in_volume((endplate + axis * (height + MIN_BELOW_MM))[None])[0]:
        return {**not_visible, "reason": f"the image ends less than {MIN_BELOW_MM:.0f} mm below the estimated {level} disc"}
    return {
        "level": level,
        "visible": True,
        "estimated": True,
        "method": f"estimated below {upper}'s inferior endplate along its axis, half of a {height:.1f} mm disc down "
                  "(the body below is not segmented)",
        "centre": endplate + axis * height / 2.0,
        "normal": -axis,
        "upper_endplate": endplate,
        "lower_endplate": endplate + axis * height,
        "height_mm": height,
    }


def roi_axes(normal):
    """3x3, columns: box x (left-right), y (anterior-posterior), z (along the spine, superior)."""
    z = np.asarray(normal, float) / np.linalg.norm(normal)
    x = np.array([1.0, 0.0, 0.0]) - z[0] * z  # patient right, made perpendicular to the spine
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # anterior
    return np.column_stack([x, y, z])
