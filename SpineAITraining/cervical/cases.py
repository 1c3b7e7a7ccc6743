"""Cervical CT cases for the two cervical trainers: phantoms or the RSNA 2022 layout, split and cached.

A case is (CT VolumeImage in HU, VerSe label map or None, {"C1": 0/1, ...} or None, id).
Phantoms come from SpineAITraining.cervical.phantom.make_case, one per seed; the split
is by case (seeded), written into every bundle. Prepared arrays are cached once per case
(``.npz``), keyed by what made them, so a second run (or a resumed one) reads them back.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from SpineAILib.vocabulary import CERVICAL_VERTEBRAE as CERVICAL

PHANTOM_DATA = ("SYNTHETIC cervical CT phantoms from SpineAITraining.cervical.phantom.make_case (analytic anatomy, "
                "simulated fractures), NOT real CT")  # fmt: skip


@dataclass
class Case:
    case_id: str
    ct: object  # VolumeImage, HU
    labels: object  # VolumeImage (VerSe numbers) or None
    fractured: dict  # {"C1": 0/1, ...} or None
    kinds: dict = None  # phantoms: {"C5": ["lamina"], ...}, the fracture kinds drawn per vertebra


def phantom_ids(n, first_seed=0):
    return [f"phantom-{seed:05d}" for seed in range(first_seed, first_seed + n)]


def phantom_case(case_id, fracture_rate=0.3, shape_limit=None):
    from SpineAITraining.cervical.phantom import make_case

    seed = int(case_id.rsplit("-", 1)[1])
    made = make_case(seed, fracture_rate=fracture_rate, shape_limit=shape_limit)
    fractured = {name: int(made.fractured.get(name, 0)) for name in CERVICAL}
    kinds = {}
    for fracture in made.meta.get("fractures", []):
        kinds.setdefault(fracture["vertebra"], []).append(fracture["kind"])
    return Case(case_id, made.ct, made.labels, fractured, kinds)


class RSNASource:
    """The RSNA 2022 Kaggle layout through the rsna2022 adapter (images, C1-C7 labels, masks where given)."""

    def __init__(self, root):
        from SpineAITraining.cervical.layout import RSNA2022Dataset

        self.root = Path(root)
        self.dataset = RSNA2022Dataset(root)

    def ids(self, need_masks=False):
        ids = list(self.dataset.study_ids)
        if need_masks:
            ids = [s for s in ids if self.dataset.has_segmentation(s)]
        return ids

    def case(self, case_id):
        ct = self.dataset.load_ct(case_id)
        labels = self.dataset.load_segmentation(case_id, ct) if self.dataset.has_segmentation(case_id) else None
        fractured = self.dataset.labels(case_id)
        return Case(str(case_id), ct, labels, {name: int(fractured[name]) for name in CERVICAL} if fractured else None)


def cache_key(kind, recipe):
    """A short stable hash of what a cached array was made from (recipe: JSON-able)."""
    return hashlib.sha256(json.dumps({"kind": kind, **recipe}, sort_keys=True).encode()).hexdigest()[:12]


def cached(folder, case_id, key, make):
    """Arrays for ``case_id`` from ``folder/{case_id}.{key}.npz``, made (and written atomically) once."""
    folder = Path(folder)
    path = folder / f"{case_id}.{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    arrays = make()
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".{case_id}.{key}.tmp.npz"
    np.savez_compressed(temp, **arrays)
    temp.replace(path)
    return arrays


def phantom_source(count, first_seed, fracture_rate, shape_limit=None):
    """A trainer's case source over ``count`` phantoms from ``first_seed``: ids, how to make a case, what to record.
    ``shape_limit``: "K,J,I" most voxels (coarser grids, for quick runs) or None."""
    ids = phantom_ids(count, first_seed)
    limit = tuple(int(v) for v in shape_limit.split(",")) if shape_limit else None
    name = f"phantom(fracture_rate={fracture_rate:g}" + (f", shape_limit={shape_limit})" if limit else ")")
    return {"name": name, "ids": ids, "synthetic": True,
            "phantom": {"first_seed": first_seed, "count": len(ids), "fracture_rate": fracture_rate,
                        "shape_limit": list(limit) if limit else None},
            "case": lambda case_id: phantom_case(case_id, fracture_rate, limit),
            "data": f"{PHANTOM_DATA}: {len(ids)} cases, seeds {first_seed}-{first_seed + len(ids) - 1}, "
                    f"fracture_rate {fracture_rate:g}"}  # fmt: skip


def data_source(args, need_masks=False):
    """The cases a cervical trainer reads: the RSNA 2022 folder ``args.data`` (with ``need_masks``: only the
    studies that have a segmentation) or phantoms (``args.phantoms`` from ``args.first_seed``)."""
    if not args.data:
        return phantom_source(args.phantoms, args.first_seed, args.fracture_rate, args.shape_limit)
    rsna = RSNASource(args.data)
    synthetic = rsna.dataset.is_synthetic
    what = "studies with segmentations" if need_masks else "training studies"
    data = (f"SYNTHETIC studies in the RSNA 2022 layout written by SpineAITraining.cervical.generator at {args.data}, "
            "NOT real CT" if synthetic else f"RSNA 2022 Cervical Spine Fracture Detection {what} at {args.data}")
    ids = rsna.ids(need_masks=True) if need_masks else rsna.ids()
    return {"name": f"rsna2022:{args.data}", "ids": ids, "case": rsna.case, "synthetic": synthetic, "data": data}


def start_run(args, cache_name, need_masks=False):
    """(log, work folder, cache folder, source) for a cervical trainer's ``args``, after the checks both make:
    an existing --out needs --overwrite, a run needs three cases (train, validation, test)."""
    import sys

    import torch

    from SpineAILib.errors import InputError, OutputError

    def log(message):
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    if args.out.exists() and not args.overwrite:
        raise OutputError(f"{args.out} already exists (choose another folder or pass --overwrite)")
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work or args.out.with_name(args.out.name + ".work")
    source = data_source(args, need_masks)
    if len(source["ids"]) < 3:
        raise InputError(f"{len(source['ids'])} cases: at least 3 are needed (train, validation, test)")
    return log, work, args.cache or work / cache_name, source


def end_epoch(args, log, history, entry, t0, epochs, trained_seconds, checkpoint, state):
    """After an epoch of a cervical trainer: ``entry`` (its metrics) gets its seconds since ``t0`` and goes
    into ``history`` and the log; the epochs are re-planned to fit ``--time-budget`` at the recent pace (the
    machine may be shared; the cosine schedule follows); the checkpoint ``state`` (tensors and JSON strings,
    plus "epoch", "epochs", "seconds", "history") is written atomically. Returns (epochs, trained seconds)."""
    import time

    from SpineAITraining.common.checkpoint import write_atomic

    entry["seconds"] = round(time.perf_counter() - t0, 1)
    trained_seconds += entry["seconds"]
    history.append(entry)
    log(json.dumps(entry))
    epoch = entry["epoch"]
    if args.time_budget:
        pace = float(np.mean([h["seconds"] for h in history[-3:]]))
        fit = epoch + int(max(0.0, args.time_budget - trained_seconds) // max(pace, 1e-3))
        if fit != epochs:
            epochs = max(epoch, min(args.epochs, fit))
            log(f"time budget {args.time_budget:.0f} s: {epochs} epochs at {pace:.0f} s each")
    write_atomic(Path(checkpoint), {**state, "epoch": epoch, "epochs": epochs, "seconds": trained_seconds,
                                    "history": json.dumps(history)})  # fmt: skip
    return epochs, trained_seconds
