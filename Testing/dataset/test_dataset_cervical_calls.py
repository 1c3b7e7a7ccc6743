"""Exporting cervical-ct runs whose fracture table holds rows without a call (issue 13).

A run that found no cervical vertebra writes every row "not in view" (patient "not assessed"):
its scene and its folder must export (the image, and a fractures.csv row of empty cells: no
call, so no label), because that is the case an annotator wants to correct. A crafted value in
the call column is still refused with one line and exit 2. Real parts only: the real task on the
real CT, and scenes built with the same scene calls the workflow uses."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require

SPINEAI = str(Path(sys.executable).with_name("spineai"))
EMPTY_ROW = {"patient_overall": "", **{f"C{i}": "" for i in range(1, 8)}}


def spineai(*args):
    return subprocess.run([SPINEAI, *map(str, args)], capture_output=True, text=True, timeout=300)


def export(source, out, key):
    return spineai("dataset", "export", source, "--task", "cervical-ct", "--out", out, "--key-file", key)


def fracture_rows(dataset):
    with open(Path(dataset) / "fractures.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def assert_refused(result, *fragments):
    """Exit 2, nothing but one line on stderr after the progress lines, naming the problem."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if not line.startswith("[")]
    assert len(errors) == 1 and errors[0].startswith("spineai: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def empty_run(shared_data, tmp_path_factory):
    """The real cervical-ct task on the real abdominal CT: no cervical vertebra in it."""
    ct = require(shared_data / "ct_thoracolumbar" / "ct.nii.gz")
    run = tmp_path_factory.mktemp("cervical-empty-run") / "run"
    result = spineai("run", "cervical-ct", ct, "--out", run)
    assert result.returncode == 0, result.stderr
    return run


@pytest.mark.realdata
def test_a_real_run_that_found_no_cervical_vertebra_exports_its_scene_without_labels(empty_run, tmp_path):
    from SpineAILib.annotation.case import load_case
    from SpineAILib.dataset import import_dataset

    with open(empty_run / "fractures.tsv", newline="", encoding="utf-8") as f:
        calls = {r["vertebra"]: r["call"] for r in csv.DictReader(f, delimiter="\t")}
    assert calls == {**{f"C{i}": "not in view" for i in range(1, 8)}, "patient_overall": "not assessed"}  # the bug's input

    result = export(empty_run / "scene.mrb", tmp_path / "ds", tmp_path / "k")
    assert result.returncode == 0, result.stderr
    rows = fracture_rows(tmp_path / "ds")
    assert [{k: r[k] for k in EMPTY_ROW} for r in rows] == [EMPTY_ROW]  # no call: no label, never 0 or 1
    assert rows[0]["case"] == "case-0001"
    assert (tmp_path / "ds" / "case-0001.nii.gz").is_file()
    assert not (tmp_path / "ds" / "case-0001_labels.nii.gz").exists()  # the run segmented nothing

    # ... and it comes back as a case to annotate, with no fracture marked
    (folder,) = import_dataset(tmp_path / "ds", tmp_path / "cases")
    case = load_case(folder)
    assert case.task == "cervical-ct" and case.fractures == {}


@pytest.mark.realdata
def test_the_same_real_run_folder_exports_the_same_fracture_row(empty_run, tmp_path):
    result = export(empty_run, tmp_path / "ds", tmp_path / "k")
    assert result.returncode == 0, result.stderr
    assert [{k: r[k] for k in EMPTY_ROW} for r in fracture_rows(tmp_path / "ds")] == [EMPTY_ROW]


@pytest.mark.realdata
@pytest.mark.parametrize("value", ["maybe", "not in vieww", "2", "nan"])
def test_a_crafted_call_in_a_real_run_folder_is_refused_with_one_line(empty_run, tmp_path, value):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(empty_run, run)
    table = (run / "fractures.tsv").read_text(encoding="utf-8").replace("\tnot in view\t", f"\t{value}\t", 1)
    (run / "fractures.tsv").write_text(table, encoding="utf-8")
    assert_refused(export(run, tmp_path / "ds", tmp_path / "k"), "fractures.tsv C1", repr(value))
    assert not (tmp_path / "ds").exists()


# -- scenes built the way the workflow builds them (no real data needed) ---------------------------


def cervical_scene(path, calls):
    """A CT and a "Fractures" table with the workflow's columns; ``calls``: {row name: call}."""
    from SpineAILib.samples.spine_phantom import make_phantom
    from SpineAILib.scene import SceneContext, add_table, add_volume
    from SpineAILib.scene.storage import save_scene_mrb
    from SpineAILib.vocabulary import FRACTURE_CALL
    from SpineAILib.workflows.cervical.workflow import TABLE_COLUMNS

    image, _ = make_phantom("CT", shape_kji=(16, 32, 32), spacing=(3.0, 3.0, 4.0))
    ctx = SceneContext.headless()
    add_volume(ctx, image, name="ct")
    rows = []
    for name, call in calls.items():
        seen = call not in ("not in view", "not assessed")
        rows.append({"vertebra": name, "present": int(seen), "probability": 0.9 if call == FRACTURE_CALL else None,
                     "call": call, "threshold": 0.28, "volume_ml": None, "reason": "", "row_id": f"x_{name}"})
    add_table(ctx, "Fractures", {c: [r[c] for r in rows] for c in TABLE_COLUMNS})
    save_scene_mrb(ctx, path)
    return path


NONE_FOUND = {**{f"C{i}": "not in view" for i in range(1, 8)}, "patient_overall": "not assessed"}


def test_a_scene_with_every_vertebra_out_of_view_exports_empty_cells(tmp_path):
    scene = cervical_scene(tmp_path / "scene.mrb", NONE_FOUND)
    result = export(scene, tmp_path / "ds", tmp_path / "k")
    assert result.returncode == 0, result.stderr
    assert [{k: r[k] for k in EMPTY_ROW} for r in fracture_rows(tmp_path / "ds")] == [EMPTY_ROW]


def test_a_scene_with_some_vertebrae_out_of_view_keeps_only_the_calls_made(tmp_path):
    calls = {**NONE_FOUND, "C5": "fracture", "C6": "no fracture", "C7": "no fracture", "patient_overall": "fracture"}
    result = export(cervical_scene(tmp_path / "scene.mrb", calls), tmp_path / "ds", tmp_path / "k")
    assert result.returncode == 0, result.stderr
    (row,) = fracture_rows(tmp_path / "ds")
    assert {k: row[k] for k in EMPTY_ROW} == {**EMPTY_ROW, "C5": "1", "C6": "0", "C7": "0", "patient_overall": "1"}


def test_an_unassessed_patient_is_not_made_negative_by_partial_calls(tmp_path):
    calls = {**NONE_FOUND, "C6": "no fracture", "C7": "no fracture"}  # patient "not assessed"
    result = export(cervical_scene(tmp_path / "scene.mrb", calls), tmp_path / "ds", tmp_path / "k")
    assert result.returncode == 0, result.stderr
    (row,) = fracture_rows(tmp_path / "ds")
    assert (row["patient_overall"], row["C6"], row["C1"]) == ("", "0", "")  # unknown is not negative


@pytest.mark.parametrize("calls, fragments", [
    ({**NONE_FOUND, "C3": "maybe"}, ("table C3", "'maybe'")),
    ({**NONE_FOUND, "C3": "fracture; rm -rf /\nsecond line"}, ("table C3",)),
    ({"C9": "fracture", **NONE_FOUND}, ("'C9'", "not one of")),
    ({"x" * 500: "fracture"}, ("not one of",)),
], ids=["maybe", "newline", "unknown-vertebra", "long-name"])  # fmt: skip
def test_a_crafted_scene_table_is_refused_with_one_line(tmp_path, calls, fragments):
    scene = cervical_scene(tmp_path / "scene.mrb", calls)
    line = assert_refused(export(scene, tmp_path / "ds", tmp_path / "k"), "scene.mrb", *fragments)
    assert len(line) < 400
    assert not (tmp_path / "ds").exists()
