"""``spineai dataset import``: a dataset's cases back as case folders to open and edit again.

Each case becomes a folder shaped like a run's output (``report.json`` naming the image
beside it, and the results under the names ``spineai run`` uses), so the web app, the
desktop module and the annotation session open it like any run, and ``spineai dataset
export --add`` takes it back into the same dataset: its report.json carries the case's
dataset key, so the re-export replaces the case instead of adding a copy.

    cine:   image.seq.nrrd, frames.tsv (labels), scene.mrb (cine, mask and box sequences)
    volume: image.nii.gz, vertebrae.seg.nrrd, discs.mrk.json, boxes.mrk.json, severity.tsv, fractures.tsv
"""

import csv
import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..outputs import staged_output_folder
from .cases import CERVICAL, MASK_SUFFIX, US_LABELS
from .layout import BOXES_FILE, DISCS_FILE, FRACTURES_TABLE, LABELS_TABLE, SEVERITY_TABLE
from .manifest import read_manifest, sha256_file


def import_dataset(dataset_dir, out_dir=None, progress=None):
    """Write one case folder per case of ``dataset_dir`` into ``out_dir``; returns their paths."""
    dataset_dir = Path(dataset_dir)
    manifest = read_manifest(dataset_dir)
    _verify(dataset_dir, manifest)
    out_dir = Path(out_dir) if out_dir else dataset_dir.with_name(dataset_dir.name + "-cases")
    progress = progress or (lambda fraction, message: None)
    tables = _tables(dataset_dir, manifest["task"])
    with staged_output_folder(out_dir) as staging:
        for n, case in enumerate(manifest["cases"]):
            progress(n / max(1, len(manifest["cases"])), f"importing {case['id']}")
            folder = staging / case["id"]
            folder.mkdir()
            if case["kind"] == "cine":
                outputs = _cine_case(dataset_dir, case, tables, folder)
                image = "image.seq.nrrd"
            else:
                outputs = _volume_case(dataset_dir, case, tables, folder, manifest["task"])
                image = "image.nii.gz"
            report = {
                "task": manifest["task"],
                "input": {"path": str((out_dir / case["id"] / image).absolute()), "kind": case["kind"]},
                "outputs": outputs,
                "results": {"message": "imported from a SpineAI dataset for editing"},
                "dataset": {"case": case["id"], "key": case["key"], "split": case["split"],
                            "key_fingerprint": manifest["deidentification"]["key_fingerprint"],
                            "study_uid": case.get("study_uid"), "series_uid": case.get("series_uid")},
                "warnings": [],
            }  # fmt: skip
            (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    progress(1.0, f"{len(manifest['cases'])} cases written to {out_dir}")
    return [out_dir / case["id"] for case in manifest["cases"]]


def _verify(root, manifest):
    """Every listed file present with its checksum: an altered dataset is refused, not half-read."""
    for case in manifest["cases"]:
        for relative, digest in case["files"].items():
            path = root / relative
            if not path.is_file():
                raise InputError(f"{root}: {relative} is listed in dataset.json but missing")
            if sha256_file(path) != digest:
                raise InputError(f"{root}: {relative} does not match its sha256 in dataset.json (changed after export)")
    for name, digest in manifest.get("files", {}).items():
        if not (root / name).is_file() or sha256_file(root / name) != digest:
            raise InputError(f"{root}: {name} is missing or does not match its sha256 in dataset.json")


def _tables(root, task):
    from .layout import read_shared_rows

    return read_shared_rows(root, task)


def _rows_of(tables, name, case_id):
    return [r for r in tables.get(name, []) if (r.get("case") or r.get("video")) == case_id]


def _read_png(path, grey=False):
    import cv2

    image = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"{path}: not a readable PNG")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def _cine_case(root, case, tables, folder):
    from ..images import Cine
    from ..scene.cine_overlays import add_box_sequences, add_mask_sequence
    from ..scene.context import SceneContext
    from ..scene.sequences import add_cine
    from ..scene.storage import save_node, save_scene_mrb
    from ..scene.tables import add_table

    rows = _rows_of(tables, LABELS_TABLE, case["id"])
    n = case["frames"]
    if len(rows) != n:
        raise InputError(f"{root}: labels.csv has {len(rows)} rows for {case['id']}, which has {n} frames")
    frames = np.stack([_read_png(root / case["id"] / r["frame_file"]) for r in rows])
    times = np.array([float(r["time_ms"]) for r in rows])
    cine = Cine(frames=frames, frame_times_ms=times, pixel_spacing=tuple(case["pixel_spacing"]), description=case["id"])
    labels = np.array([[int(r[k]) for k in US_LABELS] for r in rows], np.uint8)
    ctx = SceneContext.headless()
    sequence, browser, _ = add_cine(ctx, cine, case["id"])
    save_node(sequence, folder / "image.seq.nrrd")
    columns = {"frame": list(range(n)), "time_ms": [round(float(t), 4) for t in times],
               **{f"p_{k}": [float(v) for v in labels[:, j]] for j, k in enumerate(US_LABELS)},
               **{k: [int(v) for v in labels[:, j]] for j, k in enumerate(US_LABELS)}}  # fmt: skip
    table = add_table(ctx, "frames", columns)
    save_node(table, folder / "frames.tsv")
    masks = {}
    for structure, suffix in MASK_SUFFIX.items():
        paths = [root / case["id"] / "masks" / f"{Path(r['frame_file']).stem}_{suffix}.png" for r in rows]
        if any(p.is_file() for p in paths):
            masks[structure] = np.stack([_read_png(p) > 0 if p.is_file() else np.zeros(cine.frame_shape, bool) for p in paths])
    if masks:
        add_mask_sequence(ctx, browser, masks)
    boxes = {}
    for box in _rows_of(tables, BOXES_FILE, case["id"]):
        array = boxes.setdefault(box["label"], np.full((n, 4), np.nan, np.float32))
        array[int(box["frame"])] = box["pixel"]
    if boxes:
        add_box_sequences(ctx, browser, boxes)
    save_scene_mrb(ctx, folder / "scene.mrb")
    return {"image": "image.seq.nrrd", "table": "frames.tsv", "scene": "scene.mrb"}


def _volume_case(root, case, tables, folder, task):
    from ..io import load
    from ..scene.context import SceneContext
    from ..scene.markups import add_points, add_roi
    from ..scene.segmentations import add_segmentation_from_labelmap
    from ..scene.storage import save_node
    from ..scene.volumes import add_volume

    case_id = case["id"]
    (folder / "image.nii.gz").write_bytes((root / f"{case_id}.nii.gz").read_bytes())
    outputs = {"image": "image.nii.gz"}
    image = load(folder / "image.nii.gz")
    ctx = SceneContext.headless()
    volume = add_volume(ctx, image, name=case_id)
    labels_path = root / f"{case_id}_labels.nii.gz"
    if labels_path.is_file():
        labels = load(labels_path)
        labels.is_labelmap = True
        segmentation = add_segmentation_from_labelmap(ctx, labels, reference_node=volume, name="Vertebrae", closed_surface=False)
        save_node(segmentation, folder / "vertebrae.seg.nrrd")
        outputs["segmentation"] = "vertebrae.seg.nrrd"
    discs = _rows_of(tables, DISCS_FILE, case_id)
    if discs:
        save_node(add_points(ctx, "Disc levels", [(d["label"], d["ras"]) for d in discs]), folder / "discs.mrk.json")
        outputs["discs"] = "discs.mrk.json"
    boxes = _rows_of(tables, BOXES_FILE, case_id)
    if boxes:
        from ..tasks.lumbar_mri import write_markups_list

        rois = [add_roi(ctx, f"Box {b['label']}", b["ras"]["center"], b["ras"]["size"], label=b["label"], axes=b["ras"]["axes"])
                for b in boxes]  # fmt: skip
        write_markups_list(rois, folder / "boxes.mrk.json", save_node)
        outputs["boxes"] = "boxes.mrk.json"
    severity = _rows_of(tables, SEVERITY_TABLE, case_id)
    if severity:
        _write_tsv(folder / "severity.tsv", ("level", "condition", "grade", "assessed"),
                   [dict(r, assessed=1) for r in severity])  # fmt: skip
        outputs["severity"] = "severity.tsv"
    fractures = _rows_of(tables, FRACTURES_TABLE, case_id)
    if fractures:
        row = fractures[0]
        _write_tsv(folder / "fractures.tsv", ("vertebra", "call"),
                   [{"vertebra": k, "call": row[k]} for k in (*CERVICAL, "patient_overall")])  # fmt: skip
        outputs["fractures"] = "fractures.tsv"
    return outputs


def _write_tsv(path, columns, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[r.get(c, "") for c in columns] for r in rows])
