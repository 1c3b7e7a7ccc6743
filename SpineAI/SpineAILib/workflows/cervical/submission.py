"""The RSNA 2022 cervical fracture submission: row ids and a CSV writer that never
leaves a half file.

Eight rows per study, ``{StudyInstanceUID}_{target}`` with target C1 ... C7 or
``patient_overall``, and one column ``fractured`` (a probability). Kaggle scores every
row of its solution, so rows a model could not produce (a vertebra out of view, a
failed study) are still written, from a prior, and flagged so a caller can tell them
apart. Lives in SpineAILib because the module writes this table for a folder of studies
at inference time; the metric is in SpineAITraining.rsna2022.metric.
"""

import math

from SpineAILib.outputs import write_csv_atomic

VERTEBRAE = ("C1", "C2", "C3", "C4", "C5", "C6", "C7")
TARGETS = VERTEBRAE + ("patient_overall",)
# Fracture prevalence in the RSNA 2022 training labels (2,019 studies; roughly: C1 149,
# C2 285, C3 73, C4 108, C5 162, C6 268, C7 384 and 961 patients positive).
PREVALENCE = {"C1": 0.074, "C2": 0.141, "C3": 0.036, "C4": 0.053, "C5": 0.080, "C6": 0.133,
              "C7": 0.190, "patient_overall": 0.476}


def best_constant(prevalence):
    """The constant with the lowest weighted log loss when positives weigh twice the
    negatives (true for vertebrae 2:1 and patient_overall 14:7): 2p / (1 + p)."""
    p = float(prevalence)
    return 2 * p / (1 + p)


DEFAULT_PRIOR = {target: round(best_constant(p), 4) for target, p in PREVALENCE.items()}


def row_id(study, target):
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    study = str(study).strip()
    if not study:
        raise ValueError("empty StudyInstanceUID")
    return f"{study}_{target}"


def parse_row_id(text):
    """(StudyInstanceUID, target) from a row id such as '1.2.826.0.1.3680043.10001_C1'."""
    text = str(text).strip()
    for target in TARGETS:
        suffix = f"_{target}"
        if text.endswith(suffix) and len(text) > len(suffix):
            return text[: -len(suffix)], target
    raise ValueError(f"{text!r} is not a row id of the form STUDY_TARGET (target C1..C7 or patient_overall)")


def probability(value, what="prediction"):
    """A finite float in [0, 1], or ValueError naming ``what``."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {value!r} is not a number") from None
    if not math.isfinite(p) or p < 0.0 or p > 1.0:
        raise ValueError(f"{what}: probability must be finite and in [0, 1], got {value!r}")
    return p


def complete_rows(predictions, study_ids=None, prior=None):
    """All eight rows for every study: [{row_id, fractured, filled}].

    ``predictions`` maps a row id, a (study, target) pair, or a study to {target: p}
    onto probabilities. Studies come from ``study_ids`` (in that order) and then from
    the keys. Missing rows take ``prior`` (a number, or {target: number}; default
    DEFAULT_PRIOR) and ``filled=True``.
    """
    prior = DEFAULT_PRIOR if prior is None else prior
    given = {}
    for key, value in predictions.items():
        if isinstance(value, dict):  # study -> {target: p}
            for target, p in value.items():
                given[row_id(key, target)] = probability(p, row_id(key, target))
            continue
        study, target = parse_row_id(key) if isinstance(key, str) else key
        rid = row_id(study, target)
        given[rid] = probability(value, rid)
    studies = list(dict.fromkeys([str(s).strip() for s in (study_ids or [])] + [parse_row_id(r)[0] for r in given]))
    rows = []
    for study in studies:
        for target in TARGETS:
            rid = row_id(study, target)
            if rid in given:
                rows.append({"row_id": rid, "fractured": given[rid], "filled": False})
            else:
                fill = prior[target] if isinstance(prior, dict) else prior
                rows.append({"row_id": rid, "fractured": probability(fill, f"prior for {target}"), "filled": True})
    return rows


def write_submission(path, predictions, study_ids=None, prior=None):
    """Write Kaggle's CSV (row_id, fractured) atomically; return the rows (with ``filled``)."""
    rows = complete_rows(predictions, study_ids, prior)
    write_csv_atomic(path, ("row_id", "fractured"), ((row["row_id"], repr(float(row["fractured"]))) for row in rows))
    return rows
