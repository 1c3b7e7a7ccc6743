"""The checks every reader applies, in one place: size from the headers before allocating,
finite voxels, geometry that is a real geometry, rescale values that cannot overflow, and
the rule for files named by other files.

Called by the DICOM series reader, the lumbar study reader, the NIfTI/NRRD reader, the
cine readers and the scene (.mrb) loader, so the three workflows refuse the same hostile
input with the same one-line reason. Nothing here imports a reader (no cycles).
"""

import math
import os
from pathlib import Path

import numpy as np

from SpineAILib.errors import InputError

# Largest volume any reader will allocate (bytes). Bigger requests are refused with
# the size, so a mistyped path to a huge file cannot take the machine down.
MAX_VOLUME_BYTES = 2 * 1024**3 - 1
# A direction cosine this far from unit length, or two this far from perpendicular, is
# not an orientation (scanners write about 1e-6; sloppy exports 1e-4).
ORTHONORMAL_TOLERANCE = 1e-2
FLOAT32_MAX = float(np.finfo(np.float32).max)


def format_gib(nbytes):
    """Bytes for messages: '4.7 GiB', '2 GiB' (the limit), '57.2 MiB' (under 0.1 GiB)."""
    gib = nbytes / 1024**3
    if abs(gib - round(gib)) < 1e-6 and gib >= 1:
        return f"{round(gib)} GiB"
    return f"{gib:.1f} GiB" if gib >= 0.1 else f"{nbytes / 1024**2:.3g} MiB"


def check_allocation(shape, dtype, what="volume", limit=None):
    """Refuse (with the size) before allocating more than ``limit`` bytes (default MAX_VOLUME_BYTES)."""
    limit = MAX_VOLUME_BYTES if limit is None else limit
    sizes = [int(s) for s in shape]
    if any(s < 0 for s in sizes):
        raise InputError(f"{what}: negative size {'x'.join(map(str, sizes))} in its header")
    nbytes = int(np.prod(sizes, dtype=np.float64)) * np.dtype(dtype).itemsize
    if nbytes > limit:
        raise InputError(
            f"{what} of {'x'.join(str(s) for s in sizes)} {np.dtype(dtype).name} would need "
            f"{format_gib(nbytes)}; the limit is {format_gib(limit)}"
        )
    return nbytes


# A cine's frames each become a scene node and a row of every table: past this, building its
# scene takes minutes and gigabytes (10,000 frames of 16x16 px took 400 s and 6.5 GB).
MAX_CINE_FRAMES = 5000


def check_frame_count(n, what="cine"):
    """Refuse a cine of more frames than a run can turn into a scene in reasonable time and memory."""
    if n > MAX_CINE_FRAMES:
        raise InputError(f"{what}: {n} frames; at most {MAX_CINE_FRAMES} are read (about {MAX_CINE_FRAMES // 30 // 60} "
                         "minutes at 30 frames/s): cut the recording into parts")  # fmt: skip
    return n


def check_finite(voxels, what="volume"):
    """Reject NaN / inf voxels with a count (they poison normalisation and rendering)."""
    if np.issubdtype(voxels.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(voxels)))
        if bad:
            raise InputError(f"{what} has {bad} NaN/inf voxels out of {voxels.size}; fix or mask them first")


def check_matrix(ijk_to_ras, what="volume", shape=None):
    """An IJK->RAS matrix must be finite with a positive voxel size along every axis.

    ``shape`` (K, J, I): an axis of size 1 (a 2-D image's slice axis) may have no size.
    """
    matrix = np.asarray(ijk_to_ras, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise InputError(f"{what}: its geometry (IJK->RAS matrix) holds NaN or infinite values")
    steps = np.linalg.norm(matrix[:3, :3], axis=0)
    sizes = [2, 2, 2] if shape is None else [int(s) for s in reversed(tuple(shape)[:3])]  # I, J, K
    used = [a for a in range(3) if sizes[a] > 1]
    if any(steps[a] <= 0 for a in used) or (
        len(used) == 3 and abs(float(np.linalg.det(matrix[:3, :3]))) < 1e-9 * float(np.prod(steps))
    ):
        raise InputError(f"{what}: its geometry is degenerate (voxel sizes {', '.join(f'{s:g}' for s in steps)} mm, "
                         "or axes that are not independent)")  # fmt: skip
    return matrix


def check_orientation(iop, what="DICOM image"):
    """ImageOrientationPatient: two finite unit vectors at right angles (DICOM requires it)."""
    values = np.asarray(iop, dtype=np.float64).reshape(-1)
    text = "\\".join(f"{v:g}" for v in values)
    if values.size != 6 or not np.all(np.isfinite(values)):
        raise InputError(f"{what}: ImageOrientationPatient {text} is not six finite numbers")
    row, col = values[:3], values[3:]
    lengths = np.linalg.norm(row), np.linalg.norm(col)
    if min(lengths) < 1e-6:
        raise InputError(f"{what}: ImageOrientationPatient {text} has a zero direction")
    if max(abs(n - 1.0) for n in lengths) > ORTHONORMAL_TOLERANCE or abs(float(row @ col)) > ORTHONORMAL_TOLERANCE:
        raise InputError(f"{what}: ImageOrientationPatient {text} is not two perpendicular unit vectors")
    return values


def check_spacing(values, what="DICOM image", name="PixelSpacing"):
    """Pixel/voxel spacing as given must be finite and positive (absent is the caller's business)."""
    spacing = [float(v) for v in values]
    if not all(math.isfinite(v) and v > 0 for v in spacing):
        raise InputError(f"{what}: {name} {chr(92).join(f'{v:g}' for v in spacing)} is not positive")
    return tuple(spacing)


def check_rescale(slope, intercept, value_range, what="DICOM image"):
    """RescaleSlope/Intercept must be finite, the slope non-zero, and the rescaled range must fit float32."""
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0:
        raise InputError(f"{what}: RescaleSlope {slope:g} / RescaleIntercept {intercept:g} cannot be applied")
    lo, hi = value_range
    ends = (lo * slope + intercept, hi * slope + intercept)
    if not all(math.isfinite(v) and abs(v) <= FLOAT32_MAX for v in ends):
        raise InputError(f"{what}: RescaleSlope {slope:g} / RescaleIntercept {intercept:g} overflow the voxel values")
    return slope, intercept


def check_pixel_header(ds, what="DICOM image"):
    """The pixel module's numbers must describe something decodable: sizes, bits, samples."""
    rows, cols = _int(ds.get("Rows")), _int(ds.get("Columns"))
    allocated = _int(ds.get("BitsAllocated"), 16)
    stored = _int(ds.get("BitsStored"), allocated)
    samples = _int(ds.get("SamplesPerPixel"), 1)
    if rows <= 0 or cols <= 0:
        raise InputError(f"{what}: Rows x Columns {rows} x {cols} is not an image")
    if allocated not in (1, 8, 16, 32, 64) or not 1 <= stored <= allocated:
        raise InputError(f"{what}: BitsAllocated {allocated} / BitsStored {stored} cannot be decoded")
    if samples not in (1, 3, 4):
        raise InputError(f"{what}: SamplesPerPixel {samples} cannot be decoded")
    return rows, cols, allocated, samples


def check_pixel_length(ds, n_frames, what="DICOM image"):
    """Uncompressed pixel data must be as long as the header says (a truncated file is refused, not padded)."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and getattr(syntax, "is_compressed", False):
        return  # the decoder checks its own stream
    if "PixelData" not in ds:
        raise InputError(f"{what}: no pixel data")
    rows, cols, allocated, samples = check_pixel_header(ds, what)
    expected = (rows * cols * samples * n_frames * allocated + 7) // 8
    got = len(ds.PixelData)
    if got < expected:
        raise InputError(f"{what}: pixel data is {got} bytes, the header needs {expected} (truncated file)")
    if expected and got >= 2 * expected:  # whole extra frames: Rows, Columns or BitsAllocated do not describe it
        raise InputError(f"{what}: pixel data is {got} bytes, the header describes {expected} (Rows, Columns, "
                         "BitsAllocated or NumberOfFrames are wrong)")


def _int(value, default=0):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------- files named by files


def inside(path, folder):
    """True when ``path`` (links followed) lies inside ``folder``."""
    real_folder = os.path.realpath(folder).rstrip(os.sep)
    real = os.path.realpath(path)
    return real == real_folder or real.startswith(real_folder + os.sep)


def check_named_file(name, folder, where, what="file", container="its folder"):
    """The rule for every file a scene, a detached header or a dataset names: it must resolve
    (relative to ``folder``, links followed) inside ``folder``, or the input is refused."""
    text = str(name)
    if not text or "\x00" in text:
        raise InputError(f"{where}: names an empty or invalid {what}")
    path = Path(text)
    path = path if path.is_absolute() else Path(folder) / path
    if not inside(path, folder):
        raise InputError(f"{where}: names the {what} {text!r}, which is outside {container}; refused")
    return path


def nrrd_data_files(header):
    """The data file names a detached NRRD header gives (single, 'LIST' or printf-style)."""
    value = header.get("data file") or header.get("datafile")
    if not value:
        return []
    value = str(value).strip()
    if value.startswith("LIST"):
        return [str(v) for v in header.get("data file list", [])] or ["LIST"]
    parts = value.split()
    if "%" in parts[0] and len(parts) >= 4:
        try:
            first, last, step = (int(v) for v in parts[1:4])
        except ValueError:
            return [value]
        if step == 0 or abs(last - first) // abs(step) > 100_000:
            return [value]
        try:
            return [parts[0] % n for n in range(first, last + (1 if step > 0 else -1), step)]
        except (TypeError, ValueError):
            return [value]
    return [value]


def check_detached_nrrd(path):
    """A .nhdr's data files must sit inside the header's own folder (no '/etc/passwd' as voxels)."""
    path = Path(path)
    try:
        text = path.read_bytes()[: 1 << 16].decode("latin-1")
    except OSError:
        return
    names = []
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if not line.strip():
            break  # end of the header
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("data file", "datafile"):
            value = value.strip()
            if value.startswith("LIST"):
                names += [v.strip() for v in lines[n + 1 :] if v.strip()]
            else:
                names += nrrd_data_files({"data file": value})
    for name in names:
        check_named_file(name, path.parent, path.name, what="data file")
