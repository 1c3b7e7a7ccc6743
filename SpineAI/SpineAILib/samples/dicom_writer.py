"""Write a VolumeImage as a real DICOM series (one CT or MR Image Storage file per slice).

Lets tests and demos exercise the DICOM reader on data whose geometry is known
exactly, and plant problems on purpose: identifiers (patient name/ID) that must
not leak into outputs, and missing slices (``drop_slices``) that the reader must
refuse. Geometry is derived from ``image.ijk_to_ras`` the way DICOM defines it:
patient coordinates are LPS, so LPS = diag(-1, -1, 1) @ RAS.
"""

import copy
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

SOP_CLASSES = {
    "CT": pydicom.uid.CTImageStorage,
    "MR": pydicom.uid.MRImageStorage,
}
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _ds(value):
    """A decimal string that fits DICOM's 16 characters with as much precision as possible."""
    value = float(value)
    if abs(value) < 1e-12:  # avoid '1e-17'-style noise from rotations
        value = 0.0
    return format_number_as_ds(value)


def _geometry(ijk_to_ras):
    """IOP, PixelSpacing (row, col), slice step vector (LPS) and LPS matrix from IJK->RAS."""
    lps = RAS_TO_LPS @ np.asarray(ijk_to_ras, dtype=float)[:3, :]
    col_spacing = np.linalg.norm(lps[:, 0])  # along I: distance between columns
    row_spacing = np.linalg.norm(lps[:, 1])  # along J: distance between rows
    row_cosine = lps[:, 0] / col_spacing
    col_cosine = lps[:, 1] / row_spacing
    return row_cosine, col_cosine, (row_spacing, col_spacing), lps[:, 2], lps


def _stored_values(voxels, slope, intercept):
    """Physical values -> stored integers, and whether they need a signed type."""
    stored = np.rint((voxels.astype(np.float64) - intercept) / slope)
    lo, hi = (float(stored.min()), float(stored.max())) if stored.size else (0.0, 0.0)
    if lo >= 0 and hi <= 65535:
        return stored.astype(np.uint16), 0
    if lo >= -32768 and hi <= 32767:
        return stored.astype(np.int16), 1
    raise ValueError(
        f"values {voxels.min()}..{voxels.max()} do not fit 16 bits with slope {slope} and intercept {intercept}"
    )


def _series_dataset(image, modality, series_description, patient_name, patient_id, study_uid, series_uid):
    """Attributes shared by every slice of the series."""
    now = datetime.now()
    ds = Dataset()
    ds.SOPClassUID = SOP_CLASSES[modality]
    ds.Modality = modality
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = 1
    ds.SeriesDescription = series_description
    ds.Manufacturer = "SpineAI phantom"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if image.orientation == "axial" else "OTHER"]
    if modality == "CT":
        ds.KVP = ""
        ds.RescaleType = "HU"
    else:  # MR Image module, type 1/2 attributes
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "3D"
        ds.EchoTime = ""
        ds.RepetitionTime = ""
        ds.EchoTrainLength = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def write_dicom_series(
    image,
    folder,
    *,
    modality="CT",
    series_description="",
    patient_name="Anonymous",
    patient_id="SPINEAI-PHANTOM",
    study_uid=None,
    series_uid=None,
    drop_slices=(),
    rescale=(1.0, -1024.0),
):
    """Write ``image`` as one DICOM file per K slice into ``folder``; return the paths.

    ``rescale`` = (RescaleSlope, RescaleIntercept): stored = (value - intercept) / slope,
    rounded to 16-bit integers. ``drop_slices``: K indices not written (a planted gap).
    """
    modality = modality.upper()
    if modality not in SOP_CLASSES:
        raise ValueError(f"modality must be one of {sorted(SOP_CLASSES)}, got {modality!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    slope, intercept = (float(v) for v in rescale)
    stored, signed = _stored_values(image.voxels, slope, intercept)
    row_cos, col_cos, spacing, step, lps = _geometry(image.ijk_to_ras)
    normal = np.cross(row_cos, col_cos)
    thickness = abs(float(step @ normal))  # distance between slice planes, also under shear

    shared = _series_dataset(image, modality, series_description, patient_name, patient_id, study_uid, series_uid)
    shared.ImageOrientationPatient = [_ds(v) for v in (*row_cos, *col_cos)]
    shared.PixelSpacing = [_ds(v) for v in spacing]
    shared.SliceThickness = _ds(thickness)
    shared.SpacingBetweenSlices = _ds(thickness)
    shared.RescaleSlope = _ds(slope)
    shared.RescaleIntercept = _ds(intercept)
    shared.Rows, shared.Columns = (int(v) for v in image.voxels.shape[1:])
    shared.PixelRepresentation = signed

    dropped = {int(k) for k in drop_slices}
    paths = []
    for k in range(image.voxels.shape[0]):
        if k in dropped:
            continue
        ds = copy.deepcopy(shared)
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        position = lps @ np.array([0.0, 0.0, k, 1.0])
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(position @ normal)
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta
        ds.preamble = b"\0" * 128

        path = folder / f"slice_{k + 1:04d}.dcm"
        try:
            ds.save_as(path, enforce_file_format=True)
        except TypeError:  # pydicom 2.4 (Slicer's own)
            ds.save_as(path, write_like_original=False)
        paths.append(path)
    return paths
