"""The one safe way to unpack a zip archive (a Slicer ``.mrb`` scene bundle).

Every member is checked before a single byte is written: no absolute path, no ``..``,
no drive letter, no link or device, no duplicate name, and limits on the member count,
each member's size and the total (a zip bomb is refused, not unpacked). Members go into
a private temporary folder that is removed when the ``with`` block ends, whatever
happens; the bytes actually written are counted too, since a member may lie about its size.
"""

import os
import shutil
import stat
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from SpineAILib.errors import InputError
from SpineAILib.io.checks import MAX_VOLUME_BYTES, format_gib


@dataclass(frozen=True)
class ArchiveLimits:
    # A scene holds a few volumes of at most MAX_VOLUME_BYTES each (stored gzip-compressed
    # by Slicer, so a real member is rarely near this), plus small XML/JSON/TSV files.
    max_members: int = 10_000
    max_member_bytes: int = MAX_VOLUME_BYTES + 2**20  # one volume and its header
    max_total_bytes: int = 2 * MAX_VOLUME_BYTES


DEFAULT_LIMITS = ArchiveLimits()
_CHUNK = 1 << 20


def check_members(archive, where, limits=DEFAULT_LIMITS):
    """The archive's members, refused with one line when any is unsafe or the total too large."""
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise InputError(f"{where}: holds {len(members)} files; at most {limits.max_members} are read from a scene archive")
    seen, total = set(), 0
    for info in members:
        name = info.filename
        _check_name(name, where)
        mode = (info.external_attr >> 16) & 0xFFFF
        if info.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: type not recorded
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a plain file"
            raise InputError(f"{where}: member {name!r} is {kind}; refused")
        key = name.rstrip("/").lower()
        if key in seen:
            raise InputError(f"{where}: member {name!r} appears twice; refused")
        seen.add(key)
        if info.file_size > limits.max_member_bytes:
            raise InputError(f"{where}: member {name!r} unpacks to {format_gib(info.file_size)}; "
                             f"the limit is {format_gib(limits.max_member_bytes)} per file")  # fmt: skip
        total += info.file_size
    if total > limits.max_total_bytes:
        raise InputError(f"{where}: unpacks to {format_gib(total)}; the limit is {format_gib(limits.max_total_bytes)} "
                         "(a zip bomb or an oversized scene)")  # fmt: skip
    return members


def _check_name(name, where):
    if not name or "\x00" in name or "\\" in name:
        raise InputError(f"{where}: member {name!r} has an invalid name; refused")
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise InputError(f"{where}: member {name!r} is an absolute path; refused (it would be written outside the archive)")
    if ".." in path.parts:
        raise InputError(f"{where}: member {name!r} climbs out with '..'; refused (it would be written outside the archive)")


@contextmanager
def extracted(path, limits=DEFAULT_LIMITS, prefix="spineai-archive-"):
    """Unpack the zip at ``path`` into a private temporary folder; yield that folder (a Path).

    The folder (mode 0700) and everything in it is removed when the block ends.
    """
    path = Path(path)
    where = path.name
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as error:
        raise InputError(f"{where}: not a readable zip archive ({error})") from None
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with archive:
            members = check_members(archive, where, limits)
            _write_members(archive, members, root, where, limits)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _write_members(archive, members, root, where, limits):
    written = 0
    real_root = os.path.realpath(root)
    for info in members:
        target = root.joinpath(*PurePosixPath(info.filename).parts)
        if not os.path.realpath(target).startswith(real_root + os.sep):  # belt and braces after _check_name
            raise InputError(f"{where}: member {info.filename!r} would be written outside the archive; refused")
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        try:
            with archive.open(info) as source, open(target, "xb") as sink:
                while chunk := source.read(_CHUNK):
                    size += len(chunk)
                    written += len(chunk)
                    if size > limits.max_member_bytes or written > limits.max_total_bytes:
                        raise InputError(f"{where}: member {info.filename!r} unpacks to more than its stated size; refused")
                    sink.write(chunk)
        except InputError:
            raise
        except FileExistsError:
            raise InputError(f"{where}: member {info.filename!r} appears twice; refused") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as error:
            raise InputError(f"{where}: member {info.filename!r} cannot be unpacked ({error})") from None
        except Exception as error:  # zlib.error and friends from a damaged stream
            raise InputError(f"{where}: member {info.filename!r} cannot be unpacked ({type(error).__name__}: {error})") from None

