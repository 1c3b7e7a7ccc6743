"""The RSNA 2024 submission table: row ids, and a CSV writer that never leaves a half file.

A row is `{study_id}_{condition}_{level}` with three probabilities that sum to 1.
Rows a model could not produce (series missing, level out of view) are still
written, from a prior, because Kaggle scores every row in its solution; they are
flagged so a caller can tell them apart.
"""

from SpineAILib.outputs import write_csv_atomic
from SpineAILib.vocabulary import SEVERITY_CONDITIONS as CONDITIONS

LEVELS = ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")
GRADES = ("normal_mild", "moderate", "severe")  # the probability columns, in this order
GROUPS = ("spinal", "foraminal", "subarticular")
# Fill for a row no model could assess: roughly the RSNA 2024 grade frequencies (0.78, 0.15,
# 0.07) times the metric's weights 1/2/4, normalised - the constant with the lowest weighted
# log loss on such labels.
DEFAULT_PRIOR = (0.574, 0.221, 0.205)


def row_id(study, condition, level):
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {', '.join(CONDITIONS)}")
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")
    return f"{study}_{condition}_{level}"


def parse_row_id(text):
    """(study, condition, level) from a row id; the study id may itself contain '_'."""
    for condition in CONDITIONS:
        for level in LEVELS:
            suffix = f"_{condition}_{level}"
            if text.endswith(suffix) and len(text) > len(suffix):
                return text[: -len(suffix)], condition, level
    raise ValueError(f"{text!r} is not a row id of the form STUDY_CONDITION_LEVEL")


def condition_group(condition):
    """'spinal', 'foraminal' or 'subarticular' for a condition name."""
    for group in GROUPS:
        if group in condition:
            return group
    raise ValueError(f"unknown condition {condition!r}")


def level_key(level):
    """'L4/L5' or 'l4_l5' -> 'l4_l5'."""
    key = str(level).strip().lower().replace("/", "_")
    if key not in LEVELS:
        raise ValueError(f"unknown level {level!r}")
    return key


def condition_key(condition):
    """'Left Neural Foraminal Narrowing' or 'left_neural_foraminal_narrowing' -> the snake-case name."""
    key = "_".join(str(condition).strip().lower().split())
    if key not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}")
    return key


def normalised(probabilities):
    """Three non-negative finite numbers scaled to sum 1 (an all-zero triple becomes uniform)."""
    values = [float(p) for p in probabilities]
    if len(values) != 3 or any(not (v >= 0.0) or v == float("inf") for v in values):
        raise ValueError(f"a prediction needs three finite non-negative probabilities, got {probabilities!r}")
    total = sum(values)
    return tuple(v / total for v in values) if total > 0 else (1 / 3, 1 / 3, 1 / 3)


def _as_triple(value):
    if isinstance(value, dict):
        return tuple(value[g] for g in GRADES)
    return tuple(value)


def complete_rows(predictions, study_ids=None, prior=DEFAULT_PRIOR):
    """All 25 rows for every study: [{row_id, normal_mild, moderate, severe, filled}].

    ``predictions`` maps row_id (or (study, condition, level)) to three probabilities
    (a sequence or a dict keyed by GRADES). Studies come from ``study_ids`` and from the
    keys; rows missing from ``predictions`` take ``prior`` (a triple, or {group: triple})
    and ``filled=True``.
    """
    given = {}
    for key, value in predictions.items():
        study, condition, level = parse_row_id(key) if isinstance(key, str) else key
        given[row_id(study, condition, level)] = normalised(_as_triple(value))
    studies = list(dict.fromkeys([str(s) for s in (study_ids or [])] + [parse_row_id(k)[0] for k in given]))
    # One triple for every row, or one per condition group (a model's per-group grade frequencies).
    priors = {g: normalised(prior[g] if isinstance(prior, dict) else prior) for g in GROUPS}
    rows = []
    for study in studies:
        for condition in CONDITIONS:
            for level in LEVELS:
                rid = row_id(study, condition, level)
                triple = given.get(rid)
                fill = priors[condition_group(condition)]
                rows.append({"row_id": rid, **dict(zip(GRADES, triple or fill)), "filled": triple is None})
    return rows


def write_submission(path, predictions, study_ids=None, prior=DEFAULT_PRIOR):
    """Write the Kaggle CSV (row_id, normal_mild, moderate, severe) atomically; return the rows.

    Each returned row also says whether it was ``filled`` from the prior (that flag is
    not a Kaggle column, so it stays out of the file).
    """
    rows = complete_rows(predictions, study_ids, prior)
    write_csv_atomic(path, ("row_id",) + GRADES, ([row["row_id"]] + [repr(float(row[g])) for g in GRADES] for row in rows))
    return rows
