"""Issue 17, rows 2, 9, 11: dataset.json is input (ids, file names and every field checked before
anything is read or deleted), and a run folder can be exported from anywhere later."""

import json
import os
import shutil

import numpy as np
import pytest
from hostile_files import assert_refused, cli, scene_bundle


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from SpineAILib.dataset import export_dataset

    root = tmp_path_factory.mktemp("dataset")
    scene = scene_bundle(root / "scene.mrb")
    export_dataset([scene], "lumbar-mri", root / "D", key_file=root / "key")
    return root


def edited(dataset, tmp_path, edit):
    """A copy of the dataset whose dataset.json ``edit(manifest)`` changed."""
    copy = tmp_path / "D"
    shutil.copytree(dataset / "D", copy)
    manifest = json.loads((copy / "dataset.json").read_text())
    edit(manifest)
    (copy / "dataset.json").write_text(json.dumps(manifest))
    return copy


def test_add_never_deletes_outside_the_dataset(dataset, tmp_path, capsys):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "thesis.docx").write_text("precious")

    def plant(manifest):
        manifest["cases"].append({"id": "../victim", "key": "x" * 32, "split": "train", "kind": "volume", "files": {}})

    copy = edited(dataset, tmp_path, plant)
    assert_refused(*cli(capsys, "dataset", "export", dataset / "scene.mrb", "--task", "lumbar-mri", "--out", copy,
                        "--add", "--key-file", dataset / "key"), "cases[1].id")  # fmt: skip
    assert (victim / "sub" / "thesis.docx").read_text() == "precious"


@pytest.mark.parametrize("case_id", ["ABSOLUTE", "../x", "case-0001/../../y"])
def test_import_never_writes_outside_out(dataset, tmp_path, capsys, case_id):
    absolute = tmp_path / "elsewhere" / "abs-case"

    def plant(manifest):
        manifest["cases"][0]["id"] = str(absolute) if case_id == "ABSOLUTE" else case_id

    copy = edited(dataset, tmp_path, plant)
    assert_refused(*cli(capsys, "dataset", "import", copy, "--out", tmp_path / "cases"), "id")
    assert not (tmp_path / "cases").exists() and not (tmp_path / "x").exists() and not os.path.exists(absolute.parent)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "case-0002.nii.gz", ".hidden/case-0001.nii.gz"])
def test_file_names_must_belong_to_their_case_inside_the_dataset(dataset, tmp_path, capsys, name):
    def plant(manifest):
        files = manifest["cases"][0]["files"]
        files[name] = files.pop("case-0001.nii.gz")

    copy = edited(dataset, tmp_path, plant)
    assert_refused(*cli(capsys, "dataset", "import", copy, "--out", tmp_path / "cases"), "files")


def test_a_linked_file_that_leaves_the_dataset_is_refused(dataset, tmp_path, capsys):
    copy = edited(dataset, tmp_path, lambda manifest: None)
    (copy / "case-0001_labels.nii.gz").unlink()
    (copy / "case-0001_labels.nii.gz").symlink_to("/etc/passwd")
    assert_refused(*cli(capsys, "dataset", "import", copy, "--out", tmp_path / "cases"), "outside the dataset")


@pytest.mark.parametrize("edit", [
    lambda m: m.pop("cases"),
    lambda m: m.update(cases={"case-0001": {}}),
    lambda m: m["cases"][0].pop("files"),
    lambda m: m["cases"][0].update(files=["case-0001.nii.gz"]),
    lambda m: m["cases"][0].update(split="everything"),
    lambda m: m["cases"][0].update(kind=None),
    lambda m: m.update(split={"fractions": {"train": "all"}, "seed": 0}),
    lambda m: m.update(split=None),
    lambda m: m.update(format_version="one"),
    lambda m: m.update(deidentification=[]),
    lambda m: m.update(task=["lumbar-mri"]),
    lambda m: m["cases"][0]["files"].update({"case-0001.nii.gz": 7}),
    lambda m: m["cases"].append(dict(m["cases"][0])),
])  # fmt: skip
def test_malformed_dataset_json_is_one_line(dataset, tmp_path, capsys, edit):
    copy = edited(dataset, tmp_path, edit)
    assert_refused(*cli(capsys, "dataset", "import", copy, "--out", tmp_path / "cases"), "dataset.json")
    assert_refused(*cli(capsys, "dataset", "export", dataset / "scene.mrb", "--task", "lumbar-mri", "--out", copy,
                        "--add", "--key-file", dataset / "key"))  # fmt: skip


def test_a_table_row_for_an_unknown_case_is_one_line(dataset, tmp_path, capsys):
    copy = edited(dataset, tmp_path, lambda manifest: None)
    (copy / "severity.csv").write_text("case,level,condition,grade,split\ncase-0099,L1/L2,x,Severe,train\n")
    assert_refused(*cli(capsys, "dataset", "export", dataset / "scene.mrb", "--task", "lumbar-mri", "--out", copy,
                        "--add", "--key-file", dataset / "key"), "case-0099")  # fmt: skip
    (copy / "boxes.json").write_text("[1, 2]")
    assert_refused(*cli(capsys, "dataset", "import", copy, "--out", tmp_path / "cases"), "boxes.json")


def test_the_untouched_dataset_still_imports(dataset, tmp_path, capsys):
    code, lines = cli(capsys, "dataset", "import", dataset / "D", "--out", tmp_path / "cases")
    assert code == 0, lines
    assert (tmp_path / "cases" / "case-0001" / "annotation.json").is_file()


def test_a_run_on_a_relative_path_exports_from_anywhere(tmp_path, capsys, monkeypatch):
    """Row 11: report.json names the input's absolute path."""
    from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_dicom

    monkeypatch.setenv("SPINEAI_HEATMAPS", "0")
    monkeypatch.setenv("SPINEAI_MASKS", "0")
    data = tmp_path / "data"
    data.mkdir()
    write_cine_dicom(make_cine_phantom(n_frames=3, rows=64, cols=80), data / "cine.dcm")
    monkeypatch.chdir(data)
    code, lines = cli(capsys, "run", "lp-ultrasound", "cine.dcm", "--out", tmp_path / "R")
    assert code == 0, lines
    report = json.loads((tmp_path / "R" / "report.json").read_text())
    assert report["input"]["path"] == str(data / "cine.dcm")
    monkeypatch.chdir(tmp_path)
    code, lines = cli(capsys, "dataset", "export", tmp_path / "R", "--task", "lp-ultrasound", "--out", tmp_path / "DS",
                      "--key-file", tmp_path / "key")  # fmt: skip
    assert code == 0, lines
    assert np.any([p.name.startswith("frame_") for p in (tmp_path / "DS" / "case-0001").iterdir()])
