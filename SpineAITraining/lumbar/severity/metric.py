"""The RSNA 2024 competition metric (../shared/design/METRICS.md), in numpy only.

score = mean of four sample-weighted log losses:
  spinal, foraminal, subarticular: multi-class log loss over the rows of that group,
      each row weighted by its TRUE grade: Normal/Mild 1, Moderate 2, Severe 4;
  any_severe_spinal: per study, label = any spinal level Severe, prediction = the
      highest `severe` probability over its spinal rows, weight = the highest row
      weight among them; binary log loss over studies.
Only the rows in the solution are scored (levels a study's labels lack are ignored).

How predictions are treated (the host used scikit-learn's log_loss): each row is first
scaled to sum 1 (submissions should already), then every probability is clipped to
[eps, 1 - eps] with eps = numpy's float64 machine epsilon, as sklearn >= 1.5 does
(earlier sklearn re-normalised after clipping; the difference is below 1e-15).
One deliberate difference: sklearn refuses the binary term when every study has the
same label; here classes are fixed to {0, 1}, so a small set of studies still scores.
"""

import csv
from pathlib import Path

import numpy as np

from SpineAILib.vocabulary import SEVERITY_GRADE_NAMES as GRADE_NAMES
from SpineAILib.workflows.lumbar.severity.submission import GRADES, condition_group, parse_row_id

SAMPLE_WEIGHTS = (1.0, 2.0, 4.0)  # Normal/Mild, Moderate, Severe
EPS = float(np.finfo(np.float64).eps)
LOSS_NAMES = ("spinal", "foraminal", "subarticular", "any_severe_spinal")


def _rows(source):
    """A list of dicts from a list/iterable of dicts or a CSV path."""
    if isinstance(source, (str, Path)):
        with open(source, newline="", encoding="utf-8") as stream:
            return list(csv.DictReader(stream))
    return list(source)


def grade_index(value):
    """0/1/2 from 'Normal/Mild' | 'Moderate' | 'Severe', a column name, or an integer."""
    if isinstance(value, (int, np.integer)) and 0 <= int(value) <= 2:
        return int(value)
    text = str(value).strip()
    for i, names in enumerate(zip(GRADE_NAMES, GRADES)):
        if text.lower() in (n.lower() for n in names):
            return i
    if text.isdigit() and int(text) <= 2:
        return int(text)
    raise ValueError(f"unknown grade {value!r}; expected Normal/Mild, Moderate or Severe")


def _truth(row):
    """(true grade index, sample weight) of a solution row: one-hot columns or a 'grade' field."""
    if "grade" in row and row["grade"] not in (None, ""):
        index = grade_index(row["grade"])
    else:
        onehot = [float(row[g]) for g in GRADES]
        if sorted(onehot) != [0.0, 0.0, 1.0]:
            raise ValueError(f"solution row {row.get('row_id')}: {GRADES} must be one-hot, got {onehot}")
        index = int(np.argmax(onehot))
    weight = row.get("sample_weight")
    weight = SAMPLE_WEIGHTS[index] if weight in (None, "") else float(weight)
    return index, weight


def _prediction(row):
    values = np.array([float(row[g]) for g in GRADES], dtype=np.float64)
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise ValueError(f"submission row {row['row_id']}: probabilities must be finite and in [0, 1], got {values.tolist()}")
    total = values.sum()
    if total <= 0:
        raise ValueError(f"submission row {row['row_id']}: probabilities sum to 0")
    return values / total


def weighted_log_loss(true_index, probabilities, weights):
    """Multi-class log loss, sklearn style: clip to [eps, 1-eps], weighted mean of -log p(true)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPS, 1 - EPS)
    picked = p[np.arange(len(p)), np.asarray(true_index, dtype=int)]
    w = np.asarray(weights, dtype=np.float64)
    return float(np.sum(w * -np.log(picked)) / np.sum(w))


def binary_log_loss(labels, probabilities, weights):
    """sklearn's binary case: a 1-D p becomes columns [1 - p, p], clipped, then as above."""
    p = np.asarray(probabilities, dtype=np.float64)
    return weighted_log_loss(np.asarray(labels, dtype=int), np.stack([1 - p, p], axis=1), weights)


def score(solution_rows, submission_rows, any_severe_scalar=1.0):
    """{'spinal', 'foraminal', 'subarticular', 'any_severe_spinal', 'score'} for two tables.

    Solution rows: row_id plus one-hot normal_mild/moderate/severe (Kaggle's form) or a
    'grade' ('Normal/Mild' ...); an explicit sample_weight column is honoured. Submission
    rows: row_id, normal_mild, moderate, severe. Either may be a CSV path. Every solution
    row needs a submission row; extra submission rows are ignored. A group with no rows in
    the solution is reported as None and left out of the mean.
    """
    predictions = {}
    for row in _rows(submission_rows):
        rid = str(row["row_id"])
        if rid in predictions:
            raise ValueError(f"submission repeats row {rid}")
        predictions[rid] = _prediction(row)

    groups = {name: ([], [], []) for name in LOSS_NAMES[:3]}  # true index, probabilities, weight
    spinal_by_study = {}
    missing = []
    for row in _rows(solution_rows):
        rid = str(row["row_id"])
        study, condition, _ = parse_row_id(rid)
        index, weight = _truth(row)
        if rid not in predictions:
            missing.append(rid)
            continue
        p = predictions[rid]
        group = condition_group(condition)
        for column, value in zip(groups[group], (index, p, weight)):
            column.append(value)
        if group == "spinal":
            spinal_by_study.setdefault(study, []).append((index, p[2], weight))
    if missing:
        raise ValueError(f"submission lacks {len(missing)} solution row(s), e.g. {missing[0]}")

    losses = {}
    for name, (index, p, weight) in groups.items():
        losses[name] = weighted_log_loss(index, np.array(p), weight) if index else None
    if spinal_by_study:
        entries = list(spinal_by_study.values())
        labels = [int(any(i == 2 for i, _, _ in e)) for e in entries]
        severe = [max(s for _, s, _ in e) for e in entries]
        weight = [max(w for _, _, w in e) for e in entries]
        losses["any_severe_spinal"] = binary_log_loss(labels, severe, weight)
    else:
        losses["any_severe_spinal"] = None

    scalars = dict(zip(LOSS_NAMES, (1.0, 1.0, 1.0, float(any_severe_scalar))))
    present = [name for name in LOSS_NAMES if losses[name] is not None]
    if not present:
        raise ValueError("the solution has no rows to score")
    total = sum(scalars[n] * losses[n] for n in present) / sum(scalars[n] for n in present)
    return {**losses, "score": float(total)}


def solution_from_wide(rows):
    """Solution rows (row_id, grade) from train.csv's wide form; empty cells are not scored."""
    from SpineAILib.workflows.lumbar.severity.submission import CONDITIONS, LEVELS, row_id

    solution = []
    for row in _rows(rows):
        study = str(row["study_id"]).strip()
        for condition in CONDITIONS:
            for level in LEVELS:
                value = row.get(f"{condition}_{level}")
                if value not in (None, "") and str(value).lower() != "nan":
                    solution.append({"row_id": row_id(study, condition, level), "grade": grade_index(value)})
    return solution
