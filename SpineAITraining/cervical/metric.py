"""The RSNA 2022 competition metric (../shared/design/METRICS.md), in numpy only.

Every (study, target) pair is one binary prediction, target C1 ... C7 or
patient_overall. Its weight depends on the TRUE label: vertebrae 1 if negative and 2
if positive, patient_overall 7 and 14. The score is the weighted mean of the binary
log losses over all pairs:

    score = sum(w * -[y ln p + (1 - y) ln(1 - p)]) / sum(w)

Probabilities are clipped to [1e-15, 1 - 1e-15] first, as scikit-learn's log_loss did
in 2022 (eps=1e-15, the version Kaggle's metric ran on). The host's exact code was not
published; participants reproduced it this way. Many of them validated with a variant
that normalises the weights per study and then averages the studies
(``score_per_study``); it is given for comparing with their numbers, not for ranking.
"""

import csv
from pathlib import Path

import numpy as np

from SpineAILib.workflows.cervical.submission import TARGETS, VERTEBRAE, parse_row_id, probability, row_id

EPS = 1e-15
WEIGHTS = {"vertebra": (1.0, 2.0), "patient_overall": (7.0, 14.0)}  # (negative, positive)


def target_weight(target, label):
    """The metric's weight of one pair."""
    negative, positive = WEIGHTS["patient_overall" if target == "patient_overall" else "vertebra"]
    return positive if int(label) == 1 else negative


def _rows(source):
    if isinstance(source, (str, Path)):
        with open(source, newline="", encoding="utf-8") as stream:
            return list(csv.DictReader(stream))
    return list(source)


def _label(value, what):
    try:
        v = float(str(value).strip())
    except ValueError:
        v = None
    if v not in (0.0, 1.0):
        raise ValueError(f"{what}: label must be 0 or 1, got {value!r}")
    return int(v)


def solution_from_train_csv(rows):
    """Solution rows (row_id, fractured) from train.csv's wide form (StudyInstanceUID,
    patient_overall, C1 ... C7); a CSV path or a list of dicts."""
    solution = []
    for row in _rows(rows):
        study = str(row["StudyInstanceUID"]).strip()
        for target in TARGETS:
            solution.append({"row_id": row_id(study, target), "fractured": _label(row[target], f"{study} {target}")})
    return solution


def _pairs(solution_rows, submission_rows):
    """(study, target, label, p) for every solution row; raises on a missing or repeated row."""
    predictions = {}
    for row in _rows(submission_rows):
        rid = str(row["row_id"]).strip()
        if rid in predictions:
            raise ValueError(f"submission repeats row {rid}")
        predictions[rid] = probability(row["fractured"], f"submission row {rid}")
    pairs, missing = [], []
    for row in _rows(solution_rows):
        rid = str(row["row_id"]).strip()
        study, target = parse_row_id(rid)
        label = _label(row["fractured"], f"solution row {rid}")
        if rid not in predictions:
            missing.append(rid)
            continue
        pairs.append((study, target, label, predictions[rid]))
    if missing:
        raise ValueError(f"submission lacks {len(missing)} solution row(s), e.g. {missing[0]}")
    if not pairs:
        raise ValueError("the solution has no rows to score")
    return pairs


def _losses(pairs):
    labels = np.array([p[2] for p in pairs], dtype=np.float64)
    prob = np.clip(np.array([p[3] for p in pairs], dtype=np.float64), EPS, 1 - EPS)
    loss = -(labels * np.log(prob) + (1 - labels) * np.log(1 - prob))
    weight = np.array([target_weight(p[1], p[2]) for p in pairs], dtype=np.float64)
    return loss, weight


def score(solution_rows, submission_rows):
    """{'score', 'per_target': {target: weighted loss}, 'rows'} for two tables.

    Solution rows: row_id, fractured (0/1). Submission rows: row_id, fractured (a
    probability). Either may be a CSV path. Every solution row needs a submission row;
    extra submission rows are ignored.
    """
    pairs = _pairs(solution_rows, submission_rows)
    loss, weight = _losses(pairs)
    per_target = {}
    targets = np.array([p[1] for p in pairs])
    for target in TARGETS:
        sel = targets == target
        if sel.any():
            per_target[target] = float(np.sum(weight[sel] * loss[sel]) / np.sum(weight[sel]))
    return {"score": float(np.sum(weight * loss) / np.sum(weight)), "per_target": per_target, "rows": len(pairs)}


def score_per_study(solution_rows, submission_rows):
    """The participants' variant: weights normalised within each study, studies averaged."""
    pairs = _pairs(solution_rows, submission_rows)
    loss, weight = _losses(pairs)
    studies = {}
    for index, pair in enumerate(pairs):
        studies.setdefault(pair[0], []).append(index)
    values = [float(np.sum(weight[i] * loss[i]) / np.sum(weight[i])) for i in map(np.array, studies.values())]
    return float(np.mean(values))


__all__ = ["EPS", "WEIGHTS", "TARGETS", "VERTEBRAE", "score", "score_per_study", "solution_from_train_csv", "target_weight"]
