"""`spineai-train spine-ct`: the 3-D UNet that finds and names every vertebra on any CT, C1 to the sacrum.

A MONAI UNet on the CT resampled to a fixed isotropic grid (default 3 mm; the canonical
inferior/posterior/left axes and the HU window of the cervical model,
SpineAILib.ct_grid and SpineAITraining.cervical.train_segmentation), classes
background, C1-C7, T1-T12, L1-L5 and S1 (the sacrum, VerSe 26): 25 vertebrae.

    spineai-train spine-ct --phantoms N --out BUNDLE [--epochs E] [--time-budget S] [--seed 0]
                           [--resume] [--device cpu|cuda] [--spacing 3] [--cache DIR]
                           [--stop-after E | --chunk-seconds S]   (a chunk; the next call adds --resume)
    spineai-train spine-ct --phantoms N --out BUNDLE --cache DIR --prepare-only --workers W

Why 3 mm: the real abdominal CT this model is checked on is 3 mm, most clinical chest/abdomen
CTs are read at 1-5 mm slices, a vertebral body (19-27 mm tall) still spans 6-9 voxels and a
thoracic disc 2, and a whole spine (about 700 mm) fits in 230 voxels, so a patch of 288 mm sees
8-12 vertebrae and the anchors (ribs, sacrum, skull base) they are named from.

Phantoms (SpineAITraining.spine_ct.phantom, the phantom's "random" field of view and a spacing
drawn 0.5-5 mm, resampled to the grid) are split by seed range (spine_ct.cases: train from
--first-seed, validation from 100000, test from 200000) and cached once per case in --cache
(default BUNDLE.work/cases). A transitional vertebra never teaches a wrong name: L6 and T13
have no class and their voxels are ignored by the loss and the Dice, and so are the levels whose
true name no anatomical anchor in view gives (spine_ct.cases.unreachable_names).

Training: patches centred on a vertebra (85%) or anywhere (a field shorter than a patch padded
as the inference's sliding window pads it), rotations, scaling, left-right
mirror, HU gain/offset and noise (SpineAITraining.cervical.train_segmentation.sample_patch),
cross entropy + Dice. Checkpoints go to BUNDLE.work/last.pt after each epoch (--resume
continues; each epoch reseeds from (seed, epoch), so a resumed run repeats the run it
continues). --stop-after / --chunk-seconds end a call early with the learning-rate schedule still
planned over --epochs, so CPU training runs in chunks across sessions and a chunked run equals an
unbroken one; each chunk writes the bundle of the best epoch so far (the test phantoms are
evaluated when the last epoch is done). The bundle is the best epoch by Dice on the validation phantoms (plain argmax on the
model grid, per region cervical/thoracic/lumbar/sacrum) and carries model.onnx.

Every validation also measures, and never tunes on or selects by, the real abdominal CT in
../shared/data/ct_thoracolumbar against TotalSegmentator's labels of it (a model's output, not a
manual truth): Dice per vertebra with a plain argmax, as ``real_ct_check`` in the history.
"""

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch  # this module is imported only when its command runs

from SpineAITraining.cervical.cases import end_epoch
from SpineAITraining.cervical.train_segmentation import INTENSITY, sample_patch
from SpineAITraining.common.checkpoint import start_or_resume
from SpineAITraining.common.loop import ce_dice_loss, learning_rate, optimiser_step
from SpineAITraining.common.seeding import seed_everything
from SpineAITraining.spine_ct.cases import (
    CLASS_NAMES,
    IGNORE,
    PHANTOM_DATA,
    REGIONS,
    cache_phantoms,
    class_lut,
    load_phantoms,
    on_model_grid,
    seed_split,
)

BUNDLE_ID = "spine-ct-vertebrae"
VERSION = "0.1.0"
SPINE_CT_TASK = "spine-ct"
TARGET_SPACING = 3.0
PATCH = (96, 80, 80)  # canonical: superior-inferior x anterior-posterior x left-right = 288 x 240 x 240 mm at 3 mm
ROI = (96, 96, 96)  # sliding-window size at inference (batch norm: any size works)
SLAB = 64  # validation predicts this many model slices at a time (+ a margin each side): bounded memory
DEFAULT_CHANNELS = (16, 32, 64, 128, 256)  # five levels: a receptive field that spans several vertebrae
REPO = Path(__file__).resolve().parents[2]
REAL_CT_FOLDER = Path(os.environ.get("SPINEAI_SHARED_DATA", REPO.parent / "shared" / "data")) / "ct_thoracolumbar"
# The real CT's reference: TotalSegmentator's model output (not a manual truth), its label numbers -> VerSe.
TOTALSEGMENTATOR_TO_VERSE = {26: 26, 27: 24, 28: 23, 29: 22, 30: 21, 31: 20, 32: 19, 33: 18}  # S1, L5 ... L1, T12, T11
REAL_CT_REFERENCE = "TotalSegmentator model output (ct_model_labels_totalsegmentator.nii.gz), not a manual truth"


def task_name():
    """'spine-ct' once SpineAILib knows the task; until then a sub-model of cervical-ct, so bundles load."""
    from SpineAILib.vocabulary import TASKS

    return SPINE_CT_TASK if SPINE_CT_TASK in TASKS else "cervical-ct/spine-vertebrae"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="spineai-train spine-ct", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--phantoms", type=int, default=48, help="phantom cases in all (split by seed range)")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first training phantom")
    p.add_argument("--validation", type=int, help="validation phantoms (default 15%%, at least 1)")
    p.add_argument("--test", type=int, help="test phantoms (default 15%%, none under 4 phantoms)")
    p.add_argument("--phantom-max-voxels", type=int, help="phantoms: a drawn spacing coarsens beyond this many "
                                                          "voxels (default the phantom's 16 M; small for quick runs)")
    p.add_argument("--spacing", type=float, default=TARGET_SPACING, help="model grid in mm (isotropic)")
    p.add_argument("--patch", default=",".join(map(str, PATCH)), help="training patch K,J,I (model voxels)")
    p.add_argument("--cache", type=Path, help="prepared phantoms (default BUNDLE.work/cases)")
    p.add_argument("--workers", type=int, help="processes drawing the phantoms not yet cached (default: one, this one)")
    p.add_argument("--prepare-only", action="store_true", help="draw and cache every phantom (train, validation, "
                   "test), then stop: a cache made ahead (e.g. on more cores) for the training runs")
    p.add_argument("--real-ct", type=Path, default=REAL_CT_FOLDER, help="folder with ct.nii.gz and its "
                   "TotalSegmentator labels, measured at every validation (never selected on)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps-per-epoch", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--channels", default=",".join(map(str, DEFAULT_CHANNELS)), help="UNet channels per level")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--time-budget", type=float, help="seconds for training: the epochs are re-planned after each one to fit")
    p.add_argument("--resume", action="store_true", help="continue from BUNDLE.work/last.pt")
    p.add_argument("--stop-after", type=int, help="train at most this many epochs in this call, the schedule "
                   "still planned over --epochs (a chunk; --resume continues it exactly)")
    p.add_argument("--chunk-seconds", type=float, help="stop this call after the epoch that reaches this many "
                   "seconds, the schedule still planned over --epochs (a chunk; --resume continues it exactly)")
    p.add_argument("--work", type=Path, help="checkpoint folder (default: BUNDLE.work)")
    p.add_argument("--max-test", type=int, help="evaluate at most this many test phantoms")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


# -- model -------------------------------------------------------------------------------------


def network_spec(channels):
    return {
        "name": "UNet",
        "args": {"spatial_dims": 3, "in_channels": 1, "out_channels": len(CLASS_NAMES), "channels": list(channels),
                 "strides": [2] * (len(channels) - 1), "num_res_units": 0, "norm": "batch"},
    }  # fmt: skip


# -- prediction and Dice --------------------------------------------------------------------------


def predict_classes(model, hu, device, slab=SLAB):
    """Plain argmax class map (uint8) of the network over ``hu`` (model grid, HU), slab by slab
    along the first axis with a margin each side, inside the body box (air is background)."""
    from SpineAILib.workflows.cervical.segment import body_box, predict_probabilities, window

    lo, hi = body_box(hu)
    classes = np.zeros(hu.shape, np.uint8)
    margin = slab // 4
    for start in range(lo[0], hi[0], slab):
        a, b = max(lo[0], start - margin), min(hi[0], start + slab + margin)
        box = (slice(a, b), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        probabilities = predict_probabilities(model, window(hu[box], INTENSITY), ROI, device)
        keep = slice(start - a, start - a + min(slab, hi[0] - start))
        classes[start : start + slab, lo[1] : hi[1], lo[2] : hi[2]] = probabilities.argmax(0)[keep].astype(np.uint8)
    return classes


def dice_per_level(predicted, truth):
    """{name: Dice} for every class present in ``truth``; ignored voxels count in neither map."""
    valid = truth != IGNORE
    scores = {}
    for index in np.unique(truth[valid]):
        if index == 0:
            continue
        t = truth == index
        p = (predicted == index) & valid
        scores[CLASS_NAMES[index]] = 2.0 * float((p & t).sum()) / float(p.sum() + t.sum())
    return scores


def validate(model, cases, device):
    """{case id: {level: Dice}} over whole phantoms on the model grid."""
    return {case["id"]: dice_per_level(predict_classes(model, case["hu"].astype(np.float32), device), case["labels"])
            for case in cases}  # fmt: skip


def summarise(results):
    """Mean Dice over (case, level) pairs: all levels, and per region; the share of levels found (Dice >= 0.5)."""
    pairs = [(name, value) for scores in results.values() for name, value in scores.items()]
    out = {"dice_mean": float(np.mean([v for _, v in pairs])) if pairs else 0.0,
           "levels_found": float(np.mean([v >= 0.5 for _, v in pairs])) if pairs else 0.0}  # fmt: skip
    for region, names in REGIONS.items():
        values = [v for n, v in pairs if n in names]
        out[f"dice_{region}"] = float(np.mean(values)) if values else None
    return out


# -- the real CT (measured, never trained, tuned or selected on) ------------------------------------


def load_real_ct(folder, spacing, log):
    """The real abdominal CT and TotalSegmentator's labels (as class indices) on the model grid, or None."""
    from SpineAILib.io import load

    ct_path, labels_path = folder / "ct.nii.gz", folder / "ct_model_labels_totalsegmentator.nii.gz"
    if not (ct_path.is_file() and labels_path.is_file()):
        log(f"real-CT check skipped: {ct_path} or its TotalSegmentator labels are absent")
        return None
    ct, reference = load(ct_path), load(labels_path)
    verse = np.zeros(reference.voxels.shape, np.uint8)
    for total, number in TOTALSEGMENTATOR_TO_VERSE.items():
        verse[reference.voxels == total] = number
    hu, labels, _ = on_model_grid(ct, verse, spacing)
    return {"hu": hu, "labels": class_lut()[labels.astype(np.int64)], "path": str(ct_path)}


def real_ct_check(model, real, device):
    """Dice per vertebra (plain argmax) against the reference, and the voxels given other vertebra names."""
    if real is None:
        return {"skipped": "real CT absent"}
    predicted = predict_classes(model, real["hu"], device)
    dice = dice_per_level(predicted, real["labels"])
    counts = np.bincount(predicted.ravel(), minlength=len(CLASS_NAMES))
    others = {CLASS_NAMES[i]: int(counts[i]) for i in range(1, len(CLASS_NAMES)) if counts[i] and CLASS_NAMES[i] not in dice}
    return {"dice": {k: round(v, 4) for k, v in dice.items()}, "dice_mean": round(float(np.mean(list(dice.values()))), 4),
            "other_names_voxels": others, "reference": REAL_CT_REFERENCE}  # fmt: skip


# -- training ---------------------------------------------------------------------------------------


def start(args):
    """(work folder, cache folder, split ids, seed ranges) after the checks: --out needs --overwrite."""
    from SpineAILib.errors import InputError, OutputError

    if args.out.exists() and not args.overwrite and not args.prepare_only:
        raise OutputError(f"{args.out} already exists (choose another folder or pass --overwrite)")
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work or args.out.with_name(args.out.name + ".work")
    try:
        split, ranges = seed_split(args.phantoms, args.first_seed, args.validation, args.test)
    except ValueError as error:
        raise InputError(str(error)) from None
    return work, args.cache or work / "cases", split, ranges


def pad_for_patch(case, patch, margin=8):
    """``case`` padded (centred) to at least patch + 2 x margin voxels per axis, with the HU the inference's
    sliding window pads with (0 after the window = its low end) and background: sample_patch replicates the
    border beyond a volume, which would otherwise stretch a short field's edge slices (bone and all) into
    a patch labelled background."""
    pads = [(max(0, p + 2 * margin - n) // 2, max(0, p + 2 * margin - n) - max(0, p + 2 * margin - n) // 2)
            for p, n in zip(patch, case["labels"].shape)]  # fmt: skip
    if not any(a or b for a, b in pads):
        return case
    return dict(case, hu=np.pad(case["hu"], pads, constant_values=INTENSITY["low"]),
                labels=np.pad(case["labels"], pads, constant_values=0))


def train_epoch(model, optimiser, train, args, patch, device, epoch, step, epochs):
    """One epoch of ``--steps-per-epoch`` batches, reseeded from (seed, epoch); returns (mean loss, step)."""
    seed_everything(args.seed * 1000 + epoch)
    rng = np.random.default_rng(args.seed * 1000 + epoch)
    model.train()
    losses = []
    for _ in range(args.steps_per_epoch):
        pairs = [sample_patch(train[int(rng.integers(len(train)))], rng, patch) for _ in range(args.batch_size)]
        images = torch.stack([p[0] for p in pairs]).to(device)
        targets = torch.stack([p[1] for p in pairs]).to(device)
        loss = ce_dice_loss(model(images), targets, ignore_index=IGNORE)
        losses.append(optimiser_step(optimiser, loss, learning_rate(step, epochs * args.steps_per_epoch, args.lr, warmup=0)))
        step += 1
    return float(np.mean(losses)), step


def chunk_done(args, epochs_done, seconds):
    """This call's chunk is over (--stop-after epochs or --chunk-seconds); the run goes on with --resume."""
    return bool((args.stop_after and epochs_done >= args.stop_after) or
                (args.chunk_seconds and epochs_done and seconds >= args.chunk_seconds))


def region_metrics(summary, part, data):
    names = ["dice_mean", "levels_found"] + [f"dice_{r}" for r in REGIONS]
    return [{"name": f"{name}_{part}", "value": round(summary[name], 4), "data": data}
            for name in names if summary.get(name) is not None]  # fmt: skip


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from SpineAILib.errors import InputError
    from SpineAILib.models.device import choose_device
    from SpineAITraining.common.export import export_bundle

    def log(message):
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    work, cache, split, ranges = start(args)
    log(f"phantoms: {len(split['train'])} train, {len(split['validation'])} validation, {len(split['test'])} test")
    t_start = time.perf_counter()
    if args.prepare_only:
        cache_phantoms(split["train"] + split["validation"] + split["test"], cache, args.spacing,
                       args.phantom_max_voxels, log, args.workers)
        log(f"{args.phantoms} phantoms cached in {cache} ({time.perf_counter() - t_start:.0f} s)")
        return 0
    train = load_phantoms(split["train"], cache, args.spacing, args.phantom_max_voxels, log, args.workers)
    val = load_phantoms(split["validation"], cache, args.spacing, args.phantom_max_voxels, log, args.workers)
    real = load_real_ct(args.real_ct, args.spacing, log)
    prepare_seconds = time.perf_counter() - t_start

    device = choose_device(args.device)
    patch = tuple(int(v) for v in args.patch.split(","))
    train = [pad_for_patch(case, patch) for case in train]
    spec = network_spec(tuple(int(c) for c in args.channels.split(",")))
    model, optimiser, checkpoint, progress = start_or_resume(spec, args, work, device, log)
    epochs, epoch, step, history, best, best_state, trained_seconds = progress

    first_epoch, t_chunk = epoch, time.perf_counter()
    while epoch < epochs and not chunk_done(args, epoch - first_epoch, time.perf_counter() - t_chunk):
        t0 = time.perf_counter()
        loss, step = train_epoch(model, optimiser, train, args, patch, device, epoch, step, epochs)
        epoch += 1
        entry = {"epoch": epoch, "loss": round(loss, 4), "train_seconds": round(time.perf_counter() - t0, 1)}
        model.eval()
        results = validate(model, val, device)
        entry.update({k: (round(v, 4) if v is not None else None) for k, v in summarise(results).items()})
        entry["real_ct_check"] = real_ct_check(model, real, device)  # logged only: never selects the epoch
        if best is None or entry["dice_mean"] > best["dice_mean"]:
            best = dict(entry, per_case=results)
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            entry["best"] = True
        epochs, trained_seconds = end_epoch(args, log, history, entry, t0, epochs, trained_seconds, checkpoint,
                                            {"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                                             "step": step, "best": json.dumps(best), "best_model": best_state})  # fmt: skip

    if best_state is None:
        raise InputError("no epoch was trained (--epochs must exceed the epochs already done)")
    model.load_state_dict(best_state)
    grid = f"{args.spacing:g} mm model grid, plain argmax"
    val_data = f"{len(split['validation'])} validation phantoms (seeds {_range(ranges['validation'])}), {grid}"
    metrics = region_metrics(best, "validation", val_data)
    if "dice_mean" in best["real_ct_check"]:
        metrics.append({"name": "dice_mean_real_ct_check", "value": best["real_ct_check"]["dice_mean"],
                        "data": f"the real abdominal CT ct_thoracolumbar/ct.nii.gz (T11-S1) at the best phantom epoch, "
                                f"{grid}; reference = {REAL_CT_REFERENCE}; measured only, never trained, tuned or "
                                "selected on"})  # fmt: skip
    meta = _metadata(args, argv, spec, split, ranges, device, best, history, epoch, prepare_seconds, trained_seconds, patch)
    folder = export_bundle(model.cpu(), args.out, metrics=metrics, overwrite=args.overwrite, **meta)
    test_ids = split["test"][: args.max_test] if args.max_test else split["test"]
    if test_ids and epoch >= epochs:  # a finished run: a chunk leaves the test phantoms for the end
        log(f"evaluating {len(test_ids)} test phantoms")
        test = load_phantoms(test_ids, cache, args.spacing, args.phantom_max_voxels, log)
        per_case = validate(model, test, "cpu")
        metrics += region_metrics(summarise(per_case), "test", f"{len(test_ids)} held-out test phantoms (seeds "
                                  f"{_range(ranges['test'])}), never trained or selected on, {grid}")  # fmt: skip
        meta["extra_training"]["test_per_case"] = per_case
        folder = export_bundle(model.cpu(), args.out, metrics=metrics, overwrite=True, **meta)
    if epoch < epochs:
        log(f"chunk done after epoch {epoch} of {epochs}: continue with the same command and --resume --overwrite")
    log(f"best epoch {best['epoch']}: validation Dice {best['dice_mean']:.3f}; real CT check "
        f"{best['real_ct_check'].get('dice_mean', 'skipped')}; wrote {folder}")  # fmt: skip
    return 0


def _range(pair):
    return f"{pair[0]}-{pair[1]}" if pair else "none"


def _metadata(args, argv, spec, split, ranges, device, best, history, epoch, prepare_seconds, trained_seconds, patch):
    phantom = {"first_seed": args.first_seed, "count": args.phantoms, "field_of_view": "random",
               "spacing": "drawn 0.5-5 mm", "max_voxels": args.phantom_max_voxels}  # fmt: skip
    return dict(
        bundle_id=BUNDLE_ID, version=VERSION, task=task_name(), network=spec,
        input={"channels": 1, "patch_size": list(patch), "roi_size": list(ROI), "spacing": [args.spacing] * 3,
               "layout": "canonical axes inferior, posterior, left (SpineAILib.ct_grid.Layout), block-averaged "
                         "then linear to the model grid (align-corners off)",
               "intensity": INTENSITY},
        labels=CLASS_NAMES, seed=args.seed,
        data=f"{PHANTOM_DATA}: {args.phantoms} cases; train seeds {_range(ranges['train'])}, validation "
             f"{_range(ranges['validation'])}, test {_range(ranges['test'])}",
        split={"method": "by phantom seed range", "seed_ranges": ranges, **split},
        command=shlex.join(["spineai-train", "spine-ct", *argv]),
        description=f"3-D UNet on CT at {args.spacing:g} mm: vertebrae C1-L5 and the sacrum (S1), named by level - "
                    "trained on synthetic phantoms only",
        extra_training={
            "synthetic": True, "phantom": phantom, "epochs": epoch, "steps_per_epoch": args.steps_per_epoch,
            "batch_size": args.batch_size, "lr": args.lr, "lr_schedule": "cosine to 0 over --epochs",
            "device": str(device), "threads": torch.get_num_threads(), "prepare_seconds": round(prepare_seconds, 1),
            "train_seconds": round(trained_seconds, 1), "best_epoch": best["epoch"], "history": history,
            "selection": "best validation-phantom Dice (dice_mean); real_ct_check is logged, never selected on",
            "validation_per_case": best["per_case"], "real_ct_check_at_best": best["real_ct_check"],
            "ignored_labels": "L6 and T13 have no class: their voxels, and the levels whose true name no anatomical "
                              "anchor in view gives (a transitional spine), count in neither loss nor Dice",
            "augmentation": "patches centred on vertebrae (85%), rotation 15 deg flexion / 8 deg others, scale "
                            "0.85-1.15, left-right mirror, HU gain 0.9-1.1 and offset +-40, noise up to 25 HU",
            "loss": "cross entropy + soft Dice (ignore label 255)",
        },
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
