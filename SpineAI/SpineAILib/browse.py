"""The server's files, as far as a front end may see them: folders under the roots given at start.

``Roots([home])`` answers ``listing(path)``: the folders and files of one folder and, for a DICOM
folder, its series (modality, description, orientation, slice count). Nothing outside the roots
is ever listed or returned: every path is resolved (symlinks followed) and must lie in a root;
a path with a ``..`` part is refused before it is resolved; an entry whose link points out of
the roots is left out of the listing. GUI-free: the web app's file browser draws what this says.
"""

import os
from pathlib import Path

from SpineAILib.errors import InputError

MAX_ENTRIES = 400  # per folder; the rest is counted, not listed
DICOM_PROBE = 8  # files looked at to decide whether a folder holds DICOM


class OutsideRootsError(InputError):
    """A path the browser may not show (outside the roots, or with a '..' part)."""


def _inside(path, root):
    return path == root or root in path.parents


def _is_dicom_file(path):
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


class Roots:
    """The folders a browser may list (resolved once; each must exist)."""

    def __init__(self, roots):
        resolved = []
        for root in roots:
            path = Path(root).expanduser().resolve()
            if path.is_dir() and path not in resolved:
                resolved.append(path)
        if not resolved:
            raise InputError(f"no data root is an existing folder: {', '.join(str(r) for r in roots)}")
        self.roots = resolved

    def check(self, path):
        """``path`` (absolute, or relative to the first root) resolved, if it lies inside a root;
        OutsideRootsError otherwise (a '..' part, a link out, a path elsewhere)."""
        text = str(path or "").strip()
        if not text:
            return self.roots[0]
        raw = Path(text).expanduser()
        if ".." in raw.parts:
            raise OutsideRootsError(f"{text}: '..' is not allowed in a browsed path")
        if not raw.is_absolute():
            raw = self.roots[0] / raw
        try:
            real = raw.resolve(strict=True)
        except (OSError, RuntimeError):
            raise InputError(f"{text}: no such file or folder") from None
        if not any(_inside(real, root) for root in self.roots):
            raise OutsideRootsError(f"{text}: outside the folders this server shows "
                                    f"({', '.join(str(r) for r in self.roots)})")
        return real

    def root_of(self, real):
        return next((root for root in self.roots if _inside(real, root)), None)

    def listing(self, path=None, series=True):
        """{"path", "parent", "roots", "folders", "files", "more", "dicom", "series", "study"} of one folder.

        ``folders`` / ``files``: [{"name", "path"(, "size")}], hidden names and links out of the
        roots left out; ``series``: for a folder holding DICOM files, io.describe's items
        (index, modality, description, orientation, slices) without the unreadable ones, also for a
        study folder whose sub-folders hold the series; ``study``: more than one series.
        """
        folder = self.check(path)
        if not folder.is_dir():
            raise InputError(f"{folder}: not a folder")
        root = self.root_of(folder)
        folders, files, more = [], [], 0
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name.lower())
        except OSError as error:
            raise InputError(f"{folder}: cannot be listed ({error.strerror or error})") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                real = Path(entry.path).resolve(strict=True)
                is_dir = real.is_dir()
            except (OSError, RuntimeError):
                continue
            if not any(_inside(real, r) for r in self.roots):
                continue  # a link pointing out of the roots
            if len(folders) + len(files) >= MAX_ENTRIES:
                more += 1
                continue
            item = {"name": entry.name, "path": str(folder / entry.name)}
            if is_dir:
                folders.append(item)
            else:
                item["size"] = real.stat().st_size
                files.append(item)
        probe = [Path(f["path"]) for f in files[:DICOM_PROBE]]
        dicom = any(_is_dicom_file(p) for p in probe)
        # A study folder: DICOM in its sub-folders (one per series), listed as one study.
        study = not dicom and bool(folders) and any(_holds_dicom(Path(f["path"])) for f in folders[:DICOM_PROBE])
        found = series_of(folder) if (dicom or study) and series else []
        return {
            "path": str(folder), "parent": str(folder.parent) if folder != root else "",
            "roots": [str(r) for r in self.roots], "folders": folders,
            "files": [] if dicom else files, "dicom_files": len(files) if dicom else 0,
            "more": more, "dicom": dicom, "series": found, "study": len(found) > 1,
        }


def _holds_dicom(folder):
    try:
        names = sorted(e.path for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))[:4]
    except OSError:
        return False
    return any(_is_dicom_file(n) for n in names)


def series_of(folder):
    """The readable series of a DICOM folder: [{"index", "modality", "description", "orientation", "slices",
    "title"}] (io.describe)."""
    from SpineAILib.io import describe

    try:
        items = describe(folder)["items"]
    except InputError:
        return []
    out = []
    for item in items:
        if item.get("problem"):
            continue
        out.append({
            "index": item.get("index"), "modality": item.get("modality") or "?",
            "description": item.get("description") or "no description",
            "orientation": item.get("orientation") or "", "slices": item.get("slices") or item.get("frames") or 0,
        })
    return out
