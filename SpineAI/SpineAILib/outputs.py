"""Output folders that are complete or absent, never half-written.

A task writes into a hidden staging folder beside the target; only when every
file is written is it moved into place. An existing, non-empty target is refused
unless ``force`` is given, and even then the old results are replaced only after
the new ones are complete.
"""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError


def check_output_folder(out_dir, force=False):
    """Fail early (before any work) when ``out_dir`` cannot receive results."""
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise OutputError(f"{out_dir}: already holds results; choose another folder or pass --force to replace them")
    parent = out_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{parent}: permission denied (cannot write the output folder {out_dir.name})")
    return out_dir


@contextmanager
def staged_output_folder(out_dir, force=False):
    """Yield a staging folder; on success it becomes ``out_dir`` atomically."""
    out_dir = check_output_folder(out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        swap_in(staging, out_dir)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def swap_in(staging, out_dir):
    """The finished ``staging`` folder becomes ``out_dir``; an old ``out_dir`` is moved aside first
    and removed only after the rename, so a failure of the rename loses nothing."""
    staging, out_dir = Path(staging), Path(out_dir)
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    try:
        os.replace(staging, out_dir)
    except OSError:
        if old is not None:
            os.replace(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path, text):
    """Write a text file via a temporary sibling and rename (readers never see half a file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv_atomic(path, header, rows):
    """Write a CSV (``header``, then each row of ``rows``) via a temporary sibling and rename."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(header)
            writer.writerows(rows)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
