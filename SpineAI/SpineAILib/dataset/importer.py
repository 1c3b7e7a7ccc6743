"""``spineai dataset import``: a dataset's cases back as annotation case folders to edit again.

Each case becomes an annotation case folder (SpineAILib.annotation: ``annotation.json``
and the annotation files beside it) with the case's de-identified image inside it
(``image.seq.nrrd`` for a cine: frames, frame times and pixel spacing; ``image.nii.gz``
for a volume), so the web app, the desktop module and ``AnnotationSession`` open it like
any case. Its ``dataset_case.json`` names the case's key in the dataset, so
``spineai dataset export --add`` takes the edited case back into the same dataset as a
replacement, not as a copy. Labels imported are marked as the user's (they are the
dataset's truth, whoever made them first).
"""

import json
from pathlib import Path

import numpy as np

from SpineAILib.dataset.cases import MASK_SUFFIX
from SpineAILib.dataset.layout import BOXES_FILE, DISCS_FILE, FRACTURES_TABLE, LABELS_TABLE, SEVERITY_TABLE
from SpineAILib.dataset.manifest import read_manifest, sha256_file
from SpineAILib.dataset.sources import DATASET_LINK
from SpineAILib.errors import InputError
from SpineAILib.io.checks import check_named_file
from SpineAILib.outputs import staged_output_folder
from SpineAILib.vocabulary import CERVICAL_VERTEBRAE, ULTRASOUND_LABELS


def import_dataset(dataset_dir, out_dir=None, progress=None):
    """Write one annotation case folder per case of ``dataset_dir`` into ``out_dir``; returns their paths."""
    dataset_dir = Path(dataset_dir)
    manifest = read_manifest(dataset_dir)
    _verify(dataset_dir, manifest)
    out_dir = Path(out_dir).absolute() if out_dir else dataset_dir.absolute().with_name(dataset_dir.name + "-cases")
    progress = progress or (lambda fraction, message: None)
    tables = _tables(dataset_dir, manifest["task"], manifest)
    with staged_output_folder(out_dir) as staging:
        for n, case in enumerate(manifest["cases"]):
            progress(n / max(1, len(manifest["cases"])), f"importing {case['id']}")
            folder = staging / case["id"]
            final = out_dir / case["id"]  # annotation.json names the image where it will be
            folder.mkdir()
            try:
                if case["kind"] == "cine":
                    _cine_case(dataset_dir, case, tables, folder, final, manifest["task"])
                else:
                    _volume_case(dataset_dir, case, tables, folder, final, manifest["task"])
            except (KeyError, TypeError, ValueError, IndexError) as error:  # a table row without its fields
                raise InputError(f"{dataset_dir}: {case['id']}: malformed dataset tables "
                                 f"({type(error).__name__}: {error})") from None
            link = {"dataset": manifest.get("created"), "case": case["id"], "key": case["key"], "split": case["split"],
                    "key_fingerprint": manifest["deidentification"]["key_fingerprint"],
                    "study_uid": case.get("study_uid"), "series_uid": case.get("series_uid")}  # fmt: skip
            (folder / DATASET_LINK).write_text(json.dumps(link, indent=2) + "\n", encoding="utf-8")
    progress(1.0, f"{len(manifest['cases'])} cases written to {out_dir}")
    return [out_dir / case["id"] for case in manifest["cases"]]


def _verify(root, manifest):
    """Every listed file present with its checksum: an altered dataset is refused, not half-read."""
    for case in manifest["cases"]:
        for relative, digest in case["files"].items():
            path = check_named_file(relative, root, root, what="file", container="the dataset")
            if not path.is_file():
                raise InputError(f"{root}: {relative} is listed in dataset.json but missing")
            if sha256_file(path) != digest:
                raise InputError(f"{root}: {relative} does not match its sha256 in dataset.json (changed after export)")
    for name, digest in manifest.get("files", {}).items():
        check_named_file(name, root, root, what="file", container="the dataset")
        if not (root / name).is_file() or sha256_file(root / name) != digest:
            raise InputError(f"{root}: {name} is missing or does not match its sha256 in dataset.json")


def _tables(root, task, manifest):
    from SpineAILib.dataset.layout import read_shared_rows

    return read_shared_rows(root, task, {case["id"] for case in manifest["cases"]})


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


def _new_case(folder, final, task, image, image_name):
    from SpineAILib.annotation.case import CaseData
    from SpineAILib.annotation.session import default_user, image_description, now

    user = default_user()
    description = image_description(image, final / image_name)
    case = CaseData(folder=folder, task=task, image=description, created={"user": user, "time": now()})
    case.saved = {"user": user, "time": now()}
    return case


def _cine_case(root, case, tables, folder, final, task):
    from SpineAILib.dataset.layout import frame_files as list_frames
    from SpineAILib.images import Cine
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.sequences import add_cine
    from SpineAILib.scene.storage import save_node

    frame_files = list_frames(root / case["id"])
    if len(frame_files) != case["frames"]:
        raise InputError(f"{root}: {case['id']} has {len(frame_files)} frame files, dataset.json says {case['frames']}")
    rows = {r["frame_file"]: r for r in _rows_of(tables, LABELS_TABLE, case["id"])}
    frames = np.stack([_read_png(p) for p in frame_files])
    period = 1000.0 / 30.0
    times = np.array([float(rows[p.name]["time_ms"]) if p.name in rows else np.nan for p in frame_files])
    if np.isnan(times).any():  # unlabelled frames have no row: their times from the labelled ones' spacing
        known = np.nonzero(~np.isnan(times))[0]
        if len(known) >= 2:
            period = float(np.median(np.diff(times[known]) / np.diff(known)))
        start = times[known[0]] - known[0] * period if len(known) else 0.0
        times = np.where(np.isnan(times), start + np.arange(len(times)) * period, times)
    cine = Cine(frames=frames, frame_times_ms=times, pixel_spacing=tuple(case["pixel_spacing"]), description=case["id"])
    ctx = SceneContext.headless()
    sequence, _, _ = add_cine(ctx, cine, case["id"])
    save_node(sequence, folder / "image.seq.nrrd")
    data = _new_case(folder, final, task, cine, "image.seq.nrrd")
    data.labels = np.zeros((cine.n_frames, 3), np.int8)
    for index, path in enumerate(frame_files):
        row = rows.get(path.name)
        if row is not None:
            data.labels[index] = [int(row[k]) for k in ULTRASOUND_LABELS]
            data.sources[f"labels/{index}"] = "user"
        mask = np.zeros((1, *cine.frame_shape), np.uint8)
        drawn = False
        for value, (structure, suffix) in enumerate(MASK_SUFFIX.items(), start=1):
            mask_path = root / case["id"] / "masks" / f"{path.stem}_{suffix}.png"
            if mask_path.is_file():
                drawn = True
                mask[0][_read_png(mask_path) > 0] = value
        if drawn:
            data.masks[index] = mask
            data.sources[f"mask/{index}"] = "user"
    for box in _rows_of(tables, BOXES_FILE, case["id"]):
        x0, y0, x1, y1 = (int(round(v)) for v in box["pixel"])
        data.boxes[(int(box["frame"]), box["label"])] = (x0, y0, 0, x1, y1, 1)
        data.sources[f"box/{int(box['frame'])}/{box['label']}"] = "user"
    data.write()


def _volume_case(root, case, tables, folder, final, task):
    from SpineAILib.annotation.labelmap import ras_to_box
    from SpineAILib.io import load

    case_id = case["id"]
    (folder / "image.nii.gz").write_bytes((root / f"{case_id}.nii.gz").read_bytes())
    image = load(folder / "image.nii.gz")
    data = _new_case(folder, final, task, image, "image.nii.gz")
    labels_path = root / f"{case_id}_labels.nii.gz"
    if labels_path.is_file():
        data.mask = np.asarray(load(labels_path).voxels).astype(np.uint8)
        data.sources["mask"] = "user"
    for d in _rows_of(tables, DISCS_FILE, case_id):
        data.points[d["label"]] = tuple(float(v) for v in d["ras"])
        data.sources[f"point/{d['label']}"] = "user"
    for r in _rows_of(tables, SEVERITY_TABLE, case_id):
        data.severity[(r["level"], r["condition"])] = r["grade"]
        data.sources[f"severity/{r['level']}/{r['condition']}"] = "user"
    for r in _rows_of(tables, FRACTURES_TABLE, case_id):
        for vertebra in CERVICAL_VERTEBRAE:
            if str(r[vertebra]).strip() == "":
                continue  # no call was made on it (not in view)
            data.fractures[vertebra] = int(r[vertebra])
            data.sources[f"fracture/{vertebra}"] = "user"
    for b in _rows_of(tables, BOXES_FILE, case_id):
        data.boxes[(None, b["label"])] = ras_to_box(b["ras"]["center"], b["ras"]["size"], b["ras"]["axes"], image.ijk_to_ras)
        data.sources[f"box/{b['label']}"] = "user"
    data.write()
