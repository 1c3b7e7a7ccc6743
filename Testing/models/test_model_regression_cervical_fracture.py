"""Regression test of cervical-ct-fracture on four of its own held-out test phantoms.

The bundle published an RSNA 2022 score of 0.463 on its 24 test phantoms (constant prior
0.663; lower is better), vertebra AUC 0.77, and recorded each test case's probabilities in
its metadata (training.test_per_case). Four of those cases (model_regression.CERVICAL_CASES:
two fractured patients, two intact) are regenerated exactly, segmented by
cervical-ct-vertebrae and scored by ``fracture.score_vertebrae`` - the workflow's path.
Checks: the recorded probabilities are reproduced; the score stays under the published one
plus a tolerance; the AUC over the scored vertebrae stays above the published one minus a
tolerance; and the model beats the bundle's own constant prior and its inverted outputs.
"""

import pytest
from model_regression import (
    CERVICAL_CASES,
    bundle_dir,
    cervical_cases,
    import_first,
    metric,
    roc_auc,
    shipped_metadata,
)

CERVICAL = ("C1", "C2", "C3", "C4", "C5", "C6", "C7")
PATIENT = "patient_overall"
RECORDED_TOLERANCE = 0.02  # probabilities, against the numbers recorded when the bundle was tested
SCORE_TOLERANCE = 0.10  # lower is better; the shipped model scores 0.255 on these four cases
AUC_TOLERANCE = 0.10  # 28 vertebrae, 6 fractured; the shipped model reaches 0.94 on them


@pytest.fixture(scope="module")
def scored():
    from SpineAILib.models.bundle import load_bundle
    from SpineAILib.workflows.cervical.fracture import (
        patient_probability,
        score_vertebrae,
        settings,
    )

    loaded = load_bundle(bundle_dir("cervical-ct-fracture"), device="cpu", expected_task="cervical-ct/fracture")
    meta = shipped_metadata("cervical-ct-fracture")
    prior = meta["fracture"]["prior"]
    rule, calibration = settings(meta)
    truth, predicted, found = {}, {}, {}
    for case_id, (case, segmentation) in cervical_cases().items():
        entries, _ = score_vertebrae(case.ct, segmentation, loaded)
        found[case_id] = {e["name"]: e["probability"] for e in entries if e["present"]}
        truth[case_id] = {name: int(case.fractured[name]) for name in CERVICAL}
        truth[case_id][PATIENT] = int(any(truth[case_id].values()))
        predicted[case_id] = {name: found[case_id].get(name, prior[name]) for name in CERVICAL}
        patient = patient_probability(list(found[case_id].values()), rule, calibration["patient"])
        predicted[case_id][PATIENT] = prior[PATIENT] if patient is None else patient
    return truth, predicted, found, meta


def rsna2022(truth, predicted):
    from SpineAILib.workflows.cervical.submission import row_id

    metric_module = import_first("SpineAITraining.cervical.metric")
    solution = [{"row_id": row_id(s, t), "fractured": y} for s, targets in truth.items() for t, y in targets.items()]
    submission = [{"row_id": row_id(s, t), "fractured": predicted[s][t]} for s, targets in truth.items() for t in targets]
    return float(metric_module.score(solution, submission)["score"])


def test_the_evaluation_set_has_both_classes(scored):
    truth, _, found, _ = scored
    assert sorted(truth) == sorted(CERVICAL_CASES)
    assert sum(t[PATIENT] for t in truth.values()) == 2
    assert sum(truth[c][n] for c in truth for n in found[c]) >= 4  # fractured vertebrae that were found


def test_reproduces_recorded_test_probabilities(scored):
    _, predicted, _, meta = scored
    recorded = meta["training"]["test_per_case"]
    for case_id, targets in predicted.items():
        for target, p in targets.items():
            expected = recorded[case_id]["probabilities"][target]
            assert abs(p - expected) <= RECORDED_TOLERANCE, (case_id, target, p, expected)


def test_score_and_auc_against_published(scored):
    truth, predicted, found, meta = scored
    published = metric(meta, "rsna2022_score_test")
    assert abs(published - 0.463) < 0.001  # the README's number
    score = rsna2022(truth, predicted)
    assert score <= published + SCORE_TOLERANCE, score
    ys = [truth[c][n] for c in found for n in found[c]]
    ps = [found[c][n] for c in found for n in found[c]]
    auc = roc_auc(ys, ps)
    assert auc >= metric(meta, "vertebra_auc_test") - AUC_TOLERANCE, auc


def test_beats_constant_prior_and_inverted_outputs(scored):
    truth, predicted, _, meta = scored
    prior = meta["fracture"]["prior"]
    score = rsna2022(truth, predicted)
    constant = rsna2022(truth, {c: dict(prior) for c in truth})
    inverted = rsna2022(truth, {c: {t: 1.0 - p for t, p in targets.items()} for c, targets in predicted.items()})
    assert score < constant - 0.2, (score, constant)
    assert score < inverted, (score, inverted)
    # patients: the fractured ones are ranked above the intact ones
    fractured = [predicted[c][PATIENT] for c in truth if truth[c][PATIENT]]
    intact = [predicted[c][PATIENT] for c in truth if not truth[c][PATIENT]]
    assert min(fractured) > max(intact), (fractured, intact)
