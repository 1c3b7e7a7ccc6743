"""cervical-ct: the grid and the naming, bad inputs, tiny training runs, the workflow end to end
on a generated phantom, a head and an abdominal CT (never named cervical), the real abdominal CT.

Phantoms come from SpineAITraining.rsna2022.phantom.make_case with seeds neither shipped
model was trained on (segmentation: 0-59, fracture: 10000-10159). The shipped bundles are
the ones SpineAI/Resources/Models.json names; tests that need them skip without them.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error, require

from SpineAILib.ct_checks import check_ct
from SpineAILib.ct_grid import Layout, ModelGrid, resample_linear, to_model_grid
from SpineAILib.vocabulary import CERVICAL_VERTEBRAE as CERVICAL
from SpineAILib.workflows.cervical import PATIENT_ROW
from SpineAILib.workflows.cervical.postprocess import MAX_NECK_WIDTH_MM, Vertebra, check_anatomy, name_column
from SpineAILib.images import VolumeImage

SPINEAI = str(Path(sys.executable).with_name("spineai"))
SPINEAI_TRAIN = str(Path(sys.executable).with_name("spineai-train"))
CLASS_NAMES = ("background", *CERVICAL, "T1")
UNSEEN_SEED = 90001  # outside both trainers' seed ranges


def _make_case(seed=UNSEEN_SEED, **options):
    phantom = pytest.importorskip("SpineAITraining.cervical.phantom")
    return phantom.make_case(seed, **options)


@pytest.fixture(scope="module")
def bundles():
    from SpineAILib.workflows.cervical.fracture import fracture_bundle_path
    from SpineAILib.models.bundle import load_bundle
    from SpineAILib.models.catalogue import default_bundle_path

    segmentation, fracture = default_bundle_path("cervical-ct"), fracture_bundle_path()
    if segmentation is None or fracture is None:
        pytest.skip("no cervical-ct bundles in SpineAI/Resources/Models.json")
    return load_bundle(segmentation, device="cpu"), load_bundle(fracture, device="cpu")


PHANTOM_SEED = 90014  # its C5 fracture is drawn as a compression: a fracture the shipped model is meant to see


@pytest.fixture(scope="module")
def phantom():
    """C1-T1 in view, C5 fractured (a compressed body), 0.9 x 0.9 x 1.25 mm axial."""
    case = _make_case(PHANTOM_SEED, levels=("C1", "C2", "C3", "C4", "C5", "C6", "C7", "T1"), fracture_levels=["C5"],
                      spacing=(0.9, 0.9, 1.25))  # fmt: skip
    assert [f["kind"] for f in case.meta["fractures"]] == ["compression"] and case.fractured["C5"] == 1
    return case


def _dice(a, b):
    return 2.0 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))


# -- grid ------------------------------------------------------------------------------------


def _rotation_z(degrees):
    t = np.radians(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


@pytest.mark.parametrize("case", ["axial", "sagittal", "flipped", "oblique"])
def test_layout_points_canonical_axes_inferior_posterior_left(case):
    directions = {"axial": np.diag([-1.0, -1.0, 1.0]), "sagittal": np.array([[0, 0, 1.0], [-1, 0, 0], [0, -1, 0]]),
                  "flipped": np.diag([1.0, 1.0, -1.0]), "oblique": _rotation_z(25) @ np.diag([-1.0, -1.0, 1.0])}[case]
    matrix = np.eye(4)
    matrix[:3, :3] = directions * np.array([0.7, 0.8, 2.5])
    matrix[:3, 3] = [10.0, -20.0, 30.0]
    voxels = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    layout = Layout.of(voxels.shape, matrix)
    view = layout.view(voxels)
    c = layout.canonical_to_ras
    assert c[2, 2] < 0 and c[1, 1] < 0 and c[0, 0] < 0, "axes 0, 1, 2 point inferior, posterior, left"
    # every canonical voxel is the input voxel at the same RAS point
    for index in [(0, 0, 0), (1, 2, 3), tuple(n - 1 for n in view.shape)]:
        ijk = np.linalg.solve(matrix, np.append(layout.ras(np.array(index, float)), 1.0))[:3]
        i, j, k = np.rint(ijk).astype(int)
        assert np.allclose(ijk, [i, j, k], atol=1e-6) and voxels[k, j, i] == view[index]
    assert (layout.obliquity_deg > 20) == (case == "oblique")


def test_resampling_keeps_linear_intensities_exactly():
    """Block averaging then linear interpolation reproduces a linear ramp at any grid: the
    model grid sits where the geometry says it does."""
    shape, spacing = (40, 50, 60), (0.5, 0.7, 1.1)
    k, j, i = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    ramp = (2.0 * k - 1.5 * j + 0.5 * i).astype(np.float32)
    matrix = np.diag([-spacing[2], -spacing[1], spacing[0], 1.0])  # axial-like: canonical == input order reversed in k
    layout = Layout.of(shape, matrix)
    grid = ModelGrid.of(layout, 2.0)
    resampled = to_model_grid(layout.view(ramp), grid)
    assert all(abs(s - 2.0) < 0.2 for s in grid.spacing)
    expected = resample_linear(layout.view(ramp), grid.positions(), antialias_step=(1, 1, 1))  # no averaging
    inner = tuple(slice(1, n - 1) for n in grid.shape)  # edge blocks are padded
    assert np.allclose(resampled[inner], expected[inner], atol=1e-3)
    # and the model grid's own matrix puts a voxel where the canonical index says
    m = grid.to_ras(layout)
    assert np.allclose(m @ [0, 0, 0, 1], np.append(layout.ras(np.array([grid.canonical_index(a, 0) for a in range(3)])), 1))


# -- naming --------------------------------------------------------------------------------


def _vertebra(row_mm, votes, volume=10.0, column=20.0):
    return Vertebra(index=np.array([0]), votes=np.array([0, *votes]), centre=np.array([row_mm / 2, column / 2, 30.0]),
                    centre_mm=np.array([row_mm, column, 60.0]), volume_ml=volume)  # fmt: skip


def test_vertebrae_are_named_as_one_unbroken_column():
    #              C1 C2 C3 C4 C5 C6 C7 T1 votes
    column = [_vertebra(10, [90, 5, 0, 0, 0, 0, 0, 0]), _vertebra(27, [5, 80, 5, 0, 0, 0, 0, 0]),
              _vertebra(44, [0, 0, 40, 45, 0, 0, 0, 0]),  # unsure: C3 or C4
              _vertebra(61, [0, 0, 0, 10, 70, 0, 0, 0]), _vertebra(78, [0, 0, 0, 0, 10, 70, 0, 0])]  # fmt: skip
    named = name_column(column, len(CLASS_NAMES))
    assert [CLASS_NAMES[v.name_index] for v in named] == ["C1", "C2", "C3", "C4", "C5"]
    # a missing vertebra (double gap) skips a name instead of shifting the ones below
    gap = [_vertebra(10, [90, 0, 0, 0, 0, 0, 0, 0]), _vertebra(27, [0, 90, 0, 0, 0, 0, 0, 0]),
           _vertebra(61, [0, 0, 0, 90, 0, 0, 0, 0])]  # fmt: skip
    assert [CLASS_NAMES[v.name_index] for v in name_column(gap, len(CLASS_NAMES))] == ["C1", "C2", "C4"]
    assert name_column([_vertebra(10, [90, 0, 0, 0, 0, 0, 0, 0])], len(CLASS_NAMES)) == [], "one is not a column"


def test_no_cervical_name_in_a_trunk_or_on_a_lumbar_sized_vertebra():
    hu = np.full((60, 40, 60), -1000.0, np.float32)
    hu[:, :, 2:58] = 40.0  # a body outline 56 voxels x 5 mm = 280 mm wide: a trunk
    spacing = (2.0, 2.0, 5.0)
    named = [_vertebra(20, [0, 0, 90, 0, 0, 0, 0, 0]), _vertebra(40, [0, 0, 0, 90, 0, 0, 0, 0])]
    for v, index in zip(named, (3, 4)):
        v.name_index = index
    kept, notes = check_anatomy(named, CLASS_NAMES, hu, spacing)
    assert kept == [] and all("trunk" in n for n in notes), notes
    hu[:, :, : 30 - int(MAX_NECK_WIDTH_MM / 5 / 2) + 2] = -1000.0  # a neck now
    hu[:, :, 30 + int(MAX_NECK_WIDTH_MM / 5 / 2) - 2 :] = -1000.0
    big = [_vertebra(20, [0, 0, 90, 0, 0, 0, 0, 0], volume=70.0), _vertebra(40, [0, 0, 0, 90, 0, 0, 0, 0])]
    for v, index in zip(big, (3, 4)):
        v.name_index = index
    kept, notes = check_anatomy(big, CLASS_NAMES, hu, spacing)
    assert [CLASS_NAMES[v.name_index] for v in kept] == ["C4"] and "too large" in notes[0]


# -- bad inputs (no model needed) -----------------------------------------------------------


def _volume(shape=(40, 64, 64), spacing=(0.8, 0.8, 1.0), value=-1000, modality="CT", **metadata):
    matrix = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    voxels = np.full(shape, value, np.int16)
    voxels[:, 16:48, 16:48] = 300
    return VolumeImage(voxels, matrix, modality=modality, metadata=metadata)


def test_input_checks():
    layout, warnings = check_ct(_volume())
    assert warnings == [] and layout.shape == (40, 64, 64)
    assert "MR" in one_line_error(check_ct, _volume(modality="MR"))
    assert "Hounsfield" in one_line_error(check_ct, _volume(value=0, modality=""))  # an MRI-like volume file
    assert "LOCALIZER" in one_line_error(check_ct, _volume(ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]))
    assert "scout" in one_line_error(check_ct, _volume(shape=(3, 256, 256)))  # three slices
    _, warnings = check_ct(_volume(shape=(12, 64, 64), spacing=(0.8, 0.8, 5.0)))
    assert len(warnings) == 1 and "5.0 mm apart" in warnings[0] and "less reliable" in warnings[0]


def _run_cli(*args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="2")
    return subprocess.run([SPINEAI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def _errors(done):
    """The error lines of a CLI run (its progress lines aside)."""
    return [line for line in done.stderr.strip().splitlines() if line.startswith("spineai:")]


@pytest.mark.realdata
def test_real_mri_is_refused_with_one_line(shared_data, tmp_path):
    mri = require(shared_data / "mri_cervical" / "t2.nii.gz")
    done = _run_cli("run", "cervical-ct", mri, "--out", tmp_path / "out")
    lines = _errors(done)
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "does not look like a CT" in lines[0] and not (tmp_path / "out").exists()


def test_a_1024x1024x1500_ct_is_refused_before_it_is_read(tmp_path):
    """3 GiB of int16: the reader refuses it from the header, without allocating (the data file is sparse)."""
    raw = tmp_path / "huge.raw"
    with open(raw, "wb") as stream:
        stream.truncate(1024 * 1024 * 1500 * 2)
    header = tmp_path / "huge.nhdr"
    header.write_text("NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 1024 1024 1500\n"
                      "space directions: (0.25,0,0) (0,0.25,0) (0,0,0.3)\nspace origin: (0,0,0)\nendian: little\n"
                      "encoding: raw\ndata file: huge.raw\n")  # fmt: skip
    done = _run_cli("run", "cervical-ct", header, "--out", tmp_path / "out")
    assert done.returncode == 2 and len(_errors(done)) == 1, done.stderr
    assert "1024x1024x1500" in done.stderr and "2.9 GiB" in done.stderr and "limit is 2 GiB" in done.stderr
    assert not (tmp_path / "out").exists()
    # "before it is read": the reader allocates nothing near the volume's size (tracemalloc sees numpy's buffers)
    import tracemalloc

    from SpineAILib.io import load

    tracemalloc.start()
    try:
        message = one_line_error(load, header)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "limit is 2 GiB" in message and peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB allocated while refusing"


# -- tiny training runs ---------------------------------------------------------------------


def _train(*args):
    env = dict(os.environ, OMP_NUM_THREADS="2")
    done = subprocess.run([SPINEAI_TRAIN, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_tiny_training_runs_write_bundles_that_load_and_resume(tmp_path):
    pytest.importorskip("SpineAITraining.cervical.phantom")
    from SpineAILib.models.bundle import load_bundle, read_metadata

    quick = ["--phantoms", "3", "--shape-limit", "48,56,56", "--cache", tmp_path / "cache", "--quiet"]
    seg = tmp_path / "seg"
    _train("cervical-ct", *quick, "--out", seg, "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1",
           "--channels", "8,16")  # fmt: skip
    meta = read_metadata(seg)
    assert "SYNTHETIC" in meta["training"]["data"] and meta["training"]["synthetic"]
    assert meta["training"]["split"]["method"] == "seeded shuffle by case"
    assert sorted(sum((meta["training"]["split"][p] for p in ("train", "validation", "test")), [])) == [
        "phantom-00000", "phantom-00001", "phantom-00002"]  # fmt: skip
    assert {"dice_cervical_mean_validation", "dice_cervical_mean_test"} <= {m["name"] for m in meta["metrics"]}
    assert load_bundle(seg, device="cpu").labels == list(CLASS_NAMES)
    first = meta["training"]["history"][0]
    # resume: epoch 1 is read back from the checkpoint, only epoch 2 trains
    _train("cervical-ct", *quick, "--out", seg, "--epochs", "2", "--steps-per-epoch", "1", "--batch-size", "1",
           "--channels", "8,16", "--resume", "--overwrite")  # fmt: skip
    history = read_metadata(seg)["training"]["history"]
    assert len(history) == 2 and history[0] == first

    fracture = tmp_path / "fracture"
    _train("cervical-fracture", *quick, "--fracture-rate", "1", "--first-seed", "0", "--masks", "truth", "--out", fracture, "--epochs", "1",
           "--batch-size", "2", "--width", "0.125", "--segmentation", seg, "--extra-phantoms", "1", "--extra-first-seed", "900")  # fmt: skip
    meta = read_metadata(fracture)
    assert meta["training"]["extra_training_phantoms"] == {"count": 1, "first_seed": 900, "fracture_rate": 1.0}
    assert "1 more phantoms for training only (seeds 00900-00900" in meta["training"]["data"]
    assert "phantom-00900" not in sum((meta["training"]["split"][p] for p in ("train", "validation", "test")), [])
    assert meta["task"] == "cervical-ct/fracture" and "SYNTHETIC" in meta["training"]["data"]
    assert meta["fracture"]["patient_rule"] in ("noisy_or", "max") and set(meta["thresholds"]) == {"vertebra"}
    names = {m["name"] for m in meta["metrics"]}
    assert {"rsna2022_score_test_crops", "rsna2022_score_prior_only_baseline_test", "rsna2022_score_test"} <= names


def test_training_reads_the_rsna2022_layout(tmp_path):
    """Both trainers on a small generated Kaggle folder (--data): studies with segmentations train the
    segmentation; every labelled study is cropped where a segmentation bundle finds its vertebrae."""
    pytest.importorskip("SpineAITraining.cervical.generator")
    from SpineAILib.models.bundle import read_metadata

    env = dict(os.environ, OMP_NUM_THREADS="2")
    subprocess.run([sys.executable, "-m", "SpineAITraining.cervical.generator", str(tmp_path / "rsna"), "--studies", "4",
                    "--seed", "5", "--segmentation-fraction", "1", "--fracture-rate", "1", "--max-shape", "64", "96", "96"],
                   check=True, capture_output=True, env=env, timeout=300)  # fmt: skip
    seg = tmp_path / "seg"
    _train("cervical-ct", "--data", tmp_path / "rsna", "--out", seg, "--epochs", "1", "--steps-per-epoch", "1",
           "--batch-size", "1", "--channels", "8,16", "--quiet")  # fmt: skip
    meta = read_metadata(seg)
    assert meta["training"]["synthetic"] and "RSNA 2022 layout" in meta["training"]["data"]
    assert len(meta["training"]["split"]["test"]) == 1 and all(i.startswith("1.2.") for i in meta["training"]["split"]["train"])
    from SpineAILib.models.catalogue import default_bundle_path

    shipped = default_bundle_path("cervical-ct")  # a one-step model finds no vertebra to crop
    if shipped is None:
        pytest.skip("no cervical-ct bundle to crop the studies with")
    fracture = tmp_path / "fracture"
    _train("cervical-fracture", "--data", tmp_path / "rsna", "--segmentation", shipped, "--out", fracture, "--epochs",
           "1", "--batch-size", "2", "--width", "0.125", "--quiet")  # fmt: skip
    meta = read_metadata(fracture)
    assert meta["training"]["crop_masks"] == "segmentation" and "rsna2022_score_test" in {m["name"] for m in meta["metrics"]}


# -- the shipped models ---------------------------------------------------------------------


def test_workflow_end_to_end_on_a_phantom(bundles, phantom, tmp_path):
    from SpineAILib.io.volumes import save_volume_file
    from SpineAILib.navigation import locate_row
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.storage import load_node, load_scene_mrb
    from SpineAILib.tasks import run_task

    path = tmp_path / "neck_ct.nii.gz"
    save_volume_file(phantom.ct, path)
    out = tmp_path / "run"
    report = run_task("cervical-ct", path, out, device="cpu")
    results = report["results"]
    assert results["cervical_levels_found"] == list(CERVICAL), results
    assert any("synthetic CT phantoms" in w for w in report["warnings"])
    for name in ("vertebrae.seg.nrrd", "fractures.tsv", "fracture_heatmap.nrrd", "scene.mrb", "overlay_sagittal.png",
                 "overlay_coronal.png", "overlay_3d.png", "report.json"):  # fmt: skip
        assert (out / name).is_file(), name

    # the segmentation: named segments with terminology, close to the phantom's labels
    ctx = SceneContext.headless()
    node = load_node(ctx, out / "vertebrae.seg.nrrd")
    segmentation = node.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert set(CERVICAL) <= set(names)
    assert "C5 vertebra" in segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("C5")).GetTerminology()
    from SpineAILib.io import load

    labels = load(out / "vertebrae.seg.nrrd").voxels
    truth = phantom.labels.voxels
    dice = {n: _dice(labels == v, truth == v) for v, n in enumerate(CERVICAL, start=1)}
    assert np.mean(list(dice.values())) > 0.65 and min(dice.values()) > 0.4, dice  # held-out mean: see the bundle

    # the fracture table: C1..C7 + patient_overall, a vertebra column the views can jump to
    with open(out / "fractures.tsv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream, delimiter="\t"))
    assert [r["vertebra"] for r in rows] == [*CERVICAL, PATIENT_ROW]
    assert all(r["present"] == "1" and 0.0 <= float(r["probability"]) <= 1.0 for r in rows)
    assert all(r["call"] in ("fracture", "no fracture") for r in rows)
    called = any(r["call"] == "fracture" for r in rows[:-1])
    assert (rows[-1]["call"] == "fracture") == called, "patient_overall: any vertebra called fractured"
    # the planted fracture is found: C5 (a compressed body) is the most likely vertebra, called, and so is the patient
    probability = {r["vertebra"]: float(r["probability"]) for r in rows}
    assert max(CERVICAL, key=probability.get) == "C5", probability
    assert rows[4]["vertebra"] == "C5" and rows[4]["call"] == "fracture" and rows[-1]["call"] == "fracture", rows
    assert probability["C5"] > 0.5 > np.median([probability[n] for n in CERVICAL if n != "C5"]), probability

    # the heat map: on the CT's grid, 0..1, hot only where crops were cut (around the vertebrae)
    heat = load(out / "fracture_heatmap.nrrd").voxels
    assert heat.shape == phantom.ct.voxels.shape and 0.0 <= heat.min() and 0.0 < heat.max() <= 1.0
    hot = np.argwhere(heat > 0)[:: max(1, int((heat > 0).sum()) // 20000)]
    ras = (np.c_[hot[:, ::-1], np.ones(len(hot))] @ phantom.ct.ijk_to_ras.T)[:, :3]
    centres = np.array([v["centre_ras"] for v in results["vertebrae"] if v["name"] in CERVICAL])
    reach = np.abs(ras[:, None, :] - centres[None]).max(axis=2).min(axis=1)  # to the nearest crop centre, per axis
    assert reach.max() <= 30.0 + 1.0, "heat outside the 60 mm crops"

    # scene.mrb reloads with the segmentation, the table and the heat map; a row jumps to its vertebra
    scene = SceneContext.headless()
    load_scene_mrb(scene, out / "scene.mrb")
    assert scene.nodes("vtkMRMLSegmentationNode") and scene.nodes("vtkMRMLTableNode")
    assert any("Grad-CAM" in n.GetName() for n in scene.nodes("vtkMRMLScalarVolumeNode"))
    kind, position = locate_row(scene, {"vertebra": "C5", "probability": rows[4]["probability"]})
    c5 = next(v for v in results["vertebrae"] if v["name"] == "C5")
    assert kind == "ras" and np.linalg.norm(np.subtract(position, c5["centre_ras"])) < 5.0


@pytest.mark.realdata
def test_real_abdominal_ct_gets_no_cervical_name(bundles, shared_data, tmp_path):
    """The TotalSegmentator abdominal CT (T11-S1 in view): a clean "no cervical vertebrae found"."""
    from SpineAILib.io import load
    from SpineAILib.io.volumes import load_volume_file
    from SpineAILib.tasks import run_task
    from SpineAILib.terminology import vertebra_name

    ct = require(shared_data / "ct_thoracolumbar" / "ct.nii.gz")
    report = run_task("cervical-ct", ct, tmp_path / "run", device="cpu")
    results = report["results"]
    assert results["cervical_levels_found"] == [] and results["message"] == "no cervical vertebrae found"
    rows = report["results"]["fractures"]["rows"]
    assert all(r["call"] == "not in view" for r in rows[:-1]) and rows[-1]["call"] == "not assessed"
    # Dice against TotalSegmentator's labels for whatever levels were named (none is the right answer here)
    truth = load_volume_file(require(shared_data / "ct_thoracolumbar" / "ct_model_labels_totalsegmentator.nii.gz"),
                             labelmap=True)
    found = {v["name"]: v["label"] for v in results["vertebrae"]}
    assert not set(found) & set(CERVICAL), found
    # any level it does name (T1 is the only non-cervical one it knows) must be where TotalSegmentator has a vertebra
    labels = load(tmp_path / "run" / "vertebrae.seg.nrrd").voxels if found else None
    verse_of_ts = {26: 26, 27: 24, 28: 23, 29: 22, 30: 21, 31: 20, 32: 19, 33: 18}  # TotalSegmentator -> VerSe
    for ts, verse in verse_of_ts.items():
        if vertebra_name(verse) in found:
            assert _dice(labels == verse, truth.voxels == ts) >= 0.5, vertebra_name(verse)
    for name, value in found.items():
        assert (truth.voxels[labels == value] > 0).mean() > 0.5, f"{name} named where no vertebra is"


def test_head_and_lumbar_phantoms_get_no_cervical_name(bundles):
    from SpineAILib.workflows.cervical.segment import segment
    from SpineAILib.samples.spine_phantom import make_phantom

    # a head: skull, brain, air around it (a head CT that stops above C1)
    shape, spacing = (120, 200, 170), 1.0
    k, j, i = np.meshgrid(*[np.arange(n) - n / 2 for n in shape], indexing="ij")
    r = (i / 72) ** 2 + (j / 92) ** 2 + (k / 62) ** 2
    voxels = np.where(r <= 1, np.where(r > 0.85, 1100, 35), -1000).astype(np.int16)
    head = VolumeImage(voxels, np.diag([-spacing, -spacing, spacing, 1.0]), modality="CT")
    lumbar, _ = make_phantom("CT", shape_kji=(100, 160, 160), spacing=(1.2, 1.2, 2.0))
    for image in (head, lumbar):
        result = segment(image, bundles[0])
        assert not [v for v in result.vertebrae if v["name"] in CERVICAL], (result.vertebrae, result.notes)


def test_flipped_and_oblique_geometry_give_the_same_vertebrae(bundles):
    """Negative spacing (an axis stored reversed) and a tilted matrix are read along the same
    canonical axes: the result is the same vertebrae on the input's own grid."""
    from SpineAILib.workflows.cervical.segment import segment

    case = _make_case(UNSEEN_SEED + 1, levels=("C2", "C3", "C4", "C5", "C6"), spacing=(1.0, 1.0, 2.0))
    reference = segment(case.ct, bundles[0]).labelmap.voxels
    flipped = case.ct.ijk_to_ras.copy()
    flipped[:3, 3] += flipped[:3, 0] * (case.ct.voxels.shape[2] - 1)
    flipped[:3, 0] *= -1  # I runs the other way: same anatomy, voxels stored reversed
    result = segment(VolumeImage(case.ct.voxels[:, :, ::-1].copy(), flipped, modality="CT"), bundles[0])
    assert np.array_equal(result.labelmap.voxels[:, :, ::-1], reference)
    tilted = case.ct.ijk_to_ras.copy()
    tilted[:3, :3] = _rotation_z(20) @ tilted[:3, :3]
    layout, warnings = check_ct(VolumeImage(case.ct.voxels, tilted, modality="CT"))
    assert any("tilted 20 degrees" in w for w in warnings)
    result = segment(VolumeImage(case.ct.voxels, tilted, modality="CT"), bundles[0], layout)
    assert np.array_equal(result.labelmap.voxels, reference)
    assert {v["name"] for v in result.vertebrae} >= {"C3", "C4", "C5"}


def test_thick_slices_run_with_a_warning(bundles, tmp_path):
    from SpineAILib.io.volumes import save_volume_file
    from SpineAILib.tasks import run_task

    case = _make_case(UNSEEN_SEED + 2, levels=("C1", "C2", "C3", "C4", "C5", "C6", "C7"), spacing=(0.9, 0.9, 5.0))
    save_volume_file(case.ct, tmp_path / "thick.nii.gz")
    report = run_task("cervical-ct", tmp_path / "thick.nii.gz", tmp_path / "run", device="cpu")
    assert any("5.0 mm apart" in w for w in report["warnings"])
    # coarse, but still the whole column, each level where the phantom has it
    assert report["results"]["cervical_levels_found"] == list(CERVICAL), report["results"]["message"]
    from SpineAILib.io import load

    labels, truth = load(tmp_path / "run" / "vertebrae.seg.nrrd").voxels, case.labels.voxels
    dice = {n: _dice(labels == v, truth == v) for v, n in enumerate(CERVICAL, start=1)}
    assert min(dice.values()) > 0.5, dice


def test_extra_training_phantoms_never_meet_the_main_cases():
    from types import SimpleNamespace

    from SpineAILib.errors import InputError
    from SpineAITraining.cervical.cases import phantom_ids
    from SpineAITraining.cervical.train_fracture import extra_source

    args = SimpleNamespace(extra_phantoms=3, extra_first_seed=10003, extra_fracture_rate=1.0, data=None, shape_limit=None)
    with pytest.raises(InputError, match="overlap"):
        extra_source(args, phantom_ids(5, 10000))
    args.extra_first_seed = 50000
    assert extra_source(args, phantom_ids(5, 10000))["ids"] == ["phantom-50000", "phantom-50001", "phantom-50002"]
    args.data = Path("rsna")
    with pytest.raises(InputError, match="phantom runs only"):
        extra_source(args, ["1.2.3"])
    args.data, args.extra_phantoms = None, 0
    assert extra_source(args, phantom_ids(5, 10000)) is None
