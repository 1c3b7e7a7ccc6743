"""The seeds' evaluation table for the multi-label ultrasound classifier, in numpy only.

``evaluate(y_true, y_pred, y_prob, labels)`` returns one JSON-ready dict:

* per label: TN, FP, FN, TP, accuracy, precision, recall (sensitivity),
  specificity, F1, ROC AUC (from probabilities), positives;
* overall: TN/FP/FN/TP summed over labels (micro), micro precision/recall/F1,
  macro F1, element accuracy (= 1 - Hamming loss), exact-match accuracy (all
  three labels right), Jaccard index (micro: TP / (TP + FP + FN); and the
  per-frame average, where a frame with no true and no predicted label counts 1),
  Hamming loss (share of wrong label cells);
* clinical: FN for spinal cord and FP for CSF (the cells the seeds' doctors asked
  to minimise).

Precision (recall) with nothing predicted (nothing present) is 0, as
scikit-learn's ``zero_division=0``; ROC AUC of a label with only one class present
is None.
"""

import numpy as np

from SpineAILib.vocabulary import ULTRASOUND_LABELS
from SpineAITraining.common.metrics import roc_auc

CLINICAL_CELLS = (("spinal_cord", "fn"), ("csf", "fp"))


def _safe(num, den):
    return float(num) / float(den) if den else 0.0


def confusion(y_true, y_pred):
    """(tn, fp, fn, tp) of two 0/1 vectors."""
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    return (int(np.sum(~t & ~p)), int(np.sum(~t & p)), int(np.sum(t & ~p)), int(np.sum(t & p)))


def rates(tn, fp, fn, tp):
    precision = _safe(tp, tp + fp)
    recall = _safe(tp, tp + fn)
    return {
        "accuracy": _safe(tp + tn, tn + fp + fn + tp),
        "precision": precision,
        "recall": recall,
        "specificity": _safe(tn, tn + fp),
        "f1": _safe(2 * precision * recall, precision + recall),
    }


def evaluate(y_true, y_pred, y_prob=None, labels=ULTRASOUND_LABELS):
    """The full table (see module docstring) for (N, L) 0/1 truth and predictions."""
    y_true = np.asarray(y_true).astype(np.int64).reshape(-1, len(labels))
    y_pred = np.asarray(y_pred).astype(np.int64).reshape(-1, len(labels))
    if y_prob is not None:
        y_prob = np.asarray(y_prob, dtype=np.float64).reshape(-1, len(labels))
    n = int(y_true.shape[0])
    per_label = {}
    totals = np.zeros(4, dtype=np.int64)
    for j, name in enumerate(labels):
        cells = confusion(y_true[:, j], y_pred[:, j])
        totals += cells
        tn, fp, fn, tp = cells
        entry = {"tn": tn, "fp": fp, "fn": fn, "tp": tp, "positives": int(y_true[:, j].sum())}
        entry.update(rates(*cells))
        entry["roc_auc"] = roc_auc(y_true[:, j], y_prob[:, j]) if y_prob is not None else None
        per_label[name] = entry
    tn, fp, fn, tp = (int(v) for v in totals)
    micro = rates(tn, fp, fn, tp)
    wrong = y_true != y_pred
    union = (y_true | y_pred).sum(axis=1)
    inter = (y_true & y_pred).sum(axis=1)
    jaccard_frames = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    aucs = [v["roc_auc"] for v in per_label.values() if v["roc_auc"] is not None]
    overall = {
        "frames": n,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
        "accuracy": micro["accuracy"],  # over label cells = 1 - Hamming loss
        "exact_match": float(np.mean(~wrong.any(axis=1))) if n else 0.0,
        "precision_micro": micro["precision"],
        "recall_micro": micro["recall"],
        "f1_micro": micro["f1"],
        "f1_macro": float(np.mean([v["f1"] for v in per_label.values()])),
        "jaccard_micro": _safe(tp, tp + fp + fn),
        "jaccard_samples": float(jaccard_frames.mean()) if n else 0.0,
        "hamming_loss": float(wrong.mean()) if n else 0.0,
        "roc_auc_macro": float(np.mean(aucs)) if aucs else None,
        "misclassified_frames": int(wrong.any(axis=1).sum()),
    }
    clinical = {f"{cell}_{name}": per_label[name][cell] for name, cell in CLINICAL_CELLS if name in per_label}
    return {"labels": list(labels), "overall": overall, "per_label": per_label, "clinical": clinical}


# ---------------------------------------------------------------------------- tables as text

_ROWS = (
    ("Frames", ("overall", "frames"), "d"),
    ("Accuracy (label cells)", ("overall", "accuracy"), ".4f"),
    ("Exact match", ("overall", "exact_match"), ".4f"),
    ("Precision (micro)", ("overall", "precision_micro"), ".4f"),
    ("Recall (micro)", ("overall", "recall_micro"), ".4f"),
    ("F1 (micro)", ("overall", "f1_micro"), ".4f"),
    ("F1 (macro)", ("overall", "f1_macro"), ".4f"),
    ("ROC AUC (macro)", ("overall", "roc_auc_macro"), ".4f"),
    ("Jaccard (micro)", ("overall", "jaccard_micro"), ".4f"),
    ("Jaccard (per frame)", ("overall", "jaccard_samples"), ".4f"),
    ("Hamming loss", ("overall", "hamming_loss"), ".4f"),
    ("TN", ("overall", "tn"), "d"),
    ("FP", ("overall", "fp"), "d"),
    ("FN", ("overall", "fn"), "d"),
    ("TP", ("overall", "tp"), "d"),
    ("Misclassified frames", ("overall", "misclassified_frames"), "d"),
)


def _get(table, path):
    value = table
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _fmt(value, spec):
    if value is None:
        return "n/a"
    return format(value, spec)


def markdown_table(tables):
    """The seeds' comparison table: one column per named evaluation (``{name: evaluate(...)}``)."""
    names = list(tables)
    labels = next(iter(tables.values()))["labels"] if tables else []
    lines = ["| Metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    rows = list(_ROWS)
    for label in labels:
        for key, title, spec in (
            ("accuracy", "accuracy", ".4f"),
            ("precision", "precision", ".4f"),
            ("recall", "recall", ".4f"),
            ("f1", "F1", ".4f"),
            ("roc_auc", "ROC AUC", ".4f"),
            ("fp", "FP", "d"),
            ("fn", "FN", "d"),
        ):
            marker = " **(clinical)**" if (label, key) in CLINICAL_CELLS else ""
            rows.append((f"{label} {title}{marker}", ("per_label", label, key), spec))
    for title, path, spec in rows:
        lines.append(f"| {title} | " + " | ".join(_fmt(_get(tables[n], path), spec) for n in names) + " |")
    return "\n".join(lines) + "\n"
