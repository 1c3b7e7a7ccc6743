"""The command line end to end: real files in, one-line errors out, nothing half-written."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import REPO, require

SPINEAI = [str(Path(sys.executable).with_name("spineai"))]


def spineai(*args, honour_permissions=False, timeout=120):
    cmd = SPINEAI + [str(a) for a in args]
    if honour_permissions and os.geteuid() == 0:
        # root ignores file modes; without these capabilities it obeys them like any user
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)  # the README: exit code 2
    # progress lines ("[ 0.0%] ...") may come first; the reason is exactly one line
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("[")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("spineai: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def phantom_ct(tmp_path_factory):
    from SpineAILib.samples.spine_phantom import make_phantom

    image, labels = make_phantom("CT", shape_kji=(24, 48, 48), spacing=(3.0, 3.0, 6.0))
    return image, labels


@pytest.fixture(scope="module")
def dicom_series(phantom_ct, tmp_path_factory):
    from SpineAILib.samples.dicom_writer import write_dicom_series

    folder = tmp_path_factory.mktemp("series") / "ct"
    write_dicom_series(phantom_ct[0], folder, modality="CT", series_description="Phantom CT")
    return folder


def test_help_answers_without_heavy_imports():
    code = "import sys; from SpineAILib import cli; cli.build_parser(); print(sorted(m for m in ('torch','monai','vtk','slicer') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    result = spineai("--help")
    assert result.returncode == 0 and "info" in result.stdout and "run" in result.stdout


def test_info_on_phantom_dicom_reports_geometry(dicom_series, phantom_ct):
    result = spineai("info", dicom_series, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["input_kind"] == "dicom-folder"
    (item,) = info["items"]
    assert item["modality"] == "CT" and item["orientation"] == "axial"
    assert item["dimensions"] == [48, 48, 24]
    np.testing.assert_allclose(item["ijk_to_ras"], phantom_ct[0].ijk_to_ras, atol=1e-3)
    text = spineai("info", dicom_series)
    assert text.returncode == 0 and "IJK->RAS" in text.stdout and "axial" in text.stdout


@pytest.mark.realdata
def test_info_on_real_ct_dicom(shared_data):
    folder = require(shared_data / "ct_thoracolumbar" / "dicom_series")
    result = spineai("info", folder, "--json")
    assert result.returncode == 0, result.stderr
    (item,) = json.loads(result.stdout)["items"]
    assert item["modality"] == "CT" and item["dimensions"] == [512, 512, 20]
    np.testing.assert_allclose(item["spacing"][:2], [0.977, 0.977], atol=1e-3)


@pytest.mark.realdata
def test_info_on_real_cine(shared_data):
    path = require(shared_data / "us_format" / "cine_echo_30frames_ybr.dcm")
    result = spineai("info", path, "--json")
    assert result.returncode == 0, result.stderr
    (item,) = json.loads(result.stdout)["items"]
    assert item["kind"] == "cine" and item["frames"] == 30
    assert abs(item["frame_time_ms"] - 33.33) < 0.1


@pytest.mark.realdata
def test_run_without_bundle_says_so_and_writes_nothing(shared_data, tmp_path):
    ct = require(shared_data / "ct_thoracolumbar" / "ct.nii.gz")
    out = tmp_path / "out"
    missing = tmp_path / "no-such-bundle"
    line = assert_one_line_error(spineai("run", "cervical-ct", ct, "--out", out, "--model", missing), "does not exist")
    assert not out.exists() and list(tmp_path.iterdir()) == [], line


@pytest.mark.realdata
def test_run_refuses_wrong_kind_of_input(shared_data, tmp_path):
    ct = require(shared_data / "ct_thoracolumbar" / "ct.nii.gz")
    assert_one_line_error(spineai("run", "lp-ultrasound", ct, "--out", tmp_path / "o"), "needs an ultrasound cine")
    cine = require(shared_data / "us_format" / "cine_echo_30frames_ybr.dcm")
    assert_one_line_error(spineai("run", "lumbar-mri", cine, "--out", tmp_path / "o"), "needs a 3-D volume")
    assert list(tmp_path.iterdir()) == []


# ---- the bad-input list of the platform issue -------------------------------------------


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(spineai("info", tmp_path / "empty"), "empty")


def test_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image\n")
    assert_one_line_error(spineai("info", path), "not a recognised image")


def test_corrupt_dicom_among_good_ones_still_loads_with_a_warning(dicom_series, tmp_path):
    folder = tmp_path / "ct"
    shutil.copytree(dicom_series, folder)
    victim = folder / "extra.dcm"  # a copy of a slice whose header was cut short
    victim.write_bytes(sorted(folder.iterdir())[5].read_bytes()[:400])
    result = spineai("info", folder, "--json")
    assert result.returncode == 0, result.stderr
    (item,) = json.loads(result.stdout)["items"]
    assert any(victim.name in w for w in item["warnings"]), item["warnings"]


def test_two_series_need_a_choice(dicom_series, phantom_ct, tmp_path):
    from SpineAILib.samples.dicom_writer import write_dicom_series

    folder = tmp_path / "study"
    shutil.copytree(dicom_series, folder / "a")
    write_dicom_series(phantom_ct[0], folder / "b", modality="CT", series_description="Second CT")
    info = spineai("info", folder, "--json")
    assert info.returncode == 0 and len(json.loads(info.stdout)["items"]) == 2
    assert_one_line_error(spineai("run", "cervical-ct", folder, "--out", tmp_path / "o"), "--series")
    # With a choice the input is accepted (and the run stops at the missing model).
    assert_one_line_error(
        spineai("run", "cervical-ct", folder, "--series", "2", "--out", tmp_path / "o", "--model", tmp_path / "none"),
        "does not exist",
    )


def test_missing_slice_is_refused(phantom_ct, tmp_path):
    from SpineAILib.samples.dicom_writer import write_dicom_series

    write_dicom_series(phantom_ct[0], tmp_path / "gap", drop_slices=[10])
    assert_one_line_error(spineai("info", tmp_path / "gap"), "missing slice")
    assert_one_line_error(spineai("run", "cervical-ct", tmp_path / "gap", "--out", tmp_path / "o"), "missing slice")
    assert not (tmp_path / "o").exists()


def test_4d_file_is_refused(tmp_path):
    path = tmp_path / "fmri.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 5), np.int16), np.eye(4)), path)
    assert_one_line_error(spineai("info", path), "4-D")


def test_nan_voxels_are_refused(tmp_path):
    data = np.zeros((8, 8, 8), np.float32)
    data[1, 2, 3] = np.nan
    data[2, 2, 2] = np.inf
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    assert_one_line_error(spineai("info", path), "2 NaN/inf")


def test_2gb_volume_is_refused_with_its_size(tmp_path):
    # A NRRD header that promises 2048 x 2048 x 300 float32 (4.7 GiB) over a tiny data file.
    (tmp_path / "huge.raw").write_bytes(b"\0" * 16)
    (tmp_path / "huge.nhdr").write_text(
        "NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 2048 2048 300\n"
        "space directions: (1,0,0) (0,1,0) (0,0,1)\nkinds: domain domain domain\nendian: little\n"
        "encoding: raw\nspace origin: (0,0,0)\ndata file: huge.raw\n\n"
    )
    assert_one_line_error(spineai("info", tmp_path / "huge.nhdr"), "GiB")


def test_path_without_permission(dicom_series):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    base = Path(tempfile.mkdtemp(prefix="spineai-perm-"))
    try:
        locked = base / "locked"
        shutil.copytree(dicom_series, locked)
        os.chmod(locked, 0o000)
        assert_one_line_error(spineai("info", locked, honour_permissions=True), "permission denied")
        out = base / "readonly"
        out.mkdir(mode=0o555)
        os.chmod(out, 0o555)
        assert_one_line_error(spineai("run", "cervical-ct", base, "--out", out / "new", honour_permissions=True), "permission denied")
    finally:
        os.chmod(base / "locked", 0o755)
        shutil.rmtree(base)


def test_existing_results_are_not_overwritten(dicom_series, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("earlier results")
    assert_one_line_error(spineai("run", "cervical-ct", dicom_series, "--out", out), "--force")
    assert (out / "report.json").read_text() == "earlier results"


def test_isolated_run_returns_the_cli_reason(dicom_series, tmp_path):
    """The web app's child-process runner hands back the CLI's one-line reason and progress."""
    from SpineAILib.errors import SpineAIError
    from SpineAILib.tasks import run_task_isolated

    seen = []
    with pytest.raises(SpineAIError) as caught:
        run_task_isolated("cervical-ct", dicom_series, tmp_path / "o", model=tmp_path / "none",
                          progress=lambda f, m: seen.append((f, m)))  # fmt: skip
    assert str(caught.value).startswith("model bundle") and "does not exist" in str(caught.value)
    assert seen and seen[0][0] == 0.0 and seen[0][1].startswith("reading")
    assert not (tmp_path / "o").exists()


# ---- README promises: `spineai models`, `--force` ----------------------------------------


def test_models_lists_every_catalogue_bundle_installed():
    catalogue = json.loads((REPO / "SpineAI" / "Resources" / "Models.json").read_text())
    result = spineai("models", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [m["bundle_id"] for m in listed] == [m["bundle_id"] for m in catalogue["models"]]
    assert len(listed) == 8
    for entry in listed:  # each on disk, with the version its metadata.json carries
        meta = json.loads((Path(entry["location"]) / "metadata.json").read_text())
        assert meta["bundle_id"] == entry["bundle_id"] and meta["version"] == entry["version"], entry
        assert meta["task"] == entry["task"]
    text = spineai("models")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert len(lines) == len(listed)
    for entry, line in zip(listed, lines):
        assert line.split()[:3] == [entry["task"], entry["bundle_id"], entry["version"]], line


def test_force_replaces_earlier_results_through_the_cli(tmp_path):
    """Without --force a results folder is refused (exit 2, untouched); with it the run replaces it whole."""
    from PIL import Image

    from SpineAILib.samples.cine_phantom import make_cine_phantom

    frame = tmp_path / "frame.png"
    Image.fromarray(np.asarray(make_cine_phantom(n_frames=1, seed=2).frames[0])).save(frame)
    out = tmp_path / "out"
    first = spineai("run", "lp-ultrasound", frame, "--out", out, "--device", "cpu", timeout=300)
    assert first.returncode == 0, first.stderr
    (out / "my-notes.txt").write_text("written after the run")
    earlier = (out / "report.json").read_bytes()
    line = assert_one_line_error(spineai("run", "lp-ultrasound", frame, "--out", out, "--device", "cpu"), "--force")
    assert (out / "my-notes.txt").exists() and (out / "report.json").read_bytes() == earlier, line
    forced = spineai("run", "lp-ultrasound", frame, "--out", out, "--device", "cpu", "--force", timeout=300)
    assert forced.returncode == 0, forced.stderr
    assert not (out / "my-notes.txt").exists()  # the folder was replaced, not merged into
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "lp-ultrasound" and (out / "frames.tsv").is_file()
    assert (out / "report.json").read_bytes() != earlier  # a new report (its timings and time stamps)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or old folder left
