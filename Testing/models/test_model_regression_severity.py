"""Regression test of lumbar-mri-severity (lumbar-mri-severity-synthetic) on its own held-out studies.

The bundle was trained on 80 studies of SpineAITraining's RSNA 2024 generator (seed 0) and
published a competition score of 0.109 on its 16 test studies (constant prior: 1.03). The
generator draws each study from ``default_rng([seed, study_id])``, so the first six of those
test studies are rewritten here exactly (pixels, labels and label points) in the Kaggle
layout, graded with ``predict_study`` at the labelled points and scored with the competition
metric. Since 0.2.0 the bundle carries a post-hoc calibration (grading.calibration, issue 18)
that predict_study applies: the published score is the calibrated one (0.1097; 0.1092 without).
Floor: the published score plus a tolerance for six studies; baselines on the same
rows: the training prior the bundle records, and the model's own grades reversed
(normal/mild <-> severe).
"""

import csv

import numpy as np
import pytest
from model_regression import bundle_dir, import_first, metric, shipped_metadata

N_STUDIES = 6
SCORE_TOLERANCE = 0.10  # lower is better; the shipped model scores 0.136 on these six studies


def _write_csv(path, rows, columns):
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from SpineAILib.models.bundle import load_bundle
    from SpineAILib.workflows.lumbar.severity.predict import predict_study

    generator = import_first("SpineAITraining.lumbar.severity.generator")
    layout = import_first("SpineAITraining.lumbar.severity.layout")
    meta = shipped_metadata("lumbar-mri-severity")
    seed = int(meta["training"]["seed"])
    ids = meta["training"]["split"]["test"][:N_STUDIES]
    root = tmp_path_factory.mktemp("rsna2024")
    wide, coordinates, descriptions = [], [], []
    for study_id in ids:
        w, c, d, _ = generator.generate_study(root / "train_images", int(study_id), np.random.default_rng([seed, int(study_id)]))
        wide.append(w)
        coordinates += c
        descriptions += d
    conditions = [f"{c}_{lvl}" for c in generator.CONDITIONS for lvl in generator.LEVELS]
    _write_csv(root / "train.csv", wide, ["study_id"] + conditions)
    _write_csv(root / "train_label_coordinates.csv", coordinates,
               ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"])  # fmt: skip
    _write_csv(root / "train_series_descriptions.csv", descriptions, ["study_id", "series_id", "series_description"])
    dataset = layout.RSNADataset(root)
    bundle = load_bundle(bundle_dir("lumbar-mri-severity"), device="cpu", expected_task="lumbar-mri/severity")
    rows = []
    for study_id in ids:
        rows += predict_study(dataset.load_study(study_id), bundle)
    return dataset.solution_rows(ids), rows, meta


def _score(solution, rows):
    metric_module = import_first("SpineAITraining.lumbar.severity.metric")
    return metric_module.score(solution, rows)


def test_every_row_graded_at_the_labelled_points(graded):
    solution, rows, _ = graded
    assert len(rows) == 25 * N_STUDIES and all(r["assessed"] for r in rows)
    assert {s["row_id"] for s in solution} <= {r["row_id"] for r in rows}


def test_score_under_published_ceiling(graded):
    solution, rows, meta = graded
    published = metric(meta, "rsna2024_score")
    assert abs(published - 0.109) < 0.001  # the README's number (0.10966 calibrated, 0.10921 uncalibrated)
    assert metric(meta, "rsna2024_score") <= 1.1 * 0.10921  # issue 18: within 10 % of the uncalibrated score
    scored = _score(solution, rows)
    assert scored["score"] <= published + SCORE_TOLERANCE, scored


def test_beats_constant_prior_and_reversed_grades(graded):
    from SpineAILib.workflows.lumbar.severity.grading import condition_group

    solution, rows, meta = graded
    grades = ("normal_mild", "moderate", "severe")
    model = _score(solution, rows)
    prior = meta["grading"]["prior"]
    constant = [dict(r, **dict(zip(grades, prior[condition_group(r["condition"])]))) for r in rows]
    reversed_ = [dict(r, normal_mild=r["severe"], severe=r["normal_mild"]) for r in rows]
    baseline = _score(solution, constant)
    published_baseline = metric(meta, "rsna2024_score_prior_only_baseline")
    assert abs(baseline["score"] - published_baseline) < 0.3  # the same kind of set as the published 1.03
    assert model["score"] < 0.5 * baseline["score"], (model, baseline)
    assert model["score"] < _score(solution, reversed_)["score"]
    # every condition group on its own beats the prior as well (a swap inside one group shows here)
    for group in ("spinal", "foraminal", "subarticular"):
        assert model[group] < baseline[group], (group, model, baseline)
