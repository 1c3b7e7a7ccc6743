"""Synthetic cervical spine CT studies written in exactly the RSNA 2022 Kaggle layout.

No RSNA data can reach this machine, so the train -> evaluate -> infer path is
exercised on phantoms (SpineAITraining.cervical.phantom) written as the competition
released its data:

  train.csv                         StudyInstanceUID, patient_overall, C1 ... C7
  train_bounding_boxes.csv          StudyInstanceUID, x, y, width, height, slice_number
  train_images/<UID>/<n>.dcm        one CT Image Storage file per axial slice, n = slice number
  segmentations/<UID>.nii           vertebra labels, for a few studies only
  generator_truth.json              what was drawn (not part of Kaggle's layout)
  test.csv, test_images/            with --test-studies: images and row ids, no labels

As in the competition, slice 1 is usually the top of the scan (slice numbers run from
head to feet) and sometimes the bottom; boxes exist for some of the fractured studies
and segmentations for some studies; segmentation files carry the released files'
orientation quirk (SpineAITraining.cervical.layout explains and undoes it).
"""

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom

from SpineAILib.samples.dicom_writer import write_dicom_series
from SpineAILib.workflows.cervical.submission import TARGETS, VERTEBRAE, row_id
from SpineAITraining.common.dataset_folder import TRUTH_FILE, prepare_output

from .phantom import make_case

TRAIN_COLUMNS = ("StudyInstanceUID", "patient_overall") + VERTEBRAE
BOX_COLUMNS = ("StudyInstanceUID", "x", "y", "width", "height", "slice_number")
UID_ROOT = "1.2.826.0.1.3680043"  # the prefix RSNA 2022's study UIDs share


def nifti_quirk_array(labels_kji):
    """The array a released segmentation file holds for a label volume (K, J, I) whose K
    runs inferior -> superior: axes (column, row reversed, slice by ascending z)."""
    return np.ascontiguousarray(labels_kji.transpose(2, 1, 0)[:, ::-1, :])


def nifti_quirk_affine(ijk_to_ras, n_rows):
    """The IJK->RAS matrix that makes that array sit where the CT is (rows reversed)."""
    flip = np.eye(4)
    flip[1, 1] = -1.0
    flip[1, 3] = n_rows - 1
    return np.asarray(ijk_to_ras, float) @ flip


def write_segmentation(path, labels):
    """Write ``labels`` (VolumeImage, K inferior -> superior) as RSNA's segmentation files are."""
    import nibabel as nib

    data = nifti_quirk_array(labels.voxels.astype(np.uint8))
    affine = nifti_quirk_affine(labels.ijk_to_ras, labels.voxels.shape[1])
    image = nib.Nifti1Image(data, affine)
    image.header.set_sform(affine, code=1)
    image.header.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    _atomic(path, lambda temp: nib.save(image, temp))


def _atomic(path, write):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(temp)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _write_csv(path, rows, columns):
    def write(temp):
        with open(temp, "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    _atomic(path, write)


def write_study_dicom(case, folder, uid, head_first=True, compress=False):
    """One file per slice, ``<slice number>.dcm``; returns {K index: slice number}.

    Slice numbers (and InstanceNumber) run from the top of the scan down when
    ``head_first`` (RSNA's usual order), else from the bottom up. ``compress`` stores the
    pixels RLE Lossless (pydicom encodes it natively), so readers meet compressed files too.
    """
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} already exists")
    n = case.ct.voxels.shape[0]
    numbers = {k: (n - k if head_first else k + 1) for k in range(n)}
    staging = folder.parent / f".{folder.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tempfile.TemporaryDirectory(dir=folder.parent) as temp:
            paths = write_dicom_series(
                case.ct, temp, modality="CT", series_description="SpineAI synthetic cervical spine CT",
                patient_name="Synthetic^Phantom", patient_id=uid, study_uid=uid,
                series_uid=f"{uid}.1", rescale=(1.0, -1024.0),
            )
            for k, path in enumerate(paths):
                ds = pydicom.dcmread(path)
                ds.InstanceNumber = numbers[k]
                ds.SliceThickness = f"{case.meta['slice_thickness']:.4g}"
                ds.BodyPartExamined = "CSPINE"
                ds.ConvolutionKernel = "BONE"
                if compress:
                    ds.compress(pydicom.uid.RLELossless)
                ds.save_as(staging / f"{numbers[k]}.dcm", enforce_file_format=True)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return numbers


def _uids(rng, n, taken=()):
    out, seen = [], set(taken)
    while len(out) < n:
        uid = f"{UID_ROOT}.{int(rng.integers(1000, 99999))}"
        if uid not in seen:
            seen.add(uid)
            out.append(uid)
    return out


GENERATOR = "SpineAITraining.cervical.generator"
OWNED = ("train_images", "test_images", "segmentations", "train.csv", "train_bounding_boxes.csv", "test.csv",
         TRUTH_FILE)  # fmt: skip


def generate(out_dir, n_studies, seed=0, overwrite=False, *, segmentation_fraction=0.25, box_fraction=0.6,
             fracture_rate=0.5, head_first_fraction=0.8, compressed_fraction=0.0, test_studies=0, case_options=None,
             progress=None):
    """Write ``n_studies`` synthetic studies (and ``test_studies`` unlabelled ones) in the
    RSNA 2022 layout under ``out_dir``; return the training StudyInstanceUIDs.

    ``case_options`` go to make_case (e.g. shape_limit=(160, 128, 128) for quick sets).
    At least one study gets a segmentation and, when any study is fractured, one gets
    boxes, so every file of the layout is present.
    """
    out_dir = prepare_output(out_dir, GENERATOR, overwrite, OWNED)
    rng = np.random.default_rng(seed)
    uids = _uids(rng, n_studies)
    test_uids = _uids(rng, test_studies, taken=uids)
    options = dict(case_options or {})
    with_segmentation = set(rng.choice(n_studies, size=max(1, int(round(segmentation_fraction * n_studies))),
                                       replace=False).tolist()) if n_studies else set()

    train_rows, truth, boxes = [], [], {}
    for index, uid in enumerate(uids):
        case_seed = [int(seed), index]
        case = make_case(case_seed, fracture_rate=fracture_rate, orientation="axial", **options)
        head_first = bool(rng.random() < head_first_fraction)
        compress = bool(rng.random() < compressed_fraction)
        numbers = write_study_dicom(case, out_dir / "train_images" / uid, uid, head_first, compress)
        row = {"StudyInstanceUID": uid, "patient_overall": case.patient_overall, **case.fractured}
        train_rows.append(row)
        boxes[uid] = [{"StudyInstanceUID": uid, "x": b["x"], "y": b["y"], "width": b["width"], "height": b["height"],
                       "slice_number": numbers[b["slice_number"] - 1]} for b in case.boxes]
        if index in with_segmentation:
            write_segmentation(out_dir / "segmentations" / f"{uid}.nii", case.labels)
        truth.append({"StudyInstanceUID": uid, "seed": case_seed, "slice_order": "head_first" if head_first else "feet_first",
                      "compressed": compress, "n_slices": int(case.ct.voxels.shape[0]), "has_segmentation": index in with_segmentation,
                      "labels": row, "meta": case.meta})
        if progress:
            progress(index + 1, n_studies + test_studies, uid)

    test_rows = []
    for index, uid in enumerate(test_uids):
        case_seed = [int(seed), n_studies + index]
        case = make_case(case_seed, fracture_rate=fracture_rate, orientation="axial", **options)
        head_first = bool(rng.random() < head_first_fraction)
        write_study_dicom(case, out_dir / "test_images" / uid, uid, head_first)
        test_rows += [{"row_id": row_id(uid, t), "StudyInstanceUID": uid, "prediction_type": t} for t in TARGETS]
        truth.append({"StudyInstanceUID": uid, "split": "test", "seed": case_seed,
                      "slice_order": "head_first" if head_first else "feet_first",
                      "labels": {"StudyInstanceUID": uid, "patient_overall": case.patient_overall, **case.fractured},
                      "meta": case.meta})
        if progress:
            progress(n_studies + index + 1, n_studies + test_studies, uid)

    # Boxes for some of the fractured studies (at least one, so the file is never empty).
    fractured = [row["StudyInstanceUID"] for row in train_rows if row["patient_overall"] and boxes[row["StudyInstanceUID"]]]
    boxed = {uid for uid in fractured if rng.random() < box_fraction} or set(fractured[:1])
    box_rows = [b for uid in uids if uid in boxed for b in boxes[uid]]
    for entry in truth:
        entry["has_boxes"] = entry["StudyInstanceUID"] in boxed
    _write_csv(out_dir / "train.csv", train_rows, TRAIN_COLUMNS)
    _write_csv(out_dir / "train_bounding_boxes.csv", box_rows, BOX_COLUMNS)
    if test_uids:
        _write_csv(out_dir / "test.csv", test_rows, ("row_id", "StudyInstanceUID", "prediction_type"))
    document = {"generator": GENERATOR, "seed": seed, "studies": truth,
                "segmentation_orientation": "data[i, j, k] = labels[k by ascending z, rows - 1 - j, i]"}
    _atomic(out_dir / TRUTH_FILE,
            lambda temp: Path(temp).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8"))
    return uids


def main(argv=None):
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Write synthetic cervical spine CT studies in the RSNA 2022 Kaggle layout.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-studies", type=int, default=0, help="unlabelled studies in test_images/ with test.csv")
    parser.add_argument("--segmentation-fraction", type=float, default=0.25)
    parser.add_argument("--box-fraction", type=float, default=0.6, help="share of fractured studies that get boxes")
    parser.add_argument("--fracture-rate", type=float, default=0.5, help="share of patients with any fracture")
    parser.add_argument("--compressed-fraction", type=float, default=0.0, help="share of studies stored RLE Lossless")
    parser.add_argument("--max-shape", type=int, nargs=3, metavar=("K", "J", "I"), help="largest grid (default 256 192 192)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.studies < 1:
        parser.error("--studies must be at least 1")
    start = time.perf_counter()
    options = {"shape_limit": tuple(args.max_shape)} if args.max_shape else {}
    ids = generate(args.out, args.studies, args.seed, overwrite=args.overwrite,
                   segmentation_fraction=args.segmentation_fraction, box_fraction=args.box_fraction,
                   fracture_rate=args.fracture_rate, compressed_fraction=args.compressed_fraction,
                   test_studies=args.test_studies, case_options=options,
                   progress=lambda i, n, uid: print(f"[{i}/{n}] {uid}", flush=True))
    print(f"wrote {len(ids)} synthetic studies to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    from SpineAILib.errors import run_reporting_errors

    raise SystemExit(run_reporting_errors("generator", main))
