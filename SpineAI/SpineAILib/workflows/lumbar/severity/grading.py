"""The 2.5-D severity grading model: crops around each level, the network, the loss.

For every (condition, level) a crop is cut from the series that shows it best
(canal: sagittal T2/STIR; foramina: sagittal T1 at the foramen; subarticular recesses:
axial T2), a few neighbouring slices deep, in a canonical patient frame: sampled along
fixed anatomical directions rather than the image's rows and columns, so flipped or
transposed series look alike, and right-side crops are mirrored to look like left-side
ones. The slices become the channels of a 2-D CNN (MONAI ResNet18, narrow) with one
3-grade head per condition group (9 logits = 3 groups x 3 grades).
"""

import numpy as np

from SpineAILib.workflows.lumbar.severity.study import NEEDS
from SpineAILib.workflows.lumbar.severity.submission import CONDITIONS, GRADES, GROUPS, LEVELS, condition_group

CLASS_WEIGHTS = (1.0, 2.0, 4.0)  # the metric's sample weights, as cross-entropy weights

# Crop recipe per condition group (stored in the bundle so inference cuts the same crops).
CROPS = {
    "spinal": {"series": NEEDS["spinal"], "frame": "sagittal", "fov_mm": 48.0, "size": 48, "slices": 5},
    "foraminal": {"series": NEEDS["foraminal"], "frame": "sagittal", "fov_mm": 40.0, "size": 48, "slices": 5},
    "subarticular": {"series": NEEDS["subarticular"], "frame": "axial", "fov_mm": 40.0, "size": 48, "slices": 5},
}


def network_spec(slices=5, width=0.5):
    """Allow-listed network (SpineAILib.models.networks) and its JSON arguments."""
    return {
        "name": "resnet18",
        "args": {"spatial_dims": 2, "n_input_channels": int(slices), "num_classes": 3 * len(GROUPS), "widen_factor": float(width)},
    }


def side_of(condition):
    return "left" if condition.startswith("left") else "right" if condition.startswith("right") else None


def frame_axes(frame, side):
    """(across, down, depth) RAS unit vectors of a crop: image right, image down, channel order.

    Sagittal: anterior on the left, superior up; channels run medial -> lateral for a
    foramen (so left and right look alike), left -> right for the canal.
    Axial: posterior down, channels superior -> inferior; the recess's lateral side is
    image right for both sides (right-side crops are mirrored).
    """
    if frame == "sagittal":
        depth = np.array([-1.0, 0, 0]) if side == "left" else np.array([1.0, 0, 0])
        return np.array([0, -1.0, 0]), np.array([0, 0, -1.0]), depth
    across = np.array([-1.0, 0, 0]) if side != "right" else np.array([1.0, 0, 0])
    return across, np.array([0, -1.0, 0]), np.array([0, 0, -1.0])


def _bilinear(image, x, y):
    """Sample ``image`` at float pixel coordinates (x = column, y = row); 0 outside."""
    rows, cols = image.shape
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    out = np.zeros(x.shape, np.float32)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            ok = (xi >= 0) & (xi < cols) & (yi >= 0) & (yi < rows)
            out[ok] += (wx * wy)[ok] * image[yi[ok], xi[ok]]
    return out


def _neighbours(series, ras, depth, count):
    """Indices of ``count`` slices around ``ras`` ordered along ``depth``, repeating an edge
    slice rather than jumping across a gap to another stack (e.g. the next disc's)."""
    centre, _ = series.nearest(ras, margin=4)
    if centre is None:
        return None
    spacing = series.slice_spacing()
    # where each slice plane sits relative to the point, measured along ``depth``
    position = {
        i: -inst.pixel(ras)[2] * float(np.sign(inst.normal @ depth) or 1.0)
        for i, inst in enumerate(series.instances)
        if inst.contains(ras, margin=8)
    }
    chosen = [centre]
    for sign in (1, -1):
        last = centre
        for step in range(1, count // 2 + 1):
            target = position[centre] + sign * step * spacing
            best = min(position, key=lambda i: abs(position[i] - target))
            last = best if abs(position[best] - target) <= 0.5 * spacing else last
            if sign > 0:
                chosen.append(last)
            else:
                chosen.insert(0, last)
    return chosen


def crop(series, ras, group, side, spec=None):
    """(slices, size, size) float32 crop around RAS point ``ras``, z-scored; None if not covered."""
    spec = spec or CROPS[group]
    across, down, depth = frame_axes(spec["frame"], side)
    indices = _neighbours(series, ras, depth, int(spec["slices"]))
    if indices is None:
        return None
    size, fov = int(spec["size"]), float(spec["fov_mm"])
    offsets = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * (fov / size)
    v, u = np.meshgrid(offsets, offsets, indexing="ij")
    out = np.empty((len(indices), size, size), np.float32)
    for c, index in enumerate(indices):
        inst = series.instances[index]
        normal = inst.normal
        centre = np.asarray(ras, float) - normal * inst.pixel(ras)[2]  # the point projected on this slice
        # canonical directions projected into the slice plane (slices may be tilted)
        a = across - normal * (across @ normal)
        d = down - normal * (down @ normal)
        a, d = a / np.linalg.norm(a), d / np.linalg.norm(d)
        points = centre + u[..., None] * a + v[..., None] * d
        rel = points - inst.origin
        x = rel @ inst.row_dir / inst.spacing[1]
        y = rel @ inst.col_dir / inst.spacing[0]
        out[c] = _bilinear(series.pixels(index), x, y)
    return zscore(out)


def zscore(array):
    """Per-crop normalisation: scanners and studies differ in gain, the anatomy's contrast does not."""
    std = float(array.std())
    return ((array - float(array.mean())) / (std if std > 1e-6 else 1.0)).astype(np.float32)


def point_offsets(studies):
    """Median RAS offset (mm) from the canal point to each condition's point at the same level.

    Learned from labelled studies; lets inference place the foramen and recess crops
    from the canal points alone (what a level detector gives).
    """
    offsets = {}
    for condition in CONDITIONS[1:]:
        deltas = [
            study.points[(condition, level)].ras - study.points[("spinal_canal_stenosis", level)].ras
            for study in studies
            for level in LEVELS
            if (condition, level) in study.points and ("spinal_canal_stenosis", level) in study.points
        ]
        if deltas:
            offsets[condition] = [round(float(v), 3) for v in np.median(np.array(deltas), axis=0)]
    return offsets


def points_from_canal(canal_points, offsets):
    """{(condition, level): RAS} from {level: RAS of the canal} and point_offsets()."""
    points = {}
    for level, ras in canal_points.items():
        ras = np.asarray(ras, float)
        points[("spinal_canal_stenosis", level)] = ras
        for condition, delta in offsets.items():
            points[(condition, level)] = ras + np.asarray(delta, float)
    return points


def study_crops(study, points=None, crops=None):
    """[(condition, level, crop or None, reason)] for all 25 rows of a study.

    ``points``: {(condition, level): RAS}; default: the study's labelled points.
    """
    crops = crops or CROPS
    if points is None:
        points = {key: p.ras for key, p in study.points.items()}
    out = []
    for condition in CONDITIONS:
        group = condition_group(condition)
        spec = crops[group]
        for level in LEVELS:
            series = _series_for(study, condition, level, spec["series"])
            point = points.get((condition, level))
            if series is None:
                out.append((condition, level, None, f"no {spec['series']} series"))
            elif point is None:
                out.append((condition, level, None, "level not located"))
            else:
                image = crop(series, point, group, side_of(condition), spec)
                out.append((condition, level, image, "" if image is not None else "point outside the series' field of view"))
    return out


def _series_for(study, condition, level, kind):
    """The labelled point's own series when it is of the right kind, else the study's series of that kind."""
    label = study.points.get((condition, level))
    if label is not None:
        series = study.series_by_id(label.series_id)
        if series is not None and series.kind == kind:
            return series
    return study.series_of(kind)


def group_probabilities(model, crops, groups, device="cpu", batch=64):
    """Softmax over each crop's own group head: (N, 3) numpy."""
    from SpineAILib.models.engine import as_runner, softmax

    out = []
    runner = as_runner(model, device)
    for start in range(0, len(crops), batch):
        x = np.stack(crops[start : start + batch]).astype(np.float32)
        g = np.asarray(groups[start : start + batch], dtype=np.int64)
        logits = runner(x).reshape(len(x), len(GROUPS), len(GRADES))
        out.append(softmax(logits[np.arange(len(x)), g], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 3), np.float32)


def grade_prior(studies):
    """The fill for rows no crop can grade: per group, grade frequencies times the metric's
    weights 1/2/4 (Laplace-smoothed), normalised: the constant with the lowest weighted log loss."""
    counts = {g: np.ones(3) for g in GROUPS}
    for study in studies:
        for (condition, _), grade in study.grades.items():
            counts[condition_group(condition)][grade] += 1
    weighted = {g: c * np.asarray(CLASS_WEIGHTS) for g, c in counts.items()}
    return {g: [round(float(v), 4) for v in c / c.sum()] for g, c in weighted.items()}
