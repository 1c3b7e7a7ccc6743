"""Grade a study at the disc levels the level model found: the rows, the table, the heat map.

``grade`` returns the 25 rows (5 conditions x 5 levels) with probabilities, the
predicted grade or "not assessed" and the reason (series missing, level not visible
and why). ``heatmap`` is a Grad-CAM volume on the image the levels were found on:
for each graded crop, the map of its more likely abnormal grade (moderate or
severe), scaled by the probability that the level is abnormal, so a level the
model calls normal stays dark and the hot spots show where it saw narrowing.
"""

import numpy as np

from SpineAILib.images import VolumeImage
from SpineAILib.terminology import DISC_LEVELS
from SpineAILib.vocabulary import SEVERITY_RESEARCH_NOTE
from SpineAILib.workflows.lumbar.severity.grading import frame_axes, side_of
from SpineAILib.workflows.lumbar.severity.predict import load, predict_study
from SpineAILib.workflows.lumbar.severity.study import KIND_TITLES, NEEDS
from SpineAILib.workflows.lumbar.severity.submission import CONDITIONS, GRADES, GROUPS, condition_group, level_key

TASK = "lumbar-mri/severity"
BUNDLE_DIR_NAME = "lumbar-mri-severity"
TABLE_COLUMNS = ("level", "condition", "p_normal_mild", "p_moderate", "p_severe", "grade", "assessed", "series", "reason", "row_id",
                 "research_output")
LEVEL_NAMES = {level_key(name): name for name in DISC_LEVELS}  # 'l4_l5' -> 'L4/L5'


def severity_bundle_path():
    from SpineAILib.models.catalogue import sub_model_path

    return sub_model_path(TASK, BUNDLE_DIR_NAME)


def research_output(meta):
    """True when the bundle ``meta`` describes was trained without patient labels (on synthetic studies):
    its grades are a research output, not a reading. Decided here only: the workflow's warning, the
    report's ``research_output`` / ``research_note`` and severity.tsv's ``research_output`` column."""
    from SpineAILib.models.bundle import trained_on_synthetic_data

    return trained_on_synthetic_data(meta)


def research_fields(meta):
    """{"research_output", "research_note"} for report.json's severity block ('' note for a real-data bundle)."""
    research = research_output(meta)
    return {"research_output": research, "research_note": SEVERITY_RESEARCH_NOTE if research else ""}


def grade(study, canal, bundle, discs=(), device="auto"):
    """(rows, entries, points): rows as predict.predict_study gives them, each with 'series'
    (the series kind it was graded on) and a reason naming why a level was not located."""
    loaded = load(bundle, device)
    rows, entries = predict_study(study, loaded, canal_points=canal, return_crops=True)
    hidden = {level_key(d["level"]): d.get("reason", "") for d in discs if not d.get("visible")}
    estimated = {level_key(d["level"]) for d in discs if d.get("visible") and d.get("estimated")}
    for row in rows:
        kind = NEEDS[condition_group(row["condition"])]
        row["series"] = KIND_TITLES[kind] if row["assessed"] else ""
        if row["assessed"] and row["level"] in estimated:
            row["reason"] = "graded at an estimated disc level (the body below is not segmented): check the level"
        if not row["assessed"]:
            if row["reason"] == "level not located" and row["level"] in hidden:
                row["reason"] = f"disc level not visible: {hidden[row['level']]}"
            elif row["reason"] == "level not located":
                row["reason"] = "disc level located, but the canal behind it was not found"
            elif row["reason"] == f"no {kind} series":
                row["reason"] = f"not assessed: no {KIND_TITLES[kind]} series in the study"
    from SpineAILib.workflows.lumbar.severity.grading import points_from_canal

    points = points_from_canal(canal, loaded.metadata["grading"]["point_offsets_mm"])
    return rows, entries, points, loaded


def table_columns(rows, research=False):
    """{column: values} for severity.tsv and the scene's table node, by level, then in Kaggle's condition order;
    ``research_output`` is 1 on every row when the bundle was not trained on patient labels (``research``)."""
    ordered = sorted(rows, key=lambda r: (r["level"], CONDITIONS.index(r["condition"])))
    return {
        "level": [LEVEL_NAMES.get(r["level"], r["level"]) for r in ordered],
        "condition": [r["condition"] for r in ordered],
        # no probabilities where nothing was graded (the rows carry the bundle's prior for a Kaggle submission)
        **{f"p_{g}": [round(float(r[g]), 4) if r["assessed"] else float("nan") for r in ordered] for g in GRADES},
        "grade": [r["grade"] for r in ordered],
        "assessed": [int(bool(r["assessed"])) for r in ordered],
        "series": [r.get("series", "") for r in ordered],
        "reason": [r["reason"] for r in ordered],
        "row_id": [r["row_id"] for r in ordered],
        "research_output": [int(bool(research))] * len(ordered),
    }


def summary(rows):
    """Report figures: rows assessed, grades counted, the worst grade per level."""
    assessed = [r for r in rows if r["assessed"]]
    worst = {}
    for r in assessed:
        name = LEVEL_NAMES.get(r["level"], r["level"])
        rank = GRADES.index(max(GRADES, key=lambda g: r[g]))
        if rank >= worst.get(name, (-1, ""))[0]:
            worst[name] = (rank, r["grade"])
    return {
        "rows": len(rows),
        "rows_assessed": len(assessed),
        "grades": {name: sum(r["grade"] == name for r in assessed) for name in ("Normal/Mild", "Moderate", "Severe")},
        "worst_grade_per_level": {level: grade for level, (_, grade) in sorted(worst.items())},
        "not_assessed": sorted({r["reason"] for r in rows if not r["assessed"]}),
    }


def heatmap(rows, entries, points, loaded, reference, study, crops=None):
    """A 0..1 float VolumeImage on ``reference``'s grid, or None when no row was graded."""
    from SpineAILib.explain import class_maps

    crops = crops or loaded.metadata["grading"]["crops"]
    by_key = {(r["condition"], r["level"]): r for r in rows}
    graded = []  # (condition, level, crop, row, class index)
    for condition, level, crop, _ in entries:
        row = by_key.get((condition, level))
        if crop is None or row is None or not row["assessed"]:
            continue
        grade_index = 1 if row["moderate"] >= row["severe"] else 2
        graded.append((condition, level, crop, row, GROUPS.index(condition_group(condition)) * len(GRADES) + grade_index))
    volume = np.zeros(reference.voxels.shape, np.float32)
    if not graded:
        return None
    # One pass for all crops: a forward and one backward per class asked for, not per crop.
    classes = sorted({g[4] for g in graded})
    maps = class_maps(loaded, np.stack([g[2] for g in graded]), classes)  # CAM (= Grad-CAM here), no torch
    maps = maps.reshape(len(classes), len(graded), *maps.shape[-2:])
    painted = 0
    for b, (condition, level, _, row, class_index) in enumerate(graded):
        group = condition_group(condition)
        abnormal = float(row["moderate"] + row["severe"])
        spec = crops[group]
        series = study.series_of(spec["series"])
        spacing = series.slice_spacing() if series is not None else 4.0
        cam = maps[classes.index(class_index), b]
        _paint(volume, reference, cam * abnormal, points[(condition, level)], spec, side_of(condition), spacing)
        painted += 1
    if not painted:
        return None
    return VolumeImage(voxels=np.clip(volume, 0.0, 1.0), ijk_to_ras=reference.ijk_to_ras.copy(),
                       description="Severity Grad-CAM", source=reference.source,
                       metadata={"kind": "heatmap", "range": [0.0, 1.0]})  # fmt: skip


def _paint(volume, reference, cam, centre, spec, side, slice_spacing):
    """Put a crop's 2-D map back where the crop was cut: every voxel of ``reference`` inside the
    crop's slab takes the map's value at its in-plane position (the larger value where crops meet)."""
    across, down, depth = frame_axes(spec["frame"], side)
    size, fov = int(spec["size"]), float(spec["fov_mm"])
    half_depth = 0.5 * float(spec["slices"]) * float(slice_spacing)  # the crop's slab
    pixel = fov / size
    matrix = np.asarray(reference.ijk_to_ras, float)
    inverse = np.linalg.inv(matrix)
    reach = np.sqrt(2 * (fov / 2) ** 2 + half_depth**2)
    corners = np.array([[x, y, z] for x in (-reach, reach) for y in (-reach, reach) for z in (-reach, reach)]) + centre
    ijk = (np.c_[corners, np.ones(8)] @ inverse.T)[:, :3]
    lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, np.array(reference.dimensions))
    if np.any(hi <= lo):
        return
    # Position along each crop axis, separable in i, j, k (the grid is affine): three small
    # 1-D projections broadcast into the box instead of a RAS point per voxel.
    axes = [np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi)]
    offset = matrix[:3, 3] - np.asarray(centre, float)

    def along(direction):
        d = np.asarray(direction, float)
        i, j, k = (axes[n] * np.float32(matrix[:3, n] @ d) for n in range(3))
        return k[:, None, None] + j[None, :, None] + i[None, None, :] + np.float32(offset @ d)  # (k, j, i)

    u = along(across) / pixel + (size - 1) / 2
    v = along(down) / pixel + (size - 1) / 2
    inside = (np.abs(along(depth)) <= half_depth) & (u >= 0) & (u <= size - 1) & (v >= 0) & (v <= size - 1)
    if not inside.any():
        return
    values = cam[np.rint(v[inside]).astype(int), np.rint(u[inside]).astype(int)].astype(np.float32)
    box = volume[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]]
    box[inside] = np.maximum(box[inside], values)
