"""Shared pieces of the model regression tests (test_model_regression_*.py; a module, not a conftest,
so that the name ``conftest`` stays the root one).

Every shipped bundle is run on a small, fixed evaluation set that the tests generate
(seeded phantoms and cines) or read (real MRI in ../shared/data), and its metric is held
to a floor under the number recorded in the bundle's own metadata.json, with a stated
tolerance, and to a trivial baseline (constant prior, swapped labels) on the same cases.

``SPINEAI_TEST_MODELS_DIR`` points the tests at another folder of bundles with the
shipped folder names (benchmarks/break_models.py uses it to show that a broken copy
of each bundle fails them); by default they read SpineAI/Resources/Models.
"""

import functools
import importlib
import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODELS = REPO / "SpineAI" / "Resources" / "Models"


def models_dir():
    return Path(os.environ.get("SPINEAI_TEST_MODELS_DIR") or SHIPPED_MODELS)


def bundle_dir(folder):
    """The bundle folder ``folder`` (a shipped folder name) that the regression tests check."""
    path = models_dir() / folder
    assert (path / "metadata.json").is_file(), f"no bundle at {path}"
    return path


def shipped_metadata(folder):
    """The metadata of the SHIPPED bundle: the floors come from what was published, never from the copy under test."""
    return json.loads((SHIPPED_MODELS / folder / "metadata.json").read_text(encoding="utf-8"))


def metric(meta, name, data_contains=None):
    """The value of a metric recorded in a bundle's metadata (the first with ``name``)."""
    for entry in meta["metrics"]:
        if entry["name"] == name and (data_contains is None or data_contains in entry.get("data", "")):
            return float(entry["value"])
    raise KeyError(f"{meta['bundle_id']} records no metric {name!r}")


def import_first(*names):
    """The first module of ``names`` that imports: SpineAITraining's layout is being reorganised,
    so the generators are imported at test time from where they are now."""
    errors = []
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as error:
            errors.append(f"{name}: {error}")
    raise ModuleNotFoundError("; ".join(errors))


def dice(predicted, truth):
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else 2.0 * float((predicted & truth).sum()) / float(total)


def roc_auc(labels, scores):
    """Mann-Whitney AUC (ties count a half)."""
    labels = np.asarray(labels, bool)
    scores = np.asarray(scores, float)
    pos, neg = scores[labels], scores[~labels]
    assert len(pos) and len(neg), "AUC needs both classes"
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater) / (len(pos) * len(neg))


# ---------------------------------------------------------------- cervical phantoms, shared by two files

# Four of cervical-ct-fracture's 24 held-out test phantoms (make_case seeds 10000-10159, fracture_rate 0.5;
# never trained or tuned on by either cervical bundle: the segmentation was trained on seeds 0-59): two
# fractured patients (C5 burst/teardrop with C6/C7 posterior breaks; C6 compression with C2 and C7 breaks)
# and two intact ones.
CERVICAL_CASES = ("phantom-10125", "phantom-10084", "phantom-10067", "phantom-10107")


@functools.lru_cache(maxsize=1)
def cervical_cases():
    """{case_id: (phantom Case, Segmentation by the bundle under test)} for CERVICAL_CASES, made once per
    process (both cervical files use them)."""
    from SpineAILib.models.bundle import load_bundle
    from SpineAILib.workflows.cervical.segment import segment

    cases_module = import_first("SpineAITraining.cervical.cases")
    fracture_rate = shipped_metadata("cervical-ct-fracture")["training"]["phantom"]["fracture_rate"]
    seg = load_bundle(bundle_dir("cervical-ct-vertebrae"), device="cpu", expected_task="cervical-ct")
    out = {}
    for case_id in CERVICAL_CASES:
        case = cases_module.phantom_case(case_id, fracture_rate)
        out[case_id] = (case, segment(case.ct, seg))
    return out
