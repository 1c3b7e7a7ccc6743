"""`spineai-train lp-ultrasound`: the per-frame bad_quality / spinal_cord / csf classifier.

    spineai-train lp-ultrasound (--data SEED_LAYOUT_DIR | --generate N_VIDEOS) --out BUNDLE
        [--network resnet18|densenet121|small] [--size PX] [--epochs N] [--seed S]
        [--hold-out-machine M] [--leaky-comparison] [--resume] [--max-minutes M]

Data: the seeds' layout (one folder of frames per video + labels.csv, read by
SpineAITraining.ultrasound.dataset) or N generated cines (generator.generate_cine)
cycling over the training machines, plus synthetic non-spine negatives (cardiac,
abdominal, CT, photographs; labelled bad_quality) for training only.

Split by video, never by frame: a seeds' layout is split stratified by machine
(70 / 15 / 15 %); with --generate the validation and test cines are generated
apart (other subjects, longer cines so that the probe moves at a realistic speed).
A held-out machine (default with --generate: curvilinear_b) is never trained on
and reports the generalisation drop. ``--leaky-comparison`` trains the same network again on a
by-frame split of the same videos and reports its (inflated) test score beside.

Training: BCE with per-label pos_weight, AdamW, cosine learning rate, the seeds'
augmentations (preprocess.Augmenter); each epoch is reseeded from (seed, epoch),
checkpointed to BUNDLE.work/ (safetensors + JSON, never pickles; ``--resume``
continues and repeats the run it continues); early stopping on the validation macro ROC AUC (or loss: --select);
TensorBoard logs in BUNDLE.work/tensorboard. A SpineAI dataset export (``spineai dataset export``)
is a seeds' layout with a split column: its split is used as it is. Under ``torchrun`` the
frames of each epoch are sharded over the processes (DistributedDataParallel; see
SpineAITraining/common/distributed.py); rank 0 validates and writes.
The smoothing window (0, 100, 200, 300 ms) and the thresholds are chosen on the
validation cines, the thresholds on the smoothed probabilities for the clinical
priorities (thresholds.py). The bundle holds the best validation epoch's
weights; BUNDLE/report/ holds metrics.json, metrics.md and the pictures.
"""

import argparse
import json
import logging
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np

BUNDLE_ID = "lp-ultrasound-classifier"
VERSION = "1.0.0"
DEFAULT_SIZES = {"resnet18": 224, "densenet121": 224, "small": 128}
DEFAULT_HOLD_OUT = "curvilinear_b"
WINDOW_TOLERANCE = 0.005  # validation F1 a longer smoothing window may cost and still be preferred
SIZE_LIMIT_MB = 25.0  # weights above this are stored as float16 with --storage auto

log = logging.getLogger("spineai.train.lp_ultrasound")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="spineai-train lp-ultrasound", description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="seeds' layout folder (video folders + labels.csv)")
    source.add_argument("--generate", type=int, metavar="N_VIDEOS", help="train on N generated cines")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--network", choices=("resnet18", "densenet121", "small"), default="resnet18")
    p.add_argument("--size", type=int, help="model input size in px (default 224 for resnet18/densenet121, 128 for small)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=6, help="early stopping: epochs without a better validation score")
    p.add_argument("--select", choices=("auc", "loss"), default="auc",
                   help="validation score for the best epoch and early stopping: macro ROC AUC (default; steadier than the loss "
                        "on a few validation videos) or BCE loss")
    p.add_argument("--min-epochs", type=int, default=6, help="never stop before this many epochs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3, 2e-3 for the small network)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hold-out-machine", help=f"machine never trained on (default with --generate: {DEFAULT_HOLD_OUT}; 'none' for none)")
    p.add_argument("--machines", help="comma-separated generator machines to train on (default: all but the held-out one)")
    p.add_argument("--frames-per-video", type=int, default=48)
    p.add_argument("--eval-videos", type=int, default=24, help="--generate: validation and test cines each (new subjects)")
    p.add_argument("--eval-frames-per-video", type=int, default=48,
                   help="--generate: frames of each validation/test/held-out cine (longer than training cines: the probe "
                        "moves at a realistic speed, so the smoothing window is chosen on realistic timing)")
    p.add_argument("--held-out-videos", type=int, default=12, help="generated cines of the held-out machine")
    p.add_argument("--negatives", type=int, help="synthetic non-spine training cines of 24 frames (default: N/8, at least 2)")
    p.add_argument("--split", default="0.7,0.15,0.15", help="train,val,test fractions of the videos")
    p.add_argument("--screen-fraction", type=float, default=0.4,
                   help="share of training cines embedded in a random scanner screen layout (header bar, side text, smaller image)")
    p.add_argument("--leaky-comparison", action="store_true", help="also train on a by-frame split and report its score")
    p.add_argument("--leaky-max-minutes", type=float, help="time budget of the by-frame comparison model (default: --max-minutes)")
    p.add_argument("--pretrained", choices=("auto", "yes", "no"), default="auto", help="ImageNet weights (auto: when they can be fetched)")
    p.add_argument("--storage", choices=("auto", "fp32", "fp16"), default="auto", help=f"weights in the bundle (auto: fp16 above {SIZE_LIMIT_MB:g} MB)")
    p.add_argument("--windows", default="0,100,200,300",
                   help="candidate temporal smoothing windows in ms; the one with the best validation F1 is kept (0 = none)")
    p.add_argument("--cord-recall", type=float, default=0.98, help="spinal_cord threshold: recall target on validation")
    p.add_argument("--csf-precision", type=float, default=0.98, help="csf threshold: precision target on validation")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the CPUs available)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--max-minutes", type=float, help="stop training (keeping the best epoch) after this long")
    p.add_argument("--resume", action="store_true", help="continue from BUNDLE.work/")
    p.add_argument("--evaluate-only", action="store_true",
                   help="no training: take the best weights in BUNDLE.work/ (same data arguments), choose the window and "
                        "thresholds, evaluate and export again")
    p.add_argument("--work", type=Path, help="checkpoint folder (default: BUNDLE.work)")
    p.add_argument("--bundle-id", default=BUNDLE_ID)
    p.add_argument("--version", default=VERSION)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs (default: BUNDLE.work/tensorboard)")
    args = p.parse_args(argv)
    args.size = args.size or DEFAULT_SIZES[args.network]
    args.lr = args.lr or (2e-3 if args.network == "small" else 1e-3)
    fractions = [float(v) for v in args.split.split(",")]
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not 0.99 < sum(fractions) < 1.01:
        p.error("--split needs three fractions that sum to 1, e.g. 0.7,0.15,0.15")
    args.fractions = fractions
    if args.generate is not None and args.generate < 3:
        p.error("--generate needs at least 3 videos (train, validation, test)")
    return args


# ---------------------------------------------------------------------------- data


# ---------------------------------------------------------------------------- torch plumbing


def _flat_items(videos):
    """(video index, frame index) for every frame."""
    return np.array([(i, j) for i, v in enumerate(videos) for j in range(v.n)], dtype=np.int64).reshape(-1, 2)


def make_batch(videos, items, transform, rng):
    x = np.stack([transform(videos[i].frames[j], videos[i].box, rng) for i, j in items])
    y = np.stack([videos[i].labels[j] for i, j in items]).astype(np.float32)
    return x, y


def predict_videos(model, videos, transform, device, batch_size=64):
    """Per video (N, L) probabilities, eval transform, eager torch."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for v in videos:
            probs = []
            for start in range(0, v.n, batch_size):
                x = np.stack([transform(f, v.box) for f in v.frames[start : start + batch_size]])
                logits = model(torch.from_numpy(x).to(device)).float().cpu().numpy()
                probs.append(1.0 / (1.0 + np.exp(-logits)))
            out.append(np.concatenate(probs))
    return out


def train_model(args, parts, pre, work, label="main", progress=True, dist=None):
    """Train one network on parts['train'], early-stopped on parts['val']; returns
    (model with the best weights, history, info). ``dist``: a distributed.Distributed
    (torchrun): each process trains on its shard, rank 0 validates, logs and checkpoints."""
    import torch
    from safetensors.torch import load_file, save_file

    from SpineAITraining.common.checkpoint import load_tensors, save_tensors
    from SpineAITraining.common.distributed import Distributed
    from SpineAITraining.common.loop import learning_rate, optimiser_step
    from SpineAITraining.common.tracking import tracker
    from SpineAITraining.ultrasound.classifier import bce_loss, build_classifier, count_parameters, pos_weights
    from SpineAITraining.ultrasound.metrics import evaluate
    from SpineAITraining.ultrasound.preprocess import EvalTransform, TrainTransform

    dist = dist or Distributed()
    main_rank = dist.is_main
    progress = progress and main_rank
    device = dist.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, init = build_classifier(args.network, args.pretrained)
    model = model.to(device)
    train, val = parts["train"], parts["val"]
    items = _flat_items(train)
    all_labels = np.concatenate([v.labels for v in train])
    pw = pos_weights(all_labels)
    criterion = bce_loss(pw).to(device)
    plain = torch.nn.BCEWithLogitsLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    local_items = len(items) // dist.world_size if dist.enabled else len(items)  # DistributedSampler, drop_last
    if local_items == 0:
        raise ValueError(f"{len(items)} training frames cannot be shared by {dist.world_size} processes")
    steps_per_epoch = max(1, local_items // args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    train_tf, eval_tf = TrainTransform(pre), EvalTransform(pre)
    work.mkdir(parents=True, exist_ok=True)
    history, best, bad_epochs, start_epoch = [], math.inf, 0, 0
    if args.resume and (work / "state.json").is_file():
        state = load_tensors(work, model, optimizer)
        history, best, bad_epochs, start_epoch = state["history"], state["best"], state["bad_epochs"], state["epoch"] + 1
        if main_rank:
            log.info("[%s] resumed after epoch %d (best validation score %.4f)", label, state["epoch"], best)
    net = dist.wrap(model, device)  # DistributedDataParallel under torchrun; the model itself otherwise
    board = tracker(work / "tensorboard", enabled=main_rank and not getattr(args, "no_tensorboard", False))
    t_start = time.perf_counter()
    from tqdm import tqdm

    if getattr(args, "evaluate_only", False):
        if not (work / "best.safetensors").is_file():
            raise FileNotFoundError(f"--evaluate-only needs {work / 'best.safetensors'} from an earlier run")
        state = json.loads((work / "state.json").read_text()) if (work / "state.json").is_file() else {}
        history, best, start_epoch = state.get("history", []), state.get("best", math.inf), args.epochs
    for epoch in range(start_epoch, args.epochs):
        stop = None
        if bad_epochs >= args.patience and epoch >= args.min_epochs:
            stop = "patience"
        elif args.max_minutes and (time.perf_counter() - t_start) / 60 > args.max_minutes:
            log.warning("[%s] time budget of %.0f min reached before epoch %d; keeping the best epoch", label, args.max_minutes, epoch + 1)
            stop = "time"
        if dist.broadcast(stop):  # rank 0's clock and scores decide for every process
            break
        if dist.enabled:  # each process its own shard of one seeded permutation, its own augmentation draws
            rng = np.random.default_rng([args.seed, epoch, 17, dist.rank])
            order = items[dist.shard(len(items), args.seed, epoch)]
        else:
            rng = np.random.default_rng([args.seed, epoch, 17])
            order = items[rng.permutation(len(items))]
        torch.manual_seed(args.seed * 1000 + epoch)
        model.train()
        t0 = time.perf_counter()
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"[{label}] epoch {epoch + 1}/{args.epochs}", disable=not progress, leave=False, mininterval=2)
        for step in bar:
            lr = learning_rate(epoch * steps_per_epoch + step, total_steps, args.lr, warmup=steps_per_epoch, floor=0.02)
            batch = order[step * args.batch_size : (step + 1) * args.batch_size]
            x, y = make_batch(train, batch, train_tf, rng)
            x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
            losses.append(optimiser_step(optimizer, criterion(net(x), y), lr))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        train_time = time.perf_counter() - t0
        if not main_rank:  # rank 0 validates and decides; the others wait for its verdict
            history, best, bad_epochs = dist.broadcast(None)
            continue
        probs = predict_videos(model, val, eval_tf, device)
        p = np.concatenate(probs)
        yv = np.concatenate([v.labels for v in val])
        with torch.no_grad():
            val_loss = float(plain(torch.logit(torch.from_numpy(p).clamp(1e-6, 1 - 1e-6)), torch.from_numpy(yv.astype(np.float64))))
        table = evaluate(yv, (p >= 0.5).astype(int), p)
        entry = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            "val_loss": val_loss,
            "val_f1_micro": table["overall"]["f1_micro"],
            "val_auc_macro": table["overall"]["roc_auc_macro"],
            "lr": lr,
            "seconds": round(train_time, 1),
            "frames_per_s": round(len(order[: steps_per_epoch * args.batch_size]) * dist.world_size / train_time, 1),
        }
        if dist.enabled:
            entry["processes"] = dist.world_size
        history.append(entry)
        # lower is better for both: the loss, or 1 - macro AUC
        score = val_loss if args.select == "loss" else 1.0 - (entry["val_auc_macro"] if entry["val_auc_macro"] is not None else 0.0)
        entry["score"] = score
        improved = score < best - 1e-4
        if improved:
            best, bad_epochs = score, 0
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}, str(work / "best.safetensors"))
        else:
            bad_epochs += 1
        log.info(
            "[%s] epoch %d: train loss %.4f, val loss %.4f, val F1 %.4f, AUC %s, %.0f s (%.1f frames/s)%s",
            label, epoch + 1, entry["train_loss"], val_loss, entry["val_f1_micro"],
            f"{entry['val_auc_macro']:.4f}" if entry["val_auc_macro"] is not None else "n/a",
            train_time, entry["frames_per_s"], " *" if improved else "",
        )
        board.scalars(epoch + 1, {k: entry[k] for k in ("train_loss", "val_loss", "val_f1_micro", "val_auc_macro", "lr",
                                                           "frames_per_s") if entry.get(k) is not None}, prefix=f"{label}/")  # fmt: skip
        save_tensors(work, model, optimizer, {"epoch": epoch, "history": history, "best": best, "bad_epochs": bad_epochs, "label": label})
        dist.broadcast((history, best, bad_epochs))
    in_sync = dist.replicas_in_sync(model)
    board.close()
    if not main_rank:
        return model, history, {"processes": dist.world_size, "replicas_in_sync": in_sync}
    if (work / "best.safetensors").is_file():
        model.load_state_dict(load_file(str(work / "best.safetensors")))
    model.eval()
    if getattr(args, "evaluate_only", False):
        init = json.loads((work / "info.json").read_text()).get("init", init) if (work / "info.json").is_file() else init
    info = {"init": init, "pos_weight": [round(float(v), 4) for v in pw], "parameters": count_parameters(model),
            "epochs_run": len(history), "selection": args.select, "best_val_score": best,
            "best_epoch": next((h["epoch"] for h in history if h.get("score") == best), None), "device": str(device),
            "train_minutes": round((time.perf_counter() - t_start) / 60, 2)}
    if dist.enabled:
        info.update(processes=dist.world_size, backend=dist.backend, replicas_in_sync=in_sync)
    if getattr(args, "evaluate_only", False) and (work / "info.json").is_file():
        info["train_minutes"] = json.loads((work / "info.json").read_text()).get("train_minutes")
    else:
        (work / "info.json").write_text(json.dumps(info))
    return model, history, info


# ---------------------------------------------------------------------------- evaluation


def smoothed(probs_per_video, videos, window_ms):
    from SpineAILib.workflows.ultrasound.inference import smooth_centred

    return [smooth_centred(p, v.times_ms, window_ms) for p, v in zip(probs_per_video, videos)]


def evaluate_part(probs_per_video, videos, thresholds, labels, window_ms):
    """The seeds' table for the deployed pipeline (smoothing, thresholds, bad-quality gate)."""
    from SpineAILib.workflows.ultrasound.inference import decide
    from SpineAITraining.ultrasound.metrics import evaluate

    p = np.concatenate(smoothed(probs_per_video, videos, window_ms))
    y = np.concatenate([v.labels for v in videos])
    calls = decide(p, thresholds, labels)
    return evaluate(y, calls, p, labels), y, p


def evaluate_raw(probs_per_video, videos, thresholds, labels):
    """Per frame without smoothing (thresholds and gate as deployed)."""
    from SpineAILib.workflows.ultrasound.inference import decide
    from SpineAITraining.ultrasound.metrics import evaluate

    p = np.concatenate(probs_per_video)
    y = np.concatenate([v.labels for v in videos])
    return evaluate(y, decide(p, thresholds, labels), p, labels)


def _bundle_metrics(tables, thresholds):
    """The headline numbers for metadata.json, each naming the data it was measured on."""
    out = []
    for name, data in (("test", "test videos (split by video), deployed pipeline"), ("held_out_machine", "held-out machine videos"),
                       ("by_frame_leaky", "by-frame split test frames (leaky, for comparison)")):
        table = tables.get(name)
        if not table:
            continue
        o, per = table["overall"], table["per_label"]
        for key in ("f1_micro", "accuracy", "exact_match", "hamming_loss", "jaccard_micro", "roc_auc_macro"):
            out.append({"name": f"{key}", "value": o[key], "data": data})
        out.append({"name": "recall_spinal_cord", "value": per["spinal_cord"]["recall"], "data": data})
        out.append({"name": "fn_spinal_cord", "value": per["spinal_cord"]["fn"], "data": data})
        out.append({"name": "precision_csf", "value": per["csf"]["precision"], "data": data})
        out.append({"name": "fp_csf", "value": per["csf"]["fp"], "data": data})
    return out


def _fp16_state(model):
    return {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}


def _state_mb(model):
    return sum(v.numel() * v.element_size() for v in model.state_dict().values()) / 1e6


# ---------------------------------------------------------------------------- main


def main(argv=None):
    from SpineAITraining.common.distributed import run_main

    return run_main(parse_args(list(sys.argv[1:] if argv is None else argv)), argv, _main)


def _main(args, argv, dist):
    logging.basicConfig(level=logging.INFO if dist.is_main else logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from SpineAILib.errors import InputError, OutputError
    from SpineAILib.workflows.ultrasound.inference import LABELS
    from SpineAILib.workflows.ultrasound.preprocess import Preprocessor, content_box
    from SpineAITraining.ultrasound.thresholds import choose_thresholds

    if args.out.exists() and not args.overwrite and not args.resume:
        raise OutputError(f"{args.out} already exists (pass --overwrite to replace it)")
    if dist.enabled and (args.leaky_comparison or args.evaluate_only):
        raise InputError("--leaky-comparison and --evaluate-only run in one process; leave them out under torchrun")
    work = args.work or args.out.with_name(args.out.name + ".work")
    t0 = time.perf_counter()
    labels = list(LABELS)
    pre = Preprocessor(size=(args.size, args.size))

    # -- data
    from SpineAITraining.ultrasound.dataset import (
        generated_videos,
        given_split,
        layout_videos,
        negative_videos,
        split_frames,
        split_videos,
    )
    from SpineAITraining.ultrasound.machines import MACHINES

    hold_out = args.hold_out_machine
    if args.generate is not None:
        hold_out = DEFAULT_HOLD_OUT if hold_out is None else hold_out
    hold_out = None if hold_out in (None, "none", "") else hold_out
    if args.generate is not None:
        machines = args.machines.split(",") if args.machines else [m for m in MACHINES if m != hold_out]
        if hold_out and hold_out not in MACHINES:
            raise InputError(f"unknown machine {hold_out!r}; choose one of {', '.join(MACHINES)}")
        log.info("generating %d training cines over %s (%d frames each)", args.generate, ", ".join(machines), args.frames_per_video)
        videos = generated_videos(args.generate, machines, args.seed, args.frames_per_video)
        ef = args.eval_frames_per_video
        generated_eval = {
            "val": generated_videos(args.eval_videos, machines, args.seed + 1000, ef, prefix="val"),
            "test": generated_videos(args.eval_videos, machines, args.seed + 2000, ef, prefix="test"),
        }
        n_held = args.held_out_videos
        held = generated_videos(n_held, [hold_out], args.seed + 1, ef, prefix="held") if hold_out else []
        data_desc = (f"generated infant lumbar-spine cines (SpineAITraining.ultrasound.generator, seed {args.seed}, machines "
                     f"{', '.join(machines)}): {args.generate} training cines of {args.frames_per_video} frames; "
                     f"{args.eval_videos} validation and {args.eval_videos} test cines of {ef} frames (other subjects)"
                     + (f"; held-out machine {hold_out}: {n_held} cines of {ef} frames" if hold_out else ""))
    else:
        if not args.data.is_dir():
            raise InputError(f"{args.data}: no such folder")
        all_videos = layout_videos(args.data)
        held = [v for v in all_videos if hold_out and v.machine == hold_out]
        videos = [v for v in all_videos if not (hold_out and v.machine == hold_out)]
        data_desc = f"seeds' layout {args.data} ({len(all_videos)} videos)" + (f"; held-out machine {hold_out}: {len(held)} videos" if hold_out else "")
        generated_eval = None
    n_neg = args.negatives if args.negatives is not None else max(2, len(videos) // 8)
    negatives = negative_videos(n_neg, args.seed, size=(224, 224)) if n_neg else []
    neg_test = negative_videos(max(2, n_neg // 3), args.seed + 99, size=(224, 224)) if n_neg else []
    dataset_split = None if generated_eval else given_split(videos)
    if generated_eval:
        parts = {"train": videos, **generated_eval}
    elif dataset_split is not None:
        parts = dataset_split
        data_desc += "; split by video as the dataset's labels table gives it"
    else:
        parts = split_videos(videos, args.fractions, args.seed)
    if args.screen_fraction > 0:  # training cines only: validation and test stay as recorded
        from SpineAITraining.ultrasound.preprocess import scanner_screen

        rng = np.random.default_rng([args.seed, 8080])
        for v in parts["train"] + negatives:
            if rng.random() < args.screen_fraction:
                v.frames = scanner_screen(v.frames, rng)
                v.extra["screen"] = True
    for v in [x for part in parts.values() for x in part] + held + negatives + neg_test:
        v.box = content_box(v.frames, threshold=pre.content_threshold)
    parts["train"] = parts["train"] + negatives
    log.info("split by video: %s; negatives: %d training, %d test cines (%.0f s)",
             ", ".join(f"{k} {len(v)} videos / {sum(x.n for x in v)} frames" for k, v in parts.items()),
             len(negatives), len(neg_test), time.perf_counter() - t0)

    # -- train
    model, history, info = train_model(args, parts, pre, work / "by-video", "by-video", progress=not args.quiet, dist=dist)
    if not dist.is_main:
        return 0  # rank 0 evaluates and writes the bundle
    from SpineAITraining.ultrasound.preprocess import EvalTransform

    eval_tf = EvalTransform(pre)
    device = next(model.parameters()).device
    probs = {name: predict_videos(model, parts[name], eval_tf, device) for name in ("val", "test")}
    val_videos = parts["val"]
    rules = {"spinal_cord": {"rule": "recall", "target": args.cord_recall}, "csf": {"rule": "precision", "target": args.csf_precision}}
    window_search = []
    for window in [float(w) for w in args.windows.split(",")]:
        _, yv, pv = evaluate_part(probs["val"], val_videos, {k: 0.5 for k in labels}, labels, window)
        candidate, notes = choose_thresholds(yv, pv, labels, rules)
        f1 = evaluate_part(probs["val"], val_videos, candidate, labels, window)[0]["overall"]["f1_micro"]
        window_search.append({"window_ms": window, "val_f1_micro": f1, "thresholds": candidate, "notes": notes})
        log.info("smoothing %4.0f ms: thresholds %s, validation F1 %.4f", window, candidate, f1)
    # the longest window within half an F1 point of the best: steadier calls across a cine for (almost) nothing
    top = max(w["val_f1_micro"] for w in window_search)
    chosen = max((w for w in window_search if w["val_f1_micro"] >= top - WINDOW_TOLERANCE), key=lambda w: w["window_ms"])
    args.window_ms, thresholds, threshold_notes = chosen["window_ms"], chosen["thresholds"], chosen["notes"]
    log.info("chosen on validation: smoothing %.0f ms, thresholds %s", args.window_ms, thresholds)

    tables, curves = {}, {}
    tables["test"], y_test, p_test = evaluate_part(probs["test"], parts["test"], thresholds, labels, args.window_ms)
    curves["test"] = (y_test, p_test)
    tables["test_no_smoothing"] = evaluate_raw(probs["test"], parts["test"], thresholds, labels)
    tables["validation"] = evaluate_part(probs["val"], val_videos, thresholds, labels, args.window_ms)[0]
    if held:
        probs["held"] = predict_videos(model, held, eval_tf, device)
        tables["held_out_machine"], y_h, p_h = evaluate_part(probs["held"], held, thresholds, labels, args.window_ms)
        curves["held_out_machine"] = (y_h, p_h)
    if neg_test:
        tables["non_spine_synthetic"] = evaluate_part(predict_videos(model, neg_test, eval_tf, device), neg_test, thresholds, labels, args.window_ms)[0]

    leaky_info = None
    if args.leaky_comparison:
        pool = [v for part in ("train", "val", "test") for v in parts[part] if v.kind == "spine"]
        leaky_parts = split_frames(pool, args.fractions, args.seed)
        leaky_parts["train"] = leaky_parts["train"] + negatives
        leaky_args = argparse.Namespace(**vars(args))
        leaky_args.max_minutes = args.leaky_max_minutes or args.max_minutes
        leaky_model, leaky_history, leaky_info = train_model(leaky_args, leaky_parts, pre, work / "by-frame", "by-frame (leaky)", progress=not args.quiet)
        lp = {name: predict_videos(leaky_model, leaky_parts[name], eval_tf, device) for name in ("val", "test")}
        # frames of a by-frame part are a random subset of each video: no smoothing, for both sides of the comparison
        _, ylv, plv = evaluate_part(lp["val"], leaky_parts["val"], {k: 0.5 for k in labels}, labels, 0.0)
        leaky_thresholds, _ = choose_thresholds(ylv, plv, labels, rules)
        tables["by_frame_leaky"] = evaluate_raw(lp["test"], leaky_parts["test"], leaky_thresholds, labels)
        leaky_info = dict(leaky_info, thresholds=leaky_thresholds, history=leaky_history)
        del leaky_model

    # -- export
    from SpineAILib.outputs import write_text_atomic
    from SpineAITraining.common.export import export_bundle
    from SpineAITraining.ultrasound.classifier import network_spec

    spec = network_spec(args.network)
    storage = args.storage if args.storage != "auto" else ("fp16" if _state_mb(model) > SIZE_LIMIT_MB else "fp32")
    state = _fp16_state(model) if storage == "fp16" else model.state_dict()
    split_record = {
        "method": ("by video: separately generated validation/test cines (other subjects)" if generated_eval
                   else "by video, as the dataset's split column gives it" if dataset_split is not None
                   else "by video, stratified by machine"),
        "fractions": None if generated_eval or dataset_split is not None else args.fractions,
        "smoothing_window_search": [{k: w[k] for k in ("window_ms", "val_f1_micro")} for w in window_search],
        **{k: [v.name for v in parts[k] if v.kind == "spine"] for k in ("train", "val", "test")},
        "negatives_train": [f"{v.name} ({v.kind})" for v in negatives],
        "held_out_machine": hold_out,
        "held_out": [v.name for v in held],
    }
    folder = export_bundle(
        {k: v for k, v in state.items()},
        args.out,
        bundle_id=args.bundle_id,
        version=args.version,
        task="lp-ultrasound",
        network=spec,
        input=pre.metadata(),
        labels=labels,
        data=data_desc,
        seed=args.seed,
        split=split_record,
        metrics=_bundle_metrics(tables, thresholds),
        thresholds=thresholds,
        command=shlex.join(["spineai-train", "lp-ultrasound", *(sys.argv[1:] if argv is None else argv)]),
        description=(f"Per-frame bad_quality / spinal_cord / csf for infant lumbar-spine ultrasound cines; {args.network} "
                     f"({spec['name']}) at {args.size}x{args.size}, grey, crop 80 % + CLAHE; weights stored {storage}."),
        extra_training={
            "network_choice": args.network,
            "initialisation": info["init"],
            "storage": storage,
            "threshold_rules": threshold_notes,
            "pos_weight": dict(zip(labels, info["pos_weight"])),
            "epochs_run": info["epochs_run"],
            "train_minutes": info["train_minutes"],
            "processes": info.get("processes", 1),
            **({"replicas_in_sync": info["replicas_in_sync"]} if "replicas_in_sync" in info else {}),
            "augmentations": "hue, saturation, tint, brightness, contrast, gamma, flips, rotation, zoom, shift, blur, speckle, burnt-in text, JPEG",
        },
        overwrite=args.overwrite or args.resume,
    )
    meta_path = Path(folder) / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["inference"] = {
        "smoothing": "centred moving average of probabilities over window_ms (causal EMA, tau = window/2, in live mode)",
        "smoothing_window_ms": args.window_ms,
        "decision": "p >= threshold per label; bad_quality => spinal_cord = csf = 0",
        "backend": "ONNX Runtime on model.onnx (CPU, or CUDA with onnxruntime-gpu); torch with --engine torch",
    }
    write_text_atomic(meta_path, json.dumps(meta, indent=2) + "\n")
    for path in Path(folder).iterdir():  # shareable bundle files (atomic writers create them private)
        if path.is_file():
            path.chmod(0o644)

    # -- report beside the weights
    report = Path(folder) / "report"
    report.mkdir(exist_ok=True)
    from SpineAITraining.ultrasound import plots
    from SpineAITraining.ultrasound.metrics import markdown_table

    for name, (y, p) in curves.items():
        plots.roc_curves(y, p, labels, report / f"roc_{name}.png", thresholds, title=f"ROC, {name.replace('_', ' ')}")
    for name in ("test", "held_out_machine", "by_frame_leaky"):
        if name in tables:
            plots.confusion_matrices(tables[name], report / f"confusion_{name}.png", title=name.replace("_", " "))
    plots.training_curves(history, report / "training_curves.png")
    example = parts["test"][0]
    ex_probs = smoothed([probs["test"][0]], [example], args.window_ms)[0]
    from SpineAILib.workflows.ultrasound.inference import decide
    from SpineAILib.workflows.ultrasound.pictures import plot_timeline

    plot_timeline(example.times_ms, ex_probs, decide(ex_probs, thresholds, labels), thresholds, report / "timeline_test_example.png",
                   title=f"{example.name} ({example.machine}): smoothed probabilities", truth=example.labels)
    order = [k for k in ("test", "test_no_smoothing", "by_frame_leaky", "held_out_machine", "validation", "non_spine_synthetic") if k in tables]
    metrics = {
        "bundle": str(folder),
        "network": args.network,
        "input_size": args.size,
        "thresholds": thresholds,
        "threshold_rules": threshold_notes,
        "smoothing_window_ms": args.window_ms,
        "tables": {k: tables[k] for k in order},
        "history": history,
        "training": info,
        "leaky_training": leaky_info,
        "data": data_desc,
        "split": split_record,
        "minutes_total": round((time.perf_counter() - t0) / 60, 2),
        "evaluate_only": bool(args.evaluate_only),
    }
    (report / "metrics.json").write_text(json.dumps(metrics, indent=1))
    md = [
        f"# {args.bundle_id} {args.version}: {args.network} at {args.size}x{args.size}",
        "",
        f"Data: {data_desc}.",
        f"Smoothing window chosen on validation: {args.window_ms:g} ms (F1 by window: "
        + ", ".join(f"{w['window_ms']:g} ms {w['val_f1_micro']:.3f}" for w in window_search) + "). "
        "Thresholds (chosen on validation, smoothed): "
        + ", ".join(f"{k} {v:.3f}" for k, v in thresholds.items()) + ".",
        "",
        "Columns: test = test videos (split by video) through the deployed pipeline (smoothing, thresholds, "
        "bad quality => no cord/CSF); test_no_smoothing = the same frames without temporal smoothing; "
        "by_frame_leaky = a second model trained and tested on a by-frame split of the same videos, per frame "
        "(frames of one video on both sides: inflated; compare with test_no_smoothing); held_out_machine = a machine "
        "never trained on (deployed pipeline); "
        "non_spine_synthetic = cardiac/abdominal/CT/photo negatives (every frame should be bad_quality, no cord/CSF).",
        "",
        markdown_table({k: tables[k] for k in order}),
        f"Training: {info['epochs_run']} epochs (best validation epoch {info.get('best_epoch')}), {info['train_minutes']} min, "
        f"initialisation {info['init']}, {info['parameters']:,} parameters, weights stored {storage}."
        + (f" The by-frame (leaky) model: {leaky_info['epochs_run']} epochs, {leaky_info['train_minutes']} min." if leaky_info else ""),
        "",
        "Threshold rules (validation): " + "; ".join(
            f"{k}: {v['rule']}" + (f" {v['target']}" if "target" in v else "")
            + (f", clamped from {v['clamped_from']} (at the clamp: recall {v['at_clamp']['recall']:.3f}, "
               f"precision {v['at_clamp']['precision']:.3f})" if "clamped_from" in v else "")
            for k, v in threshold_notes.items()) + ".",
    ]
    (report / "metrics.md").write_text("\n".join(md) + "\n")
    log.info("wrote %s (%.1f min); test F1 (micro) %.4f%s", folder, (time.perf_counter() - t0) / 60, tables["test"]["overall"]["f1_micro"],
             f", held-out machine {tables['held_out_machine']['overall']['f1_micro']:.4f}" if "held_out_machine" in tables else "")
    if not args.no_tensorboard:  # the final table beside the curves
        from SpineAITraining.common.tracking import tracker

        board = tracker(work / "by-video" / "tensorboard")
        board.text("metrics", "\n".join(md), step=len(history))
        board.close()
    print(markdown_table({k: tables[k] for k in order}))
    return 0


if __name__ == "__main__":  # torchrun -m SpineAITraining.ultrasound.train_classifier works like the spineai-train route
    from SpineAILib.errors import run_reporting_errors
    from SpineAITraining.common.distributed import end_launched_process

    sys.exit(end_launched_process(run_reporting_errors("spineai-train", main)))
