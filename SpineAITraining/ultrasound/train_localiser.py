"""`spineai-train lp-ultrasound-localiser`: train the spinal cord / CSF localiser on generated cines.

    spineai-train lp-ultrasound-localiser --generate 400 --out BUNDLE [--report REPORT.md]
    python -m SpineAITraining.ultrasound.train_localiser --generate 400 --out BUNDLE
    python -m SpineAITraining.ultrasound.train_localiser --evaluate BUNDLE [--report REPORT.md]

Generates ``--generate`` training videos (cycling over every machine but the held-out
one), ``--val-videos`` validation videos (best epoch, thresholds) and ``--test-videos``
test videos from seeds disjoint from both (split by video), plus ``--holdout-videos``
from the held-out machine. Writes the bundle (metadata.json + model.safetensors) with
the test metrics, and a Markdown/JSON report when ``--report`` is given. The metrics
are measured on the bundle as saved, loaded back through ``SpineAILib.workflows.ultrasound.localise``
(the path users run). ``--evaluate BUNDLE`` re-measures an existing bundle on the
same test videos (its split is read from its metadata) and rewrites its metrics,
e.g. after a change of post-processing.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path


def _parser():
    p = argparse.ArgumentParser(prog="spineai-train lp-ultrasound-localiser",
                                description="Train the ultrasound spinal cord / CSF localiser (MONAI 2-D UNet) on generated cines.")
    p.add_argument("--generate", type=int, metavar="N", help="number of generated training videos")
    p.add_argument("--out", type=Path, help="bundle folder to write")
    p.add_argument("--evaluate", type=Path, metavar="BUNDLE", help="only (re-)measure this bundle's test metrics")
    p.add_argument("--frames-per-video", type=int, default=16)
    p.add_argument("--val-videos", type=int, default=20)
    p.add_argument("--test-videos", type=int, default=40)
    p.add_argument("--holdout-machine", default="curvilinear_b", help="machine kept out of training and tested alone ('none' to train on all)")
    p.add_argument("--holdout-videos", type=int, default=20)
    p.add_argument("--test-frames-per-video", type=int, default=24)
    p.add_argument("--size", type=int, default=128, help="network input size (square)")
    p.add_argument("--channels", default="8,16,32,64,128", help="UNet channels per level")
    p.add_argument("--res-units", type=int, default=1)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN", help="stop training after this many minutes of CPU time (all threads; wall time on a GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--version", default="0.1.0")
    p.add_argument("--report", type=Path, default=None, help="also write this Markdown report (and .json beside it)")
    p.add_argument("--overwrite", action="store_true")
    return p


def _choose_thresholds(model, val_set, candidates=(0.3, 0.4, 0.5, 0.6, 0.7)):
    """Per structure, the probability threshold with the best pooled Dice on the validation frames."""
    import numpy as np
    import torch

    from SpineAILib.workflows.ultrasound.localise import STRUCTURES

    probs = []
    with torch.inference_mode():
        for start in range(0, len(val_set.images), 64):
            probs.append(torch.sigmoid(model(torch.from_numpy(val_set.images[start : start + 64]))).numpy())
    probs = np.concatenate(probs)
    chosen = {}
    for c, structure in enumerate(STRUCTURES):
        true = val_set.targets[:, c].astype(bool)
        best = max(candidates, key=lambda t: 2 * np.logical_and(probs[:, c] >= t, true).sum()
                   / max(1, (probs[:, c] >= t).sum() + true.sum()))
        chosen[structure] = float(best)
    return chosen


def _fmt(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def markdown_report(result):
    lines = [
        "# LP-ultrasound localiser (spinal cord / CSF masks and boxes)",
        "",
        f"Bundle `{result['bundle_id']}` {result['version']}, MONAI 2-D UNet {result['network']['args']['channels']}, "
        f"input {result['input_size'][0]}x{result['input_size'][1]} grey, trained on generated cines "
        f"(`SpineAITraining.ultrasound.generator`), {result['train_videos']} training videos x "
        f"{result['frames_per_video']} frames on machines {', '.join(result['train_machines'])}; "
        f"{result['epochs_run']} epochs in {result['train_minutes']:.1f} min"
        + (f" ({result['train_cpu_minutes']:.1f} CPU-min)" if result.get("train_cpu_minutes") else "")
        + f" on {result['machine']} (a machine shared with other jobs).",
        "",
        f"Command: `{result['command']}`",
        "",
        "Split by video: training, validation and test videos come from disjoint generator seeds "
        "(different simulated infants, probe paths and bad-quality episodes). The last rows measure new frames "
        "(other probe paths) of infants and views seen in training: what a split by frame would report, shown "
        "only to make the difference visible. Metrics are measured at the "
        "frames' own resolution (224x224) through `SpineAILib.workflows.ultrasound.localise` (threshold per structure chosen on "
        f"validation: {result['thresholds']})."
        + (f" Measured {result['measured']['date']} at commit {result['measured']['git_commit']} (the generator as of "
           f"that commit), {result['measured']['machine']}." if result.get("measured") else ""),
        "",
        "| data | structure | Dice (pooled) | IoU (pooled) | Dice (frames with it) | presence acc. | box IoU | AP@0.5 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, summary in result["evaluations"].items():
        for structure in ("spinal_cord", "csf"):
            s = summary[structure]
            lines.append(
                f"| {name} | {structure} | {_fmt(s['dice_pooled'])} | {_fmt(s['iou_pooled'])} | "
                f"{_fmt(s['dice_mean_frames_with_structure'])} | {_fmt(s['presence_accuracy'])} | "
                f"{_fmt(s['box_iou_mean'])} | {_fmt(s['ap50'])} |"
            )
    lines += ["", "| data | videos | frames | mAP@0.5 |", "|---|---|---|---|"]
    for name, summary in result["evaluations"].items():
        lines.append(f"| {name} | {summary['videos']} | {summary['spinal_cord']['frames']} | {_fmt(summary['map50'])} |")
    names = list(result["evaluations"])
    test = result["evaluations"][names[0]]
    held = next((result["evaluations"][n] for n in names if n.startswith("held-out machine")), None)
    seen = next((result["evaluations"][n] for n in names if n.startswith("new frames")), None)
    if held is not None:
        lines += ["", "On the machine never seen in training the pooled Dice goes from "
                  + ", ".join(f"{_fmt(test[s]['dice_pooled'])} to {_fmt(held[s]['dice_pooled'])} ({s})" for s in ("spinal_cord", "csf"))
                  + f" and mAP@0.5 from {_fmt(test['map50'])} to {_fmt(held['map50'])}: a new scanner needs its own "
                  "examples (or fine-tuning) before these masks are trusted on it."]
    if seen is not None:
        gain = seen["map50"] - test["map50"]
        lines += ["", f"Frames of videos seen in training score mAP@0.5 {_fmt(seen['map50'])} against {_fmt(test['map50'])} on "
                  "unseen videos: "
                  + ("with this generator the localiser does not profit from having seen the infant, so here a split by "
                     "frame would hardly inflate these figures; the split stays by video all the same." if gain < 0.02 else
                     f"having seen the infant is worth {gain:.3f} mAP@0.5, which a split by frame would report as skill; "
                     "the split stays by video.")]
    lines += [
        "",
        "Presence accuracy: the localiser finds something on a frame exactly when the structure is there "
        "(bad-quality frames and frames without the structure count as negatives). Box IoU: mean over the "
        "frames that show the structure, a missed box counting 0. AP@0.5: one box per frame scored by the "
        "frame's highest probability, all-point interpolation.",
        "",
        "All numbers are on synthetic images; no real infant spine ultrasound was available.",
        "",
    ]
    return "\n".join(lines)


SEED_OFFSETS = {"train": 0, "val": 500_000, "test": 700_000, "holdout": 900_000}


def main(argv=None):
    args = _parser().parse_args(argv)
    from SpineAILib.errors import InputError

    if args.evaluate:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        return evaluate_bundle(args.evaluate, args.report)
    if args.generate is None or args.out is None:
        raise InputError("give --generate N and --out BUNDLE to train (or --evaluate BUNDLE to measure one)")
    return train_bundle(args, argv)


def train_bundle(args, argv):
    import platform

    import torch

    from SpineAILib.errors import OutputError
    from SpineAILib.models.device import choose_device
    from SpineAILib.workflows.ultrasound.localise import STRUCTURES, TASK
    from SpineAITraining.common.export import export_bundle
    from SpineAITraining.ultrasound import localise as L

    if args.out.exists() and not args.overwrite:
        raise OutputError(f"model bundle folder {args.out} already exists (add --overwrite to replace it)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    holdout = None if str(args.holdout_machine).lower() in ("", "none") else args.holdout_machine
    train_machines = L.machines_for(holdout)
    size = (args.size, args.size)
    channels = [int(c) for c in args.channels.split(",")]
    began = time.time()
    cpu_began = time.process_time()

    # Disjoint seed ranges per split: videos never cross a split.
    train_seeds = L.video_seeds(args.generate, SEED_OFFSETS["train"], args.seed)
    val_seeds = L.video_seeds(args.val_videos, SEED_OFFSETS["val"], args.seed)

    print(f"generating {args.generate} training + {args.val_videos} validation videos ({args.frames_per_video} frames each)")
    train_set = L.build_frame_set(train_seeds, train_machines, args.frames_per_video, size)
    val_set = L.build_frame_set(val_seeds, train_machines, args.frames_per_video, size)
    print(f"{len(train_set.images)} training frames, {len(val_set.images)} validation frames ({time.time() - began:.0f} s)")

    train_start, train_cpu_start = time.time(), time.process_time()
    model, history = L.train(
        train_set, channels=channels, num_res_units=args.res_units, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, seed=args.seed, device=device, val_fn=lambda m: L.quick_val_score(m, val_set),
        time_budget_s=args.time_budget * 60 if args.time_budget else None,
    )
    train_minutes = (time.time() - train_start) / 60
    train_cpu_minutes = (time.process_time() - train_cpu_start) / 60
    model = model.to("cpu")
    thresholds = _choose_thresholds(model, val_set)
    print(f"thresholds chosen on validation: {thresholds}")
    del train_set

    spec = L.network_spec(channels, args.res_units)
    command = " ".join(["spineai-train", "lp-ultrasound-localiser", *(argv if argv is not None else sys.argv[1:])])
    folder = export_bundle(
        model, args.out, bundle_id="lp-ultrasound-localiser-unet2d", version=args.version, task=TASK, network=spec,
        input={"channels": 1, "size": list(size), "colour": "grey (ITU-R BT.601 luminance of RGB frames)",
               "resize": "area averaging to size, whatever the frame size; masks resized back bilinearly",
               "intensity": {"type": "scale", "divide_by": 255.0, "range": [0.0, 1.0]}},
        labels=list(STRUCTURES),
        thresholds=thresholds,
        data=f"{args.generate} generated cines (SpineAITraining.ultrasound.generator), {args.frames_per_video} frames each, "
             f"machines {', '.join(train_machines)}; synthetic infant lumbar spine ultrasound, no real images",
        seed=args.seed,
        split={"by": "video", "train_videos": args.generate, "val_videos": args.val_videos, "test_videos": args.test_videos,
               "test_frames_per_video": args.test_frames_per_video, "train_machines": train_machines,
               "holdout_machine": holdout, "holdout_videos": args.holdout_videos if holdout else 0,
               "seed_offsets": SEED_OFFSETS},
        metrics=[],
        command=command,
        description="Spinal cord and CSF masks (and boxes from them) on infant lumbar ultrasound frames; "
                    "a MONAI 2-D UNet on 128x128 grey input, trained on generated cines.",
        extra_training={"epochs_run": len(history), "history": history, "train_minutes": round(train_minutes, 2),
                        "train_cpu_minutes": round(train_cpu_minutes, 2), "frames_per_video": args.frames_per_video,
                        "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                        "augmentation": "h-flip, scale 0.85-1.15, shift 8%, lower resolution, gamma, contrast, gain, noise",
                        "loss": "soft Dice (batch-pooled, sigmoid) + BCE",
                        "optimiser": f"AdamW lr {args.lr}, warm-up then cosine decay"},
        overwrite=args.overwrite,
    )
    # Post-processing parameters that localise() reads (extra metadata keys are allowed).
    _update_metadata(folder, postprocessing={
        "min_component_fraction": L.DEFAULT_MIN_COMPONENT_FRACTION,
        "max_hole_fraction": L.DEFAULT_MAX_HOLE_FRACTION,
        "box": "bounding box of the mask after dropping small components and filling small holes",
    })
    print(f"wrote model bundle {folder} ({sum(p.stat().st_size for p in folder.iterdir()) / 1e6:.1f} MB, "
          f"training {train_minutes:.1f} min wall, {train_cpu_minutes:.1f} min CPU)")
    evaluate_bundle(folder, args.report, total_minutes=(time.time() - began) / 60,
                    total_cpu_minutes=(time.process_time() - cpu_began) / 60)
    return 0


def _update_metadata(folder, **fields):
    """Set top-level metadata fields (the weights and their sha256 are untouched)."""
    from SpineAILib.models.schema import validate_metadata

    path = Path(folder) / "metadata.json"
    meta = json.loads(path.read_text())
    meta.update(fields)
    validate_metadata(meta, where=str(path))
    _write_shared(path, json.dumps(meta, indent=2) + "\n")
    return meta


def _threads_text(machine, threads):
    return f"{machine} CPU, {threads} thread{'s' if threads != 1 else ''}"


def _write_shared(path, text):
    """Atomic write (temporary sibling + rename), readable by everyone like the rest of the bundle."""
    from SpineAILib.outputs import write_text_atomic

    write_text_atomic(path, text)
    Path(path).chmod(0o644)


def evaluate_bundle(folder, report=None, total_minutes=None, total_cpu_minutes=None):
    """Measure the saved bundle on its test videos (and held-out machine), store the metrics in
    its metadata and write the report; returns 0."""
    import platform

    import torch

    from SpineAILib.workflows.ultrasound.localise import STRUCTURES, load_localiser
    from SpineAITraining.ultrasound import localise as L

    localiser = load_localiser(folder, device="cpu", backend="torch")
    meta = localiser.metadata
    split, training = meta["training"]["split"], meta["training"]
    seed = training["seed"] or 0
    offsets = split.get("seed_offsets", SEED_OFFSETS)
    holdout = split.get("holdout_machine")
    train_machines = split.get("train_machines") or L.machines_for(holdout)
    n_frames = int(split.get("test_frames_per_video", 24))
    evaluations = {}
    print(f"testing on {split['test_videos']} held-out videos of the training machines")
    evaluations["test (held-out videos, training machines)"] = L.evaluate(
        localiser, L.video_seeds(split["test_videos"], offsets["test"], seed), train_machines, n_frames)
    if holdout and split.get("holdout_videos"):
        print(f"testing on {split['holdout_videos']} videos of the held-out machine {holdout}")
        evaluations[f"held-out machine {holdout}"] = L.evaluate(
            localiser, L.video_seeds(split["holdout_videos"], offsets["holdout"], seed), [holdout], n_frames)
    # What a split by frame would report: other frames of videos (infants, views) seen in training.
    n_seen = min(int(split["test_videos"]), int(split.get("train_videos") or 0))
    if n_seen:
        print(f"testing on new frames of {n_seen} training videos (the by-frame comparison)")
        evaluations["new frames of training videos (what a by-frame split reports)"] = L.evaluate(
            localiser, L.video_seeds(n_seen, offsets["train"], seed), train_machines, n_frames)
    for name, summary in evaluations.items():
        print(f"{name}: " + ", ".join(f"{s} Dice {summary[s]['dice_pooled']:.3f} box IoU {summary[s]['box_iou_mean']:.3f} "
                                      f"AP50 {summary[s]['ap50']:.3f}" for s in STRUCTURES) + f", mAP50 {summary['map50']:.3f}")
    metrics = L.metrics_entries(
        evaluations["test (held-out videos, training machines)"],
        f"{split['test_videos']} generated test videos (seeds disjoint from training and validation), "
        f"{n_frames} frames each, machines {', '.join(train_machines)}")
    if holdout and split.get("holdout_videos"):
        for entry in L.metrics_entries(evaluations[f"held-out machine {holdout}"],
                                       f"{split['holdout_videos']} generated videos of machine {holdout}, never seen in training, "
                                       f"{n_frames} frames each"):
            entry["name"] += "_heldout_machine"
            metrics.append(entry)
    if n_seen:
        for entry in L.metrics_entries(evaluations["new frames of training videos (what a by-frame split reports)"],
                                       f"new frames ({n_frames} per video, other probe paths) of {n_seen} training videos: "
                                       "what a split by frame would report; not a generalisation figure"):
            if entry["name"].startswith(("dice_", "map50")):
                entry["name"] += "_seen_videos"
                metrics.append(entry)
    from datetime import datetime, timezone

    from SpineAITraining.common.export import git_commit

    measured = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "git_commit": git_commit(),
                "generator": "SpineAITraining.ultrasound generator at that commit",
                "machine": _threads_text(platform.processor() or platform.machine(), torch.get_num_threads())}
    _update_metadata(folder, metrics=metrics, training=dict(training, metrics_measured=measured))
    print(f"metrics written into {Path(folder) / 'metadata.json'}")
    if report:
        result = {
            "bundle_id": meta["bundle_id"], "version": meta["version"], "network": meta["network"],
            "input_size": list(localiser.input_size), "train_videos": split.get("train_videos"),
            "frames_per_video": training.get("frames_per_video", "?"), "train_machines": train_machines,
            "epochs_run": training.get("epochs_run"), "train_minutes": training.get("train_minutes") or 0.0,
            "train_cpu_minutes": training.get("train_cpu_minutes"), "thresholds": localiser.thresholds,
            "command": training.get("command"), "machine": _threads_text(training.get("machine") or platform.machine(),
                                                                     training.get("threads") or torch.get_num_threads()),
            "evaluations": evaluations, "history": training.get("history"), "total_minutes": total_minutes,
            "total_cpu_minutes": total_cpu_minutes, "measured": measured,
        }
        report = Path(report)
        report.parent.mkdir(parents=True, exist_ok=True)
        text = markdown_report(result)
        if report.is_file():  # keep a section another script keeps up to date (speed)
            old = report.read_text()
            if "<!-- speed:begin -->" in old and "<!-- speed:end -->" in old:
                text += "\n" + "<!-- speed:begin -->" + old.split("<!-- speed:begin -->", 1)[1].split("<!-- speed:end -->", 1)[0] \
                    + "<!-- speed:end -->\n"
        _write_shared(report, text)
        _write_shared(report.with_suffix(".json"), json.dumps(result, indent=2, default=float) + "\n")
        print(f"wrote report {report}")
    return 0


if __name__ == "__main__":
    from SpineAILib.errors import run_reporting_errors

    sys.exit(run_reporting_errors("spineai-train lp-ultrasound-localiser", main))
