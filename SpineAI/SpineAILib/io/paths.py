"""What a path is by its name, and the path checks every reader shares (one-line errors)."""

import os
from pathlib import Path

from SpineAILib.errors import InputError

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".seg.nrrd")
SEQUENCE_SUFFIXES = (".seq.nrrd",)  # Slicer sequences: how the desktop module hands over a cine
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".wmv", ".mpg", ".mpeg")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def suffix_of(path):
    name = path.name.lower()
    for s in sorted(VOLUME_SUFFIXES + SEQUENCE_SUFFIXES + VIDEO_SUFFIXES + IMAGE_SUFFIXES, key=len, reverse=True):
        if name.endswith(s):
            return s
    return path.suffix.lower()


def check_readable(path):
    """One-line errors for the path problems every reader shares."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
        raise InputError(f"{path}: permission denied")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    return path
