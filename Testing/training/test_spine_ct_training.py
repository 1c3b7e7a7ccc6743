"""`spineai-train spine-ct` (SpineAITraining.spine_ct.train_vertebrae): the split by seed range, the
classes and the names a transitional spine must not teach, a tiny run that resumes exactly and
writes a bundle that loads, and the real-CT check in its history."""

import numpy as np
import pytest
from conftest import SHARED_DATA, require

from SpineAITraining.spine_ct.cases import (
    CLASS_NAMES,
    IGNORE,
    class_labels,
    class_lut,
    seed_split,
    unreachable_names,
)

QUICK = ["--phantoms", "2", "--phantom-max-voxels", "200000", "--spacing", "6", "--patch", "32,32,32",
         "--channels", "4,8,16", "--steps-per-epoch", "2", "--batch-size", "1", "--threads", "2", "--quiet"]  # fmt: skip
STANDARD = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"]


def _train(*args):
    from SpineAITraining.cli import main

    assert main(["spine-ct", *map(str, args)]) == 0


def _truth(order, in_view, anchors, first_rib="T1", last_rib="T12"):
    seen = dict.fromkeys(("skull_base", "dens", "first_rib", "last_rib", "sacrum"), False)
    seen.update(dict.fromkeys(anchors, True))
    return {"levels": dict.fromkeys(order, {}), "levels_in_view": in_view, "anchors_in_view": seen,
            "first_rib_vertebra": first_rib, "last_rib_vertebra": last_rib}  # fmt: skip


def test_classes_are_background_c1_to_l5_and_the_sacrum():
    assert len(CLASS_NAMES) == 26 and CLASS_NAMES[0] == "background" and CLASS_NAMES[-1] == "S1"
    lut = class_lut()
    assert lut[1] == 1 and lut[24] == CLASS_NAMES.index("L5") and lut[26] == CLASS_NAMES.index("S1")
    assert lut[25] == IGNORE and lut[28] == IGNORE  # L6, T13: no class, never a wrong name


def test_split_by_seed_range_never_moves_a_phantom():
    small, ranges = seed_split(12)
    assert ranges == {"train": [0, 7], "validation": [100000, 100001], "test": [200000, 200001]}
    large, _ = seed_split(40)
    for part in small:
        assert set(small[part]) <= set(large[part])
    assert not set(large["train"]) & (set(large["validation"]) | set(large["test"]))
    tiny, ranges = seed_split(2)
    assert len(tiny["train"]) == 1 and len(tiny["validation"]) == 1 and tiny["test"] == [] and ranges["test"] == []


def test_names_no_anchor_in_view_gives_are_ignored():
    l6 = STANDARD[:-1] + ["L6", "S1"]
    # L6 with only the sacrum in view: counting up names L6 "L5"; the lumbar names are guesses
    assert unreachable_names(_truth(l6, ["L4", "L5", "L6", "S1"], ["sacrum"])) == {"L4", "L5", "L6"}
    # with the last rib in view too the count down from T12 gives them: only L6 itself is left out
    assert unreachable_names(_truth(l6, ["T11", "T12", "L1", "L5", "L6", "S1"], ["last_rib", "sacrum"])) == {"L6"}
    t13 = STANDARD[:19] + ["T13"] + STANDARD[19:]
    # T13 from the last rib (on T13) and the sacrum: every thoracic name is one off
    assert unreachable_names(_truth(t13, ["T10", "T11", "T12", "T13", "L1", "S1"], ["last_rib", "sacrum"],
                                    last_rib="T13")) == {"T10", "T11", "T12", "T13"}  # fmt: skip
    # a standard spine: every anchor counts right; no anchor in view: the names stay (the workflow withholds them)
    assert unreachable_names(_truth(STANDARD, ["T12", "L1", "S1"], ["sacrum", "last_rib"])) == set()
    assert unreachable_names(_truth(l6, ["T5", "T6"], [])) == set()
    verse = np.array([0, 20, 24, 25, 26])
    classes = class_labels(verse, _truth(l6, ["L1", "L5", "L6", "S1"], ["sacrum"]))
    assert classes.tolist() == [0, IGNORE, IGNORE, IGNORE, CLASS_NAMES.index("S1")]


def test_short_fields_are_padded_as_inference_pads_them():
    from SpineAITraining.spine_ct.train_vertebrae import INTENSITY, pad_for_patch

    case = {"hu": np.full((20, 50, 50), 300.0, np.float16), "labels": np.ones((20, 50, 50), np.uint8), "id": "x"}
    padded = pad_for_patch(case, (32, 32, 32), margin=4)
    assert padded["hu"].shape == (40, 50, 50) and padded["labels"][:10].max() == 0 and padded["labels"][10:30].min() == 1
    assert float(padded["hu"][0, 0, 0]) == INTENSITY["low"] and pad_for_patch(padded, (32, 32, 32), 4) is padded


def test_tiny_run_resumes_exactly_and_writes_a_bundle_that_loads(tmp_path):
    import torch
    from safetensors.torch import load_file
    from SpineAILib.models.bundle import load_bundle, read_metadata

    quick = [*QUICK, "--cache", tmp_path / "cache", "--real-ct", tmp_path / "absent"]
    chunked, straight = tmp_path / "chunked", tmp_path / "straight"
    _train(*quick, "--out", chunked, "--epochs", "2", "--stop-after", "1")  # a chunk: one epoch of two
    first = read_metadata(chunked)["training"]["history"]
    assert len(first) == 1 and first[0]["real_ct_check"] == {"skipped": "real CT absent"}
    first = first[0]
    _train(*quick, "--out", chunked, "--epochs", "2", "--resume", "--overwrite")  # epoch 1 from last.pt
    _train(*quick, "--out", straight, "--epochs", "2")
    meta = read_metadata(chunked)
    history = meta["training"]["history"]
    assert len(history) == 2 and history[0] == first
    assert history[1]["loss"] == read_metadata(straight)["training"]["history"][1]["loss"]
    a, b = load_file(str(chunked / "model.safetensors")), load_file(str(straight / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the resume continued exactly
    bundle = load_bundle(chunked, device="cpu")
    assert bundle.labels == list(CLASS_NAMES) and (chunked / "model.onnx").is_file()
    split = meta["training"]["split"]
    assert split["method"] == "by phantom seed range" and split["train"] == ["spine-ct-000000"]
    assert split["validation"] == ["spine-ct-100000"] and split["seed_ranges"]["validation"] == [100000, 100000]
    assert meta["training"]["seed"] == 0 and meta["training"]["device"] == "cpu"
    assert meta["training"]["command"].startswith("spineai-train spine-ct --phantoms 2")
    assert "SYNTHETIC" in meta["training"]["data"] and "dice_mean_validation" in {m["name"] for m in meta["metrics"]}
    # a larger --epochs with --resume extends a finished run (its schedule re-planned over the new total)
    _train(*quick, "--out", chunked, "--epochs", "3", "--resume", "--overwrite")
    assert [h["epoch"] for h in read_metadata(chunked)["training"]["history"]] == [1, 2, 3]


@pytest.mark.realdata
def test_every_validation_measures_the_real_ct(shared_data, tmp_path):
    from SpineAILib.models.bundle import read_metadata

    folder = SHARED_DATA / "ct_thoracolumbar"
    require(folder / "ct.nii.gz")
    require(folder / "ct_model_labels_totalsegmentator.nii.gz")
    out = tmp_path / "bundle"
    _train(*QUICK, "--cache", tmp_path / "cache", "--real-ct", folder, "--out", out, "--epochs", "1")
    meta = read_metadata(out)
    check = meta["training"]["history"][0]["real_ct_check"]
    assert set(check["dice"]) == {"T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"}
    assert all(0.0 <= v <= 1.0 for v in check["dice"].values()) and "not a manual truth" in check["reference"]
    real = next(m for m in meta["metrics"] if m["name"] == "dice_mean_real_ct_check")
    assert "never trained, tuned or selected on" in real["data"]
    assert "never selected on" in meta["training"]["selection"]


def test_prepare_only_fills_the_cache_in_worker_processes(tmp_path):
    cache = tmp_path / "cache"
    _train(*QUICK, "--phantoms", "4", "--cache", cache, "--out", tmp_path / "unused", "--prepare-only", "--workers", "2")
    files = sorted(p.name.split(".")[0] for p in cache.glob("*.npz"))
    assert files == ["spine-ct-000000", "spine-ct-000001", "spine-ct-100000", "spine-ct-200000"]
    assert not (tmp_path / "unused").exists()
    stamps = {p: p.stat().st_mtime_ns for p in cache.glob("*.npz")}
    _train(*QUICK, "--phantoms", "4", "--cache", cache, "--out", tmp_path / "b", "--epochs", "1",
           "--real-ct", tmp_path / "absent", "--max-test", "1")
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*.npz")} == stamps  # read back, never drawn again
