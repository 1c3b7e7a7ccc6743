"""Train and evaluate the ultrasound localiser: a small MONAI 2-D UNet for spinal cord and CSF masks.

Data: generated cines (``generator.generate_cine``), each one video of one infant,
so every split is by video: training, validation (model selection, threshold) and
test videos come from disjoint generator seeds. One machine can be held out of
training altogether (``holdout_machine``) and tested on its own, the equivalent of
the seeds' external Set 3.

Network input/output and the post-processing are exactly those of the inference
module ``SpineAILib.workflows.ultrasound.localise`` (its ``prepare_frames`` and
``postprocess`` are reused here), so the test metrics are measured on
the path users run: frame -> 128 x 128 -> sigmoid maps -> back to the frame's size ->
threshold -> small components dropped -> boxes.

Metrics per structure (``evaluate``): pooled Dice and IoU over all test pixels,
mean Dice over frames that show the structure, frame-level detection accuracy
(found something iff the structure is there), mean box IoU over frames that show the
structure (a miss counts 0), and AP at box IoU 0.5 (one box per frame, scored by the
frame's highest probability; all-point interpolated precision-recall area, as in
PASCAL VOC / COCO); mAP@0.5 is the mean over the two structures.
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from SpineAILib.workflows.ultrasound.localise import (
    DEFAULT_INPUT_SIZE,
    DEFAULT_MAX_HOLE_FRACTION,
    DEFAULT_MIN_COMPONENT_FRACTION,
    MASK_KEYS,
    STRUCTURES,
    TASK,
    Localiser,
    postprocess,
    predict_probabilities,
    prepare_frames,
)

DEFAULT_CHANNELS = (8, 16, 32, 64, 128)
DEFAULT_HOLDOUT = "curvilinear_b"


# -- data ---------------------------------------------------------------------------------


@dataclass
class FrameSet:
    """Frames at the network's size with their target masks, and the video each came from."""

    images: np.ndarray  # (N, 1, h, w) float32 0..1
    targets: np.ndarray  # (N, 2, h, w) uint8 0/1: spinal_cord, csf
    video: np.ndarray  # (N,) int video index
    machines: list  # per video


def machines_for(holdout_machine):
    from .machines import MACHINES

    names = list(MACHINES)
    if holdout_machine:
        if holdout_machine not in names:
            from SpineAILib.errors import InputError

            raise InputError(f"unknown machine to hold out {holdout_machine!r}; machines: {', '.join(names)}")
        names.remove(holdout_machine)
    return names


def video_seeds(n, first, seed):
    """Generator seeds of ``n`` videos: disjoint ranges per split (``first`` = split offset)."""
    return [int(seed) * 1_000_003 + first + v for v in range(n)]


def generate_cines(seeds, machines, n_frames):
    from .generator import generate_cine

    for v, video_seed in enumerate(seeds):
        yield generate_cine(video_seed, machine=machines[v % len(machines)], n_frames=n_frames)


def downsample_masks(masks, size):
    """(N, H, W) bool -> (N, h, w) uint8: a target pixel is on when at least half its area is."""
    import cv2

    rows, cols = int(size[0]), int(size[1])
    out = np.empty((masks.shape[0], rows, cols), np.uint8)
    for i, mask in enumerate(masks):
        area = cv2.resize(mask.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
        out[i] = area >= 0.5
    return out


def build_frame_set(seeds, machines, n_frames, size=DEFAULT_INPUT_SIZE, log=print):
    images, targets, video, used = [], [], [], []
    start = time.time()
    for v, cine in enumerate(generate_cines(seeds, machines, n_frames)):
        images.append(prepare_frames(cine.frames, size))
        targets.append(np.stack([downsample_masks(cine.cord_masks, size), downsample_masks(cine.csf_masks, size)], 1))
        video.append(np.full(cine.n_frames, v))
        used.append(cine.machine)
        if log and (v + 1) % 50 == 0:
            log(f"  generated {v + 1}/{len(seeds)} videos ({time.time() - start:.0f} s)")
    return FrameSet(np.concatenate(images), np.concatenate(targets), np.concatenate(video), used)


# -- network and training -----------------------------------------------------------------


def network_spec(channels=DEFAULT_CHANNELS, num_res_units=1):
    channels = [int(c) for c in channels]
    return {
        "name": "UNet",
        "args": {
            "spatial_dims": 2, "in_channels": 1, "out_channels": len(STRUCTURES), "channels": channels,
            "strides": [2] * (len(channels) - 1), "num_res_units": int(num_res_units), "norm": "batch",
        },
    }  # fmt: skip


def augment(images, targets, rng):
    """Batch augmentation (torch tensors): horizontal flip, scale/shift, lower resolution (blur),
    gain, contrast, gamma, noise."""
    import torch
    import torch.nn.functional as F

    n = images.shape[0]
    flip = torch.from_numpy(rng.random(n) < 0.5)
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    targets = torch.where(flip[:, None, None, None], targets.flip(-1), targets)
    # Scale 0.85..1.15 and shift up to 8 % of the frame (probe depth / position differ between scans).
    scale = torch.from_numpy(rng.uniform(0.85, 1.15, n).astype(np.float32))
    shift = torch.from_numpy(rng.uniform(-0.08, 0.08, (n, 2)).astype(np.float32))
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    targets = (F.grid_sample(targets, grid, mode="bilinear", padding_mode="zeros", align_corners=False) >= 0.5).float()
    # Lower-resolution scanners: half the frames down-sampled (to 45-90 %) and back up.
    for i in np.flatnonzero(rng.random(n) < 0.5):
        factor = float(rng.uniform(0.45, 0.9))
        small = F.interpolate(images[i : i + 1], scale_factor=factor, mode="area")
        images[i : i + 1] = F.interpolate(small, size=images.shape[2:], mode="bilinear", align_corners=False)
    # Intensity: gamma, contrast about the mean, gain offset, speckle-like noise.
    gamma = torch.from_numpy(np.exp(rng.uniform(-0.4, 0.4, n)).astype(np.float32))[:, None, None, None]
    images = images.clamp(0, 1) ** gamma
    contrast = torch.from_numpy(rng.uniform(0.7, 1.3, n).astype(np.float32))[:, None, None, None]
    mean = images.mean(dim=(2, 3), keepdim=True)
    images = (images - mean) * contrast + mean
    images = images + torch.from_numpy(rng.uniform(-0.12, 0.12, n).astype(np.float32))[:, None, None, None]
    images = images + torch.randn_like(images) * torch.from_numpy(rng.uniform(0, 0.05, n).astype(np.float32))[:, None, None, None]
    return images.clamp(0, 1), targets


class Loss:
    """Soft Dice (pooled over the batch, so frames without the structure do not explode it) + BCE."""

    def __init__(self):
        import torch
        from monai.losses import DiceLoss

        self.dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)
        self.bce = torch.nn.BCEWithLogitsLoss()

    def __call__(self, logits, targets):
        return self.dice(logits, targets) + self.bce(logits, targets)


def train(train_set, *, channels=DEFAULT_CHANNELS, num_res_units=1, epochs=10, batch_size=32, lr=3e-3,
          seed=0, time_budget_s=None, device="cpu", val_fn=None, log=print):
    """Train a UNet on ``train_set``; ``val_fn(model) -> score`` (higher is better) picks the best epoch.

    Learning rate: linear warm-up, then cosine decay over the run, where the run's progress is
    the larger of steps done / all steps and CPU time spent / ``time_budget_s`` (this process's
    CPU seconds, all threads; wall time on a GPU); so a shared, slower machine still ends with a
    fully decayed rate inside the budget (and stops there).
    Returns (model in eval mode with the best weights, history list of dicts).
    """
    import copy

    import torch

    from SpineAILib.models import build_network

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    spec = network_spec(channels, num_res_units)
    model = build_network(spec["name"], **spec["args"]).to(device)
    loss_fn = Loss()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    n = train_set.images.shape[0]
    steps_per_epoch = max(1, n // batch_size)
    total_steps = epochs * steps_per_epoch
    warmup = max(1, int(0.05 * total_steps))
    images_all = torch.from_numpy(train_set.images)
    targets_all = torch.from_numpy(train_set.targets.astype(np.float32))
    best, best_state, history = -math.inf, None, []
    on_cpu = torch.device(device).type == "cpu"
    clock = time.process_time if on_cpu else time.time
    start = clock()
    done = 0
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(n)
        total, epoch_start, steps = 0.0, time.time(), 0
        for step in range(steps_per_epoch):
            progress = done / total_steps
            if time_budget_s:
                progress = max(progress, (clock() - start) / time_budget_s)
            if progress >= 1.0:
                break
            rate = lr * min(1.0, (done + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * progress))
            for group in optimiser.param_groups:
                group["lr"] = rate
            index = torch.from_numpy(order[step * batch_size : (step + 1) * batch_size])
            x, y = augment(images_all[index], targets_all[index], rng)
            loss = loss_fn(model(x.to(device)), y.to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item()
            steps += 1
            done += 1
            if log and steps % 25 == 0:
                log(f"  step {steps}/{steps_per_epoch}: loss {total / steps:.4f} (lr {rate:.2e}, progress {progress:.0%})")
        if steps == 0:
            break
        model.eval()
        entry = {"epoch": epoch + 1, "steps": steps, "loss": total / steps, "seconds": round(time.time() - epoch_start, 1)}
        if val_fn is not None:
            entry["val"] = float(val_fn(model))
            if entry["val"] > best:
                best, best_state = entry["val"], copy.deepcopy(model.state_dict())
        history.append(entry)
        if log:
            log(f"epoch {epoch + 1}/{epochs} ({steps} steps): loss {entry['loss']:.4f}"
                + (f", val Dice {entry['val']:.4f}" if "val" in entry else "") + f" ({entry['seconds']:.0f} s)")
        if steps < steps_per_epoch:
            if log:
                log(f"time budget of {time_budget_s:.0f} s reached during epoch {epoch + 1}")
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), history


def in_memory_localiser(model, size=DEFAULT_INPUT_SIZE, thresholds=None, min_component_fraction=DEFAULT_MIN_COMPONENT_FRACTION,
                        max_hole_fraction=DEFAULT_MAX_HOLE_FRACTION):
    """A ``Localiser`` around a model being trained (no bundle on disk), for evaluation."""
    import torch

    device = next(model.parameters()).device
    return Localiser(
        model=model, metadata={"labels": list(STRUCTURES), "task": TASK}, device=torch.device(device), path=None,
        input_size=tuple(size), thresholds=dict(thresholds or {s: 0.5 for s in STRUCTURES}),
        min_component_fraction=min_component_fraction, max_hole_fraction=max_hole_fraction,
    )


# -- metrics ----------------------------------------------------------------------------------


def box_iou(a, b):
    """IoU of two x0, y0, x1, y1 boxes (0 when either is missing)."""
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return 0.0
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def average_precision(scores, true_positive, n_positives):
    """All-point interpolated AP from detections (score, is TP) and the number of ground-truth boxes."""
    if n_positives == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    tp = np.asarray(true_positive, float)[order]
    cum_tp, cum_fp = np.cumsum(tp), np.cumsum(1.0 - tp)
    recall = cum_tp / n_positives
    precision = cum_tp / np.maximum(cum_tp + cum_fp, 1e-12)
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[1.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # precision envelope
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


class Accumulator:
    """Collects per-frame results against the truth; ``summary()`` gives the metrics."""

    def __init__(self):
        self.s = {k: {"inter": 0, "pred": 0, "true": 0, "dice_frames": [], "present_correct": 0, "frames": 0,
                      "box_ious": [], "det_scores": [], "det_tp": [], "n_true_boxes": 0} for k in STRUCTURES}  # fmt: skip

    def add(self, result, true_masks, true_boxes):
        """``result``: a ``localise`` dict; ``true_masks``: {structure: (N, H, W)}; ``true_boxes`` likewise (N, 4)."""
        for structure in STRUCTURES:
            pred = result[MASK_KEYS[structure]]
            true = np.asarray(true_masks[structure], bool)
            acc = self.s[structure]
            inter = np.logical_and(pred, true).reshape(len(pred), -1).sum(1)
            p_sum, t_sum = pred.reshape(len(pred), -1).sum(1), true.reshape(len(true), -1).sum(1)
            acc["inter"] += int(inter.sum())
            acc["pred"] += int(p_sum.sum())
            acc["true"] += int(t_sum.sum())
            acc["frames"] += len(pred)
            acc["present_correct"] += int(np.sum((p_sum > 0) == (t_sum > 0)))
            for i in np.flatnonzero(t_sum > 0):
                acc["dice_frames"].append(2.0 * inter[i] / (p_sum[i] + t_sum[i]))
            pred_boxes, gt_boxes = result["boxes"][structure], np.asarray(true_boxes[structure], np.float32)
            scores = result["scores"][structure]
            for i in range(len(pred)):
                has_true = bool(np.all(np.isfinite(gt_boxes[i])))
                has_pred = bool(np.all(np.isfinite(pred_boxes[i])))
                iou = box_iou(pred_boxes[i], gt_boxes[i])
                if has_true:
                    acc["n_true_boxes"] += 1
                    acc["box_ious"].append(iou)
                if has_pred:
                    acc["det_scores"].append(float(scores[i]))
                    acc["det_tp"].append(bool(has_true and iou >= 0.5))

    def summary(self):
        out = {}
        aps = []
        for structure in STRUCTURES:
            a = self.s[structure]
            union = a["pred"] + a["true"] - a["inter"]
            ap = average_precision(a["det_scores"], a["det_tp"], a["n_true_boxes"])
            if not math.isnan(ap):
                aps.append(ap)
            out[structure] = {
                "dice_pooled": 2.0 * a["inter"] / (a["pred"] + a["true"]) if a["pred"] + a["true"] else float("nan"),
                "iou_pooled": a["inter"] / union if union else float("nan"),
                "dice_mean_frames_with_structure": float(np.mean(a["dice_frames"])) if a["dice_frames"] else float("nan"),
                "presence_accuracy": a["present_correct"] / a["frames"] if a["frames"] else float("nan"),
                "box_iou_mean": float(np.mean(a["box_ious"])) if a["box_ious"] else float("nan"),
                "ap50": ap,
                "frames": a["frames"],
                "frames_with_structure": a["n_true_boxes"],
            }
        out["map50"] = float(np.mean(aps)) if aps else float("nan")
        return out


def evaluate(localiser, seeds, machines, n_frames, batch_size=32, timing=None):
    """Metrics of ``localiser`` on freshly generated videos (``seeds`` cycling over ``machines``)."""
    from SpineAILib.workflows.ultrasound.localise import grey_frames

    acc = Accumulator()
    seconds, frames = 0.0, 0
    for cine in generate_cines(seeds, machines, n_frames):
        start = time.perf_counter()
        grey = grey_frames(cine.frames)
        probabilities = predict_probabilities(localiser, grey, batch_size)
        result = postprocess(localiser, probabilities, grey.shape[1:])
        seconds += time.perf_counter() - start
        frames += cine.n_frames
        acc.add(result, {"spinal_cord": cine.cord_masks, "csf": cine.csf_masks}, cine.boxes)
    summary = acc.summary()
    summary["videos"] = len(seeds)
    summary["ms_per_frame"] = 1000.0 * seconds / max(1, frames)
    if timing is not None:
        timing.update(seconds=seconds, frames=frames)
    return summary


def quick_val_score(model, val_set, size=DEFAULT_INPUT_SIZE):
    """Mean of the two structures' pooled Dice on the validation frames at the network's size (fast)."""
    import torch

    with torch.inference_mode():
        device = next(model.parameters()).device
        inter = np.zeros(2)
        total = np.zeros(2)
        for start in range(0, len(val_set.images), 64):
            x = torch.from_numpy(val_set.images[start : start + 64]).to(device)
            pred = (torch.sigmoid(model(x)) >= 0.5).cpu().numpy()
            true = val_set.targets[start : start + 64].astype(bool)
            inter += np.logical_and(pred, true).sum(axis=(0, 2, 3))
            total += pred.sum(axis=(0, 2, 3)) + true.sum(axis=(0, 2, 3))
    return float(np.mean(2 * inter / np.maximum(total, 1)))


def metrics_entries(summary, data):
    """Bundle ``metrics`` entries from an ``evaluate`` summary."""
    entries = []
    for structure in STRUCTURES:
        s = summary[structure]
        for key, name in (("dice_pooled", "dice"), ("iou_pooled", "iou"), ("dice_mean_frames_with_structure", "dice_frames"),
                          ("box_iou_mean", "box_iou"), ("ap50", "ap50"), ("presence_accuracy", "presence_accuracy")):  # fmt: skip
            value = s[key]
            entries.append({"name": f"{name}_{structure}", "value": None if math.isnan(value) else round(float(value), 4), "data": data})
    entries.append({"name": "map50", "value": None if math.isnan(summary["map50"]) else round(summary["map50"], 4), "data": data})
    return entries
