"""The DICOM instances a run's results refer to: which files, in which order, checked.

DICOM outputs (SEG, SR, secondary captures) go back into the source's study, so they
need the source series' own instances: ``check_dicom_input`` refuses a non-DICOM input
before anything is read; ``find_source`` (after the image is read, before the run)
finds the image's instances, orders them along the volume's K axis (or takes the
cine's multi-frame file) and refuses a series with missing SOP Instance UIDs or one
that mixes studies. Headers only: no pixel data is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SpineAILib.errors import InputError
from SpineAILib.images import Cine

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
POSITION_TOLERANCE_MM = 0.05


@dataclass
class Source:
    """The source instances of a run: header-only pydicom datasets."""

    kind: str  # "volume" (one dataset per K slice, or one multi-frame dataset) or "cine" (one multi-frame file)
    datasets: list  # pydicom Datasets without pixel data; volume: in K order
    frames: list = field(default_factory=list)  # multi-frame volume: the file's frame number (1-based) of each K
    shape: tuple = ()  # (K, rows, cols) of the run's image; a cine: (frames, rows, cols)
    ijk_to_ras: np.ndarray | None = None  # the run's image geometry (volumes)
    warnings: list = field(default_factory=list)  # what had to be recovered (said in report.json and the SR)

    @property
    def reference(self):
        """The dataset patient, study and equipment fields are copied from."""
        return self.datasets[0]

    @property
    def study_uid(self):
        return str(self.reference.StudyInstanceUID)

    @property
    def frame_of_reference_uid(self):
        return str(self.reference.get("FrameOfReferenceUID", "") or "")

    @property
    def multiframe(self):
        return len(self.datasets) == 1 and int(self.reference.get("NumberOfFrames", 1) or 1) > 1


def check_dicom_input(input_path):
    """Refuse, before any work, an input that is not DICOM: DICOM outputs need source instances."""
    from SpineAILib.io import input_kind

    kind = input_kind(input_path)
    if kind not in ("dicom-folder", "dicom-file"):
        what = {"volume": "a NIfTI/NRRD volume", "sequence": "a NRRD sequence", "video": "a video",
                "frame-folder": "a folder of image frames", "image": "a single picture"}.get(kind, kind)  # fmt: skip
        raise InputError(f"DICOM output needs a DICOM input: {input_path} is {what}")
    return kind


def _headers(input_path):
    import pydicom

    path = Path(input_path)
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )  # fmt: skip
    found = []
    for file in files:
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
            # an image (not a DICOMDIR, report or SEG); values decode only here, so inside the try
            is_image = "Rows" in ds and "Columns" in ds and ds.get("Modality") not in ("SEG", "SR", "KO", "PR")
        except Exception:  # not DICOM, or damaged: the reader already warned about it
            continue
        if is_image:
            found.append((file, ds))
    return found


def _recover_instance_uids(headers):
    """SOP Class/Instance UIDs blanked in the dataset (some anonymisers do) taken from the file meta,
    which names the same instance; the files are not touched. Returns how many were recovered."""
    recovered = 0
    for _, ds in headers:
        meta = getattr(ds, "file_meta", None)
        for key, meta_key in (("SOPInstanceUID", "MediaStorageSOPInstanceUID"), ("SOPClassUID", "MediaStorageSOPClassUID")):
            if not str(ds.get(key, "") or "").strip() and meta is not None and str(meta.get(meta_key, "") or "").strip():
                setattr(ds, key, str(meta.get(meta_key)))
                recovered += key == "SOPInstanceUID"
    return recovered


def _derived_uid(what, datasets):
    """A stable UID for a series or study whose UID was blanked: 2.25.<hash of its instances>."""
    import hashlib

    text = what + "\\" + "\\".join(sorted(str(ds.SOPInstanceUID) for ds in datasets))
    return f"2.25.{int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], 'big')}"


def _check_instances(chosen, where):
    missing = [str(file) for file, ds in chosen if not str(ds.get("SOPInstanceUID", "") or "").strip()]
    if missing:
        raise InputError(f"DICOM output needs SOP Instance UIDs, but {len(missing)} file(s) of {where} have none, "
                         f"e.g. {missing[0]}")  # fmt: skip
    studies = sorted({str(ds.get("StudyInstanceUID", "") or "").strip() for _, ds in chosen})
    if len(studies) > 1:
        raise InputError(f"DICOM output needs one study, but {where} mixes {len(studies)} studies ({', '.join(studies[:3])})")


def find_source(input_path, image):
    """The Source of ``image`` (read from ``input_path``); InputError when it cannot carry DICOM outputs."""
    check_dicom_input(input_path)
    headers = _headers(input_path)
    if not headers:
        raise InputError(f"DICOM output needs a DICOM input: no DICOM image in {input_path}")
    recovered = _recover_instance_uids(headers)
    _check_instances(headers, str(input_path))  # one study in the whole input, every instance identified
    source = _cine_source(input_path, image, headers) if isinstance(image, Cine) else _volume_source(input_path, image, headers)
    if recovered:
        source.warnings.append(f"{recovered} source file(s) have an empty SOP Instance UID; the DICOM outputs "
                               "reference the UID in their file meta")  # fmt: skip
    for key, what in (("StudyInstanceUID", "study"), ("SeriesInstanceUID", "series")):
        if not all(str(ds.get(key, "") or "").strip() for ds in source.datasets):  # blanked by an anonymiser
            uid = _derived_uid(what, source.datasets)
            for ds in source.datasets:
                setattr(ds, key, uid)
            source.warnings.append(f"the source {what} has no {what.capitalize()} Instance UID (anonymised?); the DICOM "
                                   f"outputs use {uid} for it" + (", so a PACS files them as a study of their own"
                                                                  if what == "study" else ""))  # fmt: skip
    return source


def _cine_source(input_path, cine, headers):
    n, rows, cols = cine.n_frames, *cine.frame_shape
    same_file = [(f, ds) for f, ds in headers if str(f) == str(cine.source) or Path(f) == Path(input_path)]
    fitting = [(f, ds) for f, ds in (same_file or headers)
               if int(ds.get("NumberOfFrames", 1) or 1) == n and (int(ds.Rows), int(ds.Columns)) == (rows, cols)]  # fmt: skip
    if len(fitting) != 1:
        raise InputError(f"DICOM output: cannot tell which file of {input_path} holds the {n}-frame cine")
    return Source("cine", [fitting[0][1]], shape=(n, rows, cols))


def _positions(ds):
    """[(frame number or None, LPS position)] of an image's planes."""
    ipp = ds.get("ImagePositionPatient")
    if ipp is not None:
        return [(None, np.asarray([float(v) for v in ipp]))]
    planes = []
    for number, item in enumerate(ds.get("PerFrameFunctionalGroupsSequence", []) or [], start=1):
        try:
            planes.append((number, np.asarray([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])))
        except (AttributeError, IndexError):
            pass
    if not planes:
        try:
            position = ds.SharedFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
            planes.append((1, np.asarray([float(v) for v in position])))
        except (AttributeError, IndexError):
            pass
    return planes


def _volume_source(input_path, image, headers):
    uid = str(image.metadata.get("SeriesInstanceUID", "") or "")  # "" when blanked: matched by position below
    series = [(f, ds) for f, ds in headers if str(ds.get("SeriesInstanceUID", "") or "") == uid]
    _check_instances(series, f"series {uid or image.description or input_path}")
    k_count, rows, cols = image.voxels.shape
    lps = RAS_TO_LPS @ image.ijk_to_ras[:3, :]
    expected = np.stack([lps @ np.array([0.0, 0.0, k, 1.0]) for k in range(k_count)])
    slot = [None] * k_count
    for file, ds in series:
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            continue
        for frame, position in _positions(ds):
            distance = np.linalg.norm(expected - position, axis=1)
            k = int(np.argmin(distance))
            if distance[k] <= max(POSITION_TOLERANCE_MM, 0.01 * float(np.linalg.norm(lps[:, 2]))) and slot[k] is None:
                slot[k] = (ds, frame)
    missing = [k for k, s in enumerate(slot) if s is None]
    if missing:
        raise InputError(f"DICOM output: {len(missing)} of the {k_count} slices of series {uid} have no source instance "
                         f"at their position (e.g. slice {missing[0] + 1})")  # fmt: skip
    datasets, frames = [], []
    if all(frame is None for _, frame in slot):
        datasets = [ds for ds, _ in slot]
    else:
        owners = {id(ds) for ds, _ in slot}
        if len(owners) != 1:
            raise InputError(f"DICOM output: series {uid} mixes multi-frame and single-frame instances")
        datasets, frames = [slot[0][0]], [frame for _, frame in slot]
    return Source("volume", datasets, frames=frames, shape=(k_count, rows, cols), ijk_to_ras=image.ijk_to_ras.copy())
