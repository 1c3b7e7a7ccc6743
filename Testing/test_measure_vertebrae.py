"""``spineai measure``: a vertebra label map one already has, measured on its CT (SpineAILib.measure_vertebrae),
through the real command line: numbering said never guessed, grids matched exactly or refused, atomic output."""

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import require, one_line_error
from test_vertebral_bodies import _phantom

from SpineAILib.images import VolumeImage
from SpineAILib.measure_vertebrae import TOTALSEGMENTATOR_TO_VERSE, onto_ct_grid, to_verse
from SpineAILib.vertebral_bodies import measure_vertebral_bodies

SPINEAI = str(Path(sys.executable).with_name("spineai"))


def spineai(*args):
    return subprocess.run([SPINEAI, *map(str, args)], capture_output=True, text=True, timeout=300)


def save_nifti(image, path, voxels=None):
    """``image`` as NIfTI (voxels (K, J, I) -> (I, J, K))."""
    voxels = image.voxels if voxels is None else voxels
    nib.save(nib.Nifti1Image(np.ascontiguousarray(np.transpose(voxels, (2, 1, 0))), image.ijk_to_ras), str(path))
    return path


def refused(result):
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("spineai: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A T12-L1-L2 phantom (L1 a 30 % wedge) written as NIfTI: CT and VerSe label map."""
    folder = tmp_path_factory.mktemp("stack")
    ct, labels, _ = _phantom(middle=("wedge", 0.7))
    air = np.zeros(ct.voxels.shape, bool)
    air[:, :, :4] = True  # air beside the patient, as on any CT (the check for Hounsfield units looks for it)
    ct = VolumeImage(np.where(air & (labels.voxels == 0), -1000.0, ct.voxels).astype(np.float32), ct.ijk_to_ras,
                     modality="CT")  # fmt: skip
    return ct, labels, save_nifti(ct, folder / "ct.nii.gz"), save_nifti(labels, folder / "labels.nii.gz")


def test_the_command_writes_the_table_and_report_of_the_measurements(stack, tmp_path):
    ct, labels, ct_path, label_path = stack
    result = spineai("measure", ct_path, label_path, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    expected = {row["name"]: row for row in measure_vertebral_bodies(ct, labels)}
    lines = (tmp_path / "out" / "vertebrae.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    table = {cells[0]: dict(zip(header, cells)) for cells in (line.split("\t") for line in lines[1:])}
    assert list(table) == ["T12", "L1", "L2"]
    assert table["L1"]["genant_grade"] == str(expected["L1"]["genant_grade"]) == "2"
    assert float(table["L1"]["anterior_height_mm"]) == pytest.approx(expected["L1"]["anterior_height_mm"])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["input"]["numbering"] == "verse"
    assert report["bone_density"]["vertebra"] == "L1" and report["bone_density"]["flag"] == "indeterminate"
    assert "L1: heights A/M/P" in result.stdout and "Genant 2 (wedge)" in result.stdout
    assert "Pickhardt" in result.stdout.splitlines()[-1]


def test_a_label_map_in_another_axis_order_is_read_on_the_ct_grid(stack, tmp_path):
    ct, labels, ct_path, _ = stack
    # the same voxels written with i and k swapped and j reversed: another file layout, the same grid
    matrix = ct.ijk_to_ras.copy()
    k, j, i = labels.voxels.shape
    other = np.eye(4)
    other[:3, 0], other[:3, 1], other[:3, 2] = matrix[:3, 2], -matrix[:3, 1], matrix[:3, 0]
    other[:3, 3] = matrix[:3, 3] + (j - 1) * matrix[:3, 1]
    voxels = np.transpose(labels.voxels, (2, 1, 0))[:, ::-1, :]  # (I, J, K) -> index [i', j', k'] = [k, j-1-jj, i]
    relabelled = VolumeImage(np.ascontiguousarray(voxels), other, is_labelmap=True)
    back = onto_ct_grid(ct, relabelled)
    assert np.array_equal(back.voxels, labels.voxels)
    path = save_nifti(relabelled, tmp_path / "reordered.nii.gz")
    result = spineai("measure", ct_path, path, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr


def test_a_label_map_on_another_grid_or_not_a_label_map_is_refused_and_nothing_is_written(stack, tmp_path):
    ct, labels, ct_path, _ = stack
    shifted = labels.ijk_to_ras.copy()
    shifted[:3, 3] += 0.5 * np.diag(labels.ijk_to_ras)[:3]  # half a voxel off: no exact voxel correspondence
    path = save_nifti(VolumeImage(labels.voxels, shifted, is_labelmap=True), tmp_path / "shifted.nii.gz")
    assert "not on the CT's voxel grid" in refused(spineai("measure", ct_path, path, "--out", tmp_path / "a"))
    fractional = save_nifti(labels, tmp_path / "fractional.nii.gz", voxels=labels.voxels.astype(np.float32) * 0.5)
    assert "fractional" in refused(spineai("measure", ct_path, fractional, "--out", tmp_path / "b"))
    unknown = save_nifti(labels, tmp_path / "unknown.nii.gz", voxels=np.where(labels.voxels == 20, 40, labels.voxels))
    line = refused(spineai("measure", ct_path, unknown, "--out", tmp_path / "c"))
    assert "no VerSe vertebra number: 40" in line and "--numbering totalsegmentator" in line
    mri_like = save_nifti(ct, tmp_path / "mri.nii.gz", voxels=np.abs(ct.voxels) + 10.0)
    assert "Hounsfield" in refused(spineai("measure", mri_like, stack[3], "--out", tmp_path / "e"))
    empty = save_nifti(labels, tmp_path / "empty.nii.gz", voxels=np.zeros_like(labels.voxels))
    assert "no vertebra" in refused(spineai("measure", ct_path, empty, "--out", tmp_path / "d"))
    assert not any((tmp_path / name).exists() and any((tmp_path / name).iterdir()) for name in "abcde")


def test_totalsegmentator_numbering_names_every_vertebra_and_leaves_other_classes_out():
    assert {TOTALSEGMENTATOR_TO_VERSE[v] for v in range(26, 51)} == {*range(1, 25), 26}
    labels = np.array([[[0, 26, 27, 31, 32, 43, 44, 50, 5, 117]]], np.uint8)  # 5 (an organ) and 117 are no vertebra
    assert to_verse(labels, "totalsegmentator").tolist() == [[[0, 26, 24, 20, 19, 8, 7, 1, 0, 0]]]
    one_line_error(to_verse, np.array([[[118]]], np.int16), "totalsegmentator")


@pytest.mark.realdata
def test_the_real_ct_with_totalsegmentators_labels(shared_data, tmp_path):
    folder = require(shared_data / "ct_thoracolumbar")
    ct, labels = folder / "ct.nii.gz", require(folder / "ct_model_labels_totalsegmentator.nii.gz")
    line = refused(spineai("measure", ct, labels, "--out", tmp_path / "guessed"))  # TotalSegmentator numbers are no VerSe
    assert "--numbering totalsegmentator" in line
    result = spineai("measure", ct, labels, "--out", tmp_path / "out", "--numbering", "totalsegmentator")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = {row["name"]: row for row in report["vertebrae"]}
    assert list(rows) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    for name in ("L1", "L2", "L3", "L4", "L5"):
        assert rows[name]["genant_grade"] == 0 and 20 < rows[name]["posterior_height_mm"] < 35
    assert rows["T11"]["cut_by_field_of_view"]
    assert report["bone_density"]["flag"] in ("low", "indeterminate", "normal")
    assert report["bone_density"]["hu_mean"] == rows["L1"]["hu_mean"]


@pytest.mark.realdata
def test_the_real_dicom_series_with_labels_written_in_another_axis_order(shared_data, tmp_path):
    folder = require(shared_data / "ct_thoracolumbar")
    labels_path = require(folder / "dicom_series_model_labels_totalsegmentator.nii.gz")
    result = spineai("measure", folder / "dicom_series", labels_path, "--out", tmp_path / "out",
                     "--numbering", "totalsegmentator")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    source = np.asarray(nib.load(str(labels_path)).dataobj)
    voxel_ml = float(np.prod(nib.load(str(labels_path)).header.get_zooms()[:3])) / 1000.0
    rows = {row["name"]: row for row in report["vertebrae"]}
    assert set(rows) == {"T11", "T12"}  # the 20 slices hold the two, both cut by the field of view
    assert rows["T12"]["volume_ml"] == pytest.approx(float((source == 32).sum()) * voxel_ml, abs=0.01)
    assert all(row["cut_by_field_of_view"] for row in rows.values())
