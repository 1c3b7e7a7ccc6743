"""Cervical CT cases for the two cervical trainers: phantoms or the RSNA 2022 layout, split and cached.

A case is (CT VolumeImage in HU, VerSe label map or None, {"C1": 0/1, ...} or None, id).
Phantoms come from SpineAITraining.rsna2022.phantom.make_case, one per seed; the split
is by case (seeded), written into every bundle. Prepared arrays are cached once per case
(``.npz``), keyed by what made them, so a second run (or a resumed one) reads them back.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from SpineAILib.cervical import CERVICAL

PHANTOM_DATA = ("SYNTHETIC cervical CT phantoms from SpineAITraining.rsna2022.phantom.make_case (analytic anatomy, "
                "simulated fractures), NOT real CT")  # fmt: skip


@dataclass
class Case:
    case_id: str
    ct: object  # VolumeImage, HU
    labels: object  # VolumeImage (VerSe numbers) or None
    fractured: dict  # {"C1": 0/1, ...} or None
    kinds: dict = None  # phantoms: {"C5": ["lamina"], ...}, the fracture kinds drawn per vertebra


def split_ids(ids, seed, val_fraction=0.15, test_fraction=0.15):
    """{'train', 'validation', 'test'}: a seeded shuffle by case (never by vertebra or slice)."""
    ids = list(ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    n = len(ids)
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 and n >= 3 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 and n - n_test >= 2 else 0
    shuffled = [ids[i] for i in order]
    return {"test": sorted(shuffled[:n_test], key=str), "validation": sorted(shuffled[n_test : n_test + n_val], key=str),
            "train": sorted(shuffled[n_test + n_val :], key=str)}  # fmt: skip


def phantom_ids(n, first_seed=0):
    return [f"phantom-{seed:05d}" for seed in range(first_seed, first_seed + n)]


def phantom_case(case_id, fracture_rate=0.3, shape_limit=None):
    from SpineAITraining.rsna2022.phantom import make_case

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
        from SpineAITraining.rsna2022.layout import RSNA2022Dataset

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
