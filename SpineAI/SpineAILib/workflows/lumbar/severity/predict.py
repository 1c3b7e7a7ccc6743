"""Inference: grade one study with a severity bundle -> 25 rows (condition x level).

Points tell the model where to look. Give them directly ({(condition, level): RAS}),
or give only the canal point of each level ({level: RAS}, what a level detector finds)
and the others are placed with the offsets the bundle learned from its training
labels; by default the study's own labelled points are used (evaluation). A row that
cannot be graded (its series is missing, its level was not located) gets the
bundle's grade prior and ``assessed: False`` with the reason.
"""

import numpy as np

from SpineAILib.vocabulary import SEVERITY_GRADE_NAMES as GRADE_NAMES
from SpineAILib.workflows.lumbar.severity.calibration import calibrate, calibration_of, check_crop
from SpineAILib.workflows.lumbar.severity.grading import group_probabilities, points_from_canal, study_crops
from SpineAILib.workflows.lumbar.severity.submission import GRADES, GROUPS, condition_group, row_id

TASK = "lumbar-mri/severity"
# Disc centre -> spinal canal centre, posteriorly: about half an adult lumbar disc's depth
# (18-20 mm) plus half the canal's (7-9 mm). Approximate; a caller that knows the posterior
# disc margin (from a vertebra segmentation) should place the canal point itself.
DISC_TO_CANAL_MM = 25.0


def load(bundle, device="auto"):
    """A LoadedBundle for a bundle folder (or the LoadedBundle itself)."""
    if hasattr(bundle, "model") and hasattr(bundle, "metadata"):
        return bundle
    from SpineAILib.models.engine import load_model

    return load_model(bundle, device=device, expected_task=TASK)


def rows_from_crops(study_id, entries, model, prior, device="cpu", calibration=None):
    """Rows from study_crops() output: probabilities where a crop exists, the prior elsewhere.

    ``calibration`` (the bundle's ``grading.calibration``, see calibration.py): the
    probabilities are calibrated, and a crop that fails the bundle's image check is not
    graded (the prior, ``assessed: False`` and the check's reason)."""
    withheld = {(c, l): check_crop(crop, condition_group(c), calibration) for c, l, crop, _ in entries if crop is not None}
    graded = [e for e in entries if e[2] is not None and not withheld.get((e[0], e[1]))]
    groups = [GROUPS.index(condition_group(e[0])) for e in graded]
    probabilities = group_probabilities(model, [e[2] for e in graded], groups, device=device)
    probabilities = calibrate(probabilities, groups, calibration)
    by_key = {(c, l): p for (c, l, _, _), p in zip(graded, probabilities)}
    rows = []
    for condition, level, _, reason in entries:
        reason = withheld.get((condition, level)) or reason
        p = by_key.get((condition, level))
        assessed = p is not None
        if not assessed:
            p = np.asarray(prior[condition_group(condition)], dtype=float)
        p = np.asarray(p, dtype=float) / float(np.sum(p))
        rows.append({
            "row_id": row_id(study_id, condition, level),
            "study_id": str(study_id),
            "condition": condition,
            "level": level,
            **{g: float(v) for g, v in zip(GRADES, p)},
            "grade": GRADE_NAMES[int(np.argmax(p))] if assessed else "not assessed",
            "assessed": assessed,
            "reason": reason,
        })
    return rows


def predict_study(study, bundle, points=None, canal_points=None, device="auto", return_crops=False):
    """25 rows for ``study`` (a layout.Study): row_id, condition, level, the three
    probabilities, grade, assessed, reason. ``return_crops`` also returns the crops
    (for Grad-CAM): (rows, [(condition, level, crop or None, reason)])."""
    loaded = load(bundle, device)
    grading = loaded.metadata["grading"]
    if points is None and canal_points is None:
        chosen = {key: p.ras for key, p in study.points.items()}
    else:
        chosen = points_from_canal(canal_points or {}, grading["point_offsets_mm"])
        chosen.update(points or {})
    entries = study_crops(study, chosen, grading["crops"])
    rows = rows_from_crops(study.study_id, entries, loaded.model, grading["prior"], loaded.device,
                           calibration=calibration_of(loaded.metadata))
    return (rows, entries) if return_crops else rows


def canal_points_from_discs(discs, distance_mm=DISC_TO_CANAL_MM):
    """{level: canal RAS} from disc levels as SpineAILib.workflows.lumbar.discs.disc_levels gives them
    ({'level': 'L4/L5', 'visible', 'centre', 'normal'}): each visible disc centre moved
    posteriorly, perpendicular to the spine's axis. Invisible levels are left out (not graded)."""
    from SpineAILib.workflows.lumbar.severity.submission import level_key

    points = {}
    for disc in discs:
        if not disc.get("visible"):
            continue
        axis = np.asarray(disc.get("normal", (0.0, 0.0, 1.0)), float)
        axis /= np.linalg.norm(axis) or 1.0
        posterior = np.array([0.0, -1.0, 0.0]) - axis * (-axis[1])  # -A made perpendicular to the spine
        posterior /= np.linalg.norm(posterior) or 1.0
        points[level_key(disc["level"])] = np.asarray(disc["centre"], float) + distance_mm * posterior
    return points
