"""Per-label decision thresholds chosen on validation data for the clinical priorities.

Decision rule everywhere: a label is called when its (smoothed) probability is
``>= threshold``.

* ``spinal_cord``: a missed cord is the dangerous error (the needle goes in above
  the conus), so the threshold is the highest one whose recall on validation frames
  reaches ``cord_recall`` (default 0.98): few false negatives.
* ``csf``: a false "CSF visible" sends the needle where there is no fluid, so the
  threshold is the lowest one whose precision reaches ``csf_precision`` (default
  0.98): few false positives, as much recall as that allows.
* ``bad_quality``: no clinical asymmetry; the threshold maximises F1 (ties: the
  one with the higher Youden J = sensitivity + specificity - 1), within 0.05..0.95.

Every chosen threshold sits in the middle of the gap between the validation score
it stands on and the next lower distinct score, so validation decisions are exactly
those of the rule while unseen data gets a margin. When a target cannot be reached
(too few validation positives) the F1 rule is used and the reason recorded. No
threshold leaves 0.05..0.95: a recall target met only at p >= 0.02 would call the
label on noise-level probabilities (on any unusual input); the clamp is recorded
with the recall and precision it gives on validation.
"""

import math

import numpy as np

BOUNDS = F1_BOUNDS = (0.05, 0.95)  # every threshold stays inside these

DEFAULT_RULES = {
    "bad_quality": {"rule": "f1"},
    "spinal_cord": {"rule": "recall", "target": 0.98},
    "csf": {"rule": "precision", "target": 0.98},
}


def _sorted_candidates(y, p):
    """Distinct scores, high to low, with TP and FP counts when each is the threshold."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last = np.r_[np.nonzero(np.diff(ps))[0], len(ps) - 1]
    tp = np.cumsum(ys)[last]
    fp = np.cumsum(~ys)[last]
    return ps[last], tp, fp, int(y.sum()), int((~y).sum())


def _with_margin(scores, index):
    """Middle of the gap below candidate ``index`` (same decisions on the data it came from)."""
    upper = scores[index]
    lower = scores[index + 1] if index + 1 < len(scores) else 0.0
    return float((upper + lower) / 2.0)


def threshold_for_recall(y, p, target):
    """Highest threshold with recall >= target; (threshold, achieved recall) or (None, reason)."""
    scores, tp, fp, n_pos, _ = _sorted_candidates(y, p)
    if n_pos == 0:
        return None, "no positive validation frames"
    need = math.ceil(target * n_pos - 1e-9)
    index = int(np.argmax(tp >= need))
    return _with_margin(scores, index), float(tp[index] / n_pos)


def threshold_for_precision(y, p, target):
    """Lowest threshold with precision >= target (so the most recall at that precision)."""
    scores, tp, fp, n_pos, _ = _sorted_candidates(y, p)
    if n_pos == 0:
        return None, "no positive validation frames"
    precision = tp / np.maximum(tp + fp, 1)
    ok = np.nonzero((precision >= target) & (tp > 0))[0]
    if ok.size == 0:
        return None, f"precision {target} is not reached at any threshold"
    index = int(ok.max())
    return _with_margin(scores, index), float(precision[index])


def threshold_for_f1(y, p, bounds=F1_BOUNDS):
    """Threshold with the best F1 (ties: best Youden J) among those within ``bounds``;
    (threshold, F1). The bounds keep a validation quirk from putting a label's threshold
    at 0.996 (called almost never on data a little different) or 0.004."""
    scores, tp, fp, n_pos, n_neg = _sorted_candidates(y, p)
    if n_pos == 0 or n_neg == 0:
        return 0.5, None
    fn = n_pos - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    youden = tp / n_pos - fp / n_neg
    margins = np.array([_with_margin(scores, i) for i in range(len(scores))])
    inside = (margins >= bounds[0]) & (margins <= bounds[1])
    if not inside.any():
        return float(np.clip(0.5, *bounds)), None
    order = [i for i in np.lexsort((-youden, -f1)) if inside[i]]
    index = int(order[0])
    return float(margins[index]), float(f1[index])


def choose_thresholds(y_true, y_prob, labels, rules=None):
    """({label: threshold}, {label: how it was chosen}) from validation (N, L) arrays."""
    rules = {**DEFAULT_RULES, **(rules or {})}
    y_true = np.asarray(y_true)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    thresholds, notes = {}, {}
    for j, label in enumerate(labels):
        rule = rules.get(label, {"rule": "f1"})
        y, p = y_true[:, j], y_prob[:, j]
        value, achieved = None, None
        if rule["rule"] == "recall":
            value, achieved = threshold_for_recall(y, p, rule["target"])
        elif rule["rule"] == "precision":
            value, achieved = threshold_for_precision(y, p, rule["target"])
        if value is None:
            fallback_reason = achieved
            value, achieved = threshold_for_f1(y, p)
            note = {"rule": "f1", "f1": achieved}
            if rule["rule"] != "f1":
                note["fallback_from"] = dict(rule, reason=fallback_reason)
        else:
            note = dict(rule, achieved=achieved)
        lo, hi = BOUNDS
        if not lo <= value <= hi:  # a clinical target met only at a noise-level threshold: clamp and say so
            clamped = float(min(max(value, lo), hi))
            called = p >= clamped
            y_bool = np.asarray(y).astype(bool)
            note["clamped_from"] = round(float(value), 6)
            note["at_clamp"] = {
                "recall": float((called & y_bool).sum() / max(1, y_bool.sum())),
                "precision": float((called & y_bool).sum() / max(1, called.sum())),
            }
            value = clamped
        thresholds[label] = round(value, 6)
        notes[label] = note
    return thresholds, notes
