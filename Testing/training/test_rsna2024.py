"""RSNA 2024 severity grading: metric (hand-computed), submission writer, synthetic
generator -> Kaggle layout round trip, and the train -> evaluate -> infer path."""

import csv
import json
import math
import shutil

import numpy as np
import pytest

from SpineAITraining.lumbar.severity import metric
from SpineAILib.workflows.lumbar.severity.submission import (
    CONDITIONS,
    GRADES,
    LEVELS,
    parse_row_id,
    row_id,
    write_submission,
)

EPS = float(np.finfo(np.float64).eps)


def _sol(rid, grade):
    return {"row_id": rid, "grade": grade}


def _sub(rid, p):
    return {"row_id": rid, **dict(zip(GRADES, p))}


# ---------------------------------------------------------------- metric, by hand


def test_metric_one_study_by_hand():
    s = "1"
    solution = [
        _sol(f"{s}_spinal_canal_stenosis_l1_l2", "Normal/Mild"),  # weight 1
        _sol(f"{s}_spinal_canal_stenosis_l4_l5", "Severe"),  # weight 4
        _sol(f"{s}_left_neural_foraminal_narrowing_l3_l4", "Moderate"),  # weight 2
        _sol(f"{s}_right_subarticular_stenosis_l5_s1", "Normal/Mild"),  # weight 1
    ]
    submission = [
        _sub(f"{s}_spinal_canal_stenosis_l1_l2", (0.7, 0.2, 0.1)),
        _sub(f"{s}_spinal_canal_stenosis_l4_l5", (0.2, 0.3, 0.5)),
        _sub(f"{s}_left_neural_foraminal_narrowing_l3_l4", (0.25, 0.5, 0.25)),
        _sub(f"{s}_right_subarticular_stenosis_l5_s1", (0.9, 0.05, 0.05)),
        _sub(f"{s}_left_subarticular_stenosis_l1_l2", (0.0, 0.0, 1.0)),  # not in the solution: not scored
    ]
    # spinal = (1 * -ln 0.7 + 4 * -ln 0.5) / (1 + 4) = (0.356675 + 2.772589) / 5 = 0.625853
    spinal = (1 * -math.log(0.7) + 4 * -math.log(0.5)) / 5
    # foraminal: one row, its weight cancels: -ln 0.5 = 0.693147
    foraminal = -math.log(0.5)
    # subarticular: -ln 0.9 = 0.105361
    subarticular = -math.log(0.9)
    # any_severe_spinal: label 1 (L4/L5 Severe), prediction max(0.1, 0.5) = 0.5, weight max(1, 4) = 4
    # -> one study: -ln 0.5 = 0.693147
    any_severe = -math.log(0.5)
    # score = (0.625853 + 0.693147 + 0.105361 + 0.693147) / 4 = 0.529377
    expected = (spinal + foraminal + subarticular + any_severe) / 4
    result = metric.score(solution, submission)
    assert result["spinal"] == pytest.approx(spinal, abs=1e-12)
    assert result["foraminal"] == pytest.approx(foraminal, abs=1e-12)
    assert result["subarticular"] == pytest.approx(subarticular, abs=1e-12)
    assert result["any_severe_spinal"] == pytest.approx(any_severe, abs=1e-12)
    assert result["score"] == pytest.approx(expected, abs=1e-12)
    assert result["score"] == pytest.approx(0.529377, abs=1e-6)


def test_metric_any_severe_weights_across_studies():
    solution = [
        _sol("A_spinal_canal_stenosis_l1_l2", "Normal/Mild"),  # w 1
        _sol("A_spinal_canal_stenosis_l2_l3", "Moderate"),  # w 2
        _sol("B_spinal_canal_stenosis_l1_l2", "Severe"),  # w 4
        _sol("B_spinal_canal_stenosis_l2_l3", "Normal/Mild"),  # w 1
    ]
    submission = [
        _sub("A_spinal_canal_stenosis_l1_l2", (0.7, 0.1, 0.2)),
        _sub("A_spinal_canal_stenosis_l2_l3", (0.3, 0.6, 0.1)),
        _sub("B_spinal_canal_stenosis_l1_l2", (0.1, 0.3, 0.6)),
        _sub("B_spinal_canal_stenosis_l2_l3", (0.9, 0.05, 0.05)),
    ]
    # spinal = (1 * -ln .7 + 2 * -ln .6 + 4 * -ln .6 + 1 * -ln .9) / 8
    #        = (0.356675 + 1.021651 + 2.043302 + 0.105361) / 8 = 0.440874
    spinal = (-math.log(0.7) + 2 * -math.log(0.6) + 4 * -math.log(0.6) - math.log(0.9)) / 8
    # any severe: A label 0, p = max(.2, .1) = .2, w = max(1, 2) = 2 -> -ln(1 - .2) = 0.223144
    #             B label 1, p = max(.6, .05) = .6, w = max(4, 1) = 4 -> -ln .6 = 0.510826
    # = (2 * 0.223144 + 4 * 0.510826) / 6 = 0.414932
    any_severe = (2 * -math.log(0.8) + 4 * -math.log(0.6)) / 6
    result = metric.score(solution, submission)
    assert result["spinal"] == pytest.approx(spinal, abs=1e-12)
    assert result["spinal"] == pytest.approx(0.440874, abs=1e-6)
    assert result["any_severe_spinal"] == pytest.approx(0.414932, abs=1e-6)
    # Groups without rows are reported as None and left out of the mean.
    assert result["foraminal"] is None and result["subarticular"] is None
    assert result["score"] == pytest.approx((spinal + any_severe) / 2, abs=1e-12)


def test_metric_normalises_and_clips_like_sklearn():
    solution = [_sol("7_spinal_canal_stenosis_l1_l2", "Severe"), _sol("7_left_subarticular_stenosis_l1_l2", "Moderate")]
    submission = [
        _sub("7_spinal_canal_stenosis_l1_l2", (1.0, 0.0, 0.0)),  # certain and wrong: p(severe) clipped to eps
        _sub("7_left_subarticular_stenosis_l1_l2", (0.5, 0.25, 0.25)),
    ]
    result = metric.score(solution, submission)
    assert result["spinal"] == pytest.approx(-math.log(EPS))  # 36.043653
    assert result["spinal"] == pytest.approx(36.0436533891, abs=1e-9)
    assert result["subarticular"] == pytest.approx(-math.log(0.25))
    # rows that do not sum to 1 are scaled first: (2, 1, 1) -> (0.5, 0.25, 0.25)
    scaled = metric.score(solution[1:], [_sub("7_left_subarticular_stenosis_l1_l2", (1.0, 0.5, 0.5))])
    assert scaled["subarticular"] == pytest.approx(-math.log(0.25))


def _full(study_ids, grade_of):
    return [_sol(row_id(s, c, l), grade_of(s, c, l)) for s in study_ids for c in CONDITIONS for l in LEVELS]


def test_metric_properties_perfect_and_uniform():
    rng = np.random.default_rng(0)
    grades = {(s, c, l): int(rng.integers(0, 3)) for s in ("1", "2", "3") for c in CONDITIONS for l in LEVELS}
    grades[("1", "spinal_canal_stenosis", "l2_l3")] = 2  # both any_severe labels occur
    grades.update({("2", "spinal_canal_stenosis", l): 0 for l in LEVELS})
    solution = _full(["1", "2", "3"], lambda s, c, l: grades[(s, c, l)])
    perfect = [_sub(r["row_id"], np.eye(3)[r["grade"]]) for r in solution]
    result = metric.score(solution, perfect)
    assert result["score"] < 1e-12  # only the clipping at 1 - eps remains

    uniform = [_sub(r["row_id"], (1 / 3, 1 / 3, 1 / 3)) for r in solution]
    result = metric.score(solution, uniform)
    for group in ("spinal", "foraminal", "subarticular"):
        assert result[group] == pytest.approx(math.log(3), abs=1e-12)


def test_metric_reads_csv_and_refuses_bad_input(tmp_path):
    solution = tmp_path / "solution.csv"
    solution.write_text("row_id,normal_mild,moderate,severe,sample_weight\n9_spinal_canal_stenosis_l1_l2,0,1,0,2\n")
    submission = tmp_path / "submission.csv"
    submission.write_text("row_id,normal_mild,moderate,severe\n9_spinal_canal_stenosis_l1_l2,0.2,0.5,0.3\n")
    result = metric.score(solution, submission)
    assert result["spinal"] == pytest.approx(-math.log(0.5))
    assert result["any_severe_spinal"] == pytest.approx(-math.log(0.7))  # label 0, p(severe) 0.3
    with pytest.raises(ValueError, match="lacks 1"):
        metric.score(solution, [_sub("9_spinal_canal_stenosis_l2_l3", (1, 0, 0))])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metric.score(solution, [_sub("9_spinal_canal_stenosis_l1_l2", (1.5, 0, 0))])
    wide = [{"study_id": "5", "spinal_canal_stenosis_l1_l2": "Moderate", "left_subarticular_stenosis_l5_s1": ""}]
    assert metric.solution_from_wide(wide) == [{"row_id": "5_spinal_canal_stenosis_l1_l2", "grade": 1}]


# ---------------------------------------------------------------- submission


def test_submission_rows_ids_and_fill(tmp_path):
    assert row_id(4003253, "left_neural_foraminal_narrowing", "l4_l5") == "4003253_left_neural_foraminal_narrowing_l4_l5"
    assert parse_row_id("4003253_left_neural_foraminal_narrowing_l4_l5") == ("4003253", "left_neural_foraminal_narrowing", "l4_l5")
    with pytest.raises(ValueError):
        row_id(1, "canal", "l1_l2")
    predictions = {
        "11_spinal_canal_stenosis_l1_l2": (2.0, 1.0, 1.0),  # scaled to sum 1
        ("11", "right_subarticular_stenosis", "l5_s1"): {"normal_mild": 0.1, "moderate": 0.2, "severe": 0.7},
    }
    path = tmp_path / "out" / "submission.csv"
    rows = write_submission(path, predictions, study_ids=["11", "12"])
    assert len(rows) == 50
    assert sum(not r["filled"] for r in rows) == 2
    assert [f.name for f in path.parent.iterdir()] == ["submission.csv"]  # no temp file left
    with open(path, newline="") as stream:
        table = list(csv.DictReader(stream))
    assert list(table[0]) == ["row_id", "normal_mild", "moderate", "severe"]
    assert len(table) == 50 and len({r["row_id"] for r in table}) == 50
    for study in ("11", "12"):
        assert sum(r["row_id"].startswith(study + "_") for r in table) == 25
    for r in table:
        assert sum(float(r[g]) for g in GRADES) == pytest.approx(1.0, abs=1e-12)
    first = next(r for r in table if r["row_id"] == "11_spinal_canal_stenosis_l1_l2")
    assert [float(first[g]) for g in GRADES] == pytest.approx([0.5, 0.25, 0.25])


# ---------------------------------------------------------------- generator -> layout


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from SpineAITraining.lumbar.severity.generator import generate

    root = tmp_path_factory.mktemp("rsna") / "data"
    ids = generate(root, 5, seed=11)
    truth = {str(s["study_id"]): s for s in json.loads((root / "generator_truth.json").read_text())["studies"]}
    return root, [str(i) for i in ids], truth


def test_generator_writes_the_kaggle_layout(synthetic):
    root, ids, truth = synthetic
    with open(root / "train.csv", newline="") as stream:
        wide = list(csv.DictReader(stream))
    assert [r["study_id"] for r in wide] == ids
    assert list(wide[0])[1:] == [f"{c}_{l}" for c in CONDITIONS for l in LEVELS]
    assert {v for r in wide for k, v in r.items() if k != "study_id"} <= {"Normal/Mild", "Moderate", "Severe"}
    with open(root / "train_label_coordinates.csv", newline="") as stream:
        coords = list(csv.DictReader(stream))
    assert list(coords[0]) == ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
    assert len(coords) == 25 * len(ids)
    for row in coords:  # every labelled instance is a file named by its InstanceNumber
        assert (root / "train_images" / row["study_id"] / row["series_id"] / f"{row['instance_number']}.dcm").is_file()
    with open(root / "train_series_descriptions.csv", newline="") as stream:
        descriptions = list(csv.DictReader(stream))
    assert sorted({r["series_description"] for r in descriptions}) == ["Axial T2", "Sagittal T1", "Sagittal T2/STIR"]


def test_layout_maps_labels_into_the_anatomy(synthetic):
    from SpineAITraining.lumbar.severity.generator import CSF, FAT, ROOT, anatomy_of
    from SpineAILib.workflows.lumbar.severity.study import axial_levels, link_levels
    from SpineAITraining.lumbar.severity.layout import RSNADataset

    root, ids, truth = synthetic
    dataset = RSNADataset(root)
    assert dataset.study_ids == ids and dataset.is_synthetic
    for sid in ids:
        study = dataset.load_study(sid)
        anatomy = anatomy_of(truth[sid])
        by_title = {"Sagittal T1": "sagittal_t1", "Sagittal T2/STIR": "sagittal_t2", "Axial T2": "axial_t2"}
        for title, kind in by_title.items():
            assert study.series_of(kind).series_id == str(truth[sid]["series"][title])
        assert study.series_of("axial_t2").orientation == "axial" and study.series_of("sagittal_t1").orientation == "sagittal"
        assert len(study.points) == 25 and not study.not_assessed()
        discs_ras = anatomy.discs_z() + anatomy.offset[2]
        for (condition, level), point in study.points.items():
            local = point.ras - np.asarray(anatomy.offset)
            tissue = int(anatomy.tissue(point.ras[None])[0])
            # the point sits at its own disc (nearest disc level in S)
            assert int(np.argmin(np.abs(discs_ras - point.ras[2]))) == LEVELS.index(level)
            if condition == "spinal_canal_stenosis":
                # in the canal; on the sagittal slice nearest the mid-line (slices are <= 4 mm apart)
                assert tissue == CSF and abs(local[0]) <= 2.0
            elif "foraminal" in condition:
                assert tissue in (FAT, ROOT)  # in the foramen
                assert np.sign(local[0]) == (-1 if condition.startswith("left") else 1)  # patient left is -R
            else:
                assert tissue in (CSF, ROOT)  # in the lateral recess
                assert np.sign(local[0]) == (-1 if condition.startswith("left") else 1)
        # Axial slices are linked to the disc they were acquired through.
        axial = study.series_of("axial_t2")
        links = link_levels(axial, study.level_points())
        stacks = truth[sid]["axial_stacks"]
        for level in LEVELS:
            assert links[level].cutting and set(links[level].cutting) <= set(stacks[level])
            assert {n for n, _ in links[level].nearby} <= set(stacks[level])
        for number, level in axial_levels(axial, study.level_points()).items():
            assert number in stacks[level]


def test_identify_kind_checks_description_against_geometry():
    from SpineAILib.workflows.lumbar.severity.study import identify_kind

    assert identify_kind("Sagittal T1", "sagittal") == ("sagittal_t1", None)
    assert identify_kind("Sagittal T2/STIR", "sagittal") == ("sagittal_t2", None)
    assert identify_kind("Axial T2", "axial") == ("axial_t2", None)
    kind, warning = identify_kind("Axial T2", "sagittal")
    assert kind == "sagittal_t2" and "geometry is trusted" in warning
    assert identify_kind("", "sagittal", {"EchoTime": 12, "RepetitionTime": 550})[0] == "sagittal_t1"
    assert identify_kind("", "sagittal", {"EchoTime": 100, "RepetitionTime": 4000})[0] == "sagittal_t2"
    assert identify_kind("Coronal T2", "coronal")[0] is None


# ---------------------------------------------------------------- train -> evaluate -> infer


def test_train_evaluate_infer_on_generated_studies(synthetic, tmp_path):
    from SpineAILib.models.bundle import load_bundle
    from SpineAITraining.lumbar import train_severity as train_lumbar_severity
    from SpineAITraining.lumbar.severity.layout import RSNADataset
    from SpineAILib.workflows.lumbar.severity.predict import predict_study

    root, ids, truth = synthetic
    bundle = tmp_path / "bundle"
    args = ["--data", str(root), "--out", str(bundle), "--epochs", "1", "--width", "0.25", "--threads", "1",
            "--eval-dir", str(tmp_path / "eval"), "--seed", "1"]
    assert train_lumbar_severity.main(args) == 0
    meta = json.loads((bundle / "metadata.json").read_text())
    assert meta["task"] == "lumbar-mri/severity" and meta["training"]["synthetic"] is True
    assert "SYNTHETIC" in meta["training"]["data"]
    split = meta["training"]["split"]
    assert sorted(split["train"] + split["validation"] + split["test"]) == sorted(ids)  # by study, disjoint
    assert not set(split["train"]) & set(split["test"])
    score = next(m for m in meta["metrics"] if m["name"] == "rsna2024_score")
    assert math.isfinite(score["value"]) and "held-out" in score["data"]
    assert set(meta["grading"]["point_offsets_mm"]) == set(CONDITIONS[1:])
    with open(tmp_path / "eval" / "test_submission.csv", newline="") as stream:
        assert len(list(csv.DictReader(stream))) == 25 * len(split["test"])

    loaded = load_bundle(bundle, device="cpu", expected_task="lumbar-mri/severity")
    dataset = RSNADataset(root)
    study = dataset.load_study(split["test"][0])
    rows = predict_study(study, loaded)
    assert len(rows) == 25 and all(r["assessed"] for r in rows)
    # Only the canal points given (what a level detector finds): the other points come from the offsets.
    canal = {l: p.ras for (c, l), p in study.points.items() if c == "spinal_canal_stenosis"}
    from_canal = predict_study(study, loaded, canal_points=canal)
    assert all(r["assessed"] for r in from_canal)
    path = tmp_path / "submission.csv"
    write_submission(path, {r["row_id"]: r for r in rows}, [study.study_id], prior=meta["grading"]["prior"])
    result = metric.score(dataset.solution_rows([study.study_id]), path)
    assert all(math.isfinite(v) for v in result.values())


def test_missing_sagittal_t1_marks_foramina_not_assessed(synthetic, tmp_path):
    from SpineAILib.workflows.lumbar.severity.grading import study_crops
    from SpineAITraining.lumbar.severity.layout import RSNADataset

    root, ids, truth = synthetic
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    sid = ids[0]
    shutil.rmtree(copy / "train_images" / sid / str(truth[sid]["series"]["Sagittal T1"]))
    study = RSNADataset(copy).load_study(sid)
    assert set(study.not_assessed()) == {"left_neural_foraminal_narrowing", "right_neural_foraminal_narrowing"}
    assert any("not on disk" in w for w in study.warnings)  # their labelled points lost their images
    entries = study_crops(study)
    missing = {(c, l) for c, l, crop, reason in entries if crop is None}
    assert missing == {(c, l) for c in CONDITIONS if "foraminal" in c for l in LEVELS}
    assert all("sagittal_t1" in reason for c, l, crop, reason in entries if crop is None)


def test_volume_input_crops_like_its_dicom_series(synthetic):
    """A loaded VolumeImage (what the lumbar-mri task holds) gives the same crops as the DICOM files."""
    from SpineAILib.io.dicom import load_folder
    from SpineAILib.workflows.lumbar.severity.grading import crop
    from SpineAILib.workflows.lumbar.severity.study import series_from_volume
    from SpineAITraining.lumbar.severity.layout import RSNADataset
    from SpineAILib.workflows.lumbar.severity.predict import canal_points_from_discs

    root, ids, truth = synthetic
    study = RSNADataset(root).load_study(ids[1])
    dicom_series = study.series_of("sagittal_t2")
    volume = series_from_volume(load_folder(dicom_series.folder), "sagittal_t2")
    assert volume.orientation == "sagittal" and not volume.warnings
    point = study.points[("spinal_canal_stenosis", "l3_l4")].ras
    a, b = crop(dicom_series, point, "spinal", None), crop(volume, point, "spinal", None)
    np.testing.assert_allclose(a, b, atol=1e-4)

    # Disc centres (as the level detector reports them) -> canal points, moved posteriorly.
    discs = [{"level": "L3/L4", "visible": True, "centre": np.array([0.0, 20.0, -5.0]), "normal": np.array([0.0, 0.0, 1.0])},
             {"level": "L5/S1", "visible": False, "reason": "S1 not found"}]
    canal = canal_points_from_discs(discs, distance_mm=25.0)
    assert list(canal) == ["l3_l4"]
    np.testing.assert_allclose(canal["l3_l4"], [0.0, -5.0, -5.0])
