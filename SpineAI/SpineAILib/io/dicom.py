"""DICOM reader: folders of series, single files and enhanced multi-frame files.

Geometry comes from the headers exactly as DICOM defines it, never from file
names or array order: patient coordinates are LPS, so RAS = diag(-1, -1, 1) @ LPS;
the I axis follows the row direction cosine (IOP[0:3]) at the column spacing, J
the column direction cosine (IOP[3:6]) at the row spacing, and K the actual step
between slice positions, so gantry tilt and oblique stacks keep their shape.

Slices are sorted by their position along the slice normal. Problems that would
silently distort the anatomy (missing slices, mixed orientations or sizes) are
refused with a one-line InputError; harmless ones (duplicate slices, a corrupt
file beside a good series) become warnings on the loaded image. Ultrasound and
other 2-D multi-frame files are handed to ``io.cine.load_dicom_cine``.
"""

from __future__ import annotations  # `X | None` fields on Python 3.9 (Slicer 5.8)

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.multival import MultiValue
from pydicom.uid import UID

from SpineAILib.errors import AmbiguousInputError, InputError
from SpineAILib.images import VolumeImage, plane_of_normal
from SpineAILib.io.checks import (
    check_allocation,
    check_finite,
    check_matrix,
    check_orientation,
    check_pixel_header,
    check_pixel_length,
    check_rescale,
    check_spacing,
)  # fmt: skip

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
STEP_TOLERANCE = 0.10  # a slice step this far from the median is a gap (or irregular)
SAME_ORIENTATION = 1e-3  # largest direction-cosine difference still counted as the same plane
SAME_POSITION_MM = 1e-3  # slices closer than this along the normal are duplicates
LOCALIZER_MAX_SLICES = 2  # a series this short is a scout, not a volume to analyse

# Package that decodes each compressed transfer syntax (pydicom needs a plugin for most).
DECODER_HINTS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg (or pillow)",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg (or pillow)",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",
}

# Header fields copied to VolumeImage.metadata. Deliberately no patient name, ID,
# birth date, dates, institution or operator: metadata ends up in reports and scenes.
METADATA_KEYS = (
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
    "SeriesNumber",
    "SeriesDescription",
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "ProtocolName",
    "ImageType",
    "SOPClassUID",
    "PhotometricInterpretation",
    "SliceThickness",
    "KVP",
    "ConvolutionKernel",
    "MagneticFieldStrength",
    "ScanningSequence",
    "SequenceName",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "FlipAngle",
)


@dataclass
class _Slice:
    """One 2-D image of a volume: a single-frame file or one frame of an enhanced file."""

    path: Path
    frame: int | None  # frame index in a multi-frame file; None for a single-frame file
    instance: int
    iop: np.ndarray | None  # (6,) LPS row cosine then column cosine
    ipp: np.ndarray | None  # (3,) LPS position of the centre of the first voxel
    pixel_spacing: tuple | None  # (between rows, between columns) mm
    thickness: float | None
    rows: int
    cols: int
    slope: float
    intercept: float


@dataclass
class SeriesInfo:
    """What one series (or one multi-frame file) in a folder holds, from headers only."""

    uid: str
    modality: str = ""
    description: str = ""
    series_number: int | None = None
    kind: str = "volume"  # "volume" or "cine"
    files: list = field(default_factory=list)
    slices: list = field(default_factory=list)  # the stack to load, in K order (volumes)
    orientation: str = ""  # sagittal / coronal / axial / oblique ("" for a cine)
    n_slices: int = 0  # slices of the stack to load, or frames of a cine
    rows: int = 0
    cols: int = 0
    is_multiframe: bool = False
    is_cine: bool = False
    is_localizer: bool = False
    ijk_to_ras: np.ndarray | None = None
    pixel_spacing: tuple | None = None  # (row, col) mm
    warnings: list = field(default_factory=list)
    problem: str = ""  # why it cannot be loaded as it is ("" = loadable)
    study_uid: str = ""
    sop_uid: str = ""  # single-file entries (cine, enhanced multi-frame) can be chosen by it
    transfer_syntax: str = ""
    header: object = None  # header (no pixels) of the first file

    @property
    def spacing(self):
        if self.ijk_to_ras is not None:
            return tuple(float(np.linalg.norm(self.ijk_to_ras[:3, a])) for a in range(3))
        if self.pixel_spacing:
            return (float(self.pixel_spacing[1]), float(self.pixel_spacing[0]))
        return None

    def label(self):
        """Short one-line description for choice lists."""
        what = "frames" if self.kind == "cine" else "slices"
        parts = [f"'{self.description}'" if self.description else "(no description)", self.modality or "?"]
        parts += [self.orientation or ("cine" if self.kind == "cine" else "")]
        return " ".join(p for p in parts + [f"{self.n_slices} {what}"] if p)


# ---------------------------------------------------------------- small header helpers


def _floats(value, n):
    """``n`` floats from a multi-valued header element, or None when absent or malformed."""
    try:
        values = [float(v) for v in (value if isinstance(value, (list, tuple, MultiValue)) else [value])]
    except (TypeError, ValueError):
        return None
    if len(values) != n or not all(math.isfinite(v) for v in values):
        return None
    return np.array(values, dtype=np.float64)


def _float(value, default=None):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def _int(value, default=0):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _text(ds, key):
    return str(ds.get(key, "") or "").strip()


def _reason(error):
    """First line of an exception message, short enough for a one-line error."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def _sop_class(ds):
    meta = getattr(ds, "file_meta", None)
    return UID(str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else "")))


def _transfer_syntax(ds):
    meta = getattr(ds, "file_meta", None)
    return UID(str(meta.get("TransferSyntaxUID", "") if meta else "") or pydicom.uid.ImplicitVRLittleEndian)


def _n_frames(ds):
    return max(1, _int(ds.get("NumberOfFrames"), 1))


def _functional(ds, frame, macro, attribute):
    """An attribute of an enhanced multi-frame file: per-frame group first, then the shared one."""
    items = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if frame < len(per_frame):
        items.append(per_frame[frame])
    items.extend((ds.get("SharedFunctionalGroupsSequence") or [])[:1])
    for item in items:
        sequence = item.get(macro)
        if sequence and attribute in sequence[0]:
            return sequence[0].get(attribute)
    return None


def _is_enhanced_volume(ds):
    """Enhanced CT/MR style multi-frame with 3-D position per frame."""
    return (
        _text(ds, "Modality") != "US"
        and "PerFrameFunctionalGroupsSequence" in ds
        and _functional(ds, 0, "PlanePositionSequence", "ImagePositionPatient") is not None
    )


def _is_cine(ds):
    """Ultrasound, or a multi-frame file without 3-D frame geometry: 2-D frames over time."""
    return _text(ds, "Modality") == "US" or (_n_frames(ds) > 1 and not _is_enhanced_volume(ds))


# ---------------------------------------------------------------- reading headers


def is_dicom_file(path):
    """True for a DICOM file: 'DICM' at offset 128, or a parsable file without preamble."""
    try:
        path = Path(path)
        if not path.is_file():
            return False
        with open(path, "rb") as f:
            head = f.read(132)
        if len(head) == 132 and head[128:132] == b"DICM":
            return True
        # Files written without preamble start with a group 0002 or 0008 tag (little endian).
        if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00") or head[3:4] != b"\x00":
            return False
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        return any(key in ds for key in ("SOPClassUID", "SOPInstanceUID", "Modality"))
    except Exception:
        return False


def _read_header(path, shown=None):
    """(header, None) for a DICOM image; (None, warning) for a broken one; (None, None) otherwise.

    Non-DICOM files and DICOM objects without images (DICOMDIR, reports) are skipped
    silently; pydicom reads truncated headers without complaint, so an image whose
    header lacks the elements every image has is reported as corrupt.
    """
    shown = shown or path
    if not is_dicom_file(path):
        return None, None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as error:
        return None, f"{shown}: unreadable DICOM file ({_reason(error)}); skipped"
    sop = _sop_class(ds)
    if not sop:
        return None, f"{shown}: corrupt DICOM file (no SOP class in its header); skipped"
    # A header cut short can leave a truncated SOP Class UID: trust the file meta's too.
    meta = getattr(ds, "file_meta", None)
    media_sop = UID(str(meta.get("MediaStorageSOPClassUID", "") if meta else ""))
    is_image = "Rows" in ds or any("Image" in (uid.name or "") for uid in (sop, media_sop))
    if not is_image:
        return None, None
    missing = [key for key in ("Rows", "Columns") if key not in ds]
    if missing:
        return None, f"{shown}: corrupt or truncated DICOM header (no {', '.join(missing)}); skipped"
    return ds, None


def _plain_slice(path, ds):
    what = Path(path).name
    check_pixel_header(ds, what)
    slope, intercept = _rescale(ds, ds.get("RescaleSlope"), ds.get("RescaleIntercept"), what)
    return _Slice(
        path=path,
        frame=None,
        instance=_int(ds.get("InstanceNumber")),
        iop=_orientation(ds.get("ImageOrientationPatient"), what),
        ipp=_floats(ds.get("ImagePositionPatient"), 3),
        pixel_spacing=_spacing_tuple(_floats(ds.get("PixelSpacing"), 2), what),
        thickness=_float(ds.get("SliceThickness")),
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        slope=slope,
        intercept=intercept,
    )


def _orientation(value, what):
    """ImageOrientationPatient as 6 floats (None when absent), refused when it is no orientation."""
    if value is None or value == "":
        return None
    values = _floats(value, 6)
    return check_orientation(values if values is not None else [float("nan")] * 6, what)


def _stored_range(ds):
    bits = _int(ds.get("BitsStored"), _int(ds.get("BitsAllocated"), 16))
    if _int(ds.get("PixelRepresentation")) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _rescale(ds, slope, intercept, what):
    """(slope, intercept): absent -> 1, 0; present but NaN, infinite, zero or overflowing -> refused."""
    def number(value, default, name):
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"{what}: {name} {value!r} is not a number") from None

    slope, intercept = number(slope, 1.0, "RescaleSlope"), number(intercept, 0.0, "RescaleIntercept")
    return check_rescale(slope, intercept, _stored_range(ds), what)


def _enhanced_slices(path, ds):
    """One _Slice per frame of an enhanced multi-frame file, from its functional groups."""
    what = Path(path).name
    check_pixel_header(ds, what)
    slices = []
    for frame in range(_n_frames(ds)):
        rescale = _rescale(ds, _functional(ds, frame, "PixelValueTransformationSequence", "RescaleSlope"),
                           _functional(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept"), what)  # fmt: skip
        slices.append(
            _Slice(
                path=path,
                frame=frame,
                instance=frame + 1,
                iop=_orientation(_functional(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient"), what),
                ipp=_floats(_functional(ds, frame, "PlanePositionSequence", "ImagePositionPatient"), 3),
                pixel_spacing=_spacing_tuple(_floats(_functional(ds, frame, "PixelMeasuresSequence", "PixelSpacing"), 2), what),
                thickness=_float(_functional(ds, frame, "PixelMeasuresSequence", "SliceThickness")),
                rows=int(ds.Rows),
                cols=int(ds.Columns),
                slope=rescale[0],
                intercept=rescale[1],
            )
        )
    return slices


def _spacing_tuple(values, what="DICOM image"):
    """(row, col) mm; None when absent; zero or negative spacing is refused, not taken for absent."""
    if values is None:
        return None
    return check_spacing(values, what)


def _new_info(path, ds, kind):
    return SeriesInfo(
        uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality"),
        description=_text(ds, "SeriesDescription"),
        series_number=_int(ds.get("SeriesNumber"), None),
        kind=kind,
        files=[path],
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        is_multiframe=_n_frames(ds) > 1,
        is_cine=kind == "cine",
        study_uid=_text(ds, "StudyInstanceUID"),
        transfer_syntax=str(_transfer_syntax(ds)),
        header=ds,
    )


def _series_key(ds):
    """SeriesInstanceUID; anonymisers sometimes blank it, then number + description + size."""
    uid = _text(ds, "SeriesInstanceUID")
    return uid or ("", _text(ds, "SeriesNumber"), _text(ds, "SeriesDescription"), int(ds.Rows), int(ds.Columns))


def _files_under(folder):
    """Every non-hidden file below ``folder``, in a stable order."""
    folder = Path(folder)
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _scan(folder):
    """(series infos in a stable order, folder-level warnings)."""
    folder = Path(folder)
    infos, by_series, warnings = [], {}, []
    for path in _files_under(folder):
        ds, warning = _read_header(path, shown=path.relative_to(folder))
        if warning:
            warnings.append(warning)
        if ds is None:
            continue
        try:
            if _is_cine(ds):
                info = _new_info(path, ds, "cine")
                info.sop_uid, info.n_slices = _text(ds, "SOPInstanceUID"), _n_frames(ds)
                info.pixel_spacing = _spacing_tuple(_floats(ds.get("PixelSpacing"), 2))
                infos.append(info)
            elif _is_enhanced_volume(ds):
                info = _new_info(path, ds, "volume")
                info.sop_uid, info.slices = _text(ds, "SOPInstanceUID"), _enhanced_slices(path, ds)
                infos.append(info)
            else:
                slice_ = _plain_slice(path, ds)
                key = _series_key(ds)
                if key not in by_series:
                    by_series[key] = _new_info(path, ds, "volume")
                    infos.append(by_series[key])
                else:
                    by_series[key].files.append(path)
                by_series[key].slices.append(slice_)
        except Exception as error:  # a malformed value in an otherwise parsable header
            warnings.append(f"{path.relative_to(folder)}: corrupt DICOM header ({_reason(error)}); skipped")
    for info in infos:
        if info.kind == "volume":
            _analyse_volume(info)
    infos.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.description, s.uid, str(s.files[0])))
    return infos, warnings


def scan_folder(folder):
    """Every image series below ``folder`` (recursively), from headers only.

    Folder-level warnings (unreadable or corrupt files) are added to every series'
    warnings, since a corrupt file cannot be attributed to a series.
    """
    infos, warnings = _scan(folder)
    for info in infos:
        info.warnings[:0] = warnings
    return infos


# ---------------------------------------------------------------- volume geometry


def _orientation_groups(slices):
    """Slices clustered by orientation (greedy; IOPs within SAME_ORIENTATION agree)."""
    groups = []
    for s in slices:
        for group in groups:
            if np.max(np.abs(group[0].iop - s.iop)) <= SAME_ORIENTATION:
                group.append(s)
                break
        else:
            groups.append([s])
    return sorted(groups, key=len, reverse=True)


def _normal(iop):
    return np.cross(iop[:3], iop[3:])


def _angle_deg(a, b):
    return math.degrees(math.acos(min(1.0, abs(float(_normal(a.iop) @ _normal(b.iop))))))


def _choose_stack(slices, warnings):
    """The stack of one orientation to load; raises InputError on an unclean mix."""
    groups = _orientation_groups(slices)
    if len(groups) == 1:
        return slices
    sizes = [len(g) for g in groups]
    if min(sizes) >= 2 and sizes[0] > sizes[1]:
        main = groups[0]
        warnings.append(
            f"series holds {len(groups)} stacks with different orientations ({', '.join(map(str, sizes))} slices); "
            f"loaded the largest ({plane_of_normal(LPS_TO_RAS @ _normal(main[0].iop))}, {sizes[0]} slices)"
        )
        return main
    odd = groups[-1][0]
    raise InputError(
        f"slices with differing orientation: {odd.path.name} is tilted {_angle_deg(odd, groups[0][0]):.1f} degrees "
        f"from {groups[0][0].path.name} ({len(groups)} orientations among {len(slices)} slices, "
        f"{'/'.join(map(str, sizes))} slices each); remove the odd slices or split the series"
    )


def _fill_missing_geometry(slices, warnings):
    """Headers without position/orientation (e.g. secondary capture): order by InstanceNumber."""
    have = [s.iop is not None and s.ipp is not None for s in slices]
    if all(have):
        return
    if any(have):
        missing = next(s for s, ok in zip(slices, have) if not ok)
        raise InputError(f"{missing.path.name} has no ImagePositionPatient/ImageOrientationPatient while other slices do")
    step = slices[0].thickness or 1.0
    for k, s in enumerate(sorted(slices, key=lambda s: s.instance)):
        s.iop, s.ipp = np.array([1.0, 0, 0, 0, 1.0, 0]), np.array([0.0, 0.0, k * step])
    warnings.append("no patient position/orientation in the headers: slices ordered by InstanceNumber, identity orientation assumed")


def _sorted_unique(slices, normal, warnings):
    """Slices sorted along the normal; duplicates of a position are dropped with a warning."""
    ordered = sorted(slices, key=lambda s: (float(s.ipp @ normal), s.instance, str(s.path), s.frame or 0))
    kept = [ordered[0]]
    for s in ordered[1:]:
        if abs(float((s.ipp - kept[-1].ipp) @ normal)) > SAME_POSITION_MM:
            kept.append(s)
    if len(kept) < len(ordered):
        warnings.append(
            f"{len(ordered) - len(kept)} slice(s) repeat a position already present (duplicates or repeated "
            f"acquisitions); kept the first of each position, {len(kept)} slices remain"
        )
    return kept


def _check_steps(positions):
    """Refuse missing or irregularly spaced slices (never stretch the volume over a gap)."""
    steps = np.diff(positions)
    if len(steps) < 2:
        return
    expected = float(np.median(steps))
    bad = np.flatnonzero(np.abs(steps - expected) > STEP_TOLERANCE * expected)
    if not len(bad):
        return
    k = int(bad[0])
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    what = "missing slice(s): gap" if steps[k] > expected else "irregular slice spacing: step"
    raise InputError(
        f"{what} of {steps[k]:.1f} mm between slice {k + 1} and {k + 2} where {expected:.1f} mm is expected{more}; "
        f"the series is incomplete or mixes acquisitions"
    )


def _check_collinear(slices, step):
    """Every slice origin must lie on the line origin + k * step (consistent tilt/shear)."""
    origins = np.array([s.ipp for s in slices])
    predicted = origins[0] + np.outer(np.arange(len(slices)), step)
    drift = np.linalg.norm(origins - predicted, axis=1)
    worst = int(np.argmax(drift))
    if drift[worst] > STEP_TOLERANCE * max(np.linalg.norm(step), 1e-6):
        raise InputError(
            f"slice positions do not line up: slice {worst + 1} ({slices[worst].path.name}) is {drift[worst]:.1f} mm "
            f"off the line of the others"
        )


def _stack_geometry(slices, warnings):
    """(slices in K order, 4x4 IJK->RAS) for one series; raises InputError on bad geometry."""
    _fill_missing_geometry(slices, warnings)
    slices = _choose_stack(slices, warnings)
    sizes = sorted({(s.rows, s.cols) for s in slices})
    if len(sizes) > 1:
        raise InputError(f"slices of different sizes in one series: {', '.join(f'{r}x{c}' for r, c in sizes)} (rows x columns)")

    spacings = {s.pixel_spacing for s in slices}
    if None in spacings:
        warnings.append("no PixelSpacing in the headers: 1 mm pixels assumed")
        spacings = {(1.0, 1.0) if v is None else v for v in spacings}
    if len(spacings) > 1 and np.ptp(np.array(sorted(spacings)), axis=0).max() > 1e-3 * max(max(spacings)):
        raise InputError(f"slices with different PixelSpacing in one series: {sorted(spacings)}")
    row_spacing, col_spacing = next(iter(spacings))

    iop = slices[0].iop
    row_cos, col_cos = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(row_cos, col_cos)
    slices = _sorted_unique(slices, normal, warnings)
    if len(slices) > 1:
        _check_steps([float(s.ipp @ normal) for s in slices])
        step = (slices[-1].ipp - slices[0].ipp) / (len(slices) - 1)
        _check_collinear(slices, step)
    else:
        step = normal * (slices[0].thickness or 1.0)

    lps = np.eye(4)
    lps[:3, 0] = row_cos * col_spacing  # I: along a row, one column to the next
    lps[:3, 1] = col_cos * row_spacing  # J: down a column, one row to the next
    lps[:3, 2] = step
    lps[:3, 3] = slices[0].ipp
    ijk_to_ras = lps.copy()
    ijk_to_ras[:3] = LPS_TO_RAS @ lps[:3]
    return slices, ijk_to_ras


def _analyse_volume(info):
    """Fill the geometry fields of a volume entry; a fatal problem is kept in ``info.problem``."""
    header = info.header
    info.is_localizer = "LOCALIZER" in [str(v).upper() for v in (header.get("ImageType") or [])]
    if _int(header.get("SamplesPerPixel"), 1) != 1:
        info.problem = f"colour ({header.get('PhotometricInterpretation', 'RGB')}) images cannot be loaded as a volume"
    try:
        slices, info.ijk_to_ras = _stack_geometry(info.slices, info.warnings)
    except InputError as error:
        info.problem = info.problem or str(error)
        slices = info.slices
    info.slices = slices
    info.n_slices = len(slices)
    info.pixel_spacing = slices[0].pixel_spacing
    if info.ijk_to_ras is not None:
        direction = info.ijk_to_ras[:3, :3] / np.linalg.norm(info.ijk_to_ras[:3, :3], axis=0)
        info.orientation = plane_of_normal(np.cross(direction[:, 0], direction[:, 1]))
    info.is_localizer = info.is_localizer or (not info.is_multiframe and info.n_slices <= LOCALIZER_MAX_SLICES)


# ---------------------------------------------------------------- pixels


def _decode_error(path, ds, error):
    syntax = _transfer_syntax(ds)
    name = syntax.name or str(syntax)
    try:
        from pydicom.pixels.decoders.base import get_decoder

        available = syntax.is_compressed is False or get_decoder(syntax).is_available
    except ImportError:  # pydicom 2.4 (Slicer's own): its pixel data handlers
        available = syntax.is_compressed is False or any(
            h.supports_transfer_syntax(syntax) and h.is_available() for h in pydicom.config.pixel_data_handlers)
    except Exception:  # no decoder at all for this syntax
        available = False
    if not available:
        hint = DECODER_HINTS.get(str(syntax), "python-gdcm")
        return InputError(
            f"{path.name}: cannot decode pixel data stored as {name} ({syntax}); install {hint} "
            f"(or python-gdcm) so that pydicom can read it"
        )
    return InputError(f"{path.name}: pixel data ({name}) could not be decoded, the file may be truncated or corrupt: {_reason(error)}")


def _ensure_transfer_syntax(ds):
    """Files without file meta (old, no preamble) still say how they were encoded: record it."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    syntax = pydicom.uid.ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian
    if not little:
        syntax = pydicom.uid.ExplicitVRBigEndian
    if meta is None:
        ds.file_meta = meta = pydicom.dataset.FileMetaDataset()
    meta.TransferSyntaxUID = syntax


def read_pixels(path):
    """The stored pixel array of one DICOM file (frames first when multi-frame), after the pixel
    module's checks (sizes, bits, data length: a truncated file is refused, not padded).
    Every DICOM reader decodes through here: series, study and single files."""
    path = Path(path)
    ds = pydicom.dcmread(path, force=True)
    _ensure_transfer_syntax(ds)
    check_pixel_header(ds, path.name)
    itemsize = max(1, _int(ds.get("BitsAllocated"), 16) // 8)
    check_allocation((_n_frames(ds), _int(ds.get("Rows")), _int(ds.get("Columns")), _int(ds.get("SamplesPerPixel"), 1)),
                     np.dtype(f"u{itemsize}"), what=path.name)  # fmt: skip
    check_pixel_length(ds, _n_frames(ds), path.name)
    try:
        return ds.pixel_array
    except Exception as error:  # a decoder's complaint about a damaged stream
        raise _decode_error(path, ds, error) from None


class _PixelSource:
    """Decodes slices one file at a time, keeping only the last multi-frame file's frames."""

    def __init__(self):
        self._path, self._frames = None, None

    def pixels(self, s):
        if s.frame is not None and s.path == self._path:
            return self._frames[s.frame]
        array = read_pixels(s.path)
        if s.frame is None:
            return array.reshape(array.shape[-2:]) if array.ndim == 3 and array.shape[0] == 1 else array
        self._path, self._frames = s.path, (array if array.ndim == 3 else array[np.newaxis])
        return self._frames[s.frame]


def _output_dtype(slices, header):
    """(dtype to allocate, whether a float result may be narrowed to int16 afterwards)."""
    integral = all(float(s.slope).is_integer() and float(s.intercept).is_integer() for s in slices)
    if not integral:
        return np.float32, False
    bits = _int(header.get("BitsStored"), _int(header.get("BitsAllocated"), 16))
    signed = _int(header.get("PixelRepresentation")) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    ends = [v * s.slope + s.intercept for s in slices for v in (lo, hi)]
    if min(ends) >= -32768 and max(ends) <= 32767:
        return np.int16, False
    return np.float32, True  # e.g. 16-bit unsigned data: narrow if the actual values fit


def _metadata(info):
    header = info.header
    meta = {}
    for key in METADATA_KEYS:
        value = header.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, MultiValue):
            value = [str(v) for v in value]
        elif isinstance(value, (int, float)):
            value = float(value) if isinstance(value, float) else int(value)
        else:
            value = str(value)
        meta[key] = value
    meta["TransferSyntaxUID"] = info.transfer_syntax
    meta["NumberOfFiles"] = len(info.files)
    if info.is_multiframe:
        meta["NumberOfFrames"] = _n_frames(header)
    return meta


def _load_volume(info, extra_warnings=()):
    """Decode, rescale and wrap one analysed volume entry."""
    where = f"DICOM series '{info.description}'" if info.description else f"DICOM series in {info.files[0].parent}"
    if info.problem:
        raise InputError(f"{where}: {info.problem}")
    slices = info.slices
    shape = (len(slices), info.rows, info.cols)
    dtype, narrow = _output_dtype(slices, info.header)
    check_allocation(shape, dtype, what=where)  # before any pixel is decoded
    voxels = np.empty(shape, dtype=dtype)
    source = _PixelSource()
    for k, s in enumerate(slices):
        pixels = source.pixels(s)
        if pixels.shape != shape[1:]:
            raise InputError(f"{s.path.name}: pixel data is {pixels.shape}, the header says {shape[1:]} (rows, columns)")
        voxels[k] = pixels.astype(np.float64) * s.slope + s.intercept
    if narrow and voxels.size and voxels.min() >= -32768 and voxels.max() <= 32767:
        voxels = voxels.astype(np.int16)
    check_finite(voxels, what=where)
    check_matrix(info.ijk_to_ras, what=where, shape=voxels.shape)
    return VolumeImage(
        voxels=voxels,
        ijk_to_ras=info.ijk_to_ras,
        modality=info.modality,
        description=info.description,
        source=str(info.files[0].parent if len(info.files) > 1 else info.files[0]),
        metadata=_metadata(info),
        warnings=list(extra_warnings) + list(info.warnings),
    )


def _load_cine(info, extra_warnings=()):
    """Hand a 2-D multi-frame / ultrasound file to the cine reader."""
    try:
        from SpineAILib.io.cine import load_dicom_cine
    except ImportError as error:
        raise InputError(f"{info.files[0]}: ultrasound cine reader is not available ({_reason(error)})") from error
    cine = load_dicom_cine(info.files[0])
    cine.warnings[:0] = list(extra_warnings)
    return cine


def _load_info(info, extra_warnings=()):
    return _load_cine(info, extra_warnings) if info.kind == "cine" else _load_volume(info, extra_warnings)


# ---------------------------------------------------------------- public API


def load_series(files):
    """Load the slices in ``files`` (one series) as a VolumeImage."""
    files = [Path(f) for f in files]
    if not files:
        raise InputError("no DICOM files given")
    slices, warnings, first = [], [], None
    for path in files:
        ds, warning = _read_header(path)
        if warning:
            warnings.append(warning)
        if ds is None:
            continue
        if first is None:
            first = _new_info(path, ds, "volume")
        else:
            first.files.append(path)
        slices.extend(_enhanced_slices(path, ds) if _is_enhanced_volume(ds) else [_plain_slice(path, ds)])
    if first is None:
        raise InputError(f"none of the {len(files)} files is a readable DICOM image" + (f": {warnings[0]}" if warnings else ""))
    first.slices = slices
    _analyse_volume(first)
    return _load_volume(first, warnings)


def load_file(path):
    """One DICOM file: a cine (ultrasound / 2-D multi-frame), an enhanced volume or a 1-slice volume."""
    path = Path(path)
    if not is_dicom_file(path):
        raise InputError(f"{path}: not a DICOM file")
    ds, warning = _read_header(path)
    if ds is None:
        raise InputError(warning or f"{path}: this DICOM file holds no image (e.g. a DICOMDIR or a report)")
    if _is_cine(ds):
        info = _new_info(path, ds, "cine")
        return _load_cine(info)
    info = _new_info(path, ds, "volume")
    enhanced = _is_enhanced_volume(ds)
    info.slices = _enhanced_slices(path, ds) if enhanced else [_plain_slice(path, ds)]
    _analyse_volume(info)
    image = _load_volume(info)
    others = [p for p in path.parent.iterdir() if p.is_file() and p != path and not p.name.startswith(".")]
    if not enhanced and others:
        image.warnings.append("loaded a single slice; give its folder to load the whole series")
    return image


def describe_folder(folder):
    """JSON-ready summary of every series below ``folder`` (index is 1-based, for ``--series N``)."""
    items = []
    for index, info in enumerate(scan_folder(folder), start=1):
        spacing = info.spacing
        items.append(
            {
                "index": index,
                "series_instance_uid": info.uid,
                "sop_instance_uid": info.sop_uid or None,
                "kind": info.kind,
                "modality": info.modality,
                "description": info.description,
                "series_number": info.series_number,
                "orientation": info.orientation,
                "slices": info.n_slices,
                "dimensions": [info.cols, info.rows, info.n_slices],
                "spacing": [round(v, 6) for v in spacing] if spacing else None,
                "ijk_to_ras": np.round(info.ijk_to_ras, 6).tolist() if info.ijk_to_ras is not None else None,
                "multiframe": info.is_multiframe,
                "localizer": info.is_localizer,
                "files": len(info.files),
                "transfer_syntax": UID(info.transfer_syntax).name or info.transfer_syntax,
                "loadable": not info.problem,
                "problem": info.problem or None,
                "warnings": list(info.warnings),
            }
        )
    return items


def _choice_list(infos, indexed):
    return "; ".join(f"{indexed[id(s)]}) {s.label()}" for s in infos)


def _select(folder, infos, series):
    """The entry ``series`` names (1-based index or UID), or the only sensible one."""
    indexed = {id(s): i for i, s in enumerate(infos, start=1)}
    if series is not None and not isinstance(series, bool):
        text = str(series).strip()
        if text.isdigit():
            number = int(text)
            if not 1 <= number <= len(infos):
                raise InputError(f"--series {number}: {folder} holds {len(infos)} series, numbered 1 to {len(infos)}")
            return infos[number - 1]
        matches = [s for s in infos if text in (s.uid, s.sop_uid)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise InputError(f"--series {text}: no series with that SeriesInstanceUID in {folder}; found {_choice_list(infos, indexed)}")
        raise AmbiguousInputError(
            f"--series {text} matches {len(matches)} files: {_choice_list(matches, indexed)}; choose one with --series N",
            choices=[indexed[id(s)] for s in matches],
        )
    for candidates in (
        [s for s in infos if s.kind == "volume" and not s.is_localizer],
        [s for s in infos if s.kind == "cine"],
        infos,
    ):
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            kind = "image series" if candidates[0].kind == "volume" else "cine files"
            raise AmbiguousInputError(
                f"{folder} holds {len(candidates)} {kind}: {_choice_list(candidates, indexed)}; "
                f"choose one with --series N (its number here or its SeriesInstanceUID)",
                choices=[indexed[id(s)] for s in candidates],
            )
    raise AssertionError("unreachable: infos is not empty")


def load_folder(folder, series=None):
    """Load one series from a DICOM folder (searched recursively) as a VolumeImage or Cine.

    ``series``: SeriesInstanceUID or 1-based number from describe_folder. Without it,
    the only volume series (localizers aside) is loaded; several raise
    AmbiguousInputError listing them.
    """
    folder = Path(folder)
    infos, warnings = _scan(folder)
    if not infos:
        detail = f"; {len(warnings)} file(s) unreadable, e.g. {warnings[0]}" if warnings else ""
        raise InputError(f"{folder}: no DICOM images found{detail}")
    info = _select(folder, infos, series)
    others = len(infos) - 1
    extra = list(warnings) + ([f"{others} other series in the folder were not loaded"] if others else [])
    return _load_info(info, extra)
