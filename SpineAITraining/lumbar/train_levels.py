"""`spineai-train lumbar-mri`: the vertebral level model on the real lumbar MRI.

A 2-D MONAI UNet on sagittal slices (1.5 mm in-plane, 224 x 160 = 336 x 240 mm
patches) with 8 classes: background, T11, T12, L1-L5. A slice shows the whole
lumbar spine, so the network learns a body's level from its context (sacrum,
neighbours, lordosis); the workflow then cleans up in 3-D. On 2 CPU cores a
training slice costs about 50-100 ms (fine for short runs and tests); the shipped
bundle was trained on a GPU with 15 augmentation workers (``--workers``).

    spineai-train lumbar-mri --data ../shared/data/mri_lumbar --out BUNDLE [--epochs N] [--seed S]

Checkpoints go to BUNDLE.work/ after each epoch (``--resume`` continues from
there); each epoch reseeds from (seed, epoch), so a resumed run repeats the run it
continues. The bundle holds the weights of the best validation epoch. TensorBoard logs go to
BUNDLE.work/tensorboard. ``--data`` may also be a SpineAI dataset export (``spineai dataset
export --task lumbar-mri``): its cases and its split (dataset.json) are used.

Under ``torchrun --nproc_per_node N`` (SpineAITraining/common/distributed.py) each process draws
its own samples-per-epoch / N patches with its own seed, DistributedDataParallel averages
the gradients, and rank 0 validates, checkpoints and writes the bundle.
"""

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch  # this module is imported only when its command runs

from SpineAILib.workflows.lumbar import CLASS_NAMES, CLASS_VALUES
from SpineAITraining.common.checkpoint import resume, save_checkpoint
from SpineAITraining.common.loop import ce_dice_loss, learning_rate, optimiser_step
from SpineAITraining.common.seeding import seed_everything
from SpineAITraining.lumbar.mri_lumbar import IGNORE



@dataclass(frozen=True)
class Target:
    """What a run learns: the level model (T11-L5 by level) or the sacrum model (S1 body), same network and data."""

    name: str
    task: str  # the bundle's task: the level model is lumbar-mri's own, the sacrum model a sub-model of it
    bundle_id: str
    version: str
    class_names: tuple
    description: str
    found: str  # validation: what "every labelled class Dice >= 0.5" means for this model


LEVELS = Target("levels", "lumbar-mri", "lumbar-mri-vertebrae", "1.0.0", CLASS_NAMES,
                "2-D UNet on sagittal MRI slices: vertebral bodies T11, T12, L1-L5 named by level", "levels named")  # fmt: skip
# The sacrum model learns S1 from labels this team made by rule and reviewed (SpineAITraining/lumbar/sacrum_labels.py):
# the level names are counted up from it (SpineAILib.workflows.lumbar.naming).
SACRUM = Target("sacrum", "lumbar-mri/sacrum", "lumbar-mri-sacrum", "1.0.0", ("background", "S1"),
                "2-D UNet on sagittal MRI slices: the first sacral body (S1), the anchor the lumbar levels are counted from",
                "S1 found")  # fmt: skip
TARGETS = {t.name: t for t in (LEVELS, SACRUM)}
BUNDLE_ID, VERSION = LEVELS.bundle_id, LEVELS.version
TARGET_SPACING = 1.5  # mm, in-plane
PATCH = (224, 160)  # rows (S-I) x columns (A-P)
# vb3 cases label L1-L5 only: T12 above is unlabelled, so the loss ignores what lies
# more than this far above L1 instead of calling T12 background there.
UNLABELLED_MARGIN_MM = 3.0
SOURCE_WEIGHT = {"vb2": 2.0, "vb3": 1.0}  # vb2 alone labels T11/T12: sample it more
LABELLED_SLICE_SHARE = 0.85
DEFAULT_CHANNELS = (24, 48, 96, 192, 384)  # the shipped bundle's


def parse_args(argv):
    p = argparse.ArgumentParser(prog="spineai-train lumbar-mri", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the mri_lumbar folder (vb2_*/vb3_* NIfTI + labels)")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--target", choices=sorted(TARGETS), default="levels",
                   help="levels: T11-L5 by level (lumbar-mri-vertebrae); sacrum: the S1 body (lumbar-mri-sacrum), from "
                   "the S1 labels in SpineAITraining/labels/mri_lumbar_s1")  # fmt: skip
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from BUNDLE.work/last.pt")
    p.add_argument("--work", type=Path, help="checkpoint folder (default: BUNDLE.work)")
    p.add_argument("--samples-per-epoch", type=int, default=768)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--channels", default=",".join(map(str, DEFAULT_CHANNELS)), help="UNet channels per level")
    p.add_argument("--train-cases", help="comma-separated case ids instead of the split's train part")
    p.add_argument("--val-cases", help="comma-separated case ids instead of the split's validation part")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs (default: BUNDLE.work/tensorboard)")
    p.add_argument("--workers", type=int, default=0, help="augmentation processes (0: in the training process)")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs (and after the last)")
    p.add_argument("--time-budget", type=float, help="seconds: after epoch 1, cut --epochs to what fits")
    p.add_argument("--cache", type=Path, help="read prepared cases from this folder (written by --write-cache)")
    p.add_argument("--write-cache", type=Path, help="prepare the cases into this folder and stop")
    p.add_argument("--cache-slice-step", type=int, default=1, help="with --write-cache: keep every Nth training slice")
    p.add_argument("--init-from", type=Path, help="start from this lumbar-mri level bundle's weights (fine-tuning, e.g. "
                   "the shipped one on a site's export); its network is used, --channels is ignored")
    return p.parse_args(argv)


# -- data --------------------------------------------------------------------------


def class_map(labels, source_labelled):
    """VerSe numbers -> class indices; labels the source does not annotate -> background."""
    lut = np.zeros(256, np.uint8)
    for index, value in enumerate(CLASS_VALUES):
        if index and value in source_labelled:
            lut[value] = index
    return lut[labels]


def sacrum_classes(case, layout):
    """1 on the case's S1 label (SpineAITraining/labels/mri_lumbar_s1), 0 elsewhere, canonical."""
    from SpineAILib.errors import InputError
    from SpineAILib.io import load
    from SpineAITraining.lumbar.sacrum_labels import label_path

    path = label_path(case.case_id)
    if not path.is_file():
        raise InputError(f"no S1 label for {case.case_id} ({path}): make them with python -m SpineAITraining.lumbar.sacrum_labels")
    return (layout.to_canonical(load(path).voxels) > 0).astype(np.uint8)


def load_case(case, keep_native=False, target=LEVELS):
    """One case on the training grid: {'image': (N, rows, cols) float16, 'labels': uint8 with IGNORE}."""
    from SpineAILib.io import load
    from SpineAILib.workflows.lumbar.grid import SagittalLayout, normalise, resample_slices

    image = load(case.image)
    layout = SagittalLayout.of(image.voxels.shape, image.ijk_to_ras)
    canonical = layout.to_canonical(image.voxels)
    if target is SACRUM:
        classes = sacrum_classes(case, layout)
    else:
        labels = load(case.labels)
        classes = class_map(layout.to_canonical(labels.voxels).astype(np.int64).clip(0, 255), case.labelled_values)
    if target is LEVELS and 18 not in case.labelled_values:  # nothing above L1 is labelled: ignore it
        rows = np.nonzero((classes == CLASS_VALUES.index(20)).any(axis=(0, 2)))[0]
        if len(rows):
            top = int(rows[0] - round(UNLABELLED_MARGIN_MM / layout.spacing[1]))
            if top > 0:
                classes[:, :top][classes[:, :top] == 0] = IGNORE
    normalised, _ = normalise(canonical)
    slices, _ = resample_slices(normalised, layout.spacing, TARGET_SPACING)
    slice_labels, _ = resample_slices(classes, layout.spacing, TARGET_SPACING, mode="nearest")
    foreground = (slice_labels > 0) & (slice_labels != IGNORE)
    out = {
        "id": case.case_id,
        "source": case.source,
        "image": slices.astype(np.float16),
        "labels": slice_labels,
        "labelled_slices": np.nonzero(foreground.any(axis=(1, 2)))[0],
    }
    if keep_native:  # validation: score on the native grid, as users get it
        out.update(canonical=canonical, spacing=layout.spacing, truth=classes)
    return out


def save_cases(cases, folder, slice_step=1):
    """Prepared cases as .npz, so a machine without the readers (a lent GPU) can train.

    Training cases keep every ``slice_step``-th sagittal slice (neighbours 1 mm apart
    are nearly identical; this halves what travels) with images quantised to uint8;
    validation cases keep only their native grid, which is what they are scored on.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        if "canonical" in case:
            arrays = {"canonical": case["canonical"], "truth": case["truth"], "spacing": np.array(case["spacing"], float)}
        else:
            labels = case["labels"][::slice_step]
            foreground = (labels > 0) & (labels != IGNORE)
            arrays = {"image": np.rint(case["image"][::slice_step].astype(np.float32) * 255).astype(np.uint8),
                      "labels": labels, "labelled_slices": np.nonzero(foreground.any(axis=(1, 2)))[0]}  # fmt: skip
        np.savez_compressed(folder / f"{case['id']}.npz", **arrays)


def load_cached(folder, case_id):
    with np.load(folder / f"{case_id}.npz") as data:
        case = {k: data[k] for k in data.files}
    case.update(id=case_id, source=case_id.split("_")[0])
    if "image" in case:
        case["image"] = (case["image"] / np.float32(255)).astype(np.float16)
    if "spacing" in case:
        case["spacing"] = tuple(float(v) for v in case["spacing"])
    return case


class PatchStream(torch.utils.data.IterableDataset):
    """``n`` augmented (image, label) patches drawn from random (case, slice) pairs; an iterable
    torch dataset whose workers each draw their share with their own seed."""

    def __init__(self, cases, n, seed):
        self.cases, self.n, self.seed = cases, n, seed
        weights = np.array([SOURCE_WEIGHT.get(c["source"], 1.0) for c in cases])
        self.p = weights / weights.sum()

    def __iter__(self):
        from SpineAITraining.lumbar.augment import augment_pair, worker_share

        rng, transforms, count = worker_share(self.n, self.seed, PATCH)
        for _ in range(count):
            case = self.cases[rng.choice(len(self.cases), p=self.p)]
            labelled = case["labelled_slices"]
            if len(labelled) and rng.random() < LABELLED_SLICE_SHARE:
                index = int(rng.choice(labelled))
            else:
                index = int(rng.integers(len(case["image"])))
            yield augment_pair(transforms, case["image"][index], case["labels"][index])


def batches(cases, n, batch_size, seed, workers):
    return torch.utils.data.DataLoader(PatchStream(cases, n, seed), batch_size=batch_size, num_workers=workers,
                                       drop_last=True)  # fmt: skip


# -- model and loss ------------------------------------------------------------------


def network_spec(channels, n_classes=len(CLASS_NAMES)):
    return {
        "name": "UNet",
        "args": {
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": n_classes,
            "channels": list(channels),
            "strides": [2] * (len(channels) - 1),
            "num_res_units": 1,
        },
    }


# -- validation ------------------------------------------------------------------------


def dice_scores(predicted, truth, labelled_indices, names=CLASS_NAMES):
    """{class name: Dice} for each class the case annotates (truth IGNORE excluded)."""
    scores = {}
    for index in labelled_indices:
        p, t = predicted == index, truth == index
        denominator = int(p.sum()) + int(t.sum())
        if int(t.sum()):
            scores[names[index]] = 2.0 * int((p & t).sum()) / denominator
    return scores


def validate(model, cases, device, names=CLASS_NAMES):
    """Per case Dice per labelled level (raw slice-wise argmax on the native grid, no 3-D clean-up)."""
    from SpineAILib.workflows.lumbar.predict import predict_labels, prepare

    results = {}
    for case in cases:
        slices = prepare(case["canonical"], case["spacing"], TARGET_SPACING)
        predicted = predict_labels(model, slices, case["canonical"].shape, device)
        present = [i for i in range(1, len(names)) if (case["truth"] == i).any()]
        results[case["id"]] = dice_scores(predicted, case["truth"], present, names)
    return results


def summarise(results):
    per_case = [np.mean(list(s.values())) for s in results.values() if s]
    named = [all(v >= 0.5 for v in s.values()) for s in results.values() if s]
    return {"dice_mean": float(np.mean(per_case)) if per_case else 0.0, "levels_named": float(np.mean(named)) if named else 0.0}


def write_report(folder, history, best, target=LEVELS):
    """BUNDLE/report: metrics.md (validation Dice per case and level at the best epoch) and
    training_curves.png (loss, validation Dice and levels named per epoch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    levels = [n for n in target.class_names[1:] if any(n in s for s in best["per_case"].values())]
    lines = [f"# Validation at the best epoch ({best['epoch']}): Dice per level (slice-wise argmax, native grid)", "",
             "| case | " + " | ".join(levels) + " | mean |", "|---|" + "---|" * (len(levels) + 1)]  # fmt: skip
    for case, scores in sorted(best["per_case"].items()):
        cells = [f"{scores[n]:.3f}" if n in scores else "" for n in levels]
        mean = f"{np.mean(list(scores.values())):.3f}" if scores else ""
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {mean} |")
    per_level = [[s[n] for s in best["per_case"].values() if n in s] for n in levels]
    lines.append("| **mean** | " + " | ".join(f"{np.mean(v):.3f}" if v else "" for v in per_level)
                 + f" | {best['dice_mean']:.3f} |")  # fmt: skip
    lines += ["", f"{target.found.capitalize()} (every labelled class Dice >= 0.5): {best['levels_named']:.2f} of the cases."]
    (folder / "metrics.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = [h["epoch"] for h in history]
    axes[0].plot(epochs, [h["loss"] for h in history], marker="o")
    axes[0].set(xlabel="epoch", ylabel="training loss (CE + Dice)", title="loss")
    validated = [h for h in history if "dice_mean" in h]
    axes[1].plot([h["epoch"] for h in validated], [h["dice_mean"] for h in validated], marker="o", label="Dice (mean)")
    axes[1].plot([h["epoch"] for h in validated], [h["levels_named"] for h in validated], marker="s", label=target.found)
    axes[1].set(xlabel="epoch", ylim=(0, 1), title="validation")
    axes[1].legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(folder / "training_curves.png", dpi=100)
    plt.close(figure)


# -- training -----------------------------------------------------------------------


def main(argv=None):
    from SpineAITraining.common.distributed import run_main

    return run_main(parse_args(sys.argv[1:] if argv is None else argv), argv, _main)


def _main(args, argv, dist):
    from monai.data import set_track_meta
    from tqdm import tqdm

    from SpineAILib.errors import InputError, OutputError
    from SpineAILib.models.device import choose_device
    from SpineAILib.models.networks import build_network
    from SpineAITraining.common.export import export_bundle
    from SpineAITraining.lumbar import mri_lumbar

    set_track_meta(False)  # plain tensors: MONAI's metadata tracking costs more than the transforms here
    target = TARGETS[args.target]
    if target is SACRUM and args.data and mri_lumbar.is_export(args.data):
        raise InputError("--target sacrum trains on ../shared/data/mri_lumbar with the team's S1 labels, not on an export")
    if args.out.exists() and not args.overwrite and not args.write_cache:
        raise OutputError(f"{args.out} already exists (choose another folder or pass --overwrite)")
    split, train_ids, val_ids = mri_lumbar.training_parts(args.data, args.train_cases, args.val_cases)
    export = mri_lumbar.is_export(args.data) if args.data and args.data.is_dir() else False

    t_start = time.perf_counter()
    if args.cache:
        train = [load_cached(args.cache, c) for c in train_ids]
        val = [load_cached(args.cache, c) for c in val_ids]
    else:
        all_cases = mri_lumbar.cases_by_id(args.data, train_ids + val_ids)
        if dist.is_main:
            print(f"loading {len(train_ids)} training and {len(val_ids)} validation cases from {args.data}", file=sys.stderr)
        train = [load_case(all_cases[c], target=target) for c in train_ids]
        val = [load_case(all_cases[c], keep_native=True, target=target) for c in val_ids]
    if args.write_cache:
        save_cases(train + val, args.write_cache, args.cache_slice_step)
        print(f"wrote {len(train) + len(val)} prepared cases to {args.write_cache}", file=sys.stderr)
        return 0

    device = dist.device(args.device) if dist.enabled else choose_device(args.device)
    channels = tuple(int(c) for c in args.channels.split(","))
    spec = network_spec(channels, len(target.class_names))
    start_bundle = None
    if args.init_from:
        from SpineAILib.models.bundle import load_bundle

        start_bundle = load_bundle(args.init_from, device="cpu", expected_task=target.task)
        if list(start_bundle.labels) != list(target.class_names):
            raise InputError(f"--init-from {args.init_from}: its labels {start_bundle.labels} are not this model's "
                             f"{target.class_names}")  # fmt: skip
        spec = start_bundle.metadata["network"]
    work = args.work or args.out.with_name(args.out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed)
    model = build_network(spec["name"], **spec["args"]).to(device)
    if start_bundle is not None:
        model.load_state_dict(start_bundle.model.state_dict())
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, args.samples_per_epoch // (args.batch_size * dist.world_size))  # per process
    epochs, step, start_epoch, best, history, best_state = args.epochs, 0, 0, None, [], None
    checkpoint = work / "last.pt"
    if args.resume and checkpoint.is_file():
        start_epoch, step, epochs, history, best, best_state = resume(checkpoint, model, optimiser, args, dist.is_main)
    from SpineAITraining.common.tracking import tracker

    net = dist.wrap(model, device)
    board = tracker(work / "tensorboard", enabled=dist.is_main and not args.no_tensorboard)

    epoch = start_epoch
    while epoch < epochs:
        seed = args.seed * 1000 + epoch
        seed = seed * 1009 + dist.rank if dist.enabled else seed  # each process its own patches
        seed_everything(seed)
        model.train()
        losses = []
        t0 = time.perf_counter()
        loader = batches(train, steps_per_epoch * args.batch_size, args.batch_size, seed, args.workers)
        bar = tqdm(loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", disable=args.quiet or not dist.is_main,
                   file=sys.stderr)  # fmt: skip
        for images, labels in bar:
            loss = ce_dice_loss(net(images.to(device, non_blocking=True)), labels.to(device, non_blocking=True), IGNORE)
            losses.append(optimiser_step(optimiser, loss, learning_rate(step, epochs * steps_per_epoch, args.lr)))
            step += 1
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        epoch += 1
        entry = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4), "train_seconds": round(time.perf_counter() - t0, 1)}
        if not dist.is_main:  # rank 0 validates, checkpoints and decides how many epochs run
            history, epochs = dist.broadcast(None)
            continue
        if dist.enabled:
            entry["processes"] = dist.world_size
        if epoch % args.val_every == 0 or epoch == epochs:
            results = validate(model, val, device, target.class_names)
            entry.update({k: round(v, 4) for k, v in summarise(results).items()})
            if best is None or (entry["levels_named"], entry["dice_mean"]) >= (best["levels_named"], best["dice_mean"]):
                best = dict(entry, per_case=results)
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                entry["best"] = True
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        history.append(entry)
        print(json.dumps(entry), file=sys.stderr, flush=True)
        if args.time_budget and epoch == start_epoch + 1:  # the first epoch tells how many fit
            used = time.perf_counter() - t_start
            fit = start_epoch + 1 + int((args.time_budget - used) / max(entry["seconds"], 1e-3))
            if fit < epochs:
                epochs = max(epoch, fit)
                print(f"time budget {args.time_budget:.0f} s: training {epochs} epochs", file=sys.stderr)
        board.scalars(epoch, {k: entry[k] for k in ("loss", "dice_mean", "levels_named", "seconds") if k in entry},
                      prefix="lumbar-mri/")  # fmt: skip
        board.scalars(epoch, {"lr": optimiser.param_groups[0]["lr"]}, prefix="lumbar-mri/")
        save_checkpoint(checkpoint, model, optimiser, epoch, step, epochs, history, best, best_state)
        dist.broadcast((history, epochs))

    in_sync = dist.replicas_in_sync(model)
    board.close()
    if not dist.is_main:
        return 0

    if best_state is None:
        raise InputError("no epoch was validated (--epochs must exceed the epochs already done)")
    model.load_state_dict(best_state)
    seconds = round(time.perf_counter() - t_start, 1)
    val_data = f"validation split of {'the export' if export else 'mri_lumbar'} ({len(val_ids)} cases: {', '.join(val_ids)}), 1 mm grid, slice-wise argmax"
    metrics = [
        {"name": "dice_mean_validation", "value": round(best["dice_mean"], 4), "data": val_data},
        {"name": "levels_named_validation" if target is LEVELS else "s1_found_validation",
         "value": round(best["levels_named"], 4), "data": val_data},
    ]
    command = shlex.join(["spineai-train", "lumbar-mri", *(sys.argv[1:] if argv is None else argv)])
    folder = export_bundle(
        model,
        args.out,
        bundle_id=target.bundle_id,
        version=target.version,
        task=target.task,
        network=spec,
        input={
            "channels": 1,
            "size": list(PATCH),
            "spacing": [TARGET_SPACING, TARGET_SPACING],
            "plane": "sagittal",
            "layout": "2-D sagittal slices, rows superior->inferior, columns anterior->posterior "
            "(SpineAILib.workflows.lumbar.grid.SagittalLayout); any size divisible by 16 at inference",
            "intensity": {"method": "percentile", "per": "volume", "lower_percentile": 0.5,
                          "upper_percentile": 99.5, "range": [0.0, 1.0], "clip": True},
        },  # fmt: skip
        labels=target.class_names,
        data=(f"SpineAI dataset export {args.data} (lumbar-mri; label maps of T11-L5 as annotated)" if export else
              "Real lumbar MRI, ../shared/data/mri_lumbar: vb3 T1 FFE (MyoSegmenTUM, Burian et al. 2019, L1-L5 "
              "bodies) and vb2 T2 TSE (Zukic et al. 2014, T11-L5 bodies), resampled to 1 mm by fastcleverseg"),
        seed=args.seed,
        split={"file": split.get("file", "SpineAITraining/splits/mri_lumbar_split.json"), "seed": split["seed"], "train": train_ids,
               "validation": val_ids, "test": split["test"]},  # fmt: skip
        metrics=metrics,
        command=command,
        description=target.description,
        extra_training={
            "epochs": epochs, "samples_per_epoch": args.samples_per_epoch, "batch_size": args.batch_size,
            "lr": args.lr, "lr_schedule": "linear warm-up 200 steps, cosine to 0", "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "seconds": seconds, "best_epoch": best["epoch"], "history": history,
            "initialised_from": None if start_bundle is None else {
                "bundle": str(args.init_from), "bundle_id": start_bundle.metadata["bundle_id"],
                "version": start_bundle.metadata["version"], "sha256": start_bundle.metadata["sha256"],
                "command": start_bundle.metadata.get("training", {}).get("command")},
            "validation_per_case": best["per_case"],
            "processes": dist.world_size, **({"replicas_in_sync": in_sync} if dist.enabled else {}),
            "augmentation": "random S-I/A-P field of view, affine (rotation 0.2 rad, scale 0.8-1.2, shear, shift), "
            "simulated low resolution, Gaussian blur, bias field, random intensity curve, gamma, scale/shift, noise",
            "loss": "cross entropy + soft Dice; vb3 pixels more than 3 mm above L1 ignored (T12 unlabelled there)"
            if target is LEVELS else "cross entropy + soft Dice",
            **({"labels_from": "S1 labels made by rule and reviewed as pictures: SpineAITraining/labels/mri_lumbar_s1 "
                "(provenance.json)"} if target is SACRUM else {}),
        },  # fmt: skip
        overwrite=args.overwrite,
    )
    write_report(Path(folder) / "report", history, best, target)
    print(f"best epoch {best['epoch']}: validation Dice {best['dice_mean']:.3f}, {target.found} {best['levels_named']:.2f}; "
          f"{seconds:.0f} s; wrote {folder}", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":  # torchrun -m SpineAITraining.lumbar.train_levels works like the spineai-train route
    from SpineAILib.errors import run_reporting_errors
    from SpineAITraining.common.distributed import end_launched_process

    sys.exit(end_launched_process(run_reporting_errors("spineai-train", main)))
