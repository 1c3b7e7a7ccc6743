"""`spineai-train lumbar-refiner`: the vertebral-body boundary model at 1 mm.

The level model (`spineai-train lumbar-mri`) names the bodies from whole sagittal
slices at 1.5 mm; its outlines stay about 1 mm off (held-out Dice ~0.89 even
though the names are right). This second, class-agnostic 2-D UNet sees 128 x 128 mm
patches at 1 mm around the bodies and only answers "vertebral body or not"; the
workflow (SpineAILib.workflows.lumbar.refine) keeps the level model's names and takes the
outline from this model, inside a margin around each named body.

    spineai-train lumbar-refiner --data ../shared/data/mri_lumbar --out BUNDLE [--epochs N] [--time-budget S]

Same split, augmentation and loss as the level model (SpineAITraining/splits,
lumbar/augment.py, cross entropy + soft Dice), rows above the highest labelled body
ignored (unlabelled vertebrae there). Validation: body Dice on the validation cases'
native grid within 8 mm of their labelled bodies (the region the workflow refines);
the bundle keeps the best epoch. Checkpoint after every epoch in BUNDLE.work (``--resume``).
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch  # this module is imported only when its command runs

from SpineAITraining.common.checkpoint import resume, save_checkpoint
from SpineAITraining.common.loop import ce_dice_loss, learning_rate, optimiser_step
from SpineAITraining.common.seeding import seed_everything
from SpineAITraining.lumbar.mri_lumbar import IGNORE

BUNDLE_ID = "lumbar-mri-body-refiner"
TASK = "lumbar-mri/refiner"  # a sub-model of the lumbar-mri workflow (SpineAILib.workflows.lumbar.refine)
VERSION = "1.0.0"
TARGET_SPACING = 1.0  # mm, in-plane
PATCH = (128, 128)
CROP = 176  # drawn around the chosen centre before the affine picks PATCH out of it
FOREGROUND_CENTRE_SHARE = 0.8
LATERAL_MARGIN = 6  # slices beyond the labelled bodies that still train (as "no body")
UNLABELLED_MARGIN_MM = 3.0
VALIDATION_MARGIN_MM = 8.0
CLASS_NAMES = ["background", "vertebral body"]
DEFAULT_CHANNELS = (16, 32, 64, 128, 256)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="spineai-train lumbar-refiner", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="../shared/data/mri_lumbar or a SpineAI lumbar-mri export")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--samples-per-epoch", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--channels", default=",".join(map(str, DEFAULT_CHANNELS)))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="augmentation worker processes")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the training step")
    p.add_argument("--device", default="auto")
    p.add_argument("--time-budget", type=float, help="seconds; fewer epochs when the first shows they will not fit")
    p.add_argument("--train-cases", help="comma-separated case ids (default: the split's training part)")
    p.add_argument("--val-cases", help="comma-separated case ids (default: the split's validation part)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def load_case(case, keep_native=False):
    """{'image': (N, rows, cols) float16 at 1 mm, 'target': uint8 0/1/IGNORE} over the labelled bodies' sagittal
    slices and LATERAL_MARGIN more; ``keep_native`` (validation) adds the native grid: 'canonical', 'spacing',
    'body' (the labelled bodies, 0/1)."""
    from SpineAILib.io import load
    from SpineAILib.workflows.lumbar.grid import SagittalLayout, normalise, resample_slices

    image, labels = load(case.image), load(case.labels)
    layout = SagittalLayout.of(image.voxels.shape, image.ijk_to_ras)
    canonical = layout.to_canonical(image.voxels)
    values = np.asarray(layout.to_canonical(labels.voxels)).astype(np.int64)
    body = np.isin(values, list(case.labelled_values)).astype(np.uint8)
    target = body.copy()
    rows = np.nonzero(body.any(axis=(0, 2)))[0]
    if len(rows):  # vertebrae above the highest labelled body are unlabelled, not background
        top = int(rows[0] - round(UNLABELLED_MARGIN_MM / layout.spacing[1]))
        if top > 0:
            target[:, :top] = IGNORE
    normalised, _ = normalise(canonical)
    slices, _ = resample_slices(normalised, layout.spacing, TARGET_SPACING)
    target, _ = resample_slices(target, layout.spacing, TARGET_SPACING, mode="nearest")
    lateral = np.nonzero((target == 1).any(axis=(1, 2)))[0]
    keep = np.arange(max(0, lateral[0] - LATERAL_MARGIN), min(len(target), lateral[-1] + LATERAL_MARGIN + 1)) if len(lateral) else np.arange(0)
    out = {"id": case.case_id, "source": case.source, "image": slices[keep].astype(np.float16), "target": target[keep]}
    if keep_native:
        out.update(canonical=canonical, spacing=layout.spacing, body=body)
    return out


class PatchStream(torch.utils.data.IterableDataset):
    """``n`` augmented 128 x 128 patches around (mostly) vertebral-body pixels of random training slices."""

    def __init__(self, cases, n, seed):
        self.cases, self.n, self.seed = cases, n, seed

    def __iter__(self):
        from SpineAITraining.lumbar.augment import augment_pair, worker_share

        rng, transforms, count = worker_share(self.n, self.seed, PATCH)
        half = CROP // 2
        for _ in range(count):
            case = self.cases[rng.integers(len(self.cases))]
            index = int(rng.integers(len(case["image"])))
            image, target = case["image"][index].astype(np.float32), case["target"][index]
            body = np.argwhere(target == 1)
            if len(body) and rng.random() < FOREGROUND_CENTRE_SHARE:
                r, c = body[rng.integers(len(body))]
            else:
                r, c = rng.integers(image.shape[0]), rng.integers(image.shape[1])
            crop_image = np.zeros((CROP, CROP), np.float32)
            crop_target = np.zeros((CROP, CROP), np.float32)
            r0, c0 = r - half, c - half
            rs, cs = slice(max(0, r0), min(image.shape[0], r0 + CROP)), slice(max(0, c0), min(image.shape[1], c0 + CROP))
            crop_image[rs.start - r0 : rs.stop - r0, cs.start - c0 : cs.stop - c0] = image[rs, cs]
            crop_target[rs.start - r0 : rs.stop - r0, cs.start - c0 : cs.stop - c0] = target[rs, cs]
            yield augment_pair(transforms, crop_image, crop_target)


def network_spec(channels):
    return {"name": "UNet", "args": {"spatial_dims": 2, "in_channels": 1, "out_channels": len(CLASS_NAMES),
                                     "channels": list(channels), "strides": [2] * (len(channels) - 1), "num_res_units": 1}}  # fmt: skip


def validate(model, cases, device):
    """{case: body Dice} on the native grid, within VALIDATION_MARGIN_MM of the labelled bodies (rows below the top)."""
    from SpineAILib.morphology import dilation
    from SpineAILib.workflows.lumbar.refine import predict_body_probability

    results = {}
    for case in cases:
        body = case["body"].astype(bool)
        if "region" not in case:  # the same every epoch
            case["region"] = dilation(body, VALIDATION_MARGIN_MM, case["spacing"])
        region = case["region"]
        probability = predict_body_probability(model, case["canonical"], case["spacing"], region, device)
        predicted = (probability >= 0.5) & region
        results[case["id"]] = round(2.0 * float((predicted & body).sum()) / float(predicted.sum() + body.sum()), 4)
    return results


def _load_cases(args):
    from SpineAITraining.lumbar import mri_lumbar

    split, train_ids, val_ids = mri_lumbar.training_parts(args.data, args.train_cases, args.val_cases)
    found = mri_lumbar.cases_by_id(args.data, train_ids + val_ids)
    print(f"loading {len(train_ids)} training and {len(val_ids)} validation cases from {args.data}", file=sys.stderr)
    return (split, train_ids, val_ids, [load_case(found[c]) for c in train_ids],
            [load_case(found[c], keep_native=True) for c in val_ids])  # fmt: skip


def main(argv=None):
    from monai.data import set_track_meta
    from tqdm import tqdm

    from SpineAILib.errors import OutputError
    from SpineAILib.models.device import choose_device
    from SpineAILib.models.networks import build_network
    from SpineAITraining.common.export import export_bundle
    from SpineAITraining.lumbar.mri_lumbar import is_export

    args = parse_args(sys.argv[1:] if argv is None else argv)
    set_track_meta(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out.exists() and not args.overwrite:
        raise OutputError(f"{args.out} already exists (choose another folder or pass --overwrite)")
    t_start = time.perf_counter()
    split, train_ids, val_ids, train, val = _load_cases(args)
    device = choose_device(args.device)
    spec = network_spec(tuple(int(c) for c in args.channels.split(",")))
    seed_everything(args.seed)
    model = build_network(spec["name"], **spec["args"]).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, args.samples_per_epoch // args.batch_size)
    work = args.out.with_name(args.out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / "last.pt"
    epochs, step, epoch, best, history, best_state = args.epochs, 0, 0, None, [], None
    if args.resume and checkpoint.is_file():
        epoch, step, epochs, history, best, best_state = resume(checkpoint, model, optimiser, args)
    start_epoch = epoch
    while epoch < epochs:
        seed = args.seed * 1000 + epoch
        seed_everything(seed)
        model.train()
        losses, t0 = [], time.perf_counter()
        loader = torch.utils.data.DataLoader(PatchStream(train, steps_per_epoch * args.batch_size, seed),
                                             batch_size=args.batch_size, num_workers=args.workers, drop_last=True)  # fmt: skip
        for images, labels in tqdm(loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", disable=args.quiet, file=sys.stderr):
            loss = ce_dice_loss(model(images.to(device)), labels.to(device), IGNORE)
            losses.append(optimiser_step(optimiser, loss, learning_rate(step, epochs * steps_per_epoch, args.lr)))
            step += 1
        epoch += 1
        entry = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4), "train_seconds": round(time.perf_counter() - t0, 1)}
        model.eval()
        per_case = validate(model, val, device)
        entry["dice_mean"] = round(float(np.mean(list(per_case.values()))), 4)
        if best is None or entry["dice_mean"] >= best["dice_mean"]:
            best = dict(entry, per_case=per_case)
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            entry["best"] = True
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        history.append(entry)
        print(json.dumps(entry), file=sys.stderr, flush=True)
        if args.time_budget and epoch == start_epoch + 1:
            fit = epoch + int((args.time_budget - (time.perf_counter() - t_start)) / max(entry["seconds"], 1e-3))
            if fit < epochs:
                epochs = max(epoch, fit)
                print(f"time budget {args.time_budget:.0f} s: training {epochs} epochs", file=sys.stderr)
        save_checkpoint(checkpoint, model, optimiser, epoch, step, epochs, history, best, best_state)

    model.load_state_dict(best_state)
    seconds = round(time.perf_counter() - t_start, 1)
    val_data = (f"validation split of {'the export' if is_export(args.data) else 'mri_lumbar'} ({len(val_ids)} cases: {', '.join(val_ids)}), native 1 mm grid, "
                f"within {VALIDATION_MARGIN_MM:.0f} mm of the labelled bodies")  # fmt: skip
    folder = export_bundle(
        model, args.out, bundle_id=BUNDLE_ID, version=VERSION, task=TASK, network=spec,
        input={"channels": 1, "size": list(PATCH), "spacing": [TARGET_SPACING, TARGET_SPACING], "plane": "sagittal",
               "layout": "2-D sagittal slices, rows superior->inferior, columns anterior->posterior "
               "(SpineAILib.workflows.lumbar.grid.SagittalLayout); any size divisible by 16 at inference",
               "intensity": {"method": "percentile", "per": "volume", "lower_percentile": 0.5, "upper_percentile": 99.5,
                             "range": [0.0, 1.0], "clip": True}},
        labels=CLASS_NAMES,
        data=(f"SpineAI dataset export {args.data} (lumbar-mri; label maps as annotated)" if is_export(args.data) else
              "Real lumbar MRI, ../shared/data/mri_lumbar: vb3 T1 FFE (MyoSegmenTUM, Burian et al. 2019, L1-L5 bodies) "
              "and vb2 T2 TSE (Zukic et al. 2014, T11-L5 bodies), resampled to 1 mm by fastcleverseg"),
        seed=args.seed,
        split={"file": split.get("file", "SpineAITraining/splits/mri_lumbar_split.json"), "seed": split["seed"],
               "train": train_ids, "validation": val_ids, "test": split["test"]},
        metrics=[{"name": "body_dice_near_bodies_validation", "value": best["dice_mean"], "data": val_data}],
        command=shlex.join(["spineai-train", "lumbar-refiner", *(sys.argv[1:] if argv is None else argv)]),
        description="2-D UNet on 1 mm sagittal MRI patches: vertebral body or not (outlines for the level model's named bodies)",
        extra_training={"epochs": epochs, "samples_per_epoch": args.samples_per_epoch, "batch_size": args.batch_size,
                        "lr": args.lr, "lr_schedule": "linear warm-up 200 steps, cosine to 0", "device": str(device),
                        "seconds": seconds, "best_epoch": best["epoch"], "history": history,
                        "validation_per_case": best["per_case"],
                        "augmentation": "as the level model (SpineAITraining/lumbar/augment.py) on 176 mm crops",
                        "loss": "cross entropy + soft Dice; rows more than 3 mm above the highest labelled body ignored"},
        overwrite=args.overwrite,
    )  # fmt: skip
    print(f"best epoch {best['epoch']}: validation body Dice {best['dice_mean']:.4f}; {seconds:.0f} s; wrote {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
