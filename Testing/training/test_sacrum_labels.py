"""The team's S1 (sacrum) labels for ../shared/data/mri_lumbar and the sacrum model's trainer.

The labels are made by rule (SpineAITraining/lumbar/sacrum_labels.py) and kept in the
repository with their provenance; these tests check that every case has one, that they
sit where the first sacral body is (below L5, across the L5/S1 disc) and that the rule
still makes the committed file, and that ``spineai-train lumbar-mri --target sacrum``
writes a bundle the library loads.
"""

import json

import numpy as np
import pytest
from conftest import SHARED_DATA, require

from SpineAITraining.lumbar import mri_lumbar
from SpineAITraining.lumbar.sacrum_labels import LABELS_DIR, label_path, sacrum_by_rule

LUMBAR_DATA = SHARED_DATA / "mri_lumbar"


def _load(path):
    import nibabel as nib

    image = nib.load(str(path))
    return np.asarray(image.dataobj), image.affine


def test_every_committed_label_has_its_provenance():
    provenance = json.loads((LABELS_DIR / "provenance.json").read_text())
    files = sorted(p.name[: -len("_S1.nii.gz")] for p in LABELS_DIR.glob("*_S1.nii.gz"))
    assert len(files) == 54
    assert sorted(provenance["cases"]) == files
    assert all(entry["made_by"].startswith("rule") for entry in provenance["cases"].values())
    assert "review" in provenance and provenance["review"]["cases_looked_at"] == 54


@pytest.mark.realdata
def test_every_real_case_has_an_s1_label_below_its_l5():
    require(LUMBAR_DATA / "vb3_01.nii.gz")
    for case in mri_lumbar.list_cases(LUMBAR_DATA):
        s1, s1_affine = _load(label_path(case.case_id))
        labels, affine = _load(case.labels)
        assert s1.shape == labels.shape and np.allclose(s1_affine, affine), case.case_id
        s1 = s1 > 0
        l5 = np.rint(labels) == 24
        volume_ml = s1.sum() / 1000.0  # 1 mm voxels
        assert 5.0 <= volume_ml <= 80.0, (case.case_id, volume_ml)
        assert not (s1 & l5).any()
        # axis 0 runs superior -> inferior: S1's centre lies below L5's, by about one body (20-45 mm)
        drop = np.argwhere(s1)[:, 0].mean() - np.argwhere(l5)[:, 0].mean()
        assert 15.0 <= drop <= 45.0, (case.case_id, drop)


@pytest.mark.realdata
def test_the_rule_remakes_the_committed_label():
    require(LUMBAR_DATA / "vb2_02.nii.gz")
    image, _ = _load(LUMBAR_DATA / "vb2_02.nii.gz")
    labels, _ = _load(LUMBAR_DATA / "vb2_02_labels.nii.gz")
    mask, facts = sacrum_by_rule(image.astype(np.float32), np.rint(labels).astype(np.int16))
    committed = _load(label_path("vb2_02"))[0] > 0
    dice = 2 * (mask & committed).sum() / (mask.sum() + committed.sum())
    assert dice > 0.99 and facts["endplate_points"] >= 5


def test_the_rule_says_why_when_there_is_no_l5():
    image = np.zeros((40, 40, 20), np.float32)
    mask, facts = sacrum_by_rule(image, np.zeros(image.shape, np.int16))
    assert mask is None and "L4 or L5 not labelled" in facts["reason"]


@pytest.mark.realdata
def test_tiny_sacrum_training_run_writes_a_loadable_bundle(tmp_path):
    require(LUMBAR_DATA / "vb3_02.nii.gz")
    from SpineAILib.models.bundle import load_bundle
    from SpineAITraining.lumbar.train_levels import main

    out = tmp_path / "sacrum"
    assert main(["--target", "sacrum", "--data", str(LUMBAR_DATA), "--out", str(out), "--train-cases", "vb3_02,vb2_02",
                 "--val-cases", "vb3_01", "--samples-per-epoch", "4", "--batch-size", "2", "--channels", "4,8,16,32,64",
                 "--epochs", "1", "--device", "cpu", "--quiet", "--no-tensorboard"]) == 0  # fmt: skip
    meta = load_bundle(out, device="cpu", expected_task="lumbar-mri/sacrum").metadata
    assert meta["bundle_id"] == "lumbar-mri-sacrum" and meta["labels"] == ["background", "S1"]
    assert meta["network"]["args"]["out_channels"] == 2
    assert {m["name"] for m in meta["metrics"]} >= {"dice_mean_validation", "s1_found_validation"}
    assert "mri_lumbar_s1" in meta["training"]["labels_from"]
