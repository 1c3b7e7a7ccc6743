"""lumbar-mri part 1: the split, the trainer, disc-level geometry and the workflow end to end.

Real data (../shared/data/mri_lumbar, ct_thoracolumbar, mri_cervical) is used where
present and the tests that need it skip without it; the bundled model is the one
SpineAI/Resources/Models.json names for lumbar-mri.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, require

from SpineAILib.workflows.lumbar.discs import disc_levels, estimate_disc_below, roi_axes
from SpineAILib.images import VolumeImage
from SpineAILib.workflows.lumbar.grid import SagittalLayout
from SpineAILib.workflows.lumbar.postprocess import Body, assign_names
from SpineAILib.samples.spine_phantom import disc_centres_ras, make_phantom
from SpineAILib import terminology
from SpineAILib.terminology import DISC_LEVELS
from SpineAITraining.lumbar import mri_lumbar

LUMBAR_DATA = SHARED_DATA / "mri_lumbar"
TEST_CASE = "vb3_13"  # in the split's test part
SPINEAI = str(Path(sys.executable).with_name("spineai"))


def _bundled_model():
    from SpineAILib.models.catalogue import default_bundle_path

    path = default_bundle_path("lumbar-mri")
    if path is None:
        pytest.skip("no lumbar-mri bundle in SpineAI/Resources/Models.json")
    return path


def _sacrum_installed():
    from SpineAILib.workflows.lumbar.sacrum import sacrum_bundle_path

    return sacrum_bundle_path() is not None


# -- split ---------------------------------------------------------------------------


def test_split_is_by_case_disjoint_and_stable():
    split = mri_lumbar.load_split()
    parts = [set(split[p]) for p in ("train", "validation", "test")]
    assert all(parts), "every part holds cases"
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2]), "a case on two sides"
    everything = sorted(set().union(*parts))
    assert len(everything) == 54
    # Regenerating from the same cases and seed gives the committed file back.
    assert mri_lumbar.split_document(everything, split["seed"]) == split
    for part in parts:  # stratified: both sources (T1 and T2) on every side
        assert {mri_lumbar.source_of(c) for c in part} == {"vb2", "vb3"}
    assert TEST_CASE in split["test"]


@pytest.mark.realdata
def test_split_matches_the_real_cases():
    require(LUMBAR_DATA)
    split = mri_lumbar.load_split()
    ids = {c.case_id for c in mri_lumbar.list_cases(LUMBAR_DATA)}
    assert ids == set(split["train"]) | set(split["validation"]) | set(split["test"])


# -- geometry ------------------------------------------------------------------------


@pytest.mark.parametrize("plane", ["sagittal", "axial"])
def test_layout_round_trip_and_orientation(plane):
    image, _ = make_phantom("MR", shape_kji=(24, 40, 48), spacing=(1.5, 2.0, 3.0), plane=plane)
    layout = SagittalLayout.of(image.voxels.shape, image.ijk_to_ras)
    canonical = layout.to_canonical(image.voxels)
    assert np.array_equal(layout.from_canonical(canonical), image.voxels)
    m = layout.canonical_to_ras
    assert m[2, 1] < 0 and m[1, 0] < 0, "rows run superior->inferior, columns anterior->posterior"
    assert abs(m[0, 2]) > 0, "slices step left-right"
    # The canonical matrix describes the same physical voxels as the input's.
    c = np.array([3, 5, 7])
    value = canonical[tuple(c)]
    ijk = np.rint(np.linalg.solve(image.ijk_to_ras, m @ np.array([c[2], c[1], c[0], 1.0]))[:3]).astype(int)
    assert image.voxels[ijk[2], ijk[1], ijk[0]] == value


@pytest.mark.parametrize("plane", ["sagittal", "axial"])
def test_disc_points_on_the_phantom(plane):
    _, labels = make_phantom("MR", plane=plane)
    levels = {d["level"]: d for d in disc_levels(labels)}
    assert list(levels) == DISC_LEVELS
    for level, truth in zip(DISC_LEVELS[:4], disc_centres_ras()):
        assert levels[level]["visible"], level
        assert np.linalg.norm(levels[level]["centre"] - truth) < 1.5, level
        assert levels[level]["normal"][2] > 0.99  # the phantom's spine is straight up
    # The phantom has no sacrum: disc_levels reports L5/S1 not visible (it measures, never guesses)...
    assert not levels["L5/S1"]["visible"] and "S1" in levels["L5/S1"]["reason"]


def test_l5_s1_is_estimated_below_l5_and_marked_so():
    """...and estimate_disc_below places it under L5's inferior endplate, marked estimated, only where
    the image goes on below it."""
    _, labels = make_phantom("MR", plane="sagittal", shape_kji=(64, 160, 128))
    discs = disc_levels(labels)
    estimated = {d["level"]: d for d in estimate_disc_below(labels, discs, "L5/S1")}
    l5s1 = estimated["L5/S1"]
    assert l5s1["visible"] and l5s1["estimated"] and "estimated" in l5s1["method"]
    assert np.linalg.norm(l5s1["centre"] - disc_centres_ras()[4]) < 4.0
    assert l5s1["normal"][2] > 0.95 and 4.0 <= l5s1["height_mm"] <= 16.0
    assert all(estimated[d["level"]] is d for d in discs if d["level"] != "L5/S1")  # measured levels untouched
    # the image cut 2 voxels under L5 (the sagittal phantom's J axis runs superior -> inferior): no room below
    cut = int(np.argwhere(labels.voxels == 24)[:, 1].max()) + 3
    cropped = VolumeImage(voxels=labels.voxels[:, :cut].copy(), ijk_to_ras=labels.ijk_to_ras.copy(), is_labelmap=True)
    hidden = {d["level"]: d for d in estimate_disc_below(cropped, disc_levels(cropped), "L5/S1")}["L5/S1"]
    assert not hidden["visible"] and "S1 is not segmented" in hidden["reason"]
    labels.voxels[labels.voxels == 24] = 0  # no L5 at all: nothing to estimate from, and the reason says why
    gone = {d["level"]: d for d in estimate_disc_below(labels, disc_levels(labels), "L5/S1")}["L5/S1"]
    assert not gone["visible"] and gone["reason"] == "L5 not found in the image (S1 is not segmented by this model)"


def test_a_missing_body_hides_both_of_its_discs():
    _, labels = make_phantom("MR", plane="sagittal")
    labels.voxels[labels.voxels == 22] = 0  # no L3
    visible = [d["level"] for d in disc_levels(labels) if d["visible"]]
    assert visible == ["L1/L2", "L4/L5"]


def test_roi_axes_are_right_handed_along_the_spine():
    axes = roi_axes([0.0, 0.3, 0.95])
    assert np.allclose(axes.T @ axes, np.eye(3), atol=1e-9)
    assert np.isclose(np.linalg.det(axes), 1.0)
    assert np.allclose(axes[:, 2], np.array([0, 0.3, 0.95]) / np.linalg.norm([0, 0.3, 0.95]))
    assert axes[0, 0] > 0.99 and axes[1, 1] > 0.9  # x ~ right, y ~ anterior


def _body(row, votes):
    return Body(index=np.array([int(row)]), votes=np.array([0, *votes]), row_mm=row, volume_ml=30, area_mm2=800,
                height_mm=25)  # fmt: skip


def _names(bodies):
    return [b.name_index for b in assign_names(bodies, 8)]


def test_levels_are_named_as_one_unbroken_column():
    # T11 T12 L1 L2 L3 L4 L5 votes per body
    # The body above L1 (T12, unlabelled in T1 training data) called L1 as well: the column shifts it to T12.
    assert _names([_body(16, [0, 0, 267, 0, 0, 0, 0]), _body(49, [0, 0, 261, 26, 0, 0, 0]),
                   _body(81, [0, 0, 0, 327, 2, 0, 0]), _body(116, [0, 0, 0, 0, 369, 0, 0]),
                   _body(153, [0, 0, 0, 0, 0, 334, 0]), _body(184, [0, 0, 0, 0, 0, 0, 281])]) == [2, 3, 4, 5, 6, 7]
    # A sacral segment called L5 below L5 is left out, never named twice.
    column = [_body(35 * i, [0, 0, *([0] * i), 10, *([0] * (4 - i))]) for i in range(5)]
    assert _names([*column, _body(172, [0, 0, 0, 0, 0, 0, 8])]) == [3, 4, 5, 6, 7, 0]
    # A body the model missed (no L3) leaves a double gap: the names skip a level there.
    assert _names([column[0], column[1], column[3], column[4]]) == [3, 4, 6, 7]


def test_a_body_named_differently_in_its_lateral_slices_stays_one_body():
    # L3 split by class into two pieces side by side (centres 6 mm apart): pooled, the majority names it.
    bodies = [_body(0, [0, 0, 10, 0, 0, 0, 0]), _body(35, [0, 0, 0, 10, 0, 0, 0]), _body(68, [0, 0, 0, 7, 0, 0, 0]),
              _body(74, [0, 0, 0, 0, 3, 0, 0]), _body(105, [0, 0, 0, 0, 0, 10, 0])]  # fmt: skip
    named = assign_names(bodies, 8)
    assert [b.name_index for b in named] == [3, 4, 5, 6]
    assert sorted(named[2].index.tolist()) == [68, 74]


# -- training ------------------------------------------------------------------------


@pytest.mark.realdata
def test_tiny_training_run_writes_a_loadable_bundle(tmp_path):
    require(LUMBAR_DATA / "vb3_02.nii.gz")
    from SpineAILib.models.bundle import load_bundle
    from SpineAITraining.lumbar.train_levels import main

    out = tmp_path / "bundle"
    common = ["--data", str(LUMBAR_DATA), "--out", str(out), "--train-cases", "vb3_02,vb2_02", "--val-cases",
              "vb3_01", "--samples-per-epoch", "4", "--batch-size", "2", "--channels", "4,8,16,32,64",
              "--device", "cpu", "--quiet"]  # fmt: skip
    assert main([*common, "--epochs", "1"]) == 0
    assert (tmp_path / "bundle.work" / "last.pt").is_file()
    # --resume continues after epoch 1 (only epoch 2 runs) and rewrites the bundle.
    assert main([*common, "--epochs", "2", "--resume", "--overwrite"]) == 0
    bundle = load_bundle(out, device="cpu", expected_task="lumbar-mri")
    meta = bundle.metadata
    assert meta["labels"] == ["background", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    assert meta["input"]["spacing"] == [1.5, 1.5] and meta["training"]["seed"] == 0
    assert meta["training"]["split"]["train"] == ["vb3_02", "vb2_02"]
    assert [h["epoch"] for h in meta["training"]["history"]] == [1, 2]
    assert {m["name"] for m in meta["metrics"]} >= {"dice_mean_validation", "levels_named_validation"}
    # --init-from fine-tunes a bundle: its network and weights (not --channels) are the start
    tuned = tmp_path / "tuned"
    common[common.index("--out") + 1] = str(tuned)
    assert main([*common, "--epochs", "1", "--init-from", str(out), "--channels", "8,16"]) == 0
    tuned_meta = load_bundle(tuned, device="cpu", expected_task="lumbar-mri").metadata
    assert tuned_meta["network"] == meta["network"]
    assert tuned_meta["training"]["initialised_from"]["sha256"] == meta["sha256"]


@pytest.mark.realdata
def test_training_refuses_test_cases(tmp_path):
    require(LUMBAR_DATA / "vb3_13.nii.gz")
    from SpineAILib.errors import InputError
    from SpineAITraining.lumbar.train_levels import main

    with pytest.raises(InputError, match="test split"):
        main(["--data", str(LUMBAR_DATA), "--out", str(tmp_path / "b"), "--train-cases", TEST_CASE])


def test_body_zones_split_the_margin_between_neighbours_by_nearest_footprint():
    from SpineAILib.workflows.lumbar.refine import body_zones

    footprints = np.zeros((20, 9), np.int32)
    footprints[2:6, 2:7] = 1  # upper body, rows 2-5
    footprints[11:15, 2:7] = 2  # lower body, rows 11-14: a 5-row disc between them
    zones = body_zones(footprints, 3)
    assert (zones[footprints > 0] == footprints[footprints > 0]).all(), "a footprint stays its own body's"
    assert (zones[6:8, 4] == 1).all() and (zones[9:11, 4] == 2).all(), "the disc is split by distance (row 8: a tie)"
    assert zones[0, 4] == 1 and zones[17, 4] == 2 and zones[18, 4] == 0, "grown 3 pixels, no further"
    assert zones[4, 0] == 1 and zones[4, 8] == 1


def test_box_dilation_matches_a_direct_max_filter():
    import torch
    import torch.nn.functional as F

    from SpineAILib.morphology import dilation

    mask = np.random.default_rng(0).random((12, 30, 25)) > 0.995
    direct = F.max_pool3d(F.pad(torch.from_numpy(mask.astype(np.float32))[None, None], [4, 4, 2, 2, 1, 1]),
                          (3, 5, 9), stride=1)[0, 0].numpy() > 0.5  # fmt: skip
    assert np.array_equal(dilation(mask, 2.0, (2.0, 1.0, 0.5)), direct)


@pytest.mark.realdata
def test_tiny_refiner_run_writes_a_bundle_the_pipeline_uses(tmp_path):
    require(LUMBAR_DATA / "vb3_02.nii.gz")
    from SpineAILib.io import load
    from SpineAILib.workflows.lumbar.pipeline import segment_vertebrae
    from SpineAILib.workflows.lumbar.refine import TASK, load_refiner
    from SpineAILib.models.bundle import load_bundle
    from SpineAITraining.lumbar.train_refiner import main

    out = tmp_path / "refiner"
    common = ["--data", str(LUMBAR_DATA), "--out", str(out), "--train-cases", "vb3_02,vb2_02", "--val-cases", "vb3_01",
              "--samples-per-epoch", "4", "--batch-size", "2", "--channels", "4,8,16,32,64", "--workers", "0",
              "--device", "cpu", "--quiet"]  # fmt: skip
    assert main([*common, "--epochs", "1"]) == 0
    assert main([*common, "--epochs", "2", "--resume", "--overwrite"]) == 0  # only epoch 2 runs
    meta = load_bundle(out, device="cpu", expected_task=TASK).metadata
    assert meta["labels"] == ["background", "vertebral body"] and meta["input"]["spacing"] == [1.0, 1.0]
    assert [h["epoch"] for h in meta["training"]["history"]] == [1, 2]
    assert meta["training"]["split"]["test"] == mri_lumbar.load_split()["test"]
    with pytest.raises(Exception, match="test split"):
        main([*common[:5], TEST_CASE, *common[6:], "--overwrite"])
    # The pipeline with this barely trained refiner: names as without it, outlines only where it
    # drew enough of a body (else the level model's, and a note says so).
    image = load(LUMBAR_DATA / f"{TEST_CASE}.nii.gz")
    level_bundle = load_bundle(_bundled_model(), device="cpu", expected_task="lumbar-mri")
    plain = segment_vertebrae(image, level_bundle)
    refined = segment_vertebrae(image, level_bundle, refiner=load_refiner("cpu", out))
    assert [v["name"] for v in refined.vertebrae] == [v["name"] for v in plain.vertebrae]
    assert "refine_s" in refined.timings and "refine_s" not in plain.timings
    for v in refined.vertebrae:
        assert (refined.labelmap.voxels == v["label"]).any(), v["name"]


@pytest.mark.realdata
def test_shipped_refiner_redraws_a_held_out_case_closer_to_the_manual_outlines():
    """On the held-out vb3_13 the shipped refiner raises the mean body Dice (0.880 -> 0.901 when measured),
    keeps every name, and the workflow loads it from the catalogue."""
    require(LUMBAR_DATA / f"{TEST_CASE}.nii.gz")
    from SpineAILib.io import load
    from SpineAILib.workflows.lumbar.pipeline import segment_vertebrae
    from SpineAILib.workflows.lumbar.refine import load_refiner
    from SpineAILib.models.bundle import load_bundle

    refiner = load_refiner("cpu")
    if refiner is None:
        pytest.skip("no lumbar-mri/refiner bundle installed")
    image, truth = load(LUMBAR_DATA / f"{TEST_CASE}.nii.gz"), load(LUMBAR_DATA / f"{TEST_CASE}_labels.nii.gz").voxels
    level_bundle = load_bundle(_bundled_model(), device="cpu", expected_task="lumbar-mri")

    def mean_dice(result):
        scores = []
        for value in range(20, 25):  # L1-L5, labelled in this case
            p, t = result.labelmap.voxels == value, truth == value
            scores.append(2.0 * (p & t).sum() / (p.sum() + t.sum()))
        return float(np.mean(scores))

    plain, refined = segment_vertebrae(image, level_bundle), segment_vertebrae(image, level_bundle, refiner=refiner)
    assert [v["name"] for v in refined.vertebrae] == [v["name"] for v in plain.vertebrae] == ["L1", "L2", "L3", "L4", "L5"]
    assert mean_dice(refined) >= 0.89 and mean_dice(refined) > mean_dice(plain) + 0.01


# -- workflow end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def test_case_run(tmp_path_factory):
    """`spineai run lumbar-mri` on a held-out real case with the bundled model (one subprocess)."""
    require(LUMBAR_DATA / f"{TEST_CASE}.nii.gz")
    _bundled_model()
    out = tmp_path_factory.mktemp("lumbar") / "out"
    done = subprocess.run([SPINEAI, "run", "lumbar-mri", str(LUMBAR_DATA / f"{TEST_CASE}.nii.gz"), "--out", str(out),
                           "--device", "cpu"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.realdata
def test_run_writes_every_output(test_case_run):
    report = json.loads((test_case_run / "report.json").read_text())
    outputs = report["outputs"]
    for role in ("segmentation", "discs", "levels", "severity", "heatmap", "overlay_sagittal", "overlay_3d", "scene"):
        assert (test_case_run / outputs[role]).stat().st_size > 0, role
    results = report["results"]
    assert results["lumbar_levels_found"] == ["L1", "L2", "L3", "L4", "L5"]
    assert results["visible_disc_levels"] == DISC_LEVELS and results["not_visible_disc_levels"] == []
    if results["naming"]["anchor"] == "sacrum":  # S1 found: L5/S1 measured between L5 and S1
        assert results["levels_found"][-1] == "S1" and results["estimated_disc_levels"] == []
        assert results["message"].endswith("levels counted up from S1 (the sacrum)")
    else:  # no sacrum model (or no S1 found): L5/S1 estimated below L5
        assert results["estimated_disc_levels"] == ["L5/S1"]
        assert "estimated" in {d["level"]: d for d in results["disc_levels"]}["L5/S1"]["method"]
        assert any(w.startswith("L5/S1 is estimated") for w in report["warnings"])
    if not _sacrum_installed():
        assert results["message"].endswith("levels named from the column (no sacrum model installed)")
        assert any(w.startswith("no sacrum model installed: levels named from the column") for w in report["warnings"])
    assert report["model"]["bundle_id"] == "lumbar-mri-vertebrae"
    assert results["outline_refiner"]["bundle_id"] == "lumbar-mri-body-refiner"
    severity = results["severity"]  # a lone volume: canal graded at the five levels, the rest not assessed
    assert severity["rows"] == 25 and severity["rows_assessed"] == 5
    assert severity["model"]["bundle_id"] == "lumbar-mri-severity-synthetic"
    assert any("synthetic" in w for w in report["warnings"])


@pytest.mark.realdata
def test_outputs_reload_with_names_and_accurate_disc_points(test_case_run):
    from SpineAILib.io import load
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.markups import points_from_node, roi_geometry
    from SpineAILib.scene.storage import load_node

    ctx = SceneContext.headless()
    segmentation = load_node(ctx, test_case_run / "vertebrae.seg.nrrd").GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert {"L1", "L2", "L3", "L4", "L5"} <= set(names)
    for i, name in enumerate(names):  # standard terminology (SNOMED CT code of that vertebra)
        assert segmentation.GetNthSegment(i).GetTerminology() == terminology.label_info(name)["terminology"]

    truth = {d["level"]: d["centre"] for d in disc_levels(load(LUMBAR_DATA / f"{TEST_CASE}_labels.nii.gz")) if d["visible"]}
    points = dict(points_from_node(load_node(ctx, test_case_run / "discs.mrk.json")))
    assert sorted(points) == sorted(truth) + ["L5/S1"]  # L5/S1 from the S1 found, or estimated (no S1 in the labels)
    for level, centre in truth.items():
        assert np.linalg.norm(np.array(points[level]) - centre) < 4.0, level

    storage = ctx.scene.AddNewNodeByClass("vtkMRMLMarkupsROIJsonStorageNode")  # reads entry i of a multi-ROI file
    path = str(test_case_run / "levels.mrk.json")
    assert len(json.loads(Path(path).read_text())["markups"]) == 5
    for i, level in enumerate(DISC_LEVELS[:4]):
        roi = storage.AddNewMarkupsNodeFromFile(path, f"Level {level}", i)
        geometry = roi_geometry(roi)
        assert roi.GetNthControlPointLabel(0) == level
        assert np.allclose(sorted(geometry["size"]), [20.0, 40.0, 40.0])
        assert np.linalg.norm(np.array(geometry["center"]) - points[level]) < 1e-3


@pytest.mark.realdata
def test_field_of_view_cut_above_l5_reports_l5_s1_not_visible(tmp_path):
    """A held-out case cut through the L4/L5 disc: no L5/S1 point is placed (not even estimated), the
    level is reported not visible with its reason, and the warning says the names rest on the bodies above."""
    image = require(LUMBAR_DATA / f"{TEST_CASE}.nii.gz")
    _bundled_model()
    from SpineAILib.images import VolumeImage
    from SpineAILib.io import load
    from SpineAILib.io.volumes import save_volume_file

    volume, labels = load(image), load(LUMBAR_DATA / f"{TEST_CASE}_labels.nii.gz")
    matrix = np.asarray(volume.ijk_to_ras, float)
    axis_ijk = int(np.argmax(np.abs(matrix[2, :3])))  # the voxel axis closest to superior-inferior
    axis_kji = 2 - axis_ijk
    l4 = np.argwhere(np.asarray(labels.voxels) == 23)[:, axis_kji]
    l5 = np.argwhere(np.asarray(labels.voxels) == 24)[:, axis_kji]
    downward = l5.mean() > l4.mean()  # voxel index grows toward inferior
    step = np.linalg.norm(matrix[:3, axis_ijk])
    keep = [slice(None)] * 3
    if downward:
        keep[axis_kji] = slice(0, int(l4.max() + 4.0 / step) + 1)  # ends 4 mm under L4: inside the L4/L5 disc
        origin = matrix[:3, 3]
    else:
        first = int(l4.min() - 4.0 / step)
        keep[axis_kji] = slice(first, None)
        origin = matrix[:3, 3] + matrix[:3, axis_ijk] * first
    cut = matrix.copy()
    cut[:3, 3] = origin
    save_volume_file(VolumeImage(voxels=np.ascontiguousarray(volume.voxels[tuple(keep)]), ijk_to_ras=cut,
                                 modality="MR"), tmp_path / "cut.nii.gz")  # fmt: skip
    done = subprocess.run([SPINEAI, "run", "lumbar-mri", str(tmp_path / "cut.nii.gz"), "--out", str(tmp_path / "out"),
                           "--device", "cpu"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    results = report["results"]
    assert results["lumbar_levels_found"] == ["L1", "L2", "L3", "L4"]  # named right without the junction in view
    assert results["not_visible_disc_levels"] == ["L4/L5", "L5/S1"] and results["estimated_disc_levels"] == []
    reasons = {d["level"]: d.get("reason") for d in results["disc_levels"]}
    why_no_s1 = "was not found" if _sacrum_installed() else "is not segmented by this model"
    assert reasons["L5/S1"] == f"L5 not found in the image (S1 {why_no_s1})"
    assert any(w.startswith("L5 and the sacrum are not in view") for w in report["warnings"]), report["warnings"]
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.markups import points_from_node
    from SpineAILib.scene.storage import load_node

    points = dict(points_from_node(load_node(SceneContext.headless(), tmp_path / "out" / "discs.mrk.json")))
    assert "L5/S1" not in points and set(points) <= set(DISC_LEVELS[:4])


@pytest.mark.realdata
def test_ct_is_refused(tmp_path):
    ct = require(SHARED_DATA / "ct_thoracolumbar" / "ct.nii.gz")
    _bundled_model()
    done = subprocess.run([SPINEAI, "run", "lumbar-mri", str(ct), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("spineai: error:")]
    assert len(errors) == 1 and "looks like a CT" in errors[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.realdata
def test_cervical_mri_has_no_lumbar_levels(tmp_path):
    cervical = require(SHARED_DATA / "mri_cervical" / "t2.nii.gz")
    _bundled_model()
    from SpineAILib.tasks import run_task

    report = run_task("lumbar-mri", cervical, tmp_path / "out", device="cpu")
    results = report["results"]
    assert results["message"] == "no lumbar levels found"
    assert results["lumbar_levels_found"] == [] and results["visible_disc_levels"] == []
    assert "levels" not in report["outputs"]  # no ROI file without a visible level
    assert (tmp_path / "out" / "vertebrae.seg.nrrd").is_file()
    assert results["severity"]["rows_assessed"] == 0  # nothing graded where no lumbar level is found
    assert "heatmap" not in report["outputs"]
