"""The dataset folder's files, per task, in the layouts the training package reads.

lp-ultrasound (the seeds' layout, SpineAITraining/ultrasound/dataset.py)::

    case-0001/frame_0001.png ...            every frame of the cine (grey or RGB PNG, no metadata chunks)
    case-0001/masks/frame_0001_cord.png     0/255 masks, for frames whose masks were drawn
    case-0001/masks/frame_0001_csf.png
    labels.csv                              video, frame_file, time_ms, bad_quality, spinal_cord, csf, split
                                            (one row per labelled frame; a frame never labelled has none)

lumbar-mri and cervical-ct (the mri_lumbar layout, SpineAITraining/datasets/mri_lumbar.py)::

    case-0001.nii.gz, case-0001_labels.nii.gz   image and label map (VerSe numbers), same grid
    discs.json                                  lumbar-mri: disc-level points (RAS and voxel)
    severity.csv                                lumbar-mri: case, level, condition, grade, split
    fractures.csv                               cervical-ct: case, patient_overall, C1..C7 (1, 0, or empty:
                                                no call, e.g. not in view), split

every task: ``boxes.json`` (markups ROIs: RAS centre/size/axes plus pixel box and frame,
or voxel bounds and slices) and ``dataset.json`` (manifest.py). Bytes are deterministic
(PNG without chunks, gzip without name or time) so the same case exports to the same sha256.
"""

import csv
import gzip
import io
import json
import re
from pathlib import Path

import numpy as np

from SpineAILib.dataset.cases import MASK_SUFFIX, CineAnnotation
from SpineAILib.errors import InputError
from SpineAILib.vocabulary import CERVICAL_VERTEBRAE, ULTRASOUND_LABELS

LABELS_TABLE = "labels.csv"
BOXES_FILE = "boxes.json"
DISCS_FILE = "discs.json"
SEVERITY_TABLE = "severity.csv"
FRACTURES_TABLE = "fractures.csv"
LABELS_COLUMNS = ("video", "frame_file", "time_ms", *ULTRASOUND_LABELS, "split")
SEVERITY_COLUMNS = ("case", "level", "condition", "grade", "split")
FRACTURE_COLUMNS = ("case", "patient_overall", *CERVICAL_VERTEBRAE, "split")
DISC_LABEL = re.compile(r"^(T12/L1|L[1-4]/L[2-5]|L5/S1)$")
SHARED_FILES = {  # per task: the tables every case adds rows to
    "lp-ultrasound": (LABELS_TABLE, BOXES_FILE),
    "lumbar-mri": (BOXES_FILE, DISCS_FILE, SEVERITY_TABLE),
    "cervical-ct": (BOXES_FILE, FRACTURES_TABLE),
}
LAYOUT_NAMES = {
    "lp-ultrasound": "seeds' ultrasound layout: <case>/frame_NNNN.png, <case>/masks/frame_NNNN_cord|_csf.png, labels.csv",
    "lumbar-mri": "mri_lumbar layout: <case>.nii.gz + <case>_labels.nii.gz (VerSe numbers), discs.json, severity.csv",
    "cervical-ct": "volume layout: <case>.nii.gz + <case>_labels.nii.gz (VerSe numbers), fractures.csv",
}


def frame_files(folder):
    """A case folder's frame PNGs in frame order (frame_0002 before frame_0010)."""
    key = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]  # noqa: E731
    return sorted(Path(folder).glob("frame_*.png"), key=key)


# -- deterministic bytes -----------------------------------------------------------------------


def png_bytes(image):
    import cv2

    image = np.ascontiguousarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def nifti_gz_bytes(voxels, ijk_to_ras):
    """A .nii.gz with the geometry in sform and qform, an empty description, gzip without name/time."""
    import nibabel as nib

    voxels = np.asarray(voxels)
    if voxels.dtype == np.float64:
        voxels = voxels.astype(np.float32)
    if voxels.dtype == bool:
        voxels = voxels.astype(np.uint8)
    image = nib.Nifti1Image(np.ascontiguousarray(voxels.transpose(2, 1, 0)), np.asarray(ijk_to_ras, np.float64))
    image.header.set_sform(ijk_to_ras, code=1)
    image.header.set_qform(ijk_to_ras, code=1)
    image.header.set_xyzt_units("mm", "sec")
    image.header["descrip"] = b""
    image.header["db_name"] = b""
    image.header["aux_file"] = b""
    return gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)


def write_file(root, relative, data):
    path = Path(root) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return relative


def csv_bytes(columns, rows):
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[row.get(c, "") for c in columns] for row in rows])
    return text.getvalue().encode("utf-8")


def json_bytes(document):
    return (json.dumps(document, indent=1, sort_keys=False) + "\n").encode("utf-8")


def _r(values, digits=4):
    return [round(float(v), digits) for v in values]


# -- one case ------------------------------------------------------------------------------------


def write_case(root, case_id, annotation, task):
    """Write one case's own files under ``root``; returns (files, rows, facts).

    files: relative paths written; rows: {shared file: [row dicts without split]};
    facts: geometry and what is annotated, for the manifest.
    """
    if isinstance(annotation, CineAnnotation):
        return _write_cine(root, case_id, annotation)
    return _write_volume(root, case_id, annotation, task)


def _write_cine(root, case_id, a):
    from SpineAILib.images import frame_ijk_to_ras
    from SpineAILib.scene.cine_overlays import box_to_ras

    cine = a.cine
    files, label_rows, boxes = [], [], []
    # Mask files for the frames whose masks were drawn; without that record, for the frames with a
    # mask (a frame without mask files reads as "nothing drawn", which is what an empty mask says).
    has_masks = bool(a.masks) and any(m.any() for m in a.masks.values())
    if a.mask_frames is not None:
        drawn = np.asarray(a.mask_frames, bool)
    else:
        drawn = np.zeros(cine.n_frames, bool)
        for m in a.masks.values():
            drawn |= m.reshape(cine.n_frames, -1).any(axis=1)
    ijk_to_ras = frame_ijk_to_ras(cine.pixel_spacing)
    for i in range(cine.n_frames):
        name = f"frame_{i + 1:04d}"
        files.append(write_file(root, f"{case_id}/{name}.png", png_bytes(cine.frames[i])))
        if has_masks and drawn[i]:
            for structure, suffix in MASK_SUFFIX.items():
                if structure in a.masks:
                    mask = a.masks[structure][i].astype(np.uint8) * 255
                    files.append(write_file(root, f"{case_id}/masks/{name}_{suffix}.png", png_bytes(mask)))
        if a.labelled is not None and not a.labelled[i]:
            continue  # a frame never labelled is not a negative: its image stays (for import), no row
        label_rows.append({"video": case_id, "frame_file": f"{name}.png", "time_ms": f"{float(cine.frame_times_ms[i]):.3f}",
                           **{k: int(v) for k, v in zip(ULTRASOUND_LABELS, a.labels[i])}})  # fmt: skip
        for structure, array in sorted(a.boxes.items()):
            box = np.asarray(array[i], float)
            if not np.all(np.isfinite(box)):
                continue
            center, size = box_to_ras(box, ijk_to_ras)
            boxes.append({"case": case_id, "label": structure, "frame": i, "frame_file": f"{name}.png",
                          "pixel": _r(box, 2), "ras": {"center": _r(center), "size": _r(size), "axes": np.eye(3).tolist()}})  # fmt: skip
    facts = {"kind": "cine", "frames": cine.n_frames, "labelled_frames": len(label_rows), "frame_size": list(cine.frame_shape), "color": bool(cine.is_color),
             "pixel_spacing": _r(cine.pixel_spacing, 6), "masks": sorted(a.masks) if has_masks else [],
             "boxes": len(boxes), "labelled": list(ULTRASOUND_LABELS)}  # fmt: skip
    return files, {LABELS_TABLE: label_rows, BOXES_FILE: boxes}, facts


def voxel_bounds(image, roi):
    """Continuous IJK bounds of an ROI's eight corners, and the K slices it spans on the image."""
    center, size, axes = (np.asarray(roi[k], float) for k in ("center", "size", "axes"))
    corners = [center + axes @ ((np.array(signs) * 2 - 1) * size / 2) for signs in np.ndindex(2, 2, 2)]
    inverse = np.linalg.inv(image.ijk_to_ras)
    ijk = np.array([(inverse @ np.append(c, 1.0))[:3] for c in corners])
    low, high = ijk.min(axis=0), ijk.max(axis=0)
    k_count = image.voxels.shape[0]
    slices = [int(np.clip(np.ceil(low[2] - 0.5), 0, k_count - 1)), int(np.clip(np.floor(high[2] + 0.5), 0, k_count - 1))]
    return _r(low, 2), _r(high, 2), slices


def _write_volume(root, case_id, a, task):
    image = a.image
    files = [write_file(root, f"{case_id}.nii.gz", nifti_gz_bytes(image.voxels, image.ijk_to_ras))]
    labelled = []
    if a.labels is not None:
        labels = a.labels.voxels
        dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
        files.append(write_file(root, f"{case_id}_labels.nii.gz", nifti_gz_bytes(labels.astype(dtype), image.ijk_to_ras)))
        labelled = [int(v) for v in np.unique(labels) if v]
    rows = {BOXES_FILE: []}
    inverse = np.linalg.inv(image.ijk_to_ras)
    for roi in a.rois:
        low, high, slices = voxel_bounds(image, roi)
        rows[BOXES_FILE].append({"case": case_id, "label": roi["label"], "slices": slices,
                                 "voxel": {"min": low, "max": high},
                                 "ras": {"center": _r(roi["center"]), "size": _r(roi["size"]), "axes": np.round(roi["axes"], 6).tolist()}})  # fmt: skip
    if task == "lumbar-mri":
        rows[DISCS_FILE] = [{"case": case_id, "label": label, "ras": _r(ras), "voxel": _r((inverse @ np.append(ras, 1.0))[:3], 2)}
                            for label, ras in a.points if DISC_LABEL.match(str(label))]  # fmt: skip
        rows[SEVERITY_TABLE] = [dict(r, case=case_id) for r in a.severity]
    if task == "cervical-ct" and a.fractures is not None:
        rows[FRACTURES_TABLE] = [{"case": case_id, **{k: "" if a.fractures.get(k) is None else int(a.fractures[k])
                                                  for k in ("patient_overall", *CERVICAL_VERTEBRAE)}}]  # "": no call
    facts = {"kind": "volume", "dimensions": list(image.dimensions), "spacing": _r(image.spacing, 6),
             "dtype": str(np.asarray(image.voxels).dtype if image.voxels.dtype != np.float64 else np.dtype(np.float32)),
             "labelled": labelled, "discs": len(rows.get(DISCS_FILE, [])), "boxes": len(rows[BOXES_FILE]),
             "severity_rows": len(rows.get(SEVERITY_TABLE, [])), "fractures": FRACTURES_TABLE in rows}  # fmt: skip
    return files, rows, facts


# -- the shared tables ----------------------------------------------------------------------------


def read_shared_rows(root, task, case_ids=None):
    """{shared file: [rows]} of an existing dataset (to keep the other cases' rows on --add).

    ``case_ids``: the manifest's case ids; a row for any other case, or a file that does not
    parse, is refused with one line (the tables are input like dataset.json).
    """
    root = Path(root)
    out = {}
    for name in SHARED_FILES[task]:
        path = root / name
        try:
            if not path.is_file():
                out[name] = []
            elif name.endswith(".csv"):
                with open(path, newline="", encoding="utf-8") as f:
                    out[name] = list(csv.DictReader(f))
            elif name == DISCS_FILE:
                cases = json.loads(path.read_text(encoding="utf-8")).get("cases", {})
                out[name] = [dict(p, case=case) for case, points in cases.items() for p in points]
            else:
                out[name] = json.loads(path.read_text(encoding="utf-8")).get("boxes", [])
        except (OSError, ValueError, TypeError, AttributeError) as error:
            raise InputError(f"{path}: malformed dataset table ({type(error).__name__}: {error})") from None
        if not isinstance(out[name], list) or not all(isinstance(r, dict) for r in out[name]):
            raise InputError(f"{path}: malformed dataset table (rows are not records)")
        for row in out[name] if case_ids is not None else ():
            if (row.get("case") or row.get("video")) not in case_ids:
                raise InputError(f"{path}: a row names case {row.get('case') or row.get('video')!r}, "
                                 "which dataset.json does not list")  # fmt: skip
    return out


def shared_bytes(task, rows, splits):
    """{shared file: bytes} for all cases' rows; ``splits``: case id -> split."""
    out = {}
    key = lambda r: (r.get("case") or r.get("video"), r.get("frame", 0))  # noqa: E731
    for name in SHARED_FILES[task]:
        items = sorted(rows.get(name, []), key=key)
        if name == LABELS_TABLE:
            items = [dict(r, split=splits[r["video"]]) for r in items]  # frame order kept by the stable sort
            out[name] = csv_bytes(LABELS_COLUMNS, items)
        elif name == SEVERITY_TABLE:
            out[name] = csv_bytes(SEVERITY_COLUMNS, [dict(r, split=splits[r["case"]]) for r in items])
        elif name == FRACTURES_TABLE:
            out[name] = csv_bytes(FRACTURE_COLUMNS, [dict(r, split=splits[r["case"]]) for r in items])
        elif name == DISCS_FILE:
            cases = {}
            for r in items:
                cases.setdefault(r["case"], []).append({k: v for k, v in r.items() if k != "case"})
            out[name] = json_bytes({"format": "spineai-discs", "version": 1, "coordinates": "RAS mm; voxel = IJK index",
                                    "cases": cases})  # fmt: skip
        else:
            out[name] = json_bytes({"format": "spineai-boxes", "version": 1,
                                    "coordinates": "ras: centre/size mm, axes = box axes as columns (RAS); cines: pixel = "
                                    "x0 y0 x1 y1 (x1 = last column + 1) on frame (0-based) / frame_file; volumes: voxel "
                                    "min/max = IJK bounds, slices = first/last K index",
                                    "boxes": items})  # fmt: skip
    return out
