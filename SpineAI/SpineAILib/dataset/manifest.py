"""dataset.json: what a dataset folder holds, how it was split and de-identified, and checksums.

    {"format": "spineai-dataset", "format_version": 1, "task": ..., "layout": ...,
     "created": "<UTC time of the first export>", "updated": "<UTC time of the last change>",
     "spineai_version": ..., "deidentification": {...key fingerprint...},
     "split": {"fractions": {"train": .7, "validation": .15, "test": .15}, "seed": 0, "method": ...},
     "cases": [{"id": "case-0001", "key": ..., "split": "train", "study_uid": "2.25...",
                "series_uid": "2.25...", ...facts..., "files": {path: sha256}}],
     "files": {shared file: sha256}}

The times are when the export ran, never a date from the images. Splits are by case: a
case keeps the part it was given; new cases go, in a seeded order that does not depend
on the order of the sources, to the part furthest below its share.
"""

import hashlib
import json
import time
from pathlib import Path

from SpineAILib.errors import InputError

FORMAT = "spineai-dataset"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
PARTS = ("train", "validation", "test")
DEFAULT_FRACTIONS = {"train": 0.7, "validation": 0.15, "test": 0.15}
_ALIASES = {"train": "train", "training": "train", "val": "validation", "valid": "validation",
            "validation": "validation", "test": "test", "testing": "test"}  # fmt: skip


def sha256_file(path):
    from SpineAILib.models.bundle import file_sha256  # one streaming hash for bundles and datasets

    return file_sha256(path)


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def parse_split(text):
    """'train=0.7,validation=0.15,test=0.15' (or a dict) -> {part: fraction}; None stays None."""
    if text is None:
        return None
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for item in str(text).split(","):
            name, sep, value = item.partition("=")
            if not sep:
                raise InputError(f"--split: '{item}' is not PART=FRACTION (e.g. train=0.7,validation=0.15,test=0.15)")
            items.append((name, value))
    out = dict.fromkeys(PARTS, 0.0)
    for name, value in items:
        part = _ALIASES.get(str(name).strip().lower())
        if part is None:
            raise InputError(f"--split: unknown part '{name}' (train, validation, test)")
        try:
            out[part] = float(value)
        except ValueError:
            raise InputError(f"--split: '{value}' is not a number") from None
    if any(v < 0 for v in out.values()) or abs(sum(out.values()) - 1.0) > 1e-6:
        raise InputError(f"--split: fractions must be non-negative and add up to 1, got {sum(out.values()):g}")
    return out


def normalise_part(name):
    return _ALIASES.get(str(name).strip().lower())


def now_utc():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_manifest(task, layout, fractions, seed, deidentification, version):
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": task,
        "layout": layout,
        "created": now_utc(),
        "updated": None,
        "spineai_version": version,
        "deidentification": deidentification,
        "split": {"fractions": fractions, "seed": seed,
                  "method": "by case (a cine or a volume), never by frame or slice; a case keeps its part when cases are added"},
        "cases": [],
        "files": {},
    }  # fmt: skip


def read_manifest(folder):
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder}: not a SpineAI dataset (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not readable ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not a SpineAI dataset manifest (format {manifest.get('format')!r})"
                         if isinstance(manifest, dict) else f"{path}: not a SpineAI dataset manifest")
    from SpineAILib.dataset.layout import LAYOUT_NAMES
    from SpineAILib.dataset.schema import validate_manifest

    version = manifest.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise InputError(f"{path}: dataset format version {version} is newer than this SpineAI reads ({FORMAT_VERSION})")
    return validate_manifest(manifest, path, tuple(LAYOUT_NAMES))  # before any of it names a path


def assign_splits(existing, new_keys, fractions, seed, order_key):
    """{case key: part} for ``new_keys``; ``existing``: [part] of the cases already in the dataset.

    Each new case (in seeded hash order) goes to the part whose share of cases is furthest
    below its fraction; a part with a non-zero fraction gets a case before any part gets a
    second one while cases remain to go round.
    """
    counts = {p: 0 for p in PARTS}
    for part in existing:
        counts[part] = counts.get(part, 0) + 1
    wanted = [p for p in PARTS if fractions.get(p, 0) > 0]
    out = {}
    for key in sorted(new_keys, key=lambda k: order_key(seed, k)):
        total = sum(counts.values()) + 1
        empty = [p for p in wanted if counts[p] == 0]
        if empty:
            part = empty[0]
        else:
            part = max(wanted, key=lambda p: (fractions[p] - counts[p] / total, -PARTS.index(p)))
        out[key] = part
        counts[part] += 1
    return out
