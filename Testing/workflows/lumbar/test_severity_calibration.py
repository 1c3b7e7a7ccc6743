"""The severity bundle's post-hoc calibration (issue 18): applied from metadata, an old bundle unchanged,
the canal image check, and the real held-out volunteers not cried wolf on.

The bundle (0.2.0) carries ``grading.calibration``, fitted by ``spineai-train lumbar-severity
calibrate`` on the TRAINING part of ../shared/data/mri_lumbar; the real test below grades two
cases of the split's TEST part, fixed in advance (the first T2 and the first T1 test case).
"""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, require

from SpineAILib.models.engine import Runner
from SpineAILib.workflows.lumbar.severity.calibration import calibrate, calibration_of, centre_fluid, check_crop
from SpineAILib.workflows.lumbar.severity.predict import rows_from_crops

CALIBRATION = {"groups": {"spinal": {"temperature": 1.0, "shift": [0.0, -1.0, -1.0]}},
               "checks": {"spinal": {"check": "centre_fluid", "min_z": 0.5, "band": 0.125}}}  # fmt: skip
PRIOR = {"spinal": [0.4, 0.3, 0.3], "foraminal": [0.4, 0.3, 0.3], "subarticular": [0.4, 0.3, 0.3]}
# Two cases of the real split's test part (first T2, first T1), chosen before any grade was seen.
REAL_CASES = ("vb2_05", "vb3_13")
MAX_MODERATE_OR_SEVERE = 0.1  # issue 18: at most 1 in 10 assessed canal levels of healthy volunteers


class FixedLogits(Runner):
    """A stand-in network: the same 9 logits for every crop (Moderate favoured in every group)."""

    def __call__(self, x):
        return np.tile(np.array([0.0, 0.5, -2.0] * 3, np.float32), (len(x), 1))


def _canal_crop(fluid=True):
    crop = np.zeros((5, 48, 48), np.float32)
    if fluid:
        crop[:, :, 20:28] = 3.0  # a bright fluid column down the middle, as the canal on T2
    else:
        crop[:, 18:30, :] = 3.0  # a bright disc across the middle, no column
    return (crop - crop.mean()) / crop.std()


def test_calibration_shifts_the_canal_towards_normal_and_leaves_other_groups():
    p = np.array([[0.3, 0.6, 0.1], [0.3, 0.6, 0.1]])
    out = calibrate(p, [0, 1], CALIBRATION)
    assert np.allclose(out.sum(axis=1), 1.0)
    assert out[0].argmax() == 0 and out[0, 1] < p[0, 1]  # canal: Moderate odds divided by e
    expected = np.array([0.3, 0.6 / np.e, 0.1 / np.e])
    assert np.allclose(out[0], expected / expected.sum())
    assert np.allclose(out[1], p[1])  # foraminal: no entry, untouched
    assert np.allclose(calibrate(p, [0, 1], None), p)  # an older bundle: no calibration at all


def test_canal_check_needs_a_fluid_column_at_the_centre():
    assert centre_fluid(_canal_crop(True)) > 0.5 and check_crop(_canal_crop(True), 0, CALIBRATION) == ""
    assert "no fluid column" in check_crop(_canal_crop(False), 0, CALIBRATION)
    assert check_crop(_canal_crop(False), 1, CALIBRATION) == ""  # foraminal crops: no check
    assert check_crop(_canal_crop(False), 0, None) == ""


def test_rows_from_crops_applies_the_bundle_calibration():
    entries = [("spinal_canal_stenosis", "l4_l5", _canal_crop(True), ""),
               ("spinal_canal_stenosis", "l5_s1", _canal_crop(False), ""),
               ("left_neural_foraminal_narrowing", "l4_l5", _canal_crop(True), "")]  # fmt: skip
    old = rows_from_crops("1", entries, FixedLogits(), PRIOR)
    assert [r["grade"] for r in old] == ["Moderate"] * 3 and all(r["assessed"] for r in old)
    new = rows_from_crops("1", entries, FixedLogits(), PRIOR, calibration=CALIBRATION)
    assert new[0]["grade"] == "Normal/Mild" and new[0]["assessed"]
    assert not new[1]["assessed"] and new[1]["grade"] == "not assessed" and "no fluid column" in new[1]["reason"]
    assert [new[1][g] for g in ("normal_mild", "moderate", "severe")] == pytest.approx(PRIOR["spinal"])
    assert new[2]["grade"] == "Moderate"  # foraminal: not calibrated


def test_shipped_bundle_records_its_calibration_and_numbers():
    from SpineAILib.workflows.lumbar.severity.grade_levels import severity_bundle_path

    meta = json.loads((severity_bundle_path() / "metadata.json").read_text(encoding="utf-8"))

    def metric(meta, name):
        return next(m["value"] for m in meta["metrics"] if m["name"] == name)

    calibration = calibration_of(meta)
    assert calibration is not None and calibration["groups"]["spinal"]["temperature"] >= 1.0
    assert "spineai-train lumbar-severity calibrate" in calibration["command"] and calibration["device"] == "cpu"
    # the synthetic held-out score stays within 10 % of the uncalibrated 0.109 (issue 18)
    assert metric(meta, "rsna2024_score") <= 1.1 * metric(meta, "rsna2024_score_uncalibrated")
    assert metric(meta, "real_volunteers_moderate_or_severe_spinal_canal_stenosis_after_calibration") <= MAX_MODERATE_OR_SEVERE
    assert 0.5 <= metric(meta, "domain_auc_real_vs_synthetic_canal_crops") <= 1.0


@pytest.mark.realdata
@pytest.mark.parametrize("case", REAL_CASES)
def test_held_out_volunteers_are_not_called_moderate(case):
    """The workflow's grading path on a held-out volunteer: few canal levels Moderate or Severe."""
    from SpineAILib.io import load
    from SpineAILib.models.catalogue import resolve_bundle
    from SpineAILib.models.engine import load_model
    from SpineAILib.workflows.lumbar.discs import disc_levels, estimate_disc_below
    from SpineAILib.workflows.lumbar.pipeline import segment_vertebrae
    from SpineAILib.workflows.lumbar.refine import load_refiner
    from SpineAILib.workflows.lumbar.severity import grade_levels
    from SpineAILib.workflows.lumbar.severity.from_levels import study_for_run

    split = json.loads(_split_file().read_text(encoding="utf-8"))
    assert case in split["test"]
    path = require(SHARED_DATA / "mri_lumbar" / f"{case}.nii.gz")
    image = load(path)
    levels = load_model(resolve_bundle("lumbar-mri"), device="cpu", expected_task="lumbar-mri")
    result = segment_vertebrae(image, levels, refiner=load_refiner("cpu"))
    discs = disc_levels(result.labelmap)
    if "S1" not in levels.labels:
        discs = estimate_disc_below(result.labelmap, discs, "L5/S1")
    study, canal, _ = study_for_run(image, path, result.labelmap, discs)
    rows, _, _, _ = grade_levels.grade(study, canal, grade_levels.severity_bundle_path(), discs, device="cpu")
    canal_rows = [r for r in rows if r["condition"] == "spinal_canal_stenosis" and r["assessed"]]
    if not canal_rows:  # the level pipeline named no level here (its own checks): nothing graded, nothing to test
        pytest.skip(f"{case}: no canal level assessed ({sorted({r['reason'] for r in rows})[:2]})")
    called = sum(r["grade"] in ("Moderate", "Severe") for r in canal_rows)
    assert called / len(canal_rows) <= MAX_MODERATE_OR_SEVERE, [(r["level"], r["grade"]) for r in canal_rows]


def _split_file():
    return Path(__file__).resolve().parents[3] / "SpineAITraining" / "splits" / "mri_lumbar_split.json"
