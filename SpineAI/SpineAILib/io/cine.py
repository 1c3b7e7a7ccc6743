"""Ultrasound cines -> Cine: DICOM (multi- or single-frame), video files, frame folders, images.

Every reader ends the same way: frames become uint8 (16-bit data is scaled, with a
warning) and colour frames whose three channels agree everywhere are stored grey
(``collapse_grey``), so a grey cine costs a third of the memory and models see the
same input whatever the container. Real colour (Doppler, colour maps, coloured
overlays) stays RGB.

Files without timing or pixel size get 30 frames/s and 1 mm pixels, each with a
warning, because measurements in mm or s would otherwise be silently wrong.

Large frames (4K screen recordings) are downscaled on read by the video and
frame-folder readers, frame by frame, so the full-size cine is never held:
frames whose longer side is over MAX_FRAME_SIDE (1920 px: a full-HD scanner
screen; the models read 128-224 px and the scene shows at most 1280 px) are
shrunk to it, and further when the whole cine would still be over the allocation
limit (images.MAX_VOLUME_BYTES), down to MIN_FRAME_SIDE (640 px on the longer
side); a cine that does not fit even then is refused with its sizes. The pixel
spacing is scaled with the frames (the picture keeps its size in mm), the cine's
warnings say from what size to what size, and ``metadata['downscaled_from']``
holds the original (rows, cols). DICOM and .seq.nrrd cines are not downscaled
(their decoders hand over whole arrays): over the limit they are refused.
"""

import math
import re
from pathlib import Path

import numpy as np

from SpineAILib.errors import InputError
from SpineAILib.images import Cine, check_allocation
from SpineAILib.io.checks import check_frame_count

DEFAULT_FPS = 30.0
MAX_FRAME_SIDE = 1920  # longer frame side kept on read (px); larger frames are downscaled to it
MIN_FRAME_SIDE = 640  # never downscale below this (longer side, px) to fit the memory limit: refuse instead
# Largest per-pixel channel spread (max - min of R, G, B) still called grey. Lossy
# codecs (MPEG-4, MJPEG, JPEG) leave up to ~3 levels of chroma noise on grey content.
GREY_TOLERANCE = 8


# ---------------------------------------------------------------------------- shared helpers


def collapse_grey(frames, tolerance=GREY_TOLERANCE):
    """(N, rows, cols, 3) RGB -> (N, rows, cols) luma when every pixel is grey within
    ``tolerance``; colour content (any pixel beyond it) is returned unchanged."""
    import cv2

    if frames.ndim != 4:
        return frames
    for frame in frames:  # frame by frame: stops early on colour, no big temporaries
        r, g, b = frame[..., 0], frame[..., 1], frame[..., 2]
        spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
        if int(spread.max(initial=0)) > tolerance:
            return frames
    grey = np.empty(frames.shape[:3], dtype=np.uint8)
    for n, frame in enumerate(frames):
        grey[n] = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)  # BT.601 luma
    return grey


def to_uint8(array, what, warnings):
    """Frames of any numeric type -> uint8. Values already in 0..255 are kept; wider
    ranges are scaled linearly min..max -> 0..255 over the whole array (not per frame,
    so brightness stays comparable across frames). Adds a warning when not uint8."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    bits = f"{array.dtype.itemsize * 8}-bit" if np.issubdtype(array.dtype, np.integer) else str(array.dtype)
    lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise InputError(f"{what}: has NaN/inf pixel values")
    whole = np.issubdtype(array.dtype, np.integer) or np.array_equal(array, np.round(array))
    if whole and lo >= 0 and hi <= 255:
        warnings.append(f"{what}: {bits} pixels stored as 8-bit (values {lo:g}..{hi:g} already fit)")
        return array.astype(np.uint8)
    warnings.append(f"{what}: {bits} pixels scaled to 8-bit (values {lo:g}..{hi:g} -> 0..255)")
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = np.empty(array.shape, dtype=np.uint8)
    for n in range(array.shape[0]):  # per frame keeps the float temporary small
        out[n] = np.clip((array[n].astype(np.float32) - lo) * scale + 0.5, 0, 255)
    return out


def natural_key(path):
    """Sort key that puts frame2 before frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _unknown_spacing_warning(what, downscaled=False):
    if downscaled:
        return (f"{what}: pixel spacing is not stored; 1 mm per pixel of the original frames assumed "
                "(distances in mm will be wrong)")
    return f"{what}: pixel spacing is not stored; 1 mm per pixel assumed (distances in mm will be wrong)"


def _assumed_fps_times(n, fps, what, warnings):
    if fps is None:
        fps = DEFAULT_FPS
        if n > 1:
            warnings.append(f"{what}: frame timing is not stored; {fps:g} frames/s assumed")
    if not fps or fps <= 0:
        raise InputError(f"{what}: frame rate must be positive, got {fps}")
    return np.arange(n, dtype=np.float64) * (1000.0 / fps)


def fit_frame_size(what, n, rows, cols, channels=3, itemsize=1, max_side=MAX_FRAME_SIDE, max_bytes=None):
    """(rows, cols, reason) to store ``n`` frames of ``rows`` x ``cols`` at: the same size
    (reason None), or smaller (aspect ratio kept) when the longer side is over ``max_side``
    (None: no cap) or the cine (``n * rows * cols * channels * itemsize`` bytes) would be
    over ``max_bytes`` (default images.MAX_VOLUME_BYTES). Refuses (InputError, with the
    sizes) when fitting the limit would take the longer side below MIN_FRAME_SIDE px
    (frames already that small are never shrunk for memory: the plain size refusal)."""
    from SpineAILib import images

    limit = images.MAX_VOLUME_BYTES if max_bytes is None else max_bytes
    n = max(int(n), 1)
    per_pixel = n * channels * itemsize
    full = per_pixel * rows * cols
    longer = max(rows, cols)
    scale, reasons = 1.0, []
    if max_side and longer > max_side:
        scale = max_side / longer
        reasons.append(f"longer side over {max_side} px")
    if full * scale * scale > limit:
        floor = min(MIN_FRAME_SIDE, longer)
        if longer <= MIN_FRAME_SIDE:
            images.check_allocation((n, rows, cols, channels), np.dtype(f"u{itemsize}"), what=what, limit=limit)
        scale = min(scale, math.sqrt(limit / full))
        if longer * scale < floor:
            small = floor / longer
            min_rows, min_cols = max(1, round(rows * small)), max(1, round(cols * small))
            raise InputError(
                f"{what}: {n} frames of {cols}x{rows} would need {images.format_gib(full)}; even downscaled to "
                f"{min_cols}x{min_rows} (the smallest kept, {floor} px on the longer side) they would need "
                f"{images.format_gib(per_pixel * min_rows * min_cols)}; the limit is {images.format_gib(limit)}"
            )
        reasons.append(f"{n} frames at {cols}x{rows} would need {images.format_gib(full)}, over the "
                       f"{images.format_gib(limit)} limit")
    if scale >= 1.0:
        return rows, cols, None
    new_rows, new_cols = max(1, int(rows * scale)), max(1, int(cols * scale))  # floor: never over the limit
    return new_rows, new_cols, "; ".join(reasons)


def _downscale_note(what, shape, new_shape, reason):
    rows, cols = shape
    new_rows, new_cols = new_shape
    return (f"{what}: frames downscaled on read from {cols}x{rows} to {new_cols}x{new_rows} px ({reason}); "
            f"pixel spacing scaled to match")


def _scaled_spacing(spacing, shape, new_shape):
    """(row, col) spacing of frames resized from ``shape`` to ``new_shape`` (same size in mm)."""
    return (spacing[0] * shape[0] / new_shape[0], spacing[1] * shape[1] / new_shape[1])


def _spacing_unknown(what, full_shape, shape, reason, warnings, metadata):
    """Pixel spacing of frames that store none (video, image files): 1 mm per original pixel, scaled when they
    were downscaled on read (``reason``); the warnings and ``downscaled_from`` say so."""
    spacing = (1.0, 1.0)
    if reason:
        warnings.append(_downscale_note(what, full_shape, shape, reason))
        spacing = _scaled_spacing(spacing, full_shape, shape)
        metadata["downscaled_from"] = list(full_shape)
    warnings.append(_unknown_spacing_warning(what, downscaled=bool(reason)))
    return spacing


# ---------------------------------------------------------------------------- DICOM


def load_dicom_cine(path):
    """An ultrasound DICOM file (multi-frame or single-frame) -> Cine."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from SpineAILib.io.paths import check_readable

    path = check_readable(path)
    try:
        header = pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError) as error:
        raise InputError(f"{path.name}: not a readable DICOM file ({error})") from None
    n = check_frame_count(int(header.get("NumberOfFrames", 1) or 1), path.name)
    rows, cols = int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0)
    photometric = str(header.get("PhotometricInterpretation", "")).strip().upper()
    if not rows or not cols:
        raise InputError(f"{path.name}: DICOM file has no image (no Rows/Columns)")
    samples = 3 if photometric == "PALETTE COLOR" else int(header.get("SamplesPerPixel", 1) or 1)
    bits = int(header.get("BitsAllocated", 8) or 8)
    check_allocation((n, rows, cols, samples), np.uint8 if bits <= 8 else np.uint16, what=f"{path.name} cine")

    ds = pydicom.dcmread(str(path))
    if "PixelData" not in ds:
        raise InputError(f"{path.name}: DICOM file has no pixel data")
    warnings = []
    frames = _dicom_frames(ds, path, photometric, n, warnings)
    metadata = _dicom_metadata(ds, photometric)
    spacing, metadata["pixel_spacing_source"] = _dicom_pixel_spacing(ds, path.name, warnings)
    return Cine(
        frames=frames,
        frame_times_ms=_dicom_frame_times(ds, frames.shape[0], path.name, warnings),
        pixel_spacing=spacing,
        modality=str(ds.get("Modality", "US") or "US"),
        description=str(ds.get("SeriesDescription", "") or path.stem),
        source=str(path),
        metadata=metadata,
        warnings=warnings,
    )


def _dicom_frames(ds, path, photometric, n, warnings):
    """Decoded pixels -> (N, rows, cols) grey or (N, rows, cols, 3) RGB uint8."""
    supported = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR", "YBR_RCT", "YBR_ICT")
    if photometric not in supported:
        raise InputError(f"{path.name}: photometric interpretation {photometric!r} is not supported")
    syntax = ds.file_meta.get("TransferSyntaxUID", "")
    try:
        # as_rgb=True: pydicom converts YBR_FULL / YBR_FULL_422 to RGB itself, and knows
        # when a JPEG decoder has already done so (checked in Testing/test_io_cine.py
        # against convert_color_space on the raw YBR values).
        array, apply_color_lut = _rgb_pixels(ds)
    except Exception as error:  # missing decoder plugin, truncated data
        name = getattr(syntax, "name", syntax)
        raise InputError(f"{path.name}: cannot decode pixel data ({name}): {error}") from None
    if n == 1:
        array = array[np.newaxis]
    if photometric == "PALETTE COLOR":
        array = apply_color_lut(array, ds)
        if array.dtype != np.uint8 and array.max(initial=0) > 255:
            array = (array >> 8).astype(np.uint8)  # 16-bit LUT entries: keep the top 8 bits
    elif photometric == "MONOCHROME1":  # 0 = white: invert so that bright is bright
        if int(ds.get("PixelRepresentation", 0)) == 1:
            array = int(array.min()) + int(array.max()) - array.astype(np.int32)
        else:
            array = (2 ** int(ds.get("BitsStored", ds.BitsAllocated)) - 1) - array
    return collapse_grey(to_uint8(array, path.name, warnings))


def _rgb_pixels(ds):
    """(pixels with YBR converted to RGB, apply_color_lut) under pydicom 3, or pydicom 2.4 (Slicer's own)."""
    try:
        from pydicom.pixels import apply_color_lut, pixel_array
    except ImportError:  # pydicom 2: the handlers decode; uncompressed YBR stays YBR, JPEG decoders give RGB
        from pydicom.pixel_data_handlers.util import apply_color_lut, convert_color_space

        array = ds.pixel_array
        photometric = str(ds.get("PhotometricInterpretation", ""))
        if photometric in ("YBR_FULL", "YBR_FULL_422") and not ds.file_meta.TransferSyntaxUID.is_compressed:
            array = convert_color_space(array, photometric, "RGB", per_frame=True)
        return array, apply_color_lut
    return pixel_array(ds, as_rgb=True), apply_color_lut


def _dicom_frame_times(ds, n, what, warnings):
    """Frame times (ms from the first) from the attribute Frame Increment Pointer names,
    then FrameTime, FrameTimeVector, CineRate, RecommendedDisplayFrameRate."""
    if n == 1:
        return np.zeros(1)
    order = ["FrameTime", "FrameTimeVector", "CineRate", "RecommendedDisplayFrameRate"]
    pointer = ds.get("FrameIncrementPointer")
    pointers = list(pointer) if hasattr(pointer, "__iter__") else [pointer]
    if 0x00181065 in pointers:  # (0018,1065) Frame Time Vector
        order.insert(0, order.pop(1))
    for keyword in order:
        try:
            value = ds.get(keyword)
            if keyword == "FrameTimeVector":
                values = [] if value is None else [float(v) for v in (value if hasattr(value, "__iter__") else [value])]
            else:
                values = [float(value)] if value not in (None, "") else []
        except (TypeError, ValueError):  # malformed decimal string: try the next attribute
            continue
        if not values:
            continue
        if keyword == "FrameTimeVector":
            steps = np.asarray(values, dtype=np.float64)
            if steps.size == n - 1:  # some writers leave out the first frame's 0
                steps = np.concatenate([[0.0], steps])
            if steps.size == n and np.all(steps[1:] > 0):
                return np.cumsum(steps) - steps[0]
            warnings.append(f"{what}: FrameTimeVector has {steps.size} values for {n} frames; ignored")
        elif values[0] > 0:
            step_ms = values[0] if keyword == "FrameTime" else 1000.0 / values[0]  # rates are frames/s
            return np.arange(n, dtype=np.float64) * step_ms
    return _assumed_fps_times(n, None, what, warnings)


def _dicom_pixel_spacing(ds, what, warnings):
    """(row, col) mm from PixelSpacing, else from an ultrasound region in cm, else (1, 1)."""
    spacing = ds.get("PixelSpacing")
    if spacing is not None and len(spacing) == 2 and all(float(v) > 0 for v in spacing):
        return (float(spacing[0]), float(spacing[1])), "PixelSpacing"
    regions = [
        r
        for r in ds.get("SequenceOfUltrasoundRegions", [])
        if r.get("PhysicalUnitsXDirection") == 3 and r.get("PhysicalUnitsYDirection") == 3  # 3 = cm
        and float(r.get("PhysicalDeltaX", 0) or 0) != 0 and float(r.get("PhysicalDeltaY", 0) or 0) != 0
    ]
    # Prefer a 2-D tissue region (spatial format 1) over M-mode/Doppler strips.
    regions.sort(key=lambda r: r.get("RegionSpatialFormat") != 1)
    if regions:
        r = regions[0]
        return (abs(float(r.PhysicalDeltaY)) * 10.0, abs(float(r.PhysicalDeltaX)) * 10.0), "SequenceOfUltrasoundRegions"
    warnings.append(_unknown_spacing_warning(what))
    return (1.0, 1.0), "assumed"


def _dicom_metadata(ds, photometric):
    """Technical facts worth keeping; never patient identifiers."""
    syntax = ds.file_meta.get("TransferSyntaxUID", "")
    sop = ds.get("SOPClassUID", "")
    return {
        "format": "DICOM",
        "SeriesInstanceUID": str(ds.get("SeriesInstanceUID", "")),
        "SOPClassUID": str(sop),
        "SOPClass": getattr(sop, "name", ""),
        "Manufacturer": str(ds.get("Manufacturer", "")),
        "ManufacturerModelName": str(ds.get("ManufacturerModelName", "")),
        "TransferSyntaxUID": str(syntax),
        "TransferSyntax": getattr(syntax, "name", ""),
        "PhotometricInterpretation": photometric,
        "BitsStored": int(ds.get("BitsStored", 0) or 0),
        "NumberOfFrames": int(ds.get("NumberOfFrames", 1) or 1),
    }


# ---------------------------------------------------------------------------- video


def load_video(path, max_side=MAX_FRAME_SIDE, max_bytes=None):
    """A video file (MP4, AVI, ... whatever this OpenCV/FFmpeg build decodes) -> Cine.

    Frames over ``max_side`` px, or too many for ``max_bytes`` (default: the
    allocation limit) at full size, are downscaled as they are decoded (module
    docstring); the warning says from what size to what size."""
    import cv2

    from SpineAILib.io.paths import check_readable

    path = check_readable(path)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise InputError(f"{path.name}: cannot decode video (damaged file or a codec this build lacks)")
        frames, times_ms, expected, full_shape, reason = _read_video_frames(capture, path, max_side, max_bytes)
        fps = capture.get(cv2.CAP_PROP_FPS)
        fourcc = _fourcc(capture.get(cv2.CAP_PROP_FOURCC))
    finally:
        capture.release()
    warnings = []
    metadata = {"format": "video", "fps": float(fps), "fourcc": fourcc}
    if expected > len(frames) + 1:
        warnings.append(f"{path.name}: video ended after {len(frames)} of {expected} announced frames (truncated?)")
    times = _video_times(times_ms, fps, len(frames), path.name, warnings)
    spacing = _spacing_unknown(path.name, full_shape, frames.shape[1:3], reason, warnings, metadata)
    return Cine(
        frames=collapse_grey(frames),
        frame_times_ms=times,
        pixel_spacing=spacing,
        description=path.stem,
        source=str(path),
        metadata=metadata,
        warnings=warnings,
    )


def _read_video_frames(capture, path, max_side=MAX_FRAME_SIDE, max_bytes=None):
    """All frames as (N, H, W, 3) RGB (downscaled on the fly when needed), their POS_MSEC
    stamps, the announced count, the decoded (rows, cols) and the downscaling reason (None:
    full size). Refuses before reading when even the downscaled cine is over the limit."""
    import cv2

    ok, frame = capture.read()
    if not ok or frame is None:
        raise InputError(f"{path.name}: cannot decode video (no frame could be read)")
    announced = int(max(capture.get(cv2.CAP_PROP_FRAME_COUNT), 0))
    height, width = frame.shape[:2]
    capacity = max(announced, 1)
    rows, cols, reason = fit_frame_size(f"{path.name} video", capacity, height, width, 3, 1, max_side, max_bytes)
    check_allocation((capacity, rows, cols, 3), np.uint8, what=f"{path.name} video", limit=max_bytes)
    frames = np.empty((capacity, rows, cols, 3), dtype=np.uint8)
    times = []
    n = 0
    while ok:
        if frame.shape[:2] != (height, width):
            raise InputError(f"{path.name}: frame {n + 1} is {frame.shape[1]}x{frame.shape[0]}, not {width}x{height}")
        if n == capacity:  # the container under-announced its frame count: grow by half
            capacity = capacity + capacity // 2 + 1
            check_allocation((capacity, rows, cols, 3), np.uint8, what=f"{path.name} video", limit=max_bytes)
            frames = np.concatenate([frames, np.empty((capacity - n, rows, cols, 3), np.uint8)])
        if reason:
            frame = cv2.resize(frame, (cols, rows), interpolation=cv2.INTER_AREA)
        cv2.cvtColor(frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), cv2.COLOR_BGR2RGB, dst=frames[n])
        times.append(capture.get(cv2.CAP_PROP_POS_MSEC))
        n += 1
        ok, frame = capture.read()
    return frames[:n], np.asarray(times, dtype=np.float64), announced, (height, width), reason


def _video_times(stamps_ms, fps, n, what, warnings):
    """Decoder time stamps when they increase steadily, else the stream's fps, else 30."""
    if n == 1:
        return np.zeros(1)
    steps = np.diff(stamps_ms)
    if np.all(np.isfinite(stamps_ms)) and np.all(steps > 0):
        return stamps_ms - stamps_ms[0]
    if np.isfinite(fps) and 0 < fps < 1000:
        return np.arange(n, dtype=np.float64) * (1000.0 / fps)
    return _assumed_fps_times(n, None, what, warnings)


def _fourcc(code):
    """The codec code as text (e.g. 'mp4v', 'MJPG'), for the record."""
    code = int(code) if np.isfinite(code) else 0
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() else ""


# ---------------------------------------------------------------------------- images and frame folders


def _read_image_file(path):
    """One PNG/JPEG/BMP/TIFF -> (rows, cols) or (rows, cols, 3) RGB, uint8 or uint16."""
    import cv2

    try:
        # imdecode(fromfile) instead of imread: works with non-ASCII paths everywhere.
        image = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except (OSError, cv2.error):
        image = None
    if image is None:
        raise InputError(f"{path.name}: cannot decode image")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)  # alpha dropped
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def load_image(path):
    """A single PNG/JPEG/BMP/TIFF -> one-frame Cine."""
    from SpineAILib.io.paths import check_readable

    path = check_readable(path)
    warnings = []
    frame = to_uint8(_read_image_file(path)[np.newaxis], path.name, warnings)
    warnings.append(_unknown_spacing_warning(path.name))
    return Cine(
        frames=collapse_grey(frame),
        frame_times_ms=np.zeros(1),
        description=path.stem,
        source=str(path),
        metadata={"format": "image"},
        warnings=warnings,
    )


def load_frame_folder(folder, fps=None, max_side=MAX_FRAME_SIDE, max_bytes=None):
    """A folder of same-size PNG/JPEG/BMP/TIFF frames, in natural name order -> Cine.

    Image files carry no timing: frames are ``fps`` apart (30 frames/s with a
    warning when not given). Frames over ``max_side`` px, or too many for
    ``max_bytes`` at full size, are downscaled as they are read (module docstring).
    """
    from SpineAILib.io.paths import IMAGE_SUFFIXES, check_readable

    folder = check_readable(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES),
        key=natural_key,
    )
    if not files:
        raise InputError(f"{folder}: no PNG/JPEG/BMP/TIFF frames in this folder")
    check_frame_count(len(files), folder.name)  # before any frame is decoded
    warnings = []
    metadata = {"format": "frame folder", "files": [p.name for p in files]}
    stack, full_shape, reason = _read_frame_stack(files, folder.name, max_side, max_bytes)
    frames = collapse_grey(to_uint8(stack, folder.name, warnings))
    del stack
    times = _assumed_fps_times(len(files), fps, folder.name, warnings)
    spacing = _spacing_unknown(folder.name, full_shape, frames.shape[1:3], reason, warnings, metadata)
    return Cine(
        frames=frames,
        frame_times_ms=times,
        pixel_spacing=spacing,
        description=folder.name,
        source=str(folder),
        metadata=metadata,
        warnings=warnings,
    )


def _read_frame_stack(files, what="frames", max_side=MAX_FRAME_SIDE, max_bytes=None):
    """Read every file into one preallocated array, downscaled on the fly when needed
    (fit_frame_size); sizes must all match the first. Returns (stack, the files' (rows,
    cols), downscaling reason or None)."""
    import cv2

    first = _read_image_file(files[0])
    full_shape = first.shape[:2]
    rows, cols, reason = fit_frame_size(what, len(files), *full_shape, 3, first.dtype.itemsize,
                                        max_side, max_bytes)
    check_allocation((len(files), rows, cols, 3), first.dtype, what=f"{len(files)} frames", limit=max_bytes)

    def shrink(image):
        return cv2.resize(image, (cols, rows), interpolation=cv2.INTER_AREA) if reason else image

    first = shrink(first)
    stack = np.empty((len(files),) + first.shape, dtype=first.dtype)
    stack[0] = first
    for n, path in enumerate(files[1:], start=1):
        image = _read_image_file(path)
        if image.shape[:2] != full_shape:
            raise InputError(
                f"{path.name}: frame size {image.shape[1]}x{image.shape[0]} differs from "
                f"{files[0].name} ({full_shape[1]}x{full_shape[0]}); all frames must be the same size"
            )
        image = shrink(image)
        if image.ndim != stack.ndim - 1:  # grey and colour frames mixed: hold all as RGB
            if image.ndim == 2:
                image = np.repeat(image[..., np.newaxis], 3, axis=-1)
            else:
                stack = np.repeat(stack[..., np.newaxis], 3, axis=-1)
        if image.dtype.itemsize > stack.dtype.itemsize:
            stack = stack.astype(image.dtype)
        stack[n] = image
    return stack, full_shape, reason


def load_sequence_nrrd(path):
    """A Slicer sequence file (.seq.nrrd) of 2-D frames -> Cine.

    This is how the desktop module hands a cine from the scene to the command line:
    the last axis is the frame list ('axis N index values' hold the times), an
    optional first 'vector'/'RGB-color' axis holds colour, and one spatial axis has
    a single slice.
    """
    import nrrd

    from SpineAILib.io.checks import check_detached_nrrd

    check_detached_nrrd(path)
    header = nrrd.read_header(str(path))
    sizes = [int(s) for s in header["sizes"]]
    kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * len(sizes))]
    if kinds[-1] != "list":
        raise InputError(f"{path}: not a sequence of frames (its last axis is {kinds[-1]!r}, not a frame list)")
    color = kinds[0] in ("vector", "rgb-color", "3-color") and sizes[0] == 3
    spatial = sizes[1:-1] if color else sizes[:-1]
    if len(spatial) != 3 or spatial[2] != 1:
        raise InputError(f"{path}: sequence frames are {'x'.join(map(str, spatial))}; only 2-D frames form a cine")
    check_allocation([sizes[-1], spatial[1], spatial[0]] + ([3] if color else []), np.uint8, "cine")
    data, header = nrrd.read(str(path))  # Fortran order: data[(c,) i, j, k, t]
    warnings = []
    data = np.squeeze(data, axis=3 if color else 2)
    frames = np.moveaxis(data, 0, -1).transpose(2, 1, 0, 3) if color else data.transpose(2, 1, 0)
    frames = to_uint8(frames, str(path), warnings)
    n = frames.shape[0]
    # Slicer numbers the frame axis without the colour axis; accept both numberings.
    times = _sequence_times(header, len(sizes) - 1, n)
    if times is None and color:
        times = _sequence_times(header, len(sizes) - 2, n)
    if times is None:
        times = _assumed_fps_times(n, None, str(path), warnings)
    directions = [d for d in header.get("space directions", []) if d is not None and not np.all(np.isnan(np.asarray(d, float)))]
    spacing = (float(np.linalg.norm(directions[1])), float(np.linalg.norm(directions[0]))) if len(directions) >= 2 else (1.0, 1.0)
    return Cine(
        frames=collapse_grey(frames) if color else frames,
        frame_times_ms=times,
        pixel_spacing=spacing,
        modality=str(header.get("SpineAI.Modality", "US")),
        description=Path(path).name,
        source=str(path),
        warnings=warnings,
    )


def _sequence_times(header, axis, n):
    """Frame times from Slicer's 'axis N index values' custom field, if numeric."""
    values = header.get(f"axis {axis} index values")
    if values is None or header.get(f"axis {axis} index type", "numeric") != "numeric":
        return None
    try:
        times = np.array([float(v) for v in str(values).split()], dtype=np.float64)
    except ValueError:
        return None
    return times - times[0] if times.size == n else None
