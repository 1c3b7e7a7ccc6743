"""The front ends' Export / Import dataset buttons (SpineAILib.dataset.actions), without a front end.

One small annotated cine case; the export and the import run as the real ``spineai`` command
line in a child process, as the web app and the desktop module run them.
"""

import json
import time

import numpy as np
import pytest
from conftest import one_line_error


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """An annotation case on a 6-frame cine: frame 2 labelled, a CSF stroke and a box on it."""
    from SpineAILib.images import frame_ijk_to_ras
    from SpineAILib.annotation.session import AnnotationSession
    from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_dicom

    root = tmp_path_factory.mktemp("actions")
    cine = make_cine_phantom(n_frames=6, rows=64, cols=80)
    path = write_cine_dicom(cine, root / "cine.dcm")
    folder = root / "work" / "case"
    with AnnotationSession.open(folder, image_path=path, task="lp-ultrasound", user="tester") as session:
        session.toggle_label(2, "csf")
        session.threshold("csf", 0.0, 60.0, frame=2)
        to_ras = frame_ijk_to_ras(cine.pixel_spacing)
        corners = [(to_ras @ [col, row, 0.0, 1.0])[:3] for col, row in ((10, 12), (40, 30))]
        session.set_box(corners[0], corners[1], "csf", frame=2)
    return folder


@pytest.fixture(autouse=True)
def site_key(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPINEAI_DEID_KEY_FILE", str(tmp_path_factory.getbasetemp() / "site.key"))


def test_default_folders_and_task(case):
    from SpineAILib.dataset import actions

    assert actions.default_dataset_folder(case) == case.parent / "dataset"
    assert actions.default_cases_folder(case.parent / "dataset") == case.parent / "dataset-cases"
    assert actions.case_task(case) == "lp-ultrasound"


def test_refusals_answer_at_once_in_one_line(case, tmp_path):
    from SpineAILib.dataset import actions
    from SpineAILib.errors import OutputError

    assert one_line_error(actions.export_plan, [], tmp_path / "d") == "no case to export: open a case first"
    assert one_line_error(actions.export_plan, [case], " ") == "choose the dataset folder to export to first"
    assert "is inside the case folder" in one_line_error(actions.export_plan, [case], case / "dataset")
    other = tmp_path / "mri-case"
    other.mkdir()
    (other / "annotation.json").write_text(json.dumps({"task": "lumbar-mri"}))
    message = one_line_error(actions.export_plan, [case, other], tmp_path / "d")
    assert message == "the cases are annotated for different tasks (case (lp-ultrasound), mri-case (lumbar-mri)); export one task at a time"
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("x")
    message = one_line_error(actions.export_plan, [case], full, error=OutputError)
    assert message == f"{full}: is not empty; choose a new folder, or tick 'add to existing' to add to the dataset in it"
    assert "not a SpineAI dataset" in one_line_error(actions.export_plan, [case], full, add=True)
    assert "not a SpineAI dataset" in one_line_error(actions.import_plan, full)
    assert one_line_error(actions.import_plan, "") == "choose the dataset folder to import first"


def test_export_import_round_trip_through_the_command_line(case, tmp_path):
    from PIL import Image
    from SpineAILib.annotation.case import load_case
    from SpineAILib.dataset import actions

    out = tmp_path / "dataset"
    seen = []
    t0 = time.monotonic()
    result = actions.export_cases([case], out, progress=lambda f, m: seen.append((f, m)))
    export_s = time.monotonic() - t0
    assert result.changed and result.message == f"exported 1 case to {out}: dataset.json lists 1 case (train 1)"
    assert seen and seen[-1][0] == 1.0 and 0.0 <= min(f for f, _ in seen)  # the CLI's progress lines came back
    annotated = load_case(case)
    mask = np.asarray(Image.open(out / "case-0001" / "masks" / "frame_0003_csf.png")) > 0
    assert mask.any() and np.array_equal(mask, annotated.mask_of(2)[0] == 2)
    boxes = json.loads((out / "boxes.json").read_text())["boxes"]
    assert [(b["label"], b["frame"], b["pixel"]) for b in boxes] == [("csf", 2, [float(v) for v in annotated.pixel_box(2, "csf")])]

    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = actions.export_cases([case], out, add=True)
    assert not again.changed and again.message == f"no change: {out} already holds this case as annotated now"
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    imported = actions.import_cases(out)
    cases = tmp_path / "dataset-cases"
    assert imported.message == f"imported 1 case into {cases}: open one to edit"
    assert imported.cases == [{"name": "case-0001", "split": "train", "path": str(cases / "case-0001")}]
    reopened = load_case(cases / "case-0001")
    assert np.array_equal(reopened.mask_of(2)[0] == 2, mask) and reopened.frame_labels(2)["csf"] == 1
    # The imported case's export goes back to its dataset; a second import lists it, writing nothing over edits.
    assert actions.default_dataset_folder(cases / "case-0001") == out
    edited = cases / "case-0001" / "frames.tsv"
    edited.write_text(edited.read_text() + "# an annotator's edit\n")
    listed = actions.import_cases(out)
    assert listed.cases == imported.cases and listed.message.startswith(f"1 case imported before into {cases}")
    assert edited.read_text().endswith("# an annotator's edit\n")
    print(f"export through the CLI {export_s:.1f} s")


def test_a_failure_in_the_child_comes_back_as_its_one_line_reason(tmp_path):
    from SpineAILib.dataset import actions
    from SpineAILib.errors import SpineAIError

    missing = tmp_path / "gone"
    message = one_line_error(actions.run_cli, ["dataset", "export", str(missing), "--task", "lp-ultrasound", "--out",
                                               str(tmp_path / "d")], error=SpineAIError)  # fmt: skip
    assert message == f"{missing}: no such file or folder"
    assert actions.parse_progress("[ 42.5%] reading case") == (0.425, "reading case")
    assert actions.error_reason(["x", "spineai: error: it broke"]) == "it broke"
