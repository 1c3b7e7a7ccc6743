"""Dataset export and import (SpineAILib.dataset): de-identification, the manifest, splits by
case, --add (refusal, idempotency, atomicity), the import round trip, one-line errors, and the
trainers' readers on an export. The sources carry planted identifiers (dataset_helpers)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, one_line_error
from dataset_helpers import (
    PLANTED, PLANTED_FOLDER, cine_run_folder, leaks, mri_run_folder, phantom_cine, planted_cine_dicom, planted_mri_series,
)  # fmt: skip

SPINEAI = str(Path(sys.executable).with_name("spineai"))


def hashes(root):
    from SpineAILib.dataset.manifest import sha256_file

    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Planted DICOM (an MR series and an ultrasound cine) and run folders made from them."""
    root = tmp_path_factory.mktemp("dataset-sources")
    old = os.environ.get("SPINEAI_DEID_KEY_FILE")
    os.environ["SPINEAI_DEID_KEY_FILE"] = str(root / "site.key")  # never the user's own key
    try:
        dicom, image, labels = planted_mri_series(root / PLANTED_FOLDER / "mri")
        mri_run = mri_run_folder(root / f"{PLANTED_FOLDER}-mri-run", dicom, image, labels)
        generated = phantom_cine()
        cine = generated.to_cine()
        cine_path = planted_cine_dicom(root / PLANTED_FOLDER / "cine.dcm", cine)
        boxes = {"csf": np.full((cine.n_frames, 4), np.nan, np.float32)}
        boxes["csf"][2] = (10, 20, 40, 35)  # whole pixels: what the annotation files keep
        masks = {"spinal_cord": generated.cord_masks, "csf": generated.csf_masks}
        cine_run = cine_run_folder(root / f"{PLANTED_FOLDER}-cine-run", cine_path, cine, generated.labels.astype(np.uint8),
                                   masks=masks, boxes=boxes)  # fmt: skip
        scene = root / f"{PLANTED_FOLDER}.mrb"
        shutil.copy(cine_run / "scene.mrb", scene)
        yield {"root": root, "mri_run": mri_run, "image": image, "labels": labels, "cine_run": cine_run, "cine": cine,
               "generated": generated, "scene": scene, "masks": masks, "boxes": boxes}  # fmt: skip
    finally:
        os.environ.pop("SPINEAI_DEID_KEY_FILE") if old is None else os.environ.__setitem__("SPINEAI_DEID_KEY_FILE", old)


@pytest.fixture(scope="module")
def exported(sources):
    from SpineAILib.dataset import export_dataset

    root = sources["root"]
    mri = export_dataset([sources["mri_run"]], "lumbar-mri", root / "out" / "mri")
    us = export_dataset([sources["cine_run"]], "lp-ultrasound", root / "out" / "us")
    return {"mri": (root / "out" / "mri", mri), "us": (root / "out" / "us", us)}


# -- de-identification ------------------------------------------------------------------------


def test_no_planted_identifier_in_any_exported_byte_or_name(sources, exported):
    # the grep can fail: the sources really carry every planted string
    found_in_sources = {needle for _, needle in leaks(sources["root"] / PLANTED_FOLDER)}
    assert {"Qwertyson^Planted", "PID-7741-XQ", "19470312", "ACC-99127-ZZ", "Kestrel Falls Infirmary", "19990421"} <= found_in_sources
    for folder, _ in exported.values():
        assert len(list(folder.rglob("*"))) > 4
        assert leaks(folder) == []
        assert not any(s in str(p) for p in folder.rglob("*") for s in ("Qwertyson", "PID-7741", "Planted"))


def test_an_mrb_scene_source_leaks_nothing(sources, tmp_path):
    from SpineAILib.dataset import export_dataset

    manifest = export_dataset([sources["scene"]], "lp-ultrasound", tmp_path / "ds")
    assert manifest["cases"][0]["masks"] == ["csf", "spinal_cord"] and manifest["cases"][0]["boxes"] == 1
    assert leaks(tmp_path / "ds") == []


def test_nifti_headers_and_pngs_carry_no_text(exported):
    import nibabel as nib

    folder, _ = exported["mri"]
    for path in folder.glob("*.nii.gz"):
        header = nib.load(str(path)).header
        assert header["descrip"].item() == b"" and header["db_name"].item() == b"" and header["aux_file"].item() == b""
        assert not nib.load(str(path)).header.extensions
    us, _ = exported["us"]
    for path in list(us.rglob("*.png"))[:5]:
        data, chunks, at = path.read_bytes(), [], 8
        while at < len(data):
            length = int.from_bytes(data[at : at + 4], "big")
            chunks.append(data[at + 4 : at + 8].decode())
            at += 12 + length
        assert set(chunks) <= {"IHDR", "IDAT", "IEND"}, chunks


def test_uids_are_keyed_pseudonyms_that_link_exports_of_one_site(sources, exported, tmp_path):
    from SpineAILib.dataset import export_dataset

    first = exported["mri"][1]["cases"][0]
    assert first["series_uid"].startswith("2.25.") and first["study_uid"].startswith("2.25.")
    assert PLANTED["SeriesInstanceUID"] not in json.dumps(exported["mri"][1])
    again = export_dataset([sources["mri_run"]], "lumbar-mri", tmp_path / "again")["cases"][0]
    assert (again["series_uid"], again["study_uid"], again["key"]) == (first["series_uid"], first["study_uid"], first["key"])
    (tmp_path / "other.key").write_text("ab" * 32)
    other = export_dataset([sources["mri_run"]], "lumbar-mri", tmp_path / "other", key_file=tmp_path / "other.key")
    assert other["cases"][0]["series_uid"] != first["series_uid"] and other["cases"][0]["key"] != first["key"]
    assert other["deidentification"]["key_fingerprint"] != exported["mri"][1]["deidentification"]["key_fingerprint"]
    assert oct((Path(os.environ["SPINEAI_DEID_KEY_FILE"])).stat().st_mode & 0o777) == "0o600"


# -- what the export holds ----------------------------------------------------------------------


def test_volume_export_holds_the_annotations_in_the_mri_lumbar_layout(sources, exported):
    from SpineAILib.io import load

    folder, manifest = exported["mri"]
    case = manifest["cases"][0]
    assert case["id"] == "case-0001" and case["labelled"] == [20, 21, 22, 23, 24]
    assert set(case["files"]) == {"case-0001.nii.gz", "case-0001_labels.nii.gz"}
    labels, image = load(folder / "case-0001_labels.nii.gz"), load(folder / "case-0001.nii.gz")
    np.testing.assert_array_equal(labels.voxels, sources["labels"].voxels)
    np.testing.assert_array_equal(image.voxels, sources["image"].voxels)
    np.testing.assert_allclose(image.ijk_to_ras, sources["image"].ijk_to_ras, atol=1e-4)
    discs = json.loads((folder / "discs.json").read_text())["cases"]["case-0001"]
    assert [d["label"] for d in discs] == ["L1/L2", "L2/L3", "L3/L4", "L4/L5"]
    ijk = np.linalg.inv(image.ijk_to_ras) @ np.append(discs[0]["ras"], 1.0)
    np.testing.assert_allclose(discs[0]["voxel"], ijk[:3], atol=0.01)
    boxes = json.loads((folder / "boxes.json").read_text())["boxes"]
    assert [b["label"] for b in boxes] == ["L1/L2", "L2/L3"]
    assert boxes[0]["ras"]["size"] == [40.0, 40.0, 20.0] and 0 <= boxes[0]["slices"][0] <= boxes[0]["slices"][1] < 24
    severity = (folder / "severity.csv").read_text().splitlines()
    assert severity == ["case,level,condition,grade,split", "case-0001,L1/L2,spinal_canal_stenosis,Normal/Mild,train",
                        "case-0001,L4/L5,spinal_canal_stenosis,Severe,train"]  # the row not assessed is left out


def test_cine_export_is_the_seeds_layout_with_masks_boxes_and_split(sources, exported):
    from SpineAITraining.ultrasound.dataset import load_seed_layout, splits_from_records

    folder, manifest = exported["us"]
    records = load_seed_layout(folder)
    assert [r.video_id for r in records] == ["case-0001"] and records[0].split == "train"
    np.testing.assert_array_equal(records[0].labels, sources["generated"].labels)
    np.testing.assert_allclose(records[0].times_ms, sources["cine"].frame_times_ms, atol=1e-3)
    assert splits_from_records(records) == {"train": ["case-0001"], "val": [], "test": []}
    masked = [i for i in range(6) if sources["masks"]["csf"][i].any() or sources["masks"]["spinal_cord"][i].any()]
    assert masked and [p is not None for p in records[0].csf_mask_paths] == [i in masked for i in range(6)]
    boxes = json.loads((folder / "boxes.json").read_text())["boxes"]
    assert boxes == [{"case": "case-0001", "label": "csf", "frame": 2, "frame_file": "frame_0003.png",
                      "pixel": [10.0, 20.0, 40.0, 35.0], "ras": boxes[0]["ras"]}]  # fmt: skip
    spacing = sources["cine"].pixel_spacing
    assert boxes[0]["ras"]["size"][:2] == pytest.approx([30 * spacing[1], 15 * spacing[0]], abs=1e-3)


# -- safety ---------------------------------------------------------------------------------------


def test_refuses_a_non_empty_folder_and_add_is_idempotent(sources, tmp_path):
    from SpineAILib.dataset import export_dataset
    from SpineAILib.errors import OutputError

    out = tmp_path / "ds"
    export_dataset([sources["cine_run"]], "lp-ultrasound", out, split="train=0.5,validation=0.5")
    before = hashes(out)
    message = one_line_error(export_dataset, [sources["cine_run"]], "lp-ultrasound", out, error=OutputError)
    assert "--add" in message and hashes(out) == before
    export_dataset([sources["cine_run"]], "lp-ultrasound", out, add=True)  # the same source again
    assert hashes(out) == before
    # a second case joins; the first keeps its files and its split
    manifest = export_dataset([sources["scene"], sources["cine_run"]], "lp-ultrasound", out, add=True)
    after = hashes(out)
    assert {k: v for k, v in after.items() if k.startswith("case-0001/")} == {k: v for k, v in before.items() if k.startswith("case-0001/")}
    assert [(c["id"], c["split"]) for c in manifest["cases"]] == [("case-0001", "train"), ("case-0002", "validation")]
    assert manifest["created"] == json.loads((tmp_path / "ds" / "dataset.json").read_text())["created"] and manifest["updated"]
    # the mrb and the run folder hold the same cine but not the same series (the mrb has no UID): two cases
    assert len({c["key"] for c in manifest["cases"]}) == 2


def test_add_refuses_a_dataset_made_under_another_key(sources, tmp_path):
    """The README: `--add` refuses a dataset made under another key - through the command line, exit 2,
    one line, and the dataset left byte for byte as it was."""
    import subprocess
    import sys

    from SpineAILib.dataset import export_dataset

    out = tmp_path / "ds"
    export_dataset([sources["cine_run"]], "lp-ultrasound", out)  # the site key (SPINEAI_DEID_KEY_FILE)
    before = hashes(out)
    (tmp_path / "other.key").write_text("cd" * 32)
    spineai = str(Path(sys.executable).with_name("spineai"))
    done = subprocess.run([spineai, "dataset", "export", str(sources["scene"]), "--task", "lp-ultrasound", "--out",
                           str(out), "--add", "--key-file", str(tmp_path / "other.key")],
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("spineai")]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "another de-identification key" in lines[0] and "use that key file" in lines[0], lines[0]
    assert hashes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "other.key"]  # no staging folder left behind


def test_a_failed_add_changes_nothing(sources, tmp_path):
    from SpineAILib.dataset import export_dataset

    out = tmp_path / "ds"
    export_dataset([sources["cine_run"]], "lp-ultrasound", out)
    before = hashes(out)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "report.json").write_text(json.dumps({"task": "lp-ultrasound", "input": {"path": str(tmp_path / "gone.dcm")}}))
    message = one_line_error(export_dataset, [sources["scene"], tmp_path / "broken"], "lp-ultrasound", out, add=True)
    assert "gone.dcm is gone" in message
    assert hashes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "ds"]  # no staging folder left behind


def test_one_line_errors(sources, exported, tmp_path):
    from SpineAILib.dataset import export_dataset, import_dataset

    assert "not a run folder" in one_line_error(export_dataset, [tmp_path], "lumbar-mri", tmp_path / "x")
    assert "holds lumbar-mri results" in one_line_error(export_dataset, [sources["mri_run"]], "lp-ultrasound", tmp_path / "x")
    assert "add up to 1" in one_line_error(export_dataset, [sources["mri_run"]], "lumbar-mri", tmp_path / "x", split="train=0.5")
    assert "holds a lp-ultrasound dataset" in one_line_error(
        export_dataset, [sources["mri_run"]], "lumbar-mri", exported["us"][0], add=True)
    assert "not a SpineAI dataset" in one_line_error(import_dataset, tmp_path)
    # the command line: exit code 2 and one line
    result = subprocess.run([SPINEAI, "dataset", "export", str(tmp_path / "nothing"), "--task", "lumbar-mri", "--out",
                             str(tmp_path / "y")], capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr


def test_an_altered_dataset_is_refused_on_import(exported, tmp_path):
    from SpineAILib.dataset import import_dataset

    copy = tmp_path / "copy"
    shutil.copytree(exported["mri"][0], copy)
    (copy / "case-0001_labels.nii.gz").write_bytes(b"\x1f\x8b" + b"0" * 50)
    assert "does not match its sha256" in one_line_error(import_dataset, copy, tmp_path / "cases")
    assert not (tmp_path / "cases").exists()


# -- import ---------------------------------------------------------------------------------------


def test_import_then_export_gives_the_same_dataset(exported, tmp_path):
    from SpineAILib.annotation.case import load_case
    from SpineAILib.dataset import export_dataset, import_dataset

    def same(a, b, task):
        first, second = hashes(a), hashes(b)
        for name in ("dataset.json",) + (("boxes.json",) if task == "lumbar-mri" else ()):
            first.pop(name), second.pop(name)
        assert second == first
        if task == "lumbar-mri":  # annotation files keep volume boxes in whole voxels: within a voxel
            one, two = (json.loads((f / "boxes.json").read_text())["boxes"] for f in (a, b))
            assert [x["label"] for x in one] == [x["label"] for x in two]
            for x, y in zip(one, two):
                np.testing.assert_allclose(x["voxel"]["min"], y["voxel"]["min"], atol=1.0)
                np.testing.assert_allclose(x["voxel"]["max"], y["voxel"]["max"], atol=1.0)

    for task, (folder, manifest) in (("lumbar-mri", exported["mri"]), ("lp-ultrasound", exported["us"])):
        cases = import_dataset(folder, tmp_path / f"{task}-cases")
        case = load_case(cases[0])
        assert case.task == task and Path(case.image["path"]).is_file()
        again = export_dataset(cases, task, tmp_path / f"{task}-again")
        same(folder, tmp_path / f"{task}-again", task)
        assert [c["key"] for c in again["cases"]] == [c["key"] for c in manifest["cases"]]
        # an edited case goes back into its own dataset as a replacement (its key travelled along)
        target = tmp_path / f"{task}-target"
        shutil.copytree(folder, target)
        replaced = export_dataset(cases, task, target, add=True)
        assert [c["id"] for c in replaced["cases"]] == ["case-0001"]
        same(folder, target, task)


def test_split_assignment_is_by_case_and_stable():
    from SpineAILib.dataset.deid import order_key
    from SpineAILib.dataset.manifest import assign_splits, parse_split

    fractions = parse_split("train=0.6,validation=0.2,test=0.2")
    first = assign_splits([], [f"k{i}" for i in range(10)], fractions, 0, order_key)
    assert sorted(first.values()).count("train") == 6 and list(first.values()).count("test") == 2
    assert assign_splits([], [f"k{i}" for i in reversed(range(10))], fractions, 0, order_key) == first  # source order
    more = assign_splits(list(first.values()), ["k10", "k11"], fractions, 0, order_key)
    assert set(more) == {"k10", "k11"}  # only the new cases get a part; the others keep theirs
    assert assign_splits([], ["a", "b", "c"], parse_split("train=0.7,validation=0.15,test=0.15"), 0, order_key).keys() == {"a", "b", "c"}
    assert sorted(assign_splits([], ["a", "b", "c"], parse_split(None) or {"train": .7, "validation": .15, "test": .15},
                                0, order_key).values()) == ["test", "train", "validation"]  # fmt: skip


def test_an_annotation_case_exports_its_labelled_frames_only_and_leaks_nothing(sources, tmp_path, monkeypatch):
    from SpineAILib.annotation.session import AnnotationSession
    from SpineAILib.dataset import export_dataset
    from SpineAILib.images import frame_ijk_to_ras

    monkeypatch.setenv("SPINEAI_USER", "Qwertyson")  # who edited is kept in the case, never exported
    cine_path = sources["root"] / PLANTED_FOLDER / "cine.dcm"
    case = tmp_path / f"{PLANTED_FOLDER}-case"
    centre = (frame_ijk_to_ras(sources["cine"].pixel_spacing) @ np.array([30.0, 40.0, 0.0, 1.0]))[:3]
    with AnnotationSession.open(case, image_path=cine_path, task="lp-ultrasound") as session:
        session.set_frame_labels(0, spinal_cord=1, csf=1)
        session.set_frame_labels(2, bad_quality=1)
        session.paint([centre], "spinal_cord", radius_mm=2.0, frame=1)
    manifest = export_dataset([case], "lp-ultrasound", tmp_path / "ds")
    rows = (tmp_path / "ds" / "labels.csv").read_text().splitlines()
    assert rows[1:] == ["case-0001,frame_0001.png,0.000,0,1,1,train", "case-0001,frame_0003.png,66.667,1,0,0,train"]
    assert len(list((tmp_path / "ds" / "case-0001").glob("frame_*.png"))) == 6  # the whole cine, for import
    assert sorted(p.name for p in (tmp_path / "ds" / "case-0001" / "masks").iterdir()) == ["frame_0002_cord.png", "frame_0002_csf.png"]
    assert manifest["cases"][0]["labelled_frames"] == 2
    assert leaks(tmp_path / "ds") == []


def test_cervical_ct_export_writes_the_fracture_table(tmp_path):
    from dataset_helpers import write_report

    from SpineAILib.dataset import export_dataset
    from SpineAILib.io.volumes import save_volume_file
    from SpineAILib.samples.spine_phantom import make_phantom
    from SpineAILib.scene import SceneContext, add_segmentation_from_labelmap, add_volume, save_node

    image, labels = make_phantom("CT", shape_kji=(24, 48, 48), spacing=(3.0, 3.0, 4.0))
    labels.voxels[labels.voxels > 0] -= 17  # L1..L5 (20..24) -> C3..C7, a stand-in cervical column
    run = tmp_path / "run"
    run.mkdir()
    path = save_volume_file(image, tmp_path / "ct.nii.gz")
    ctx = SceneContext.headless()
    segmentation = add_segmentation_from_labelmap(ctx, labels, reference_node=add_volume(ctx, image), closed_surface=False)
    save_node(segmentation, run / "vertebrae.seg.nrrd")
    table = ["vertebra\tpresent\tprobability\tcall"] + [f"C{i}\t1\t0.1\t{int(i == 5)}" for i in range(1, 8)]
    (run / "fractures.tsv").write_text("\n".join(table + ["patient_overall\t1\t0.6\t1"]) + "\n")
    write_report(run, "cervical-ct", path, {"segmentation": "vertebrae.seg.nrrd", "fractures": "fractures.tsv"})
    manifest = export_dataset([run], "cervical-ct", tmp_path / "ds", key_file=tmp_path / "k")
    assert (tmp_path / "ds" / "fractures.csv").read_text().splitlines() == [
        "case,patient_overall,C1,C2,C3,C4,C5,C6,C7,split", "case-0001,1,0,0,0,0,1,0,0,train"]
    assert manifest["cases"][0]["labelled"] == [int(v) for v in np.unique(labels.voxels) if v] and labels.voxels.max() <= 7
    assert set(manifest["cases"][0]["files"]) == {"case-0001.nii.gz", "case-0001_labels.nii.gz"}


def test_a_cervical_run_table_with_vertebrae_out_of_view_exports_only_the_calls_it_made(tmp_path):
    """The workflow's own words: "fracture" / "no fracture", and "not in view" for a vertebra it never saw,
    which must be neither a fracture nor a healthy vertebra in the export (an empty cell)."""
    from dataset_helpers import write_report

    from SpineAILib.dataset import export_dataset
    from SpineAILib.io.volumes import save_volume_file
    from SpineAILib.samples.spine_phantom import make_phantom
    from SpineAILib.scene import SceneContext, add_segmentation_from_labelmap, add_volume, save_node
    from SpineAILib.vocabulary import FRACTURE_CALL, NO_FRACTURE_CALL, NOT_IN_VIEW

    image, labels = make_phantom("CT", shape_kji=(24, 48, 48), spacing=(3.0, 3.0, 4.0))
    labels.voxels[labels.voxels > 0] -= 17  # L1..L5 (20..24) -> C3..C7
    run = tmp_path / "run"
    run.mkdir()
    path = save_volume_file(image, tmp_path / "ct.nii.gz")
    ctx = SceneContext.headless()
    segmentation = add_segmentation_from_labelmap(ctx, labels, reference_node=add_volume(ctx, image), closed_surface=False)
    save_node(segmentation, run / "vertebrae.seg.nrrd")
    calls = {1: NOT_IN_VIEW, 2: NOT_IN_VIEW, 5: FRACTURE_CALL}
    table = ["vertebra\tpresent\tprobability\tcall"] + [
        f"C{i}\t{int(i > 2)}\t{'' if i <= 2 else 0.1}\t{calls.get(i, NO_FRACTURE_CALL)}" for i in range(1, 8)]
    (run / "fractures.tsv").write_text("\n".join(table + [f"patient_overall\t1\t0.6\t{FRACTURE_CALL}"]) + "\n")
    write_report(run, "cervical-ct", path, {"segmentation": "vertebrae.seg.nrrd", "fractures": "fractures.tsv"})
    export_dataset([run], "cervical-ct", tmp_path / "ds", key_file=tmp_path / "k")
    header, row = (tmp_path / "ds" / "fractures.csv").read_text().splitlines()
    values = dict(zip(header.split(","), row.split(",")))
    assert (values["patient_overall"], values["C5"], values["C3"], values["C7"]) == ("1", "1", "0", "0"), values
    assert values["C1"] not in ("0", "1") and values["C2"] not in ("0", "1"), values  # no call made: no label
