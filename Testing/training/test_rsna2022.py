"""RSNA 2022 cervical fractures: the metric against hand-computed values, the submission
writer, and synthetic studies in the Kaggle layout read back through the layout adapter
(CT identical to the phantom, segmentation aligned after undoing the orientation quirk,
boxes on the right slices)."""

import csv
import math
import subprocess
import sys

import numpy as np
import pydicom
import pytest

from SpineAILib.workflows.cervical.submission import (DEFAULT_PRIOR, TARGETS, best_constant, parse_row_id, row_id,
                                            write_submission)
from SpineAITraining.cervical import metric
from SpineAITraining.cervical.generator import generate
from SpineAITraining.cervical.layout import RSNA2022Dataset
from SpineAITraining.cervical.phantom import make_case

from conftest import REPO, one_line_error

VERT = ("C1", "C2", "C3", "C4", "C5", "C6", "C7")


def _solution(study, labels):
    return [{"row_id": row_id(study, t), "fractured": labels[t]} for t in TARGETS]


def _submission(study, probs):
    return [{"row_id": row_id(study, t), "fractured": probs[t]} for t in TARGETS]


A_LABELS = {"C1": 1, **{v: 0 for v in VERT[1:]}, "patient_overall": 1}
A_PROBS = {"C1": 0.8, **{v: 0.1 for v in VERT[1:]}, "patient_overall": 0.9}
B_LABELS = {t: 0 for t in TARGETS}
B_PROBS = {**{v: 0.2 for v in VERT}, "patient_overall": 0.3}


# ---------------------------------------------------------------- metric, by hand


def test_metric_one_study_by_hand():
    # C1 positive (w 2): -ln 0.8 = 0.223144 -> 0.446287
    # C2..C7 negative (w 1 each): 6 * -ln 0.9 = 6 * 0.105361 -> 0.632163
    # patient positive (w 14): 14 * -ln 0.9 -> 1.475047
    # score = (0.446287 + 0.632163 + 1.475047) / (2 + 6 + 14) = 2.553497 / 22 = 0.116068
    result = metric.score(_solution("A", A_LABELS), _submission("A", A_PROBS))
    assert result["score"] == pytest.approx(0.116068064, abs=1e-9)
    assert result["rows"] == 8
    assert result["per_target"]["C1"] == pytest.approx(-math.log(0.8), abs=1e-12)
    assert result["per_target"]["patient_overall"] == pytest.approx(-math.log(0.9), abs=1e-12)


def test_metric_two_studies_by_hand():
    # Study B, all negative: 7 * -ln 0.8 (w 1) + 7 * -ln 0.7 (patient, w 7) = 1.562005 + 2.496725
    # score = (2.553497 + 4.058729) / (22 + 7 + 7) = 6.612227 / 36 = 0.183673
    solution = _solution("A", A_LABELS) + _solution("B", B_LABELS)
    submission = _submission("B", B_PROBS) + _submission("A", A_PROBS)  # order does not matter
    result = metric.score(solution, submission)
    assert result["score"] == pytest.approx(0.1836729690, abs=1e-9)
    # patient_overall alone: (14 * -ln 0.9 + 7 * -ln 0.7) / 21 = 0.189132
    assert result["per_target"]["patient_overall"] == pytest.approx(0.1891319918, abs=1e-9)
    # The per-study variant: mean of 2.553497 / 22 and 4.058729 / 14 = (0.116068 + 0.289909) / 2
    assert metric.score_per_study(solution, submission) == pytest.approx(0.2029886560, abs=1e-9)


def test_metric_clips_like_sklearn_2022():
    eps = 1e-15
    miss = metric.score([{"row_id": "X_C3", "fractured": 1}], [{"row_id": "X_C3", "fractured": 0.0}])
    assert miss["score"] == pytest.approx(-math.log(eps), rel=1e-12)  # 34.538776, not inf
    wrong = metric.score([{"row_id": "X_C3", "fractured": 0}], [{"row_id": "X_C3", "fractured": 1.0}])
    assert wrong["score"] == pytest.approx(-math.log(1 - (1 - eps)), rel=1e-12)
    perfect = metric.score(_solution("A", A_LABELS), _submission("A", {t: float(A_LABELS[t]) for t in TARGETS}))
    assert perfect["score"] < 1e-13


def test_metric_refuses_bad_tables(tmp_path):
    solution = _solution("A", A_LABELS)
    with pytest.raises(ValueError, match="lacks 1"):
        metric.score(solution, _submission("A", A_PROBS)[:-1])
    with pytest.raises(ValueError, match="repeats"):
        metric.score(solution, _submission("A", A_PROBS) + _submission("A", A_PROBS)[:1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metric.score(solution, [{**r, "fractured": 1.5} if r["row_id"].endswith("_C2") else r
                                for r in _submission("A", A_PROBS)])
    with pytest.raises(ValueError, match="0 or 1"):
        metric.score([{"row_id": "A_C1", "fractured": 0.5}], [{"row_id": "A_C1", "fractured": 0.5}])
    # CSV paths work as well as lists; a wide train.csv becomes solution rows.
    train = tmp_path / "train.csv"
    with open(train, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["StudyInstanceUID", "patient_overall", *VERT])
        writer.writeheader()
        writer.writerow({"StudyInstanceUID": "A", **A_LABELS})
        writer.writerow({"StudyInstanceUID": "B", **B_LABELS})
    write_submission(tmp_path / "sub.csv", {"A": A_PROBS, "B": B_PROBS})
    result = metric.score(metric.solution_from_train_csv(train), tmp_path / "sub.csv")
    assert result["score"] == pytest.approx(0.1836729690, abs=1e-9)


# ---------------------------------------------------------------- submission writer


def test_submission_rows_complete_and_flagged(tmp_path):
    study = "1.2.826.0.1.3680043.10001"
    path = tmp_path / "out" / "submission.csv"
    rows = write_submission(path, {row_id(study, "C1"): 0.25, (study, "patient_overall"): 0.5},
                            study_ids=[study, "1.2.826.0.1.3680043.10002"])
    assert len(rows) == 16
    with open(path, newline="") as stream:
        table = list(csv.DictReader(stream))
    assert list(table[0]) == ["row_id", "fractured"]
    assert [r["row_id"] for r in table] == [r["row_id"] for r in rows]
    got = {r["row_id"]: float(r["fractured"]) for r in table}
    assert got[f"{study}_C1"] == 0.25 and got[f"{study}_patient_overall"] == 0.5
    assert got[f"{study}_C7"] == DEFAULT_PRIOR["C7"]
    assert sum(r["filled"] for r in rows) == 14
    assert sorted(p.name for p in path.parent.iterdir()) == ["submission.csv"]  # no temp file left
    assert parse_row_id(f"{study}_patient_overall") == (study, "patient_overall")
    assert parse_row_id(f"{study}_C3") == (study, "C3")
    # Rewriting replaces the file whole; a bad probability leaves the old file untouched.
    write_submission(path, {study: {"C1": 0.9}})
    with pytest.raises(ValueError):
        write_submission(path, {study: {"C1": float("nan")}})
    with open(path, newline="") as stream:
        assert len(list(csv.DictReader(stream))) == 8
    with pytest.raises(ValueError):
        row_id(study, "C8")
    with pytest.raises(ValueError):
        parse_row_id("no-target-here")


def test_default_prior_minimises_the_weighted_loss():
    p = 0.19
    best = best_constant(p)
    loss = lambda q: p * 2 * -math.log(q) + (1 - p) * -math.log(1 - q)  # noqa: E731
    assert loss(best) < loss(best - 0.01) and loss(best) < loss(best + 0.01)
    assert 0 < DEFAULT_PRIOR["C3"] < DEFAULT_PRIOR["C7"] < DEFAULT_PRIOR["patient_overall"] < 1


# ---------------------------------------------------------------- the Kaggle layout, round trip

OPTIONS = {"shape_limit": (72, 80, 80)}


@pytest.fixture(scope="module")
def head_first_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("rsna2022_a")
    uids = generate(root, 2, seed=4, segmentation_fraction=1.0, box_fraction=1.0, fracture_rate=1.0,
                    head_first_fraction=1.0, case_options=OPTIONS)
    return root, uids


@pytest.fixture(scope="module")
def feet_first_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("rsna2022_b")
    uids = generate(root, 1, seed=5, segmentation_fraction=1.0, fracture_rate=0.0, head_first_fraction=0.0,
                    test_studies=1, case_options=OPTIONS)
    return root, uids


def _replay(truth_entry, fracture_rate):
    return make_case(truth_entry["seed"], fracture_rate=fracture_rate, orientation="axial", **OPTIONS)


def _stack_by_slice_number(folder):
    """What most notebooks did: pixel arrays in slice-number order (with the rescale)."""
    files = sorted(folder.glob("*.dcm"), key=lambda p: int(p.stem))
    arrays = []
    for path in files:
        ds = pydicom.dcmread(path)
        arrays.append(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    return np.stack(arrays)


def test_layout_files_are_kaggles(head_first_set, feet_first_set):
    root, uids = head_first_set
    with open(root / "train.csv", newline="") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == ["StudyInstanceUID", "patient_overall", *VERT]
        assert [r["StudyInstanceUID"] for r in reader] == uids
    with open(root / "train_bounding_boxes.csv", newline="") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == ["StudyInstanceUID", "x", "y", "width", "height", "slice_number"]
        assert len(list(reader)) > 0
    folder = root / "train_images" / uids[0]
    files = sorted(folder.iterdir(), key=lambda p: int(p.stem))
    assert [p.name for p in files] == [f"{n}.dcm" for n in range(1, len(files) + 1)]
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "CT" and ds.StudyInstanceUID == uids[0] and int(ds.InstanceNumber) == 1
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
    assert float(ds.SliceThickness) > 0 and len(ds.PixelSpacing) == 2
    # Head first: slice 1 is the top of the scan.
    z = [float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in (files[0], files[-1])]
    assert z[0] > z[1]
    root_b, uids_b = feet_first_set
    files_b = sorted((root_b / "train_images" / uids_b[0]).iterdir(), key=lambda p: int(p.stem))
    zb = [float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in (files_b[0], files_b[-1])]
    assert zb[0] < zb[1]
    assert (root / "segmentations" / f"{uids[0]}.nii").is_file()
    with open(root_b / "test.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 8 and {r["prediction_type"] for r in rows} == set(TARGETS)
    test = RSNA2022Dataset(root_b, split="test")
    assert len(test.study_ids) == 1 and test.labels(test.study_ids[0]) is None
    assert test.load_ct(test.study_ids[0]).voxels.ndim == 3


def test_round_trip_ct_labels_and_segmentation(head_first_set, feet_first_set):
    for (root, uids), rate in ((head_first_set, 1.0), (feet_first_set, 0.0)):
        ds = RSNA2022Dataset(root)
        assert ds.study_ids == uids and ds.is_synthetic
        truth = ds.truth()
        for uid in uids:
            case = _replay(truth[uid], rate)
            assert ds.labels(uid) == {**case.fractured, "patient_overall": case.patient_overall}
            ct = ds.load_ct(uid)
            np.testing.assert_array_equal(ct.voxels, case.ct.voxels)  # HU exact through DICOM
            np.testing.assert_allclose(ct.ijk_to_ras, case.ct.ijk_to_ras, atol=1e-4)
            seg = ds.load_segmentation(uid, ct)
            np.testing.assert_array_equal(seg.voxels, case.labels.voxels)
            np.testing.assert_array_equal(ds.load_segmentation(uid).voxels, seg.voxels)  # loads the CT itself
            assert seg.is_labelmap and seg.metadata["nifti_affine_agrees"]
            bone = ct.voxels[seg.voxels > 0]
            assert np.median(bone) > 250  # the labels sit on bone ...
            assert np.median(ct.voxels[np.roll(seg.voxels, 6, axis=1) > 0]) < np.median(bone)  # ... and shifted, less so


def test_segmentation_quirk_matches_the_notebooks_fix(head_first_set, feet_first_set):
    """The released files needed seg[:, ::-1, ::-1].transpose(2, 1, 0) against the pixel
    arrays in slice-number order when slice 1 is the top, seg[:, ::-1].transpose(2, 1, 0)
    when it is the bottom; our files need exactly that too."""
    import nibabel as nib

    for (root, uids), fix, rate in ((head_first_set, lambda s: s[:, ::-1, ::-1].transpose(2, 1, 0), 1.0),
                                    (feet_first_set, lambda s: s[:, ::-1].transpose(2, 1, 0), 0.0)):
        uid = uids[0]
        truth = RSNA2022Dataset(root).truth()[uid]
        case = _replay(truth, rate)
        stack = _stack_by_slice_number(root / "train_images" / uid)
        nii = np.asarray(nib.load(str(root / "segmentations" / f"{uid}.nii")).dataobj)
        aligned = fix(nii)
        order = slice(None, None, -1) if truth["slice_order"] == "head_first" else slice(None)
        np.testing.assert_array_equal(stack, case.ct.voxels[order])
        np.testing.assert_array_equal(aligned, case.labels.voxels[order])
        assert not np.array_equal(nii.transpose(2, 1, 0), case.labels.voxels[order])  # a plain transpose is wrong


def test_boxes_land_on_the_fractured_vertebra(head_first_set):
    root, uids = head_first_set
    ds = RSNA2022Dataset(root)
    seen = 0
    for uid in uids:
        if not ds.boxes.get(uid):
            continue
        ct = ds.load_ct(uid)
        seg = ds.load_segmentation(uid, ct).voxels
        fractured = {VERT.index(v) + 1 for v in VERT if ds.labels(uid)[v]}
        for box in ds.boxes_on_grid(uid, ct):
            r0, c0 = int(box["y"]), int(box["x"])
            patch = seg[box["k"], r0:r0 + int(box["height"]), c0:c0 + int(box["width"])]
            assert fractured & set(np.unique(patch).tolist()), box
            assert ct.voxels[box["k"], r0:r0 + int(box["height"]), c0:c0 + int(box["width"])].max() > 400
            seen += 1
    assert seen > 0


def test_generated_set_scores(head_first_set):
    root, uids = head_first_set
    ds = RSNA2022Dataset(root)
    solution = ds.solution_rows()
    truth = {r["row_id"]: float(r["fractured"]) for r in solution}
    assert metric.score(solution, [{"row_id": k, "fractured": v} for k, v in truth.items()])["score"] < 1e-13
    prior = metric.score(solution, [{"row_id": k, "fractured": DEFAULT_PRIOR[parse_row_id(k)[1]]} for k in truth])
    assert 0.05 < prior["score"] < 5


def test_layout_errors_are_one_line(tmp_path, head_first_set):
    one_line_error(RSNA2022Dataset, tmp_path / "nowhere")
    message = one_line_error(RSNA2022Dataset, tmp_path)
    assert "not in the RSNA 2022 layout" in message and "train.csv" in message
    (tmp_path / "train.csv").write_text("StudyInstanceUID,C1\nx,0\n")
    (tmp_path / "train_images").mkdir()
    assert "patient_overall" in one_line_error(RSNA2022Dataset, tmp_path)
    (tmp_path / "train.csv").write_text("StudyInstanceUID,patient_overall,C1,C2,C3,C4,C5,C6,C7\nx,2,0,0,0,0,0,0,0\n")
    assert "0 or 1" in one_line_error(RSNA2022Dataset, tmp_path)
    root, uids = head_first_set
    ds = RSNA2022Dataset(root)
    ct = ds.load_ct(uids[0])
    ct.voxels = ct.voxels[1:]  # a segmentation that does not belong to this CT
    assert "do not belong together" in one_line_error(ds.load_segmentation, uids[0], ct)


def test_generator_command_line(tmp_path):
    out = tmp_path / "set"
    done = subprocess.run([sys.executable, "-m", "SpineAITraining.cervical.generator", str(out), "--studies", "1",
                           "--seed", "3", "--max-shape", "40", "48", "48", "--compressed-fraction", "1"], cwd=REPO,
                          capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote 1 synthetic studies" in done.stdout
    ds = RSNA2022Dataset(out)
    assert len(ds.study_ids) == 1 and ds.load_ct(ds.study_ids[0]).voxels.shape[1:] == (48, 48)
    first = next((out / "train_images" / ds.study_ids[0]).glob("*.dcm"))
    assert pydicom.dcmread(first).file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    again = subprocess.run([sys.executable, "-m", "SpineAITraining.cervical.generator", str(out), "--studies", "1"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "already holds" in again.stderr
