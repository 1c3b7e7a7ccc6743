"""NIfTI and NRRD files <-> VolumeImage (3-D) or Cine (a lone 2-D frame).

Geometry is kept exactly as the file states it, in float64, and always expressed as
IJK->RAS. Voxel arrays come out in Slicer's (K, J, I) order.

A 2-D image (or a 3-D one with a single slice) that is not a label map is returned
as a one-frame ``Cine``: in this product a lone 2-D frame is an ultrasound image
(e.g. SlicerIGT's ``.nrrd`` frame exports), and the ultrasound tasks take Cines.
Its IJK->RAS matrix is kept in ``cine.metadata["ijk_to_ras"]``. A 2-D label map
stays a one-slice VolumeImage so that it can sit on its frame as a mask.
"""

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from SpineAILib.errors import InputError, OutputError
from SpineAILib.images import Cine, VolumeImage
from SpineAILib.io.checks import check_allocation, check_detached_nrrd, check_finite, check_matrix

# A label map has few distinct values; more than this and it is an intensity image.
MAX_LABELS = 64

# NRRD 'space' names -> the diagonal that maps that space to RAS.
_SPACE_TO_RAS = {
    "right-anterior-superior": (1.0, 1.0, 1.0),
    "ras": (1.0, 1.0, 1.0),
    "left-posterior-superior": (-1.0, -1.0, 1.0),
    "lps": (-1.0, -1.0, 1.0),
    "left-anterior-superior": (-1.0, 1.0, 1.0),
    "las": (-1.0, 1.0, 1.0),
}
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

# NRRD type names (all spellings the NRRD format allows) -> numpy dtype.
_NRRD_TYPES = {
    "int8": ("signed char", "int8", "int8_t"),
    "uint8": ("uchar", "unsigned char", "uint8", "uint8_t"),
    "int16": ("short", "short int", "signed short", "signed short int", "int16", "int16_t"),
    "uint16": ("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"),
    "int32": ("int", "signed int", "int32", "int32_t"),
    "uint32": ("uint", "unsigned int", "uint32", "uint32_t"),
    "int64": ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t"),
    "uint64": ("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"),
    "float32": ("float",),
    "float64": ("double",),
}
_NRRD_TYPE_TO_DTYPE = {name: np.dtype(dt) for dt, names in _NRRD_TYPES.items() for name in names}
_NRRD_COLOR_KINDS = {"rgb-color", "rgba-color", "3-color", "4-color", "vector", "3-vector", "4-vector", "list"}


def _shape_text(shape):
    return "x".join(str(int(s)) for s in shape)


def _four_d_error(path, shape):
    return InputError(f"{path.name}: 4-D image (shape {_shape_text(shape)}) is not supported here; give one 3-D volume")


def _volume_suffix(path):
    name = path.name.lower()
    for suffix in (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr"):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


# ---------------------------------------------------------------------------- reading


def load_volume_file(path, labelmap=None):
    """Read a .nii/.nii.gz/.nrrd/.nhdr/.seg.nrrd file.

    Returns a VolumeImage, or a one-frame Cine for a 2-D image (see module doc).
    ``labelmap``: True/False forces the kind; None guesses it (integer values, at most
    64 of them, and 'label'/'seg' in the name, or a .seg.nrrd file).
    """
    from SpineAILib.io.paths import check_readable

    path = check_readable(path)
    suffix = _volume_suffix(path)
    if suffix in (".nii", ".nii.gz"):
        voxels, ijk_to_ras, colour, metadata, warnings = _read_nifti(path)
    elif suffix in (".nrrd", ".nhdr", ".seg.nrrd"):
        voxels, ijk_to_ras, colour, metadata, warnings = _read_nrrd(path)
    else:
        raise InputError(f"{path.name}: not a NIfTI (.nii, .nii.gz) or NRRD (.nrrd, .nhdr) file")

    check_finite(voxels, what=path.name)
    check_matrix(ijk_to_ras, what=path.name, shape=voxels.shape)
    if colour:  # only 2-D colour frames get this far (colour volumes are refused)
        return _as_cine(path, voxels, ijk_to_ras, metadata, warnings)

    is_labelmap = _decide_labelmap(voxels, path, suffix, labelmap)
    if is_labelmap:
        voxels = _as_label_dtype(voxels, path)
        metadata["label_values"] = [int(v) for v in np.unique(voxels) if v != 0]
    elif min(voxels.shape) == 1:  # a single 2-D frame
        return _as_cine(path, voxels, ijk_to_ras, metadata, warnings)
    return VolumeImage(
        voxels=voxels,
        ijk_to_ras=ijk_to_ras,
        description=_stem(path),
        source=str(path),
        is_labelmap=is_labelmap,
        metadata=metadata,
        warnings=warnings,
    )


def _stem(path):
    return path.name[: -len(_volume_suffix(path))] or path.name


def _read_nifti(path):
    """NIfTI-1/2 -> (voxels (K,J,I), ijk_to_ras, colour=False, metadata, warnings)."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except Exception as error:  # nibabel raises many types for damaged headers
        raise InputError(f"{path.name}: cannot read NIfTI header ({error})") from None
    header = image.header
    shape = tuple(int(s) for s in image.shape)
    if header.get_data_dtype().names:
        raise InputError(f"{path.name}: colour (RGB) NIfTI volumes are not supported; give a grey-level volume")
    shape3 = _three_d_shape(path, shape)

    # Reading applies scl_slope/scl_inter, which turns integers into floats.
    proxy = image.dataobj
    scaled = float(getattr(proxy, "slope", 1.0)) != 1.0 or float(getattr(proxy, "inter", 0.0)) != 0.0
    check_allocation(shape3, np.float64 if scaled else header.get_data_dtype(), what=path.name)
    try:
        data = np.asanyarray(proxy).reshape(shape3)
    except Exception as error:  # truncated .gz, short file
        raise InputError(f"{path.name}: cannot read voxel data ({error})") from None

    # The sform (an arbitrary affine, stored per row) is preferred when its code says it
    # is set, as nibabel does; the qform (rigid + voxel sizes) otherwise. ITK/Slicer may
    # pick the qform when both are set and differ: we note that case.
    warnings = []
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code > 0:
        affine, source = header.get_sform(), "sform"
        if qform_code > 0 and not np.allclose(header.get_qform(), affine, atol=1e-3):
            warnings.append("NIfTI sform and qform differ; the sform was used")
    elif qform_code > 0:
        affine, source = header.get_qform(), "qform"
    else:
        affine, source = header.get_base_affine(), "none"
        warnings.append("NIfTI header has no orientation (sform/qform codes are 0); voxel sizes only, axes assumed RAS")
    metadata = {
        "format": "NIfTI",
        "affine_source": source,
        "sform_code": sform_code,
        "qform_code": qform_code,
        "file_shape": list(shape),
    }
    # NIfTI stores data[i, j, k]; Slicer order is [k, j, i].
    voxels = np.ascontiguousarray(np.asarray(data).transpose(2, 1, 0))
    return voxels, np.asarray(affine, dtype=np.float64), False, metadata, warnings


def _three_d_shape(path, shape):
    """Pad 2-D to 3-D; squeeze trailing size-1 dimensions; refuse real 4-D+."""
    if len(shape) < 2:
        raise InputError(f"{path.name}: {len(shape)}-D data is not an image")
    extra = shape[3:]
    if any(s != 1 for s in extra):
        raise _four_d_error(path, shape)
    return (tuple(shape[:3]) + (1,))[:3]


def _read_nrrd(path):
    """NRRD (attached or detached) -> (voxels, ijk_to_ras, colour, metadata, warnings)."""
    import nrrd

    check_detached_nrrd(path)  # a .nhdr's data file must sit beside it, not be /etc/passwd
    try:
        header = nrrd.read_header(str(path))
    except Exception as error:
        raise InputError(f"{path.name}: cannot read NRRD header ({error})") from None
    if "sizes" not in header:
        raise InputError(f"{path.name}: NRRD header has no 'sizes' field")
    sizes = [int(s) for s in header["sizes"]]
    dtype = _NRRD_TYPE_TO_DTYPE.get(str(header.get("type", "")).strip().lower())
    if dtype is None:
        raise InputError(f"{path.name}: NRRD voxel type {header.get('type')!r} is not supported")
    spatial, other = _nrrd_axes(header, len(sizes))
    if len(spatial) < 2:
        raise InputError(f"{path.name}: {len(spatial)}-D data (shape {_shape_text(sizes)}) is not an image")
    if len(spatial) > 3:  # e.g. a 'right-anterior-superior-time' space
        if any(sizes[a] > 1 for a in spatial[3:]):
            raise _four_d_error(path, sizes)
        spatial, other = spatial[:3], sorted(other + spatial[3:])
    colour_axis = _nrrd_colour_axis(path, header, sizes, spatial, other)

    check_allocation(sizes, dtype, what=path.name)
    try:
        # 'C' order gives array axes in reverse header order: (k, j, i) for a plain volume.
        data, header = nrrd.read(str(path), index_order="C")
    except Exception as error:
        raise InputError(f"{path.name}: cannot read NRRD voxel data ({error})") from None

    ijk_to_ras, warnings = _nrrd_ijk_to_ras(path, header, spatial)
    # Reorder to (k, j, i[, colour]) and drop size-1 non-spatial axes.
    ndim = data.ndim
    order = [ndim - 1 - a for a in reversed(spatial)]
    if colour_axis is not None:
        order.append(ndim - 1 - colour_axis)
    dropped = [ndim - 1 - a for a in other if a != colour_axis]
    data = data.transpose(order + dropped).reshape([data.shape[a] for a in order])
    if len(spatial) == 2:
        data = data[np.newaxis]  # one slice
    if colour_axis is not None:
        data = data[..., :3]  # RGBA -> RGB
    voxels = np.ascontiguousarray(data)
    metadata = {"format": "NRRD", "space": header.get("space", ""), "file_shape": sizes}
    segments = _seg_nrrd_segments(header)
    if segments:
        metadata["segments"] = segments
    return voxels, ijk_to_ras, colour_axis is not None, metadata, warnings


def _nrrd_axes(header, ndim):
    """(spatial axes, other axes) in header order (fastest first)."""
    directions = header.get("space directions")
    if directions is not None:
        spatial = [a for a in range(ndim) if not np.all(np.isnan(np.asarray(directions[a], dtype=float)))]
    else:
        kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * ndim)]
        spatial = [a for a in range(ndim) if kinds[a] in ("domain", "space")]
    return spatial, [a for a in range(ndim) if a not in spatial]


def _nrrd_colour_axis(path, header, sizes, spatial, other):
    """The colour axis of a 2-D RGB(A) frame, or None; any other real non-spatial axis is 4-D."""
    kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * len(sizes))]
    real = [a for a in other if sizes[a] > 1]
    if not real:
        return None
    is_frame = sum(sizes[a] > 1 for a in spatial) <= 2
    a = real[0]
    if len(real) == 1 and is_frame and kinds[a] in _NRRD_COLOR_KINDS and sizes[a] in (3, 4):
        return a
    raise _four_d_error(path, sizes)


def _nrrd_ijk_to_ras(path, header, spatial):
    """IJK->RAS from 'space directions' and 'space origin', converted from the file's space."""
    warnings = []
    space = str(header.get("space", "")).lower().replace("-time", "")
    flip = _SPACE_TO_RAS.get(space)
    if flip is None:
        # ITK (hence Slicer) reads a NRRD without a known anatomical space as LPS.
        flip = _SPACE_TO_RAS["lps"]
        warnings.append(f"NRRD space {header.get('space', 'not given')!r} has no anatomical meaning; read as LPS like ITK/Slicer")
    directions = header.get("space directions")
    if directions is not None:
        vectors = [np.asarray(directions[a], dtype=np.float64) for a in spatial]
    else:
        spacings = header.get("spacings")
        steps = [float(spacings[a]) if spacings is not None and np.isfinite(spacings[a]) else 1.0 for a in spatial]
        vectors = [np.eye(len(spatial))[n] * steps[n] for n in range(len(spatial))]
        warnings.append("NRRD has no 'space directions'; axis-aligned voxels assumed")
    vectors = [np.pad(v[:3], (0, 3 - v[:3].size)) for v in vectors]  # 2-D space -> 3-D
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)[:3]
    origin = np.pad(origin, (0, 3 - origin.size))
    matrix = np.eye(4)
    for n, vector in enumerate(vectors):
        matrix[:3, n] = vector
    matrix[:3, 3] = origin
    if len(vectors) == 2:  # a 2-D frame: K is the unit normal, so the matrix stays invertible
        normal = np.cross(vectors[0], vectors[1])
        matrix[:3, 2] = normal / (np.linalg.norm(normal) or 1.0)
    return np.diag(list(flip) + [1.0]) @ matrix, warnings


def _seg_nrrd_segments(header):
    """Segment names and label values stored by Slicer in a .seg.nrrd header."""
    segments = []
    for key, value in header.items():
        match = re.fullmatch(r"Segment(\d+)_Name", key)
        if match:
            n = match.group(1)
            label = header.get(f"Segment{n}_LabelValue", int(n) + 1)
            segments.append({"name": value, "label": int(label), "layer": int(header.get(f"Segment{n}_Layer", 0))})
    return sorted(segments, key=lambda s: s["label"])


def _decide_labelmap(voxels, path, suffix, labelmap):
    if labelmap is not None:
        return bool(labelmap)
    if suffix == ".seg.nrrd":
        return True
    name = path.name.lower()
    if "label" not in name and "seg" not in name:
        return False
    return _looks_like_labels(voxels)


def _looks_like_labels(voxels):
    """Whole-number values, at most MAX_LABELS of them."""
    if np.issubdtype(voxels.dtype, np.floating):
        if not np.array_equal(voxels, np.round(voxels)):
            return False
    elif not np.issubdtype(voxels.dtype, np.integer):
        return False
    return np.unique(voxels).size <= MAX_LABELS


def _as_label_dtype(voxels, path):
    """Integer voxels as they are; whole-number floats into the smallest integer type that holds them."""
    if np.issubdtype(voxels.dtype, np.integer):
        return voxels
    if voxels.dtype == bool:
        return voxels.astype(np.uint8)
    if not np.array_equal(voxels, np.round(voxels)):
        raise InputError(f"{path.name}: has non-integer values, so it cannot be a label map")
    lo, hi = (float(voxels.min()), float(voxels.max())) if voxels.size else (0.0, 0.0)
    for dtype in (np.uint8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return voxels.astype(dtype)
    raise InputError(f"{path.name}: label values {lo:g}..{hi:g} do not fit a 32-bit integer")


def _as_cine(path, voxels, ijk_to_ras, metadata, warnings):
    """A single 2-D frame (K, J, I[, 3]) with a size-1 spatial axis -> one-frame Cine."""
    from SpineAILib.io.cine import collapse_grey, to_uint8

    # The frame is the other two axes; K is the one dropped for an ordinary slice.
    dropped = next(a for a in (0, 1, 2) if voxels.shape[a] == 1)
    rows_axis, cols_axis = [a for a in (0, 1, 2) if a != dropped]
    warnings = list(warnings)
    frame = to_uint8(np.take(voxels, 0, axis=dropped), path.name, warnings)
    # Array axis a of (K, J, I) is column 2 - a of ijk_to_ras.
    spacing = tuple(float(np.linalg.norm(ijk_to_ras[:3, 2 - a])) for a in (rows_axis, cols_axis))
    metadata = dict(metadata, ijk_to_ras=np.asarray(ijk_to_ras).tolist(), frame_axes="KJI"[rows_axis] + "KJI"[cols_axis])
    return Cine(
        frames=collapse_grey(frame[np.newaxis]),
        frame_times_ms=np.zeros(1),
        pixel_spacing=spacing,
        description=_stem(path),
        source=str(path),
        metadata=metadata,
        warnings=warnings,
    )


# ---------------------------------------------------------------------------- writing


def save_volume_file(image, path):
    """Write ``image`` to .nii/.nii.gz (NIfTI-1) or .nrrd/.seg.nrrd, atomically.

    Voxels round-trip exactly. NRRD keeps the float64 geometry exactly (17 significant
    digits, LPS space as Slicer writes it); NIfTI-1 stores the affine as float32, so a
    matrix that came from a NIfTI file round-trips exactly and any other is rounded
    to float32 (< 1e-5 mm on spine-sized coordinates).
    """
    path = Path(path)
    suffix = _volume_suffix(path)
    if suffix not in (".nii", ".nii.gz", ".nrrd", ".seg.nrrd"):
        raise OutputError(f"{path.name}: can only write .nii, .nii.gz, .nrrd or .seg.nrrd volumes")
    if not path.parent.is_dir():
        raise OutputError(f"{path.parent}: folder does not exist")
    voxels = image.voxels.astype(np.uint8) if image.voxels.dtype == bool else image.voxels
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        if suffix.startswith(".nii"):
            _write_nifti(voxels, image.ijk_to_ras, temp)
        else:
            _write_nrrd(voxels, image.ijk_to_ras, temp)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
    return path


def _write_nifti(voxels, ijk_to_ras, filename):
    import nibabel as nib

    image = nib.Nifti1Image(voxels.transpose(2, 1, 0), np.asarray(ijk_to_ras, dtype=np.float64))
    image.header.set_sform(ijk_to_ras, code=1)  # scanner-anatomical: read back first
    image.header.set_qform(ijk_to_ras, code=1)  # best rigid approximation, for qform-only readers
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, filename)


def _write_nrrd(voxels, ijk_to_ras, filename):
    import nrrd

    lps = RAS_TO_LPS @ np.asarray(ijk_to_ras, dtype=np.float64)
    header = {
        "space": "left-posterior-superior",
        "space directions": lps[:3, :3].T,  # one row per axis (i, j, k)
        "space origin": lps[:3, 3],
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
    }
    nrrd.write(filename, np.ascontiguousarray(voxels), header, index_order="C")
