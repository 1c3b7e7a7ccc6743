"""The RSNA 2022 Kaggle layout (the real download or SpineAITraining.cervical.generator's).

  train.csv                   StudyInstanceUID, patient_overall, C1 ... C7 (0/1)
  train_bounding_boxes.csv    StudyInstanceUID, x, y, width, height, slice_number
  train_images/<UID>/<n>.dcm  one axial CT slice per file, n = slice number
  segmentations/<UID>.nii     C1..C7 = 1..7, T1... = 8..., for some studies only
  test.csv, test_images/      row_id, StudyInstanceUID, prediction_type; images only

CT volumes are read by SpineAILib.io (the reader the module uses on a user's DICOM
folder): slices sorted along their normal, HU, exact IJK->RAS. Boxes refer to slice
numbers, which are mapped onto that volume's K axis through each file's position.

The segmentation files' orientation quirk: the NIfTI array is not in the order of the
DICOM pixel arrays. Its axes are (column, row counted from the bottom, slice by
ascending ImagePositionPatient z), i.e. ``data[i, j, k]`` is the label of pixel
(row = rows - 1 - j, column = i) of the k-th slice from the bottom. Against the stack of
pixel arrays in slice-number order the participants' fix was
``seg[:, ::-1, ::-1].transpose(2, 1, 0)`` when slice numbers run head to feet (most
studies; the common notebooks apply it to all) and ``seg[:, ::-1].transpose(2, 1, 0)`` when
they run feet to head (public solution code that tests the z direction per study; the
1st-place code's ``mask.transpose(1, 0, 2)[::-1, :, ::-1]`` is the first form).
Here the CT volume is already sorted along the slice normal, so the segmentation is
``data[:, ::-1, :].transpose(2, 1, 0)``, flipped along K when that volume's K runs
downwards. The NIfTI affine is not relied on (it is reported in the metadata).
"""

import csv
from pathlib import Path

import numpy as np
import pydicom

from SpineAILib.errors import InputError
from SpineAILib.images import VolumeImage
from SpineAILib.workflows.cervical.submission import TARGETS, VERTEBRAE, row_id

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
LABEL_NAMES = {i + 1: n for i, n in enumerate(VERTEBRAE + tuple(f"T{t}" for t in range(1, 13)))}


def _read_csv(path, required):
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: cannot read ({error})") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputError(f"{path}: columns {', '.join(missing)} are missing (found {', '.join(columns) or 'none'})")
    return rows


def _label(value, where):
    try:
        v = float(str(value).strip())
    except ValueError:
        v = None
    if v not in (0.0, 1.0):
        raise InputError(f"{where}: a label must be 0 or 1, got {value!r}")
    return int(v)


def _slice_number(path):
    return int(path.stem) if path.stem.isdigit() else None


class RSNA2022Dataset:
    """The layout under ``root`` for ``split`` 'train' (labelled) or 'test' (images only)."""

    def __init__(self, root, split="train"):
        self.root = Path(root)
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.split = split
        if not self.root.is_dir():
            raise InputError(f"{self.root}: no such folder (expected the RSNA 2022 data set folder)")
        table = self.root / f"{split}.csv"
        self.images = self.root / f"{split}_images"
        if not table.is_file():
            raise InputError(f"{self.root} is not in the RSNA 2022 layout: {table.name} is missing")
        if not self.images.is_dir():
            raise InputError(f"{self.root} is not in the RSNA 2022 layout: {self.images.name}/ is missing")
        self.targets = {}  # uid -> {target: 0/1}
        if split == "train":
            for n, row in enumerate(_read_csv(table, ("StudyInstanceUID",) + TARGETS), start=2):
                uid = row["StudyInstanceUID"].strip()
                self.targets[uid] = {t: _label(row[t], f"{table.name} line {n} {t}") for t in TARGETS}
            listed = list(self.targets)
        else:
            listed = list(dict.fromkeys(r["StudyInstanceUID"].strip() for r in _read_csv(table, ("StudyInstanceUID",))))
        self.boxes = {}
        box_table = self.root / f"{split}_bounding_boxes.csv"
        if box_table.is_file():
            for row in _read_csv(box_table, ("StudyInstanceUID", "x", "y", "width", "height", "slice_number")):
                box = {k: float(row[k]) for k in ("x", "y", "width", "height")}
                box["slice_number"] = int(float(row["slice_number"]))
                self.boxes.setdefault(row["StudyInstanceUID"].strip(), []).append(box)
        self.segmentation_paths = {}
        seg_dir = self.root / "segmentations"
        if seg_dir.is_dir():
            for path in sorted(seg_dir.iterdir()):
                for suffix in (".nii.gz", ".nii"):
                    if path.name.endswith(suffix):
                        self.segmentation_paths[path.name[: -len(suffix)]] = path
        on_disk = {p.name for p in self.images.iterdir() if p.is_dir() and not p.name.startswith(".")}
        self.study_ids = [uid for uid in listed if uid in on_disk]
        self.missing_images = [uid for uid in listed if uid not in on_disk]
        if not self.study_ids:
            raise InputError(f"{self.root}: none of the {len(listed)} studies in {table.name} has a folder in {self.images.name}/")

    @property
    def is_synthetic(self):
        """True when the set came from SpineAITraining.cervical.generator."""
        return (self.root / "generator_truth.json").is_file()

    def truth(self):
        """generator_truth.json's studies by UID ({} for real data)."""
        import json

        path = self.root / "generator_truth.json"
        if not path.is_file():
            return {}
        return {s["StudyInstanceUID"]: s for s in json.loads(path.read_text(encoding="utf-8"))["studies"]}

    def study_folder(self, uid):
        folder = self.images / str(uid)
        if not folder.is_dir():
            raise InputError(f"study {uid}: {folder} is missing")
        return folder

    def has_segmentation(self, uid):
        return str(uid) in self.segmentation_paths

    def labels(self, uid):
        """{C1 ... C7, patient_overall: 0/1} of a study, or None (test split, unlabelled)."""
        found = self.targets.get(str(uid))
        return dict(found) if found is not None else None

    # ------------------------------------------------------------ images

    def load_ct(self, uid):
        """The study's CT as a VolumeImage (HU); metadata['slice_numbers'] = slice number per K."""
        from SpineAILib.io import load

        folder = self.study_folder(uid)
        image = load(folder)
        if not isinstance(image, VolumeImage):
            raise InputError(f"study {uid}: {folder} does not hold a CT volume")
        image.metadata["slice_numbers"] = self.slice_numbers(uid, image).tolist()
        image.metadata["StudyInstanceUID"] = str(uid)
        return image

    def slice_numbers(self, uid, ct):
        """Slice number (file name, else InstanceNumber) of each K index of ``ct``."""
        to_grid = np.linalg.inv(ct.ijk_to_ras)
        numbers = np.zeros(ct.voxels.shape[0], dtype=np.int64)
        for path in self.study_folder(uid).iterdir():
            if not path.is_file() or path.name.startswith("."):
                continue
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["ImagePositionPatient", "InstanceNumber"])
                position = np.array([float(v) for v in ds.ImagePositionPatient])
            except Exception:  # not a slice of this series (the reader warned about it)
                continue
            number = _slice_number(path) or int(ds.get("InstanceNumber", 0) or 0)
            k = (to_grid @ np.append(LPS_TO_RAS @ position, 1.0))[2]
            kr = int(round(k))
            if abs(k - kr) < 0.25 and 0 <= kr < numbers.size:
                numbers[kr] = number
        if np.any(numbers == 0):
            raise InputError(f"study {uid}: {int(np.sum(numbers == 0))} slice(s) of the volume have no slice number")
        return numbers

    def k_of_slice(self, uid, ct):
        """{slice number: K index} for ``ct`` (as load_ct returned it)."""
        numbers = ct.metadata.get("slice_numbers") or self.slice_numbers(uid, ct).tolist()
        return {int(n): k for k, n in enumerate(numbers)}

    def load_segmentation(self, uid, ct=None):
        """The study's segmentation as a label map on ``ct``'s grid (the quirk undone);
        ``ct`` defaults to load_ct(uid)."""
        import nibabel as nib

        uid = str(uid)
        path = self.segmentation_paths.get(uid)
        if path is None:
            raise InputError(f"study {uid} has no segmentation in {self.root / 'segmentations'}")
        ct = self.load_ct(uid) if ct is None else ct
        try:
            nii = nib.load(str(path))
            data = np.asanyarray(nii.dataobj)
        except Exception as error:
            raise InputError(f"{path.name}: cannot read NIfTI ({error})") from None
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        k_n, j_n, i_n = ct.voxels.shape
        if data.shape != (i_n, j_n, k_n):
            raise InputError(
                f"{path.name}: segmentation is {'x'.join(map(str, data.shape))} but the CT is {i_n}x{j_n}x{k_n} "
                "(columns x rows x slices); they do not belong together"
            )
        if np.issubdtype(data.dtype, np.floating):
            if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
                raise InputError(f"{path.name}: segmentation values must be whole label numbers")
        labels = np.ascontiguousarray(data[:, ::-1, :].transpose(2, 1, 0)).astype(np.uint8)
        if ct.ijk_to_ras[2, 2] < 0:  # this volume's K runs downwards; the file's slices run upwards
            labels = labels[::-1].copy()
        affine = np.asarray(nii.affine, float)
        expected = _quirk_affine(ct)
        agrees = bool(np.allclose(affine, expected, atol=0.05 * min(ct.spacing) + 1e-3))
        return VolumeImage(labels, ct.ijk_to_ras.copy(), modality="CT", description=f"{uid} vertebrae",
                           source=str(path), is_labelmap=True,
                           metadata={"label_names": dict(LABEL_NAMES), "nifti_affine_agrees": agrees})

    def boxes_on_grid(self, uid, ct):
        """The study's boxes with the K index of their slice added ('k')."""
        k_of = self.k_of_slice(uid, ct)
        out = []
        for box in self.boxes.get(str(uid), []):
            if box["slice_number"] not in k_of:
                raise InputError(f"study {uid}: box on slice {box['slice_number']}, which is not in the series")
            out.append({**box, "k": k_of[box["slice_number"]]})
        return out

    # ------------------------------------------------------------ labels

    def solution_rows(self, study_ids=None):
        """Metric solution rows (row_id, fractured) for ``study_ids`` (default: all studies)."""
        rows = []
        for uid in study_ids or self.study_ids:
            labels = self.targets.get(str(uid))
            if labels is None:
                raise InputError(f"study {uid} has no labels in {self.split}.csv")
            rows += [{"row_id": row_id(uid, t), "fractured": labels[t]} for t in TARGETS]
        return rows


def _quirk_affine(ct):
    """Where the released files' array would sit if its affine described it (K upwards)."""
    matrix = ct.ijk_to_ras.copy()
    if matrix[2, 2] < 0:  # express the CT with K running upwards first
        flip_k = np.eye(4)
        flip_k[2, 2] = -1.0
        flip_k[2, 3] = ct.voxels.shape[0] - 1
        matrix = matrix @ flip_k
    flip_j = np.eye(4)
    flip_j[1, 1] = -1.0
    flip_j[1, 3] = ct.voxels.shape[1] - 1
    return matrix @ flip_j
