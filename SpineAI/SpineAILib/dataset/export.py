"""``spineai dataset export``: de-identified dataset folders that the training package reads directly.

    export_dataset(sources, task, out_dir, add=False, split=None, seed=0) -> manifest

A new dataset goes into an absent or empty folder; a non-empty one is refused unless
``add``. Adding re-reads nothing it does not need: the existing files are linked into a
staging folder beside the dataset, the new or re-exported cases are written there, the
shared tables and dataset.json are rebuilt, and the staging folder replaces the dataset
in one rename. A case already in the dataset (same series, or same pixels) is replaced by
its new export; when nothing changed, nothing is written at all, so adding the same
source twice leaves every byte (and every sha256) as it was.
"""

import os
import shutil
from pathlib import Path

from SpineAILib import __version__
from SpineAILib.dataset import deid
from SpineAILib.dataset.layout import (
    LAYOUT_NAMES,
    SHARED_FILES,
    json_bytes,
    read_shared_rows,
    shared_bytes,
    write_case,
    write_file,
)
from SpineAILib.dataset.manifest import (
    DEFAULT_FRACTIONS,
    MANIFEST,
    assign_splits,
    new_manifest,
    now_utc,
    parse_split,
    read_manifest,
    sha256_bytes,
    sha256_file,
)  # fmt: skip
from SpineAILib.errors import InputError, OutputError
from SpineAILib.io.checks import check_named_file
from SpineAILib.outputs import clean_stale_staging, output_lock, swap_in

TASKS = tuple(LAYOUT_NAMES)


def _no_progress(fraction, message):
    pass


def _check_target(out_dir, add):
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not add:
            raise OutputError(f"{out_dir}: is not empty; choose a new folder, or pass --add to add cases to the dataset in it")
        return out_dir, read_manifest(out_dir)
    return out_dir, None


def export_dataset(sources, task, out_dir, **options):
    """Export ``sources`` (run folders, .mrb scenes, annotation case folders) for ``task`` into ``out_dir``.

    One export at a time per dataset (the output lock); staging folders of a killed export are cleaned first.
    """
    if Path(out_dir).is_symlink():
        raise OutputError(f"{Path(out_dir).absolute()}: is a symbolic link; give the folder it points to")
    with output_lock(out_dir) as locked:
        clean_stale_staging(locked)
        return _export_dataset(sources, task, out_dir, **options)


def _export_dataset(sources, task, out_dir, *, add=False, split=None, seed=0, progress=None, key_file=None):
    from SpineAILib.dataset.sources import read_source

    progress = progress or _no_progress
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    sources = [Path(s) for s in sources]
    if not sources:
        raise InputError("no sources to export (give run folders, annotation case folders or .mrb scenes)")
    missing = [s for s in sources if not s.exists()]
    if missing:  # before any work: a typo should cost nothing
        raise InputError(f"{missing[0]}: no such file or folder")
    out_dir, old = _check_target(out_dir, add)
    fractions = parse_split(split)
    key = deid.load_key(key_file)
    key_print = deid.fingerprint(key)
    if old is not None:
        if old["task"] != task:
            raise InputError(f"{out_dir}: holds a {old['task']} dataset, not {task}")
        if old["deidentification"].get("key_fingerprint") != key_print:
            raise InputError(f"{out_dir}: was exported under another de-identification key (fingerprint "
                             f"{old['deidentification'].get('key_fingerprint')}); use that key file to add to it")  # fmt: skip
        kept = old["split"]
        if fractions is not None and any(abs(fractions[p] - kept["fractions"].get(p, 0)) > 1e-9 for p in fractions):
            raise InputError(f"{out_dir}: is split {_split_text(kept['fractions'])}; --add keeps that split (leave --split out)")
        fractions, seed = kept["fractions"], kept["seed"]
        manifest = {k: v for k, v in old.items()}
        manifest["cases"] = [dict(c) for c in old["cases"]]
    else:
        fractions = fractions or dict(DEFAULT_FRACTIONS)
        manifest = new_manifest(task, LAYOUT_NAMES[task], fractions, int(seed), _deid_record(key_print), __version__)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(_make_staging(out_dir))
    try:
        changed = _export_into(staging, out_dir if old is not None else None, manifest, sources, task, key, key_print,
                               progress, read_source)  # fmt: skip
        if not changed:
            shutil.rmtree(staging, ignore_errors=True)
            progress(1.0, f"{out_dir}: no change (every case was already there, byte for byte)")
            return old
        manifest["updated"] = now_utc() if old is not None else None
        write_file(staging, MANIFEST, json_bytes(manifest))
        swap_in(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(1.0, f"dataset written to {out_dir} ({len(manifest['cases'])} cases)")
    return manifest


def _split_text(fractions):
    return ",".join(f"{k}={v:g}" for k, v in fractions.items())


def _deid_record(key_print):
    return {
        "method": "pixels, geometry and annotations only; no header, report, description or file name is copied",
        "uids": "HMAC-SHA256 under the exporting site's key (kept outside the dataset) -> 2.25.<128-bit integer>",
        "key_fingerprint": key_print,
        "not_covered": "text burnt into the pixels (scanner screens) stays; crop such frames before export",
    }


def _make_staging(out_dir):
    import tempfile

    staging = tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # a dataset is meant to be shared like any folder the user makes
    return staging


def _link_existing(out_dir, staging, manifest):
    """Hard-link (or copy) every case file of the existing dataset into staging."""
    for case in manifest["cases"]:
        for relative in case["files"]:  # names checked by dataset/schema.py; links followed here
            src = check_named_file(relative, out_dir, out_dir, what="file", container="the dataset")
            dst = staging / relative
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def _remove_case_files(staging, case):
    for relative in case["files"]:
        (staging / relative).unlink(missing_ok=True)
    folder = staging / case["id"]
    if folder.is_dir():
        shutil.rmtree(folder)


def _export_into(staging, old_dir, manifest, sources, task, key, key_print, progress, read_source):
    """Write the sources' cases into ``staging`` and update ``manifest``; returns whether anything changed."""
    by_key = {case["key"]: case for case in manifest["cases"]}
    before = {case["key"]: (case["files"], case["split"]) for case in manifest["cases"]}
    ids = {case["id"] for case in manifest["cases"]}
    rows = read_shared_rows(old_dir, task, ids) if old_dir is not None else {name: [] for name in SHARED_FILES[task]}
    if old_dir is not None:
        _link_existing(old_dir, staging, manifest)
    seen, new_keys = {}, []
    for n, source in enumerate(sources):
        progress(0.9 * n / len(sources), f"reading {source.name}")
        case = read_source(source, task)
        if case.dataset_key and case.dataset_fingerprint == key_print:
            case_key = case.dataset_key  # imported from a dataset of this site: keep its identity
        else:
            case_key = deid.case_key(key, case.identity())
        if case_key in seen:
            raise InputError(f"{source} and {seen[case_key]} are the same image; export one of them")
        seen[case_key] = source
        entry = by_key.get(case_key)
        if entry is None:
            entry = {"id": _next_id(manifest), "key": case_key, "split": None}
            manifest["cases"].append(entry)
            by_key[case_key] = entry
            new_keys.append(case_key)
        else:
            _remove_case_files(staging, entry)
        case_id = entry["id"]
        for name in rows:
            rows[name] = [r for r in rows[name] if (r.get("case") or r.get("video")) != case_id]
        progress(0.9 * (n + 0.5) / len(sources), f"writing {case_id}")
        files, case_rows, facts = write_case(staging, case_id, case.annotation, task)
        for name, items in case_rows.items():
            rows.setdefault(name, []).extend(items)
        entry.update({
            "study_uid": deid.pseudonym_uid(key, case.study_uid),
            "series_uid": deid.pseudonym_uid(key, case.series_uid),
            **facts,
            "files": {relative: sha256_file(staging / relative) for relative in files},
        })  # fmt: skip
        del case
    parts = assign_splits([c["split"] for c in manifest["cases"] if c["split"]], new_keys,
                          manifest["split"]["fractions"], manifest["split"]["seed"], deid.order_key)  # fmt: skip
    for key_text, part in parts.items():
        by_key[key_text]["split"] = part
    splits = {c["id"]: c["split"] for c in manifest["cases"]}
    shared = shared_bytes(task, rows, splits)
    old_shared = dict(manifest.get("files", {}))
    manifest["files"] = {}
    for name, data in shared.items():
        (staging / name).unlink(missing_ok=True)
        write_file(staging, name, data)
        manifest["files"][name] = sha256_bytes(data)
    after = {case["key"]: (case["files"], case["split"]) for case in manifest["cases"]}
    return old_dir is None or after != before or manifest["files"] != old_shared


def _next_id(manifest):
    used = [int(c["id"].split("-")[1]) for c in manifest["cases"] if c["id"].startswith("case-")]
    return f"case-{max(used, default=0) + 1:04d}"
