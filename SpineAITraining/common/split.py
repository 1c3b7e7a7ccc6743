"""A seeded split of case (or study) ids into train / validation / test, never by image, slice or vertebra."""

import numpy as np


def split_ids(ids, seed, val_fraction=0.15, test_fraction=0.15):
    """{'train', 'validation', 'test'}: a seeded shuffle by case (never by vertebra, slice or image)."""
    ids = list(ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    n = len(ids)
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 and n >= 3 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 and n - n_test >= 2 else 0
    shuffled = [ids[i] for i in order]
    return {"test": sorted(shuffled[:n_test], key=str), "validation": sorted(shuffled[n_test : n_test + n_val], key=str),
            "train": sorted(shuffled[n_test + n_val :], key=str)}  # fmt: skip
