"""`spineai-train cervical-ct`: the 3-D UNet that finds and names cervical vertebrae on CT.

A MONAI UNet on the CT resampled to 2 mm (SpineAILib.ct_grid: canonical
inferior/posterior/left axes, Hounsfield units windowed), classes background, C1-C7, T1.
Trained on patches around the spine with rotations, scaling, flips, intensity and noise
changes; validated through the inference path's clean-up (postprocess.clean) on held-out
cases; the bundle is the best validation epoch, and its test metrics are measured on the
test cases through SpineAILib.workflows.cervical.segment, on each phantom's own grid, as users get it.

    spineai-train cervical-ct --phantoms 48 --out BUNDLE [--epochs N] [--time-budget S] [--seed 0]
    spineai-train cervical-ct --data RSNA_DIR --out BUNDLE     (the studies with segmentations)

Phantoms are cached once in --cache (default BUNDLE.work/cases). Checkpoints go to
BUNDLE.work/last.pt after each epoch (--resume continues; each epoch reseeds from
(seed, epoch), so a resumed run repeats the run it continues).
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch  # this module is imported only when its command runs

from SpineAILib.vocabulary import CERVICAL_VERTEBRAE as CERVICAL
from SpineAILib.workflows.cervical import SEGMENTATION_TASK
from SpineAITraining.cervical.cases import cache_key, cached, end_epoch, start_run
from SpineAITraining.common.checkpoint import start_or_resume
from SpineAITraining.common.loop import ce_dice_loss, learning_rate, optimiser_step
from SpineAITraining.common.seeding import seed_everything
from SpineAITraining.common.split import split_ids

BUNDLE_ID = "cervical-ct-vertebrae"
VERSION = "0.1.0"
CLASS_NAMES = ("background", *CERVICAL, "T1")
CLASS_VALUES = (0, 1, 2, 3, 4, 5, 6, 7, 8)  # VerSe numbers
TARGET_SPACING = 2.0
PATCH = (64, 48, 48)  # canonical: superior-inferior x anterior-posterior x left-right = 128 x 96 x 96 mm (larger ones cost several times more per voxel on CPU)
ROI = (96, 96, 96)  # sliding-window size at inference (batch norm: any size works)
INTENSITY = {"method": "window", "low": -400.0, "high": 1600.0, "units": "HU", "clip": True, "range": [0.0, 1.0]}
DEFAULT_CHANNELS = (16, 32, 64, 128)  # 16-wide convolutions run faster than 8-wide ones on CPU (oneDNN)
FOREGROUND_SHARE = 0.85  # patches centred on a vertebra voxel; the rest anywhere


def parse_args(argv):
    p = argparse.ArgumentParser(prog="spineai-train cervical-ct", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--phantoms", type=int, default=48, help="phantom cases to generate (split by case)")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first phantom")
    p.add_argument("--fracture-rate", type=float, default=0.3, help="phantoms: chance that a patient has a fracture")
    p.add_argument("--shape-limit", help="phantoms: at most K,J,I voxels (coarser grids; for quick runs)")
    p.add_argument("--data", type=Path, help="RSNA 2022 folder (Kaggle layout) instead of phantoms")
    p.add_argument("--cache", type=Path, help="prepared cases (default BUNDLE.work/cases)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps-per-epoch", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--channels", default=",".join(map(str, DEFAULT_CHANNELS)), help="UNet channels per level")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=2022)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--time-budget", type=float, help="seconds for training: the epochs are re-planned after each one to fit")
    p.add_argument("--resume", action="store_true", help="continue from BUNDLE.work/last.pt")
    p.add_argument("--work", type=Path, help="checkpoint folder (default: BUNDLE.work)")
    p.add_argument("--max-test", type=int, help="evaluate at most this many test cases (full pipeline)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


# -- data ----------------------------------------------------------------------------


def class_lut():
    lut = np.zeros(256, np.uint8)
    for index, value in enumerate(CLASS_VALUES):
        if index:
            lut[value] = index
    return lut


def prepare(case, target=TARGET_SPACING):
    """A case on the model grid: {'hu': float16 (canonical), 'labels': uint8 class indices, 'spacing'}."""
    from SpineAILib.ct_grid import Layout, ModelGrid, resample_nearest, to_model_grid

    layout = Layout.of(case.ct.voxels.shape, case.ct.ijk_to_ras)
    grid = ModelGrid.of(layout, target)
    hu = to_model_grid(layout.view(case.ct.voxels), grid)
    labels = resample_nearest(layout.view(case.labels.voxels), grid.positions())
    return {"hu": hu.astype(np.float16), "labels": class_lut()[labels.astype(np.int64).clip(0, 255)],
            "spacing": np.array(grid.spacing, float)}  # fmt: skip


def load_cases(ids, source, cache, log):
    key = cache_key("cervical-ct-seg", {"spacing": TARGET_SPACING, "classes": list(CLASS_VALUES), "source": source["name"]})
    out = []
    for n, case_id in enumerate(ids):
        arrays = cached(cache, case_id, key, lambda: prepare(source["case"](case_id)))
        arrays["id"] = case_id
        out.append(arrays)
        log(f"case {n + 1}/{len(ids)} ready ({case_id})")
    return out


def sample_patch(case, rng, patch=PATCH):
    """One augmented (image (1, *patch) float32 0..1, labels (*patch) int64) training pair."""
    import torch.nn.functional as F

    hu = torch.from_numpy(case["hu"].astype(np.float32))[None, None]
    labels = torch.from_numpy(case["labels"].astype(np.float32))[None, None]
    shape = np.array(case["labels"].shape, float)
    foreground = np.flatnonzero(case["labels"])
    if len(foreground) and rng.random() < FOREGROUND_SHARE:
        centre = np.array(np.unravel_index(int(rng.choice(foreground)), case["labels"].shape), float)
    else:
        centre = rng.uniform(0, shape - 1)
    centre = centre + rng.normal(0, 4.0, 3)  # model voxels (8 mm)
    # rotation (flexion about left-right up to 15 degrees, 8 about the others) and scale, in voxel space
    angles = np.radians([rng.uniform(-8, 8), rng.uniform(-8, 8), rng.uniform(-15, 15)])
    rotation = _rotation(*angles) * rng.uniform(0.85, 1.15)
    offsets = np.stack(np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in patch], indexing="ij"), -1).reshape(-1, 3)
    points = offsets @ rotation.T + centre
    if rng.random() < 0.5:  # left-right mirror
        points[:, 2] = 2 * centre[2] - points[:, 2]
    normalised = 2 * points / np.maximum(shape - 1, 1) - 1  # align_corners=True
    grid = torch.from_numpy(normalised[:, ::-1].copy().reshape(1, *patch, 3).astype(np.float32))  # x, y, z = axes 2, 1, 0
    image = F.grid_sample(hu, grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
    target = F.grid_sample(labels, grid, mode="nearest", padding_mode="zeros", align_corners=True)[0, 0]
    image = image * rng.uniform(0.9, 1.1) + rng.uniform(-40, 40)
    image = image + torch.randn_like(image) * rng.uniform(0, 25)
    low, high = INTENSITY["low"], INTENSITY["high"]
    return ((image - low) / (high - low)).clamp(0, 1), target.round().long()


def _rotation(a, b, c):
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


# -- model and loss ----------------------------------------------------------------------


def network_spec(channels):
    return {
        "name": "UNet",
        "args": {"spatial_dims": 3, "in_channels": 1, "out_channels": len(CLASS_NAMES), "channels": list(channels),
                 "strides": [2] * (len(channels) - 1), "num_res_units": 0, "norm": "batch"},
    }  # fmt: skip


# -- validation ------------------------------------------------------------------------------


def named_classes(probabilities, hu, spacing):
    """The cleaned, named class map on the model grid (what the workflow upsamples)."""
    from SpineAILib.workflows.cervical.postprocess import clean

    named, _ = clean(probabilities, CLASS_NAMES, spacing, hu)
    classes = np.zeros(probabilities.shape[1:], np.uint8)
    for v in named:
        classes.ravel()[v.index] = v.name_index
    return classes


def dice_per_level(predicted, truth, names=CLASS_NAMES):
    scores = {}
    for index in range(1, len(names)):
        t = truth == index
        if t.any():
            p = predicted == index
            scores[names[index]] = 2.0 * float((p & t).sum()) / float(p.sum() + t.sum())
    return scores


def validate(model, cases, device):
    from SpineAILib.workflows.cervical.segment import body_box, predict_probabilities, window

    results = {}
    for case in cases:
        hu = case["hu"].astype(np.float32)
        lo, hi = body_box(hu)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        probabilities = np.zeros((len(CLASS_NAMES),) + hu.shape, np.float32)
        probabilities[0] = 1.0
        probabilities[(slice(None),) + box] = predict_probabilities(model, window(hu[box], INTENSITY), ROI, device)
        results[case["id"]] = dice_per_level(named_classes(probabilities, hu, case["spacing"]), case["labels"])
    return results


def summarise(results):
    cervical = [[s[n] for n in CERVICAL if n in s] for s in results.values()]
    per_case = [np.mean(c) for c in cervical if c]
    named = [all(v >= 0.5 for v in c) for c in cervical if c]
    return {"dice_cervical_mean": float(np.mean(per_case)) if per_case else 0.0,
            "levels_named": float(np.mean(named)) if named else 0.0}  # fmt: skip


def evaluate_pipeline(bundle_folder, ids, source, device, log):
    """Test metrics through SpineAILib.workflows.cervical.segment on each case's own grid."""
    from SpineAILib.models.bundle import load_bundle
    from SpineAILib.workflows.cervical.segment import segment

    bundle = load_bundle(bundle_folder, device=device, expected_task=SEGMENTATION_TASK)
    lut = class_lut()
    per_case, seconds = {}, []
    for case_id in ids:
        case = source["case"](case_id)
        t0 = time.perf_counter()
        result = segment(case.ct, bundle)
        seconds.append(time.perf_counter() - t0)
        truth = lut[case.labels.voxels.astype(np.int64).clip(0, 255)]
        predicted = lut[result.labelmap.voxels.astype(np.int64)]
        per_case[case_id] = dice_per_level(predicted, truth)
        log(f"test {case_id}: " + ", ".join(f"{k} {v:.3f}" for k, v in per_case[case_id].items()))
    levels = {}
    for scores in per_case.values():
        for name, value in scores.items():
            levels.setdefault(name, []).append(value)
    return per_case, {name: float(np.mean(v)) for name, v in levels.items()}, float(np.mean(seconds)) if seconds else 0.0


# -- training ------------------------------------------------------------------------------


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from SpineAILib.errors import InputError
    from SpineAILib.models.device import choose_device
    from SpineAITraining.common.export import export_bundle

    log, work, cache, source = start_run(args, "cases", need_masks=True)
    split = split_ids(source["ids"], args.split_seed)
    log(f"cases: {len(split['train'])} train, {len(split['validation'])} validation, {len(split['test'])} test")

    t_start = time.perf_counter()
    train = load_cases(split["train"], source, cache, log)
    val = load_cases(split["validation"], source, cache, log)
    prepare_seconds = time.perf_counter() - t_start

    device = choose_device(args.device)
    spec = network_spec(tuple(int(c) for c in args.channels.split(",")))
    model, optimiser, checkpoint, progress = start_or_resume(spec, args, work, device, log)
    epochs, epoch, step, history, best, best_state, trained_seconds = progress

    while epoch < epochs:
        t0 = time.perf_counter()
        seed_everything(args.seed * 1000 + epoch)
        rng = np.random.default_rng(args.seed * 1000 + epoch)
        model.train()
        losses = []
        for _ in range(args.steps_per_epoch):
            pairs = [sample_patch(train[int(rng.integers(len(train)))], rng) for _ in range(args.batch_size)]
            images = torch.stack([p[0] for p in pairs]).to(device)
            targets = torch.stack([p[1] for p in pairs]).to(device)
            loss = ce_dice_loss(model(images), targets)
            losses.append(optimiser_step(optimiser, loss, learning_rate(step, epochs * args.steps_per_epoch, args.lr, warmup=0)))
            step += 1
        epoch += 1
        entry = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4), "train_seconds": round(time.perf_counter() - t0, 1)}
        model.eval()
        results = validate(model, val, device)
        entry.update({k: round(v, 4) for k, v in summarise(results).items()})
        if best is None or (entry["levels_named"], entry["dice_cervical_mean"]) >= (best["levels_named"], best["dice_cervical_mean"]):
            best = dict(entry, per_case=results)
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            entry["best"] = True
        epochs, trained_seconds = end_epoch(args, log, history, entry, t0, epochs, trained_seconds, checkpoint,
                                   {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "step": step,
                                    "best": json.dumps(best), "best_model": best_state})  # fmt: skip

    if best_state is None:
        raise InputError("no epoch was trained (--epochs must exceed the epochs already done)")
    model.load_state_dict(best_state)
    val_data = f"{len(split['validation'])} validation cases ({source['name']}), 2 mm model grid, after the clean-up"
    metrics = [{"name": "dice_cervical_mean_validation", "value": round(best["dice_cervical_mean"], 4), "data": val_data},
               {"name": "levels_named_validation", "value": round(best["levels_named"], 4), "data": val_data}]  # fmt: skip
    command = shlex.join(["spineai-train", "cervical-ct", *argv])
    meta = dict(
        bundle_id=BUNDLE_ID, version=VERSION, task=SEGMENTATION_TASK, network=spec,
        input={"channels": 1, "patch_size": list(PATCH), "roi_size": list(ROI), "spacing": [TARGET_SPACING] * 3,
               "layout": "canonical axes inferior, posterior, left (SpineAILib.ct_grid.Layout), block-averaged "
                         "then linear to the model grid (align-corners off)",
               "intensity": INTENSITY},
        labels=CLASS_NAMES, data=source["data"], seed=args.seed,
        split={"method": "seeded shuffle by case", "seed": args.split_seed, **split},
        command=command,
        description="3-D UNet on CT at 2 mm: vertebrae C1-C7 and T1, named by level"
        + (" - trained on synthetic phantoms only" if source.get("synthetic", False) else ""),
        extra_training={
            "synthetic": source.get("synthetic", False), "phantom": source.get("phantom"), "epochs": epoch, "steps_per_epoch": args.steps_per_epoch,
            "batch_size": args.batch_size, "lr": args.lr, "lr_schedule": "cosine to 0 over --epochs",
            "device": str(device), "threads": torch.get_num_threads(), "prepare_seconds": round(prepare_seconds, 1),
            "train_seconds": round(trained_seconds, 1), "best_epoch": best["epoch"], "history": history,
            "validation_per_case": best["per_case"],
            "augmentation": "patches centred on vertebrae (85%), rotation 15 deg flexion / 8 deg others, scale "
                            "0.85-1.15, left-right mirror, HU gain 0.9-1.1 and offset +-40, noise up to 25 HU",
            "loss": "cross entropy + soft Dice",
        },
    )  # fmt: skip
    folder = export_bundle(model.cpu(), args.out, metrics=metrics, overwrite=args.overwrite, **meta)
    test_ids = split["test"][: args.max_test] if args.max_test else split["test"]
    if test_ids:
        log(f"evaluating {len(test_ids)} test cases through the workflow's segmentation")
        per_case, levels, seconds = evaluate_pipeline(folder, test_ids, source, "cpu", log)
        test_data = (f"{len(test_ids)} held-out test cases ({source['name']}; {', '.join(test_ids)}), never trained or "
                     "tuned on, SpineAILib.workflows.cervical.segment on each case's own grid")  # fmt: skip
        cervical = [np.mean([s[n] for n in CERVICAL if n in s]) for s in per_case.values() if any(n in s for n in CERVICAL)]
        named = [all(s.get(n, 1.0) >= 0.5 for n in CERVICAL) for s in per_case.values()]
        metrics += [{"name": "dice_cervical_mean_test", "value": round(float(np.mean(cervical)), 4), "data": test_data},
                    {"name": "levels_named_test", "value": round(float(np.mean(named)), 4), "data": test_data}]
        metrics += [{"name": f"dice_{name}_test", "value": round(value, 4), "data": test_data}
                    for name, value in levels.items()]  # fmt: skip
        meta["extra_training"].update(test_per_case=per_case, test_seconds_per_case=round(seconds, 2))
        folder = export_bundle(model.cpu(), args.out, metrics=metrics, overwrite=True, **meta)
    log(f"best epoch {best['epoch']}: validation Dice {best['dice_cervical_mean']:.3f}, levels named "
        f"{best['levels_named']:.2f}; wrote {folder}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
