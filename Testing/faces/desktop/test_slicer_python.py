"""The library code the desktop module calls, under each supported Slicer's Python with the
package versions that Slicer bundles (pydicom 2.4.4, numpy 1.26.4, its pillow) plus what the
dependency handler installs there: reading DICOM / NIfTI / cine, the report line, an
annotation case, a dataset export, the child-process protocol and the dependency check.

Needs no torch, no slicer-core and no trame, so it also runs in the small Slicer-like
environments ``./setup.sh`` makes (`.venv-slicer5.8`, `.venv-slicer5.10`; run by
``./test-slicer-pythons.sh``, which ``./test.sh`` calls). Under the main .venv it runs too.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "SpineAI"))  # as Slicer puts the module's folder on sys.path


def _volume(shape=(12, 20, 24)):
    from SpineAILib.images import VolumeImage

    voxels = np.zeros(shape, np.int16)
    voxels[3:9, 5:15, 6:18] = 500
    m = np.array([[-0.8, 0, 0, 10.0], [0, -0.8, 0, 20.0], [0, 0, 2.0, -30.0], [0, 0, 0, 1]])
    return VolumeImage(voxels=voxels, ijk_to_ras=m, modality="MR")


def test_supported_python():
    from SpineAILib.desktop.dependencies import MINIMUM_PYTHON

    assert sys.version_info[:2] >= MINIMUM_PYTHON


def test_dicom_series_round_trip(tmp_path):
    from SpineAILib.io import load
    from SpineAILib.samples.dicom_writer import write_dicom_series

    image = _volume()
    write_dicom_series(image, tmp_path / "ct")
    back = load(tmp_path / "ct")
    assert back.voxels.shape == image.voxels.shape
    assert np.array_equal(back.voxels, image.voxels)
    assert np.allclose(back.ijk_to_ras, image.ijk_to_ras, atol=1e-4)


def test_nifti_round_trip(tmp_path):
    import nibabel as nib

    from SpineAILib.io import load

    image = _volume()
    lps = image.voxels.transpose(2, 1, 0)  # nibabel is (i, j, k)
    nib.save(nib.Nifti1Image(lps, image.ijk_to_ras), str(tmp_path / "t2.nii.gz"))
    back = load(tmp_path / "t2.nii.gz")
    assert np.array_equal(back.voxels, image.voxels)
    assert np.allclose(back.ijk_to_ras, image.ijk_to_ras, atol=1e-5)


@pytest.mark.parametrize("colour", ["MONOCHROME2", "YBR_FULL_422"])
def test_dicom_cine_round_trip(tmp_path, colour):
    """Issue 19 #3: a DICOM cine reads with Slicer's pydicom 2.4.4 (pydicom.pixels is pydicom 3 only)."""
    from SpineAILib.io.cine import load_dicom_cine
    from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_dicom

    cine = make_cine_phantom(n_frames=4, rows=48, cols=64, color=colour != "MONOCHROME2")
    path = write_cine_dicom(cine, tmp_path / "us.dcm", color=colour) or tmp_path / "us.dcm"
    back = load_dicom_cine(path)
    assert back.frames.shape[:3] == (4, 48, 64)
    tolerance = 0 if colour == "MONOCHROME2" else 12  # YBR 4:2:2 subsampling
    want = cine.grey_frames() if back.frames.ndim == 3 else cine.frames
    assert np.abs(back.frames.astype(int) - want.astype(int)).mean() <= tolerance
    assert np.allclose(np.diff(back.frame_times_ms), 50.0)


def test_video_round_trip(tmp_path):
    from SpineAILib.io import load
    from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_video

    cine = make_cine_phantom(n_frames=5, rows=48, cols=64)
    write_cine_video(cine, tmp_path / "us.avi")
    back = load(tmp_path / "us.avi")
    assert back.frames.shape[0] == 5


def test_report_line(tmp_path):
    from SpineAILib.results import report_summary

    (tmp_path / "report.json").write_text(json.dumps({"task": "lumbar-mri", "results": {"message": "4 levels graded"},
                                                      "warnings": ["slices are thick"]}))
    line = report_summary(tmp_path)
    assert "4 levels graded" in line and "\n" not in line


def _case(tmp_path):
    import nibabel as nib

    from SpineAILib.annotation.session import AnnotationSession

    image = _volume()
    nib.save(nib.Nifti1Image(image.voxels.transpose(2, 1, 0), image.ijk_to_ras), str(tmp_path / "t2.nii.gz"))
    session = AnnotationSession.open(tmp_path / "case", image_path=tmp_path / "t2.nii.gz", task="lumbar-mri")
    centre = (session.case.ijk_to_ras @ [12, 10, 6, 1.0])[:3]
    session.paint([centre], "L4", 3.0)
    session.set_point("L4/L5", tuple(float(x) for x in centre))
    session.close()
    return tmp_path / "case", tmp_path / "t2.nii.gz"


def test_annotation_case_survives_reopening(tmp_path):
    from SpineAILib.annotation.session import AnnotationSession

    folder, image = _case(tmp_path)
    again = AnnotationSession.open(folder, image_path=image, task="lumbar-mri")
    assert "L4/L5" in again.case.points and (again.case.mask > 0).any()
    assert again.status()["edits"] >= 2
    again.close()


def test_dataset_export_of_a_case(tmp_path, monkeypatch):
    from SpineAILib.dataset.export import export_dataset

    monkeypatch.setenv("SPINEAI_DEID_KEY_FILE", str(tmp_path / "site.key"))
    folder, _image = _case(tmp_path)
    manifest = export_dataset([folder], "lumbar-mri", tmp_path / "dataset")
    assert len(manifest["cases"]) == 1
    assert (tmp_path / "dataset" / "case-0001_labels.nii.gz").is_file()


def test_child_protocol_runs_the_cli_in_this_python(tmp_path):
    """The one protocol (runtime.child): `spineai info` in a child of this Python; a failure is one line."""
    import nibabel as nib

    from SpineAILib.errors import SpineAIError
    from SpineAILib.runtime import child

    image = _volume()
    nib.save(nib.Nifti1Image(image.voxels.transpose(2, 1, 0), image.ijk_to_ras), str(tmp_path / "t2.nii.gz"))
    output = child.run(["info", tmp_path / "t2.nii.gz"])
    assert any("24" in line for line in output)
    with pytest.raises(SpineAIError) as caught:
        child.run(["info", tmp_path / "missing.nii.gz"])
    assert str(caught.value) and "\n" not in str(caught.value)


def test_dependency_check_accepts_slicers_own_packages():
    """Issue 19 #3/#6: the installed versions are checked; Slicer's pydicom and numpy pass as they are."""
    from SpineAILib.desktop import dependencies

    problems = {p.need.module for p in dependencies.check(dependencies.FILES)}
    assert not problems, problems
    steps = dependencies.plan(dependencies.check(dependencies.RUN))
    numpy = dependencies.installed_versions()["numpy"]
    assert f"numpy=={numpy}" in steps.constraints  # never upgraded under a running Slicer
