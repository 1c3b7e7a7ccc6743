"""Whole-spine CT phantom cases for ``spineai-train spine-ct``: seeds split by range, labels
turned into the model's classes (with the names no anatomical anchor in view can give marked
"ignore"), resampled to the model grid and cached.

Split by seed ranges, not by a shuffle: training phantoms are seeds ``first_seed ...``,
validation ones ``VALIDATION_SEED0 ...``, test ones ``TEST_SEED0 ...``. Asking for more
phantoms adds cases to each set and never moves one from a set to another, so a longer run
or a second machine extends the same split.

Each case is drawn with the phantom's own "random" field of view and a spacing drawn from
0.5 to 5 mm (``make_spine_ct``), then resampled to the model grid with the shared CT grid code
(SpineAILib.ct_grid: canonical inferior/posterior/left axes, block average +
linear for HU, nearest for labels), exactly as inference prepares a CT. The prepared arrays
go to ``CACHE/{case_id}.{key}.npz`` (SpineAITraining.cervical.cases.cached) keyed by the
grid, the class table and a hash of the phantom's source files, so a resumed run or a second
process reads them back and an edited phantom is drawn again.
"""

import hashlib
import importlib.util
import json

import numpy as np

from SpineAITraining.cervical.cases import cache_key, cached

PHANTOM_DATA = ("SYNTHETIC whole-spine CT phantoms from SpineAITraining.spine_ct.phantom.make_spine_ct (analytic "
                "anatomy, random fields of view, spacing drawn 0.5-5 mm), NOT real CT")  # fmt: skip
VALIDATION_SEED0 = 100_000
TEST_SEED0 = 200_000
IGNORE = 255  # class index the loss and the Dice skip

CERVICAL = tuple(f"C{i}" for i in range(1, 8))
THORACIC = tuple(f"T{i}" for i in range(1, 13))
LUMBAR = tuple(f"L{i}" for i in range(1, 6))
CLASS_NAMES = ("background", *CERVICAL, *THORACIC, *LUMBAR, "S1")  # S1 = the sacrum (VerSe 26)
REGIONS = {"cervical": CERVICAL, "thoracic": THORACIC, "lumbar": LUMBAR, "sacrum": ("S1",)}
# A standard spine, top to bottom: what a count from an anchor assumes.
STANDARD = (*CERVICAL, *THORACIC, *LUMBAR, "S1")
# Where each anchor sits in a standard spine (the anchor's own vertebra in the phantom's truth).
ANCHOR_STANDARD_NAME = {"skull_base": "C1", "dens": "C2", "first_rib": "T1", "last_rib": "T12", "sacrum": "S1"}
# The modules make_spine_ct draws with: their source is part of the cache key.
PHANTOM_MODULES = tuple(f"SpineAITraining.spine_ct.{m}" for m in
                        ("phantom", "spine", "shapes", "ribs", "pelvis", "limbs", "body", "tissues", "imaging")) + \
    tuple(f"SpineAITraining.cervical.{m}" for m in ("anatomy", "sdf", "surroundings", "artefacts", "tissues"))


def verse_number(name):
    from SpineAILib.terminology import vertebra_number

    return vertebra_number(name)


# -- split ------------------------------------------------------------------------------------


def split_counts(n, validation=None, test=None):
    """(train, validation, test) counts for ``n`` phantoms: 15% each for validation and test (at least
    one validation case; a test case from 4 phantoms on), the rest for training (at least one)."""
    n_val = max(1, round(0.15 * n)) if validation is None else int(validation)
    n_test = (max(1, round(0.15 * n)) if n >= 4 else 0) if test is None else int(test)
    n_train = n - n_val - n_test
    if n_train < 1 or n_val < 1 or n_test < 0:
        raise ValueError(f"{n} phantoms cannot be split into {n_val} validation, {n_test} test and at least one training case")
    return n_train, n_val, n_test


def case_id(seed):
    return f"spine-ct-{seed:06d}"


def case_seed(case_id_):
    return int(case_id_.rsplit("-", 1)[1])


def seed_split(n, first_seed=0, validation=None, test=None):
    """{'train', 'validation', 'test'} phantom ids by seed range, and the ranges as recorded in a bundle."""
    n_train, n_val, n_test = split_counts(n, validation, test)
    starts = {"train": first_seed, "validation": VALIDATION_SEED0, "test": TEST_SEED0}
    counts = {"train": n_train, "validation": n_val, "test": n_test}
    ids = {part: [case_id(s) for s in range(starts[part], starts[part] + counts[part])] for part in starts}
    ranges = {part: [starts[part], starts[part] + counts[part] - 1] if counts[part] else [] for part in starts}
    return ids, ranges


# -- labels -------------------------------------------------------------------------------------


def class_lut():
    """VerSe number -> class index; L6 (25), T13 (28) and anything unknown but bone -> IGNORE."""
    lut = np.full(256, IGNORE, np.uint8)
    lut[0] = 0
    for index, name in enumerate(CLASS_NAMES[1:], start=1):
        lut[verse_number(name)] = index
    return lut


def unreachable_names(truth):
    """Levels in view whose true name no anatomical anchor in view gives by counting a standard spine
    (7 cervical, 12 thoracic, 5 lumbar). Such a name is a guess on this picture (e.g. the lumbar levels
    of a patient with L6 when only the sacrum is in view; the thoracic ones of a patient with T13 when
    only the last rib and the sacrum are): training it would teach a wrong name as often as a right one.
    With no anchor in view at all nothing is returned: every name is then a guess for any model, and the
    workflow leaves them unnamed; the labels still teach the shapes."""
    order = list(truth["levels"])  # the patient's own spine, top to bottom (may hold T13 or L6)
    position = {name: k for k, name in enumerate(order)}
    anchors = {"skull_base": "C1", "dens": "C2", "first_rib": truth["first_rib_vertebra"],
               "last_rib": truth["last_rib_vertebra"], "sacrum": "S1"}  # fmt: skip
    in_view = [a for a, seen in truth["anchors_in_view"].items() if seen and a in anchors]
    if not in_view:
        return set()
    reachable = set()
    for anchor in in_view:
        offset = STANDARD.index(ANCHOR_STANDARD_NAME[anchor]) - position[anchors[anchor]]
        reachable |= {name for name in order if 0 <= position[name] + offset < len(STANDARD)
                      and STANDARD[position[name] + offset] == name}  # fmt: skip
    return {name for name in truth["levels_in_view"] if name not in reachable}


def class_labels(verse, truth):
    """Class indices (uint8) of a VerSe label map: L6, T13 and the unreachable names -> IGNORE."""
    lut = class_lut()
    for name in unreachable_names(truth):
        lut[verse_number(name)] = IGNORE
    return lut[np.asarray(verse).astype(np.int64).clip(0, 255)]


# -- cases ---------------------------------------------------------------------------------------


def on_model_grid(ct, labels, spacing):
    """(HU float32, labels as given, grid spacing) of a CT and its label map on the model grid."""
    from SpineAILib.ct_grid import Layout, ModelGrid, resample_nearest, to_model_grid

    layout = Layout.of(ct.voxels.shape, ct.ijk_to_ras)
    grid = ModelGrid.of(layout, spacing)
    hu = to_model_grid(layout.view(ct.voxels), grid)
    return hu, resample_nearest(layout.view(labels), grid.positions()), np.array(grid.spacing, float)


def prepare_phantom(seed, spacing, max_voxels=None):
    """One phantom on the model grid: {'hu' float16, 'labels' uint8 classes, 'spacing', 'truth' (JSON text)}."""
    from SpineAITraining.spine_ct.phantom import make_spine_ct

    kwargs = {"max_voxels": int(max_voxels)} if max_voxels else {}
    case = make_spine_ct(seed, "random", **kwargs)
    hu, verse, grid_spacing = on_model_grid(case.ct, case.vertebrae.voxels, spacing)
    labels = class_labels(verse, case.truth)
    truth = {k: case.truth[k] for k in ("field_of_view", "spacing_ijk", "levels_in_view", "transitional",
                                        "thoracic_count", "rib_pairs", "anchors_in_view")}  # fmt: skip
    truth["ignored_names"] = sorted(unreachable_names(case.truth) | ({"L6", "T13"} & set(case.truth["levels_in_view"])))
    return {"hu": hu.astype(np.float16), "labels": labels, "spacing": grid_spacing, "truth": np.array(json.dumps(truth))}


def phantom_code_hash():
    """A short hash of the phantom's source files (an edited phantom is drawn again)."""
    digest = hashlib.sha256()
    for module in PHANTOM_MODULES:
        spec = importlib.util.find_spec(module)
        digest.update(module.encode())
        if spec is not None and spec.origin:
            with open(spec.origin, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()[:12]


def _prepare_into_cache(job):
    cache, cid, key, spacing, max_voxels = job
    cached(cache, cid, key, lambda: prepare_phantom(case_seed(cid), spacing, max_voxels))
    return cid


def prepare_missing(ids, cache, key, spacing, max_voxels, workers, log):
    """Draw the phantoms not yet in ``cache`` in ``workers`` processes (each case in one process only;
    spawned, so no torch threads are forked). One process draws them in the caller instead."""
    from pathlib import Path

    missing = [cid for cid in ids if not (Path(cache) / f"{cid}.{key}.npz").is_file()]
    if not workers or workers < 2 or len(missing) < 2:
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    log(f"drawing {len(missing)} phantoms in {workers} processes")
    jobs = [(cache, cid, key, spacing, max_voxels) for cid in missing]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for n, cid in enumerate(pool.map(_prepare_into_cache, jobs)):
            log(f"drawn {n + 1}/{len(jobs)} ({cid})")


def phantom_key(spacing, max_voxels):
    """The cache key: the grid, the class table and the phantom's code (not the trainer's)."""
    return cache_key("spine-ct-vertebrae", {"spacing": spacing, "classes": list(CLASS_NAMES), "ignore": IGNORE,
                                            "max_voxels": max_voxels, "phantom": phantom_code_hash()})  # fmt: skip


def cache_phantoms(ids, cache, spacing, max_voxels, log, workers=None):
    """Draw every phantom of ``ids`` not yet in ``cache``, holding none in memory afterwards."""
    key = phantom_key(spacing, max_voxels)
    prepare_missing(ids, cache, key, spacing, max_voxels, workers, log)
    from pathlib import Path

    for n, cid in enumerate(ids):
        if not (Path(cache) / f"{cid}.{key}.npz").is_file():
            _prepare_into_cache((cache, cid, key, spacing, max_voxels))
        log(f"case {n + 1}/{len(ids)} cached ({cid})")


def load_phantoms(ids, cache, spacing, max_voxels, log, workers=None):
    """The prepared cases (dicts with 'id' and the parsed 'truth'), from ``cache`` or drawn once."""
    key = phantom_key(spacing, max_voxels)
    prepare_missing(ids, cache, key, spacing, max_voxels, workers, log)
    out = []
    for n, cid in enumerate(ids):
        arrays = cached(cache, cid, key, lambda: prepare_phantom(case_seed(cid), spacing, max_voxels))
        arrays["id"] = cid
        arrays["truth"] = json.loads(str(arrays["truth"]))
        out.append(arrays)
        t = arrays["truth"]
        log(f"case {n + 1}/{len(ids)} ready ({cid}: {t['field_of_view']}, {len(t['levels_in_view'])} levels, "
            f"grid {tuple(arrays['labels'].shape)})")  # fmt: skip
    return out
