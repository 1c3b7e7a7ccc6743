"""dataset.json is input: every field is checked before anything is read, linked or deleted.

A case id becomes a folder name that ``--add`` deletes and ``import`` writes, and every
file name becomes a path that is hashed, hard-linked and read. So ids must look like
``case-0001``, file names must be plain relative paths that belong to their case, and
every named file must resolve inside the dataset (``io.checks.check_named_file``).
Each refusal is one line naming the field.
"""

import math
import re
from pathlib import PurePosixPath

from SpineAILib.errors import InputError

CASE_ID = re.compile(r"case-\d{4,9}")
SHA256 = re.compile(r"[0-9a-f]{64}")
PARTS = ("train", "validation", "test")
KINDS = ("cine", "volume")


def _fail(path, field, problem):
    raise InputError(f"{path}: malformed dataset.json: {field} {problem}")


def _need(value, kind, path, field):
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        _fail(path, field, f"must be {names}, not {type(value).__name__}")
    return value


def _number(value, path, field, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(path, field, "must be a finite number")
    if positive and value <= 0:
        _fail(path, field, "must be positive")
    return value


def check_relative_name(name, path, field):
    """A file name in dataset.json: relative, POSIX, no '..', no empty or hidden parts."""
    _need(name, str, path, field)
    parts = PurePosixPath(name).parts
    if (not name or "\\" in name or "\x00" in name or name.startswith("/") or not parts
            or any(p in ("..", ".") or p.startswith(".") or ":" in p for p in parts)):  # fmt: skip
        _fail(path, field, f"names {name!r}, which is not a plain file name inside the dataset")
    return name


def validate_manifest(manifest, path, tasks):
    """Raise a one-line InputError for the first field of ``manifest`` that is not as export writes it."""
    _need(manifest, dict, path, "the document")
    _need(manifest.get("format_version"), int, path, "format_version")
    if manifest.get("task") not in tasks:
        _fail(path, "task", f"{manifest.get('task')!r} is not one of {', '.join(tasks)}")
    for field in ("layout", "spineai_version", "created"):
        _need(manifest.get(field), str, path, field)
    if manifest.get("updated") is not None:
        _need(manifest["updated"], str, path, "updated")
    deid = _need(manifest.get("deidentification"), dict, path, "deidentification")
    _need(deid.get("key_fingerprint"), str, path, "deidentification.key_fingerprint")
    split = _need(manifest.get("split"), dict, path, "split")
    fractions = _need(split.get("fractions"), dict, path, "split.fractions")
    for part, value in fractions.items():
        if part not in PARTS:
            _fail(path, "split.fractions", f"has an unknown part {part!r}")
        if _number(value, path, f"split.fractions.{part}") < 0:
            _fail(path, f"split.fractions.{part}", "must not be negative")
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        _fail(path, "split.fractions", "must add up to 1")
    _need(split.get("seed"), int, path, "split.seed")
    shared = _need(manifest.get("files", {}), dict, path, "files")
    for name, digest in shared.items():
        check_relative_name(name, path, "files")
        if "/" in name:
            _fail(path, "files", f"names {name!r}; shared files sit at the top of the dataset")
        _digest(digest, path, f"files[{name!r}]")
    cases = _need(manifest.get("cases"), list, path, "cases")
    ids, keys = set(), set()
    for n, case in enumerate(cases):
        _check_case(case, n, path, ids, keys)
    return manifest


def _digest(value, path, field):
    if not isinstance(value, str) or not SHA256.fullmatch(value):
        _fail(path, field, "is not a SHA-256 (64 hexadecimal digits)")


def _check_case(case, n, path, ids, keys):
    where = f"cases[{n}]"
    _need(case, dict, path, where)
    case_id = case.get("id")
    if not isinstance(case_id, str) or not CASE_ID.fullmatch(case_id):
        _fail(path, f"{where}.id", f"{case_id!r} is not a case id like 'case-0001'")
    if case_id in ids:
        _fail(path, f"{where}.id", f"{case_id!r} appears twice")
    ids.add(case_id)
    key = case.get("key")
    if not isinstance(key, str) or not key or len(key) > 256:
        _fail(path, f"{where}.key", "must be a non-empty string")
    if key in keys:
        _fail(path, f"{where}.key", "appears twice")
    keys.add(key)
    if case.get("split") is not None and case["split"] not in PARTS:
        _fail(path, f"{where}.split", f"{case['split']!r} is not one of {', '.join(PARTS)}")
    for field in ("study_uid", "series_uid"):
        if case.get(field) is not None:
            _need(case[field], str, path, f"{where}.{field}")
    kind = case.get("kind")
    if kind not in KINDS:
        _fail(path, f"{where}.kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    if kind == "cine":
        frames = _need(case.get("frames"), int, path, f"{where}.frames")
        if frames < 1:
            _fail(path, f"{where}.frames", "must be at least 1")
        spacing = _need(case.get("pixel_spacing"), list, path, f"{where}.pixel_spacing")
        if len(spacing) != 2:
            _fail(path, f"{where}.pixel_spacing", "must hold two numbers")
        for value in spacing:
            _number(value, path, f"{where}.pixel_spacing", positive=True)
    files = _need(case.get("files"), dict, path, f"{where}.files")
    for name, digest in files.items():
        check_relative_name(name, path, f"{where}.files")
        first = PurePosixPath(name).parts[0]
        if first != case_id and not first.startswith(case_id + "_") and not first.startswith(case_id + "."):
            _fail(path, f"{where}.files", f"names {name!r}, which does not belong to {case_id}")
        _digest(digest, path, f"{where}.files[{name!r}]")
