"""Readers: every supported input path -> VolumeImage or Cine.

``load(path)`` decides what a path is (DICOM folder or file, NIfTI/NRRD, video,
frame folder, single image) and hands it to the reader for that format;
``describe(path)`` reports what was found without keeping pixel data around longer
than needed (``spineai info``).
"""

from contextlib import contextmanager
from pathlib import Path

from SpineAILib.errors import InputError
from SpineAILib.io.paths import IMAGE_SUFFIXES, SEQUENCE_SUFFIXES, VIDEO_SUFFIXES, VOLUME_SUFFIXES, check_readable  # noqa: F401 (the io package's public names)
from SpineAILib.io.paths import suffix_of as _suffix


def input_kind(path):
    """'dicom-folder', 'dicom-file', 'volume', 'sequence', 'video', 'frame-folder' or 'image'."""
    from SpineAILib.io import dicom

    path = check_readable(path)
    if path.is_dir():
        entries = [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
        if not entries:
            raise InputError(f"{path}: folder is empty")
        if any(_suffix(p) in IMAGE_SUFFIXES for p in entries) and not any(dicom.is_dicom_file(p) for p in entries[:50]):
            return "frame-folder"
        return "dicom-folder"
    suffix = _suffix(path)
    if suffix in SEQUENCE_SUFFIXES:
        return "sequence"
    if suffix in VOLUME_SUFFIXES:
        return "volume"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if dicom.is_dicom_file(path):
        return "dicom-file"
    raise InputError(
        f"{path}: not a recognised image file (expected DICOM, NIfTI, NRRD, a video such as MP4/AVI, "
        "PNG/JPEG frames, or a folder of them)"
    )


def load(path, series=None):
    """Read ``path`` into a VolumeImage (3-D) or Cine (2-D frames over time).

    ``series``: for a DICOM folder holding several series, the SeriesInstanceUID
    (or its 1-based number in ``describe``) to load; without it a folder with more
    than one volume series raises AmbiguousInputError listing them.
    """
    from SpineAILib.images import Cine
    from SpineAILib.io.checks import check_frame_count

    with unreadable_as_input_error(path):
        image = _load(path, series)
    if isinstance(image, Cine):
        check_frame_count(image.n_frames, Path(path).name)
    return image


# What a damaged file makes the parsers below us raise (pydicom, pynrrd, nibabel, numpy,
# zlib...): the file's fault, so one line and exit 2, like every reader's own refusals.
_PARSER_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError, OSError, EOFError,
                  OverflowError, ZeroDivisionError, NotImplementedError, UnicodeError, MemoryError)  # fmt: skip


@contextmanager
def unreadable_as_input_error(path):
    """Turn a parser's exception on a damaged file into one InputError line naming the file."""
    import struct
    import zlib

    from pydicom.errors import BytesLengthException  # a value's length that its VR cannot have

    try:
        yield
    except InputError:
        raise
    except (*_PARSER_ERRORS, struct.error, zlib.error, BytesLengthException) as error:
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise InputError(f"{path}: cannot read it, the file is damaged or not what its name says "
                         f"({type(error).__name__}: {reason})") from None  # fmt: skip


def _load(path, series):
    from SpineAILib.io import cine, dicom, volumes

    kind = input_kind(path)
    if kind == "dicom-folder":
        return dicom.load_folder(path, series=series)
    if kind == "dicom-file":
        return dicom.load_file(path)
    if kind == "volume":
        return volumes.load_volume_file(path)
    if kind == "sequence":
        return cine.load_sequence_nrrd(path)
    if kind == "video":
        return cine.load_video(path)
    if kind == "frame-folder":
        return cine.load_frame_folder(path)
    return cine.load_image(path)


def describe(path):
    """What ``path`` holds, as JSON-ready dicts (one per series / image)."""
    from SpineAILib.io import dicom

    kind = input_kind(path)
    if kind == "dicom-folder":
        with unreadable_as_input_error(path):
            items = dicom.describe_folder(path)
    else:
        items = [load(path).summary()]
    return {"path": str(Path(path)), "input_kind": kind, "items": items}
