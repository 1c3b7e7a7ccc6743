"""The file browser never shows anything outside its roots; the workspace keeps runs and cases and
writes uploads safely; the input-fit check questions inputs that do not fit their task."""

import json
import os

import pytest

from SpineAILib.browse import OutsideRootsError, Roots
from SpineAILib.errors import InputError
from SpineAILib.workspace import Workspace, safe_name


def test_browser_stays_inside_its_roots(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.nii.gz").write_bytes(b"x")
    (root / "scan.nii.gz").write_bytes(b"x")
    (root / ".hidden").write_bytes(b"x")
    os.symlink(outside, root / "link-out")
    os.symlink(outside / "secret.nii.gz", root / "file-link-out")
    os.symlink(root / "sub", root / "link-in")
    roots = Roots([root])
    listing = roots.listing("")
    names = [f["name"] for f in listing["folders"] + listing["files"]]
    assert names == ["link-in", "sub", "scan.nii.gz"], names  # links out and hidden names are not listed
    assert listing["parent"] == ""  # nothing above the root
    for path in ("../outside", str(root / ".." / "outside"), "sub/../../outside", "/etc", str(outside),
                 str(root / "link-out"), str(root / "link-out" / "secret.nii.gz"), str(root / "file-link-out")):
        with pytest.raises(OutsideRootsError):
            roots.check(path)
    assert roots.check("link-in") == (root / "sub").resolve()
    with pytest.raises(InputError):
        roots.check("no-such-folder")


def test_browser_lists_a_dicom_series_and_a_study(tmp_path):
    from SpineAILib.samples.real import real_sample

    roots = Roots([real_sample("ct_abdomen_dicom").path.parent])
    listing = roots.listing("ct_abdomen_dicom")
    assert listing["dicom"] and listing["dicom_files"] == 20 and not listing["files"]
    assert listing["series"] == [{"index": 1, "modality": "CT", "description": "CT Body 3.0", "orientation": "axial",
                                  "slices": 20}]
    assert not listing["study"]


def test_workspace_runs_by_input_and_cases(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert ws.runs_by_input() == [] and not (tmp_path / "ws").exists()  # made only when written to
    for i, (task, source) in enumerate((("lumbar-mri", "/data/a.nii.gz"), ("cervical-ct", "/data/b"),
                                        ("lumbar-mri", "/data/a.nii.gz"))):
        run = ws.runs / f"{task}-{i}"
        run.mkdir(parents=True)
        (run / "report.json").write_text(json.dumps({"task": task, "input": {"path": source},
                                                     "results": {"message": f"m{i}"}, "warnings": ["w"]}))
    groups = {g["input"]: g for g in ws.runs_by_input()}
    assert set(groups) == {"/data/a.nii.gz", "/data/b"}
    assert len(groups["/data/a.nii.gz"]["runs"]) == 2 and groups["/data/a.nii.gz"]["name"] == "a.nii.gz"
    (ws.cases / "a").mkdir(parents=True)
    (ws.cases / "a" / "annotation.json").write_text(json.dumps({"task": "lumbar-mri"}))
    assert ws.case_folders() == [{"name": "a", "path": str(ws.cases / "a"), "task": "lumbar-mri"}]
    assert ws.new_run_folder("lumbar-mri").parent == ws.runs


def test_uploads_are_sanitised_atomic_and_limited(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..\\..\\x y.nii.gz") == "x_y.nii.gz"
    assert safe_name("...") == "upload"
    first = ws.save_upload("../scan.nii.gz", b"abc")
    second = ws.save_upload("scan.nii.gz", b"def")
    assert first == ws.uploads / "scan.nii.gz" and first.read_bytes() == b"abc"
    assert second == ws.uploads / "scan-2.nii.gz"  # an upload never replaces another
    with pytest.raises(InputError, match="more than"):
        ws.save_upload("big.nrrd", b"x" * 11, max_bytes=10)
    assert sorted(p.name for p in ws.uploads.iterdir()) == ["scan-2.nii.gz", "scan.nii.gz"]  # no partial file


def test_input_fit_questions_a_ct_without_a_neck(tmp_path):
    from SpineAILib import io
    from SpineAILib.samples.real import real_sample
    from SpineAILib.tasks.fit import concerns

    ct = io.load(real_sample("ct_abdomen.nii.gz").path)
    found = concerns("cervical-ct", ct)
    assert found and "no slice is neck-sized" in found[0], found
    assert concerns("lumbar-mri", io.load(real_sample("mri_t2_thoracolumbar.nii.gz").path)) == []


def test_input_fit_questions_a_cardiac_echo(shared_data):
    from SpineAILib import io
    from SpineAILib.samples.cine_phantom import make_cine_phantom
    from SpineAILib.tasks.fit import concerns

    echo = shared_data / "us_format" / "cine_echo_30frames_ybr.dcm"
    if not echo.exists():
        pytest.skip(f"{echo} is absent")
    found = concerns("lp-ultrasound", io.load(echo))
    assert any("mm deep" in line for line in found), found
    assert concerns("lp-ultrasound", make_cine_phantom(n_frames=4, seed=0)) == []


def test_a_study_folder_lists_its_series_and_loads_whole(tmp_path):
    """A study (one sub-folder per series): the browser lists every series; 'Load whole study' reads the
    series lumbar-mri finds its levels on, and the folder stays the input."""
    from SpineAILib.samples.mri_study import write_mri_study
    from SpineAILib.samples.spine_phantom import make_phantom
    from SpineAILib.web.logic.load_logic import STUDY, read

    mr, _ = make_phantom("MR", shape_kji=(12, 60, 50), spacing=(2.5, 2.5, 4.0), plane="sagittal", seed=1)
    write_mri_study(mr, tmp_path / "study")
    listing = Roots([tmp_path]).listing("study")
    assert listing["study"] and len(listing["series"]) == 3, listing["series"]
    assert {s["orientation"] for s in listing["series"]} == {"sagittal", "axial"}
    kind, image = read(tmp_path / "study", "auto", STUDY)
    assert kind == "image" and image.orientation == "sagittal" and image.modality == "MR"


def test_input_fit_questions_colour_doppler_as_the_run_screens_it():
    """The check before a run uses the screening's own colour measure: a Doppler phantom is questioned,
    the grey phantom and a grey cine with a navy UI bar (dark colour, not flow) are not."""
    import dataclasses

    import numpy as np

    from SpineAILib.samples.cine_phantom import make_cine_phantom
    from SpineAILib.tasks.fit import concerns

    grey = make_cine_phantom(n_frames=4, seed=0)
    rgb = np.repeat(np.asarray(grey.frames)[..., None], 3, axis=3).copy()
    navy = rgb.copy()
    navy[:, :12] = (20, 30, 90)  # a header bar in a dark colour
    assert concerns("lp-ultrasound", dataclasses.replace(grey, frames=navy)) == []
    doppler = rgb.copy()
    h, w = doppler.shape[1:3]
    doppler[:, h // 3 : h // 2, w // 3 : w // 2] = (230, 40, 30)  # a red flow patch in the middle
    found = concerns("lp-ultrasound", dataclasses.replace(grey, frames=doppler))
    assert any("colour Doppler" in line for line in found), found
