"""Output folders that are complete or absent, never half-written, never shared.

A task writes into a hidden staging folder beside the target; only when every
file is written is it moved into place. An existing, non-empty target is refused
unless ``force`` is given, and even then the old results are replaced only after
the new ones are complete.

Three rules keep other people's files safe:
* a results folder carries the marker file ``.spineai-results``; ``force`` replaces
  only a folder with that marker (or a run folder of an older SpineAI, recognised by its
  report.json), never any other folder;
* one process at a time writes a target: ``output_lock`` holds an exclusive lock
  (``.NAME.lock`` beside it, released by the kernel if the process dies), so a second
  run into the same folder is refused while the first runs;
* a target that is a symbolic link is refused (give the folder it points to).
Staging folders left by a killed run (``.NAME.partial-*``, ``.NAME.old-*``) are cleaned
by the next run into the same target, under the lock.
"""

import fcntl
import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from SpineAILib.errors import OutputError

MARKER = ".spineai-results"
_held = {}  # absolute target -> [fd, depth]: the locks this process holds (re-entrant)
_held_guard = threading.Lock()


def _lock_path(out_dir):
    return out_dir.parent / f".{out_dir.name}.lock"


def holds_results(folder):
    """True for a folder SpineAI wrote: the marker, or (older versions) a run's report.json."""
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return True
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and "spineai_version" in report and "task" in report


def check_output_folder(out_dir, force=False):
    """Fail early (before any work) when ``out_dir`` cannot receive results."""
    out_dir = Path(out_dir).absolute()
    if out_dir.is_symlink():
        raise OutputError(f"{out_dir}: is a symbolic link (to {os.path.realpath(out_dir)}); give the folder it points "
                          "to, or another folder")  # fmt: skip
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise OutputError(f"{out_dir}: already holds results; choose another folder or pass --force to replace them")
        if not holds_results(out_dir):
            raise OutputError(f"{out_dir}: holds files that are not SpineAI results (no {MARKER} marker); --force "
                              "replaces only a results folder: choose another folder")  # fmt: skip
    parent = out_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{parent}: permission denied (cannot write the output folder {out_dir.name})")
    if out_dir.parent.exists() and str(out_dir) not in _held:
        with output_lock(out_dir):  # taken and let go: only says whether another run holds it now
            pass
    return out_dir


@contextmanager
def output_lock(out_dir):
    """Hold the exclusive lock on ``out_dir`` (re-entrant within a process); refuse when another holds it."""
    out_dir = Path(out_dir).absolute()
    key = str(out_dir)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            fd = None
        else:
            fd = _acquire(out_dir)
            _held[key] = [fd, 1]
    try:
        yield out_dir
    finally:
        with _held_guard:
            _held[key][1] -= 1
            if _held[key][1] == 0:
                fd = _held.pop(key)[0]
                _lock_path(out_dir).unlink(missing_ok=True)  # before unlocking: a waiter re-checks the inode
                os.close(fd)


def _acquire(out_dir):
    path = _lock_path(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{out_dir.parent}: cannot create the output folder's parent: {error.strerror or error}") from None
    for _ in range(5):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as error:
            raise OutputError(f"{path}: cannot create the output lock: {error.strerror or error}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OutputError(f"{out_dir}: another SpineAI run is writing this folder right now; wait for it to finish "
                              "or choose another folder") from None  # fmt: skip
        try:
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except OSError:
            same = False
        if same:  # not a lock file its last holder removed after we opened it
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)
    raise OutputError(f"{out_dir}: could not take the output lock {path.name}")


def clean_stale_staging(out_dir):
    """Remove staging folders of killed runs into ``out_dir`` (call under its lock). When a run died
    between moving the old results aside and moving the new ones in, the old ones come back."""
    out_dir = Path(out_dir).absolute()
    if not out_dir.parent.is_dir():
        return
    prefix = f".{out_dir.name}."
    for sibling in sorted(out_dir.parent.iterdir()):
        rest = sibling.name[len(prefix):] if sibling.name.startswith(prefix) else ""
        if not (rest.startswith("partial-") or rest.startswith("old-")) or sibling.is_symlink() or not sibling.is_dir():
            continue
        if rest.startswith("old-") and not out_dir.exists():
            os.replace(sibling, out_dir)
        else:
            shutil.rmtree(sibling, ignore_errors=True)


@contextmanager
def staged_output_folder(out_dir, force=False):
    """Yield a staging folder; on success it becomes ``out_dir`` atomically (with the results marker)."""
    with output_lock(out_dir) as locked:
        clean_stale_staging(locked)
        out_dir = check_output_folder(locked, force)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
        try:
            yield staging
            (staging / MARKER).write_text("SpineAI results: `spineai run --force` may replace this folder\n",
                                          encoding="utf-8")  # fmt: skip
            swap_in(staging, out_dir)
        except BaseException:
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


def write_text_atomic(path, text, mode=None):
    """Write a text file via a temporary sibling and rename (readers never see half a file).
    ``mode``: the file's permissions (the temporary file is private, 0600, until then)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
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
