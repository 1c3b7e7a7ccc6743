"""`spineai-train cervical-fracture`: the per-vertebra fracture classifier (RSNA 2022 targets).

A small 3-D MONAI ResNet10 on crops around each cervical vertebra (SpineAILib.workflows.cervical.fracture:
48^3 at 1.25 mm, the CT in a bone window and the vertebra's mask), one logit: fractured or
not. The crops are cut where the segmentation bundle finds and names the vertebrae, with its
masks, exactly as the workflow cuts them (``--masks truth``: at the labelled vertebrae
instead, phantoms only). Loss: binary cross entropy with positives weighted 2, as the RSNA
2022 metric weights them. Validation picks the epoch (weighted log loss), Platt scaling of
the vertebra and patient probabilities, the patient rule (noisy-OR or max of the vertebrae,
by the patient-level weighted log loss) and the vertebra threshold (Youden's J); the
workflow calls a patient fractured when any vertebra is. The test cases are scored on their
cached crops and again through the whole workflow path (segment() +
fracture.score_vertebrae()), with the RSNA 2022 metric and AUCs. ``--weights-from`` skips
training and only calibrates and measures another bundle's weights; ``--init-from`` starts
training from them.

    spineai-train cervical-fracture --phantoms 120 --out BUNDLE [--segmentation SEG_BUNDLE] [--epochs N]
    spineai-train cervical-fracture --data RSNA_DIR --segmentation SEG_BUNDLE --out BUNDLE

Phantom seeds start at 10000 by default, apart from the segmentation trainer's, so no test
case here was ever seen by either model. Crops are cached once in --cache (default
BUNDLE.work/crops); checkpoints go to BUNDLE.work/last.pt after each epoch (--resume).
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
from SpineAILib.workflows.cervical import FRACTURE_TASK, PATIENT_ROW, SEGMENTATION_TASK
from SpineAILib.workflows.cervical.fracture import calibrate, crop_arrays, network_input, patient_probability
from SpineAITraining.cervical.cases import cache_key, cached, end_epoch, phantom_source, start_run
from SpineAITraining.common.checkpoint import load_state
from SpineAITraining.common.loop import learning_rate, optimiser_step
from SpineAITraining.common.split import split_ids

BUNDLE_ID = "cervical-ct-fracture"
VERSION = "0.2.0"
CROP_SIZE = 48
CROP_SPACING = 1.25  # mm: 60 mm crops hold a whole cervical vertebra with its processes
CACHE_SIZE = 56  # cached crops are larger: training shifts the 48^3 window by up to +-5 mm
INTENSITY = {"method": "window", "low": -300.0, "high": 1300.0, "units": "HU", "clip": True, "range": [0.0, 1.0]}
POSITIVE_WEIGHT = 2.0  # RSNA 2022: a fractured vertebra weighs 2, an intact one 1
PATIENT_WEIGHTS = (7.0, 14.0)  # patient_overall: negative, positive
MIN_VOXELS = 50


def parse_args(argv):
    p = argparse.ArgumentParser(prog="spineai-train cervical-fracture", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--phantoms", type=int, default=120, help="phantom cases to generate (split by case)")
    p.add_argument("--first-seed", type=int, default=10000, help="seed of the first phantom")
    p.add_argument("--fracture-rate", type=float, default=0.5, help="phantoms: chance that a patient has a fracture")
    p.add_argument("--shape-limit", help="phantoms: at most K,J,I voxels (coarser grids; for quick runs)")
    p.add_argument("--extra-phantoms", type=int, default=0,
                   help="phantoms: this many more cases for training only (never validated or tested on), cropped at "
                        "their labelled vertebrae; their seeds start at --extra-first-seed")
    p.add_argument("--extra-first-seed", type=int, default=50000)
    p.add_argument("--extra-fracture-rate", type=float, default=1.0,
                   help="chance that an extra case has a fracture (1: every one does, more fractured crops to learn from)")
    p.add_argument("--data", type=Path, help="RSNA 2022 folder (Kaggle layout) instead of phantoms")
    p.add_argument("--segmentation", type=Path, help="segmentation bundle for the workflow-path test (default: installed)")
    p.add_argument("--masks", choices=("segmentation", "truth"), default="segmentation",
                   help="crop at the vertebrae the segmentation bundle finds (as the workflow does; default) or at the "
                        "labelled ones (phantoms only)")
    p.add_argument("--cache", type=Path, help="prepared crops (default BUNDLE.work/crops)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=float, default=0.25, help="ResNet10 widen factor (0.25 = 16..128 channels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=2022)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int)
    p.add_argument("--time-budget", type=float, help="seconds for training: the epochs are re-planned after each one to fit")
    p.add_argument("--prepare-only", action="store_true", help="cache the crops and stop")
    p.add_argument("--init-from", type=Path, help="start training from this fracture bundle's weights (fine-tuning)")
    p.add_argument("--weights-from", type=Path, help="no training: take the weights of this fracture bundle and only "
                   "calibrate, choose the rule and thresholds, and measure (on this run's crops)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--work", type=Path)
    p.add_argument("--max-test", type=int, help="score at most this many test cases through the workflow path")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


# -- metric ------------------------------------------------------------------------------


def weighted_log_loss(y, p, w_neg=1.0, w_pos=POSITIVE_WEIGHT):
    y, p = np.asarray(y, float), np.clip(np.asarray(p, float), 1e-7, 1 - 1e-7)
    if not len(y):
        return float("nan")
    w = np.where(y > 0, w_pos, w_neg)
    return float(-(w * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / w.sum())


def rsna2022_score(truth, predicted):
    """RSNA 2022 score (SpineAITraining.cervical.metric) of {study: {target: 0/1}} vs {study: {target: p}}."""
    from SpineAILib.workflows.cervical.submission import row_id
    from SpineAITraining.cervical.metric import score

    solution = [{"row_id": row_id(s, t), "fractured": y} for s, targets in truth.items() for t, y in targets.items()]
    submission = [{"row_id": row_id(s, t), "fractured": p} for s, targets in predicted.items() for t, p in targets.items()]
    return float(score(solution, submission)["score"])


def auc(y, p):
    from SpineAITraining.common.metrics import roc_auc

    y = np.asarray(y)
    return float(roc_auc(y, np.asarray(p))) if 0 < y.sum() < len(y) else None


def fit_platt(p, y, w_neg, w_pos):
    """(a, b) of sigmoid(a * logit(p) + b) with the lowest weighted log loss, a in 0..2 (monotone: the ranking,
    hence the AUC, is kept) and b in -4..4, by grid search (a Newton fit runs away on a small validation set)."""
    y = np.asarray(y, float)
    if not 0 < y.sum() < len(y):
        return [1.0, 0.0]
    x = np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))
    w = np.where(y > 0, w_pos, w_neg)
    a, b = np.meshgrid(np.linspace(0.0, 2.0, 41), np.linspace(-4.0, 4.0, 161), indexing="ij")
    z = a[..., None] * x + b[..., None]  # (a, b, samples)
    loss = (w * (np.logaddexp(0, -z) * y + np.logaddexp(0, z) * (1 - y))).sum(-1) / w.sum()
    i, j = np.unravel_index(int(np.argmin(loss)), loss.shape)
    return [round(float(a[i, j]), 3), round(float(b[i, j]), 3)]


def youden_threshold(y, p):
    y, p = np.asarray(y), np.asarray(p)
    if not 0 < y.sum() < len(y):
        return 0.5
    best, threshold = -1.0, 0.5
    for t in np.unique(np.round(p, 4)):
        j = ((p >= t) & (y > 0)).sum() / y.sum() + ((p < t) & (y == 0)).sum() / (len(y) - y.sum()) - 1
        if j > best:
            best, threshold = j, float(t)
    return threshold


# -- data --------------------------------------------------------------------------------


def vertebra_crops(case, segmentation=None):
    """Cached-crop arrays for one case: where the segmentation bundle finds and names the vertebrae (the
    workflow's crops), or without one at the labelled vertebrae."""
    from SpineAILib.ct_grid import Layout

    layout = Layout.of(case.ct.voxels.shape, case.ct.ijk_to_ras)
    ct_view = layout.view(case.ct.voxels)
    if segmentation is None:
        label_view = np.ascontiguousarray(layout.view(case.labels.voxels))
        centres = {}
        for value, name in enumerate(CERVICAL, start=1):
            where = np.nonzero(label_view == value)
            if len(where[0]) >= MIN_VOXELS:
                centres[name] = (np.array([w.mean() for w in where]), value)
    else:
        from SpineAILib.workflows.cervical.segment import segment

        result = segment(case.ct, segmentation, layout)
        label_view = layout.view(result.labelmap.voxels)
        values = {v["name"]: v["label"] for v in result.vertebrae}
        centres = {n: (result.centres[n], values[n]) for n in CERVICAL if n in values}
    names, hus, masks, ys = [], [], [], []
    for name, (centre, value) in centres.items():
        hu, mask = crop_arrays(ct_view, label_view, layout.spacing, centre, value, CACHE_SIZE, CROP_SPACING)
        names.append(name)
        hus.append(np.clip(np.rint(hu), -1024, 3071).astype(np.int16))
        masks.append(mask)
        ys.append(int(case.fractured[name]))
    empty = (0, CACHE_SIZE, CACHE_SIZE, CACHE_SIZE)
    return {"names": np.array(names, dtype="U3"), "hu": np.stack(hus) if hus else np.zeros(empty, np.int16),
            "mask": np.stack(masks) if masks else np.zeros(empty, bool), "fractured": np.array(ys, np.uint8),
            "case_fractured": np.array([case.fractured[n] for n in CERVICAL], np.uint8)}  # fmt: skip


def load_crops(ids, source, cache, log, segmentation=None):
    key = cache_key("cervical-fracture-crops", {"size": CACHE_SIZE, "spacing": CROP_SPACING, "source": source["name"],
                                                "segmentation": segmentation.metadata["sha256"] if segmentation else None})  # fmt: skip
    cases = []
    for n, case_id in enumerate(ids):
        arrays = cached(cache, case_id, key, lambda: vertebra_crops(source["case"](case_id), segmentation))
        arrays["id"] = case_id
        cases.append(arrays)
        log(f"crops {n + 1}/{len(ids)} ready ({case_id}: {len(arrays['names'])} vertebrae)")
    return cases


def stack(cases):
    hu = np.concatenate([c["hu"] for c in cases])
    mask = np.concatenate([c["mask"] for c in cases])
    y = np.concatenate([c["fractured"] for c in cases]).astype(np.float32)
    owner = np.concatenate([np.full(len(c["names"]), i) for i, c in enumerate(cases)])
    names = np.concatenate([c["names"] for c in cases])
    return hu, mask, y, owner, names


def centre_inputs(hu, mask):
    o = (CACHE_SIZE - CROP_SIZE) // 2
    box = (slice(None), slice(o, o + CROP_SIZE), slice(o, o + CROP_SIZE), slice(o, o + CROP_SIZE))
    return np.stack([network_input(h, m, INTENSITY) for h, m in zip(hu[box], mask[box])])


def augmented_batch(hu, mask, rng):
    """Shifted (+-5 mm), mirrored, intensity-jittered crops with masks grown or shrunk by one or two voxels."""
    import torch.nn.functional as F

    xs = []
    for h, m in zip(hu, mask):
        o = rng.integers(0, CACHE_SIZE - CROP_SIZE + 1, 3)
        box = tuple(slice(a, a + CROP_SIZE) for a in o)
        h = h[box].astype(np.float32) * rng.uniform(0.9, 1.1) + rng.uniform(-40, 40)
        h = h + rng.normal(0, rng.uniform(0, 30), h.shape).astype(np.float32)
        m = torch.from_numpy(m[box].astype(np.float32))[None, None]
        change = rng.random()
        for _ in range(2 if change < 0.1 or 0.3 <= change < 0.4 else 1):
            if change < 0.3:
                m = F.max_pool3d(m, 3, 1, 1)
            elif change < 0.6:
                m = -F.max_pool3d(-m, 3, 1, 1)
        x = network_input(h, m[0, 0].numpy(), INTENSITY)
        if rng.random() < 0.5:
            x = x[:, :, :, ::-1]  # left-right
        xs.append(np.ascontiguousarray(x))
    return torch.from_numpy(np.stack(xs))


def predict_inputs(model, inputs, device, batch=16):
    out = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(inputs), batch):
            x = torch.from_numpy(inputs[start : start + batch]).to(device)
            out.append(torch.sigmoid(model(x)[:, 0].float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def per_study(cases, names, owner, probabilities, prior, rule, calibration=None):
    """({study: {target: 0/1}}, {study: {target: p}}); a vertebra not found gets the training prior."""
    truth, predicted = {}, {}
    for i, case in enumerate(cases):
        study = case["id"]
        found = {str(n): float(p) for n, p, o in zip(names, probabilities, owner) if o == i}
        truth[study] = {name: int(y) for name, y in zip(CERVICAL, case["case_fractured"])}
        truth[study][PATIENT_ROW] = int(case["case_fractured"].any())
        predicted[study] = {name: found.get(name, prior[name]) for name in CERVICAL}
        patient = patient_probability(list(found.values()), rule, calibration)
        predicted[study][PATIENT_ROW] = prior[PATIENT_ROW] if patient is None else patient
    return truth, predicted


def patient_metrics(truth, predicted):
    y = [truth[s][PATIENT_ROW] for s in truth]
    p = [predicted[s][PATIENT_ROW] for s in truth]
    return {"patient_auc": auc(y, p), "patient_log_loss": weighted_log_loss(y, p, *PATIENT_WEIGHTS)}


# -- training ------------------------------------------------------------------------------


def network_spec(width):
    return {"name": "resnet10", "args": {"spatial_dims": 3, "n_input_channels": 2, "num_classes": 1,
                                         "widen_factor": width, "no_max_pool": True}}  # fmt: skip


def extra_source(args, main_ids):
    """Training-only phantoms (cropped at their labelled vertebrae), or None; their seeds must not meet the main ones."""
    if not args.extra_phantoms:
        return None
    from SpineAILib.errors import InputError

    if args.data:
        raise InputError("--extra-phantoms adds phantoms to phantom runs only (it would mix synthetic cases into real data)")
    extra = phantom_source(args.extra_phantoms, args.extra_first_seed, args.extra_fracture_rate, args.shape_limit)
    if set(extra["ids"]) & set(main_ids):
        raise InputError(f"--extra-first-seed {args.extra_first_seed}: the extra phantoms' seeds overlap the main cases'")
    ids = extra["ids"]
    extra["data"] = (f"{len(ids)} more phantoms for training only (seeds {ids[0][8:]}-{ids[-1][8:]}, fracture_rate "
                     f"{args.extra_fracture_rate:g}, crops at the labelled vertebrae)")
    return extra


def segmentation_bundle(args, device):
    from SpineAILib.models.bundle import load_bundle
    from SpineAILib.models.catalogue import default_bundle_path

    path = args.segmentation or default_bundle_path(SEGMENTATION_TASK)
    return load_bundle(path, device=device, expected_task=SEGMENTATION_TASK) if path else None


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from SpineAILib.errors import InputError
    from SpineAILib.models.device import choose_device
    from SpineAILib.models.networks import build_network
    from SpineAITraining.common.export import export_bundle

    log, work, cache, source = start_run(args, "crops")
    device = choose_device(args.device)
    seg = segmentation_bundle(args, "cpu")
    if args.masks == "truth" and args.data:
        raise InputError("--masks truth needs phantoms: most RSNA 2022 studies have no segmentation")
    if seg is None and (args.data or args.masks == "segmentation"):
        raise InputError("no cervical-ct segmentation bundle: pass --segmentation BUNDLE (or --masks truth for phantoms)")
    crop_seg = seg if args.masks == "segmentation" else None
    split = split_ids(source["ids"], args.split_seed)
    log(f"cases: {len(split['train'])} train, {len(split['validation'])} validation, {len(split['test'])} test")
    t_start = time.perf_counter()
    train_cases = load_crops(split["train"], source, cache, log, crop_seg)
    val_cases = load_crops(split["validation"], source, cache, log, crop_seg)
    test_cases = load_crops(split["test"], source, cache, log, crop_seg)
    extra = extra_source(args, source["ids"])
    extra_cases = load_crops(extra["ids"], extra, cache, log) if extra else []
    prepare_seconds = time.perf_counter() - t_start
    if args.prepare_only:
        log(f"crops of {len(source['ids'])} cases cached in {cache} in {prepare_seconds:.0f} s")
        return 0
    hu, mask, y, _, train_names = stack(train_cases + extra_cases)
    if not len(y) or y.sum() == 0:
        raise InputError("the training cases hold no fractured vertebra (or no vertebra at all)")
    v_hu, v_mask, v_y, v_owner, v_names = stack(val_cases)
    val_inputs = centre_inputs(v_hu, v_mask)
    prior = {name: float(np.mean([c["case_fractured"][i] for c in train_cases])) for i, name in enumerate(CERVICAL)}
    prior[PATIENT_ROW] = float(np.mean([c["case_fractured"].any() for c in train_cases]))
    log(f"training crops: {len(y)} ({int(y.sum())} fractured); validation {len(v_y)} ({int(v_y.sum())})")

    spec = network_spec(args.width)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    model = build_network(spec["name"], **spec["args"]).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, len(y) // args.batch_size)
    epochs, epoch, step, history, best, best_state, trained = args.epochs, 0, 0, [], None, None, 0.0
    checkpoint = work / "last.pt"
    if args.resume and checkpoint.is_file():
        state = load_state(checkpoint, model, optimiser)
        epoch, step, epochs, trained = int(state["epoch"]), int(state["step"]), int(state["epochs"]), float(state["seconds"])
        history, best, best_state = json.loads(state["history"]), json.loads(state["best"]), state["best_model"]
        log(f"resumed after epoch {epoch} from {checkpoint}")
    weights_from = None
    if args.init_from and not args.resume:
        from SpineAILib.models.bundle import load_bundle

        start = load_bundle(args.init_from, device="cpu", expected_task=FRACTURE_TASK)
        if start.metadata["network"] != spec:
            raise InputError(f"--init-from {args.init_from}: its network differs from this run's ({spec['name']} {spec['args']})")
        model.load_state_dict(start.model.state_dict())
        weights_from = {"initialised_from": str(args.init_from), "sha256": start.metadata["sha256"],
                        "command": start.metadata["training"].get("command"),
                        "crop_masks": start.metadata["training"].get("crop_masks", "truth"),
                        "train_seconds": start.metadata["training"].get("train_seconds")}  # fmt: skip
        log(f"initialised from {args.init_from}")
    if args.weights_from:
        from SpineAILib.models.bundle import load_bundle

        source_bundle = load_bundle(args.weights_from, device="cpu", expected_task=FRACTURE_TASK)
        spec = dict(source_bundle.metadata["network"])
        model = source_bundle.model.to(device)
        trained_by = source_bundle.metadata["training"]
        history, epoch, epochs = trained_by.get("history", []), int(trained_by.get("epochs", 0)), 0
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        p = predict_inputs(model, val_inputs, device)
        best = {"epoch": trained_by.get("best_epoch"), "val_log_loss": round(weighted_log_loss(v_y, p), 4)}
        weights_from = {"bundle": str(args.weights_from), "sha256": source_bundle.metadata["sha256"],
                        "command": trained_by.get("command"), "crop_masks": trained_by.get("crop_masks", "truth"),
                        "train_seconds": trained_by.get("train_seconds"), "data": trained_by.get("data")}  # fmt: skip
        log(f"weights from {args.weights_from} (trained by: {weights_from['command']})")
    weight = torch.tensor([POSITIVE_WEIGHT], device=device)
    while epoch < epochs:
        t0 = time.perf_counter()
        rng = np.random.default_rng(args.seed * 1000 + epoch)
        torch.manual_seed(args.seed * 1000 + epoch)
        order = rng.permutation(len(y))
        model.train()
        losses = []
        for start in range(0, steps_per_epoch * args.batch_size, args.batch_size):
            idx = np.sort(order[start : start + args.batch_size])
            if len(idx) < 2:
                continue
            x = augmented_batch(hu[idx], mask[idx], rng).to(device)
            target = torch.from_numpy(y[idx]).to(device)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], target, pos_weight=weight)
            losses.append(optimiser_step(optimiser, loss, learning_rate(step, epochs * steps_per_epoch, args.lr, warmup=0)))
            step += 1
        epoch += 1
        p = predict_inputs(model, val_inputs, device)
        entry = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4), "val_log_loss": round(weighted_log_loss(v_y, p), 4),
                 "val_auc": None if auc(v_y, p) is None else round(auc(v_y, p), 4)}  # fmt: skip
        if best is None or entry["val_log_loss"] <= best["val_log_loss"]:
            best = dict(entry)
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            entry["best"] = True
        epochs, trained = end_epoch(args, log, history, entry, t0, epochs, trained, checkpoint,
                                   {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "step": step,
                                    "best": json.dumps(best), "best_model": best_state})  # fmt: skip
    if best_state is None:
        raise InputError("no epoch was trained (--epochs must exceed the epochs already done)")
    model.load_state_dict(best_state)

    # Calibration, the patient rule and the thresholds, on validation only.
    p_raw = predict_inputs(model, val_inputs, device)
    calibration = {"vertebra": fit_platt(p_raw, v_y, 1.0, POSITIVE_WEIGHT)}
    p_val = calibrate(p_raw, calibration["vertebra"])
    rules, patient_fits = {}, {}
    for rule in ("noisy_or", "max"):
        truth, predicted = per_study(val_cases, v_names, v_owner, p_val, prior, rule)
        patient_fits[rule] = fit_platt([predicted[s][PATIENT_ROW] for s in truth], [truth[s][PATIENT_ROW] for s in truth],
                                       *PATIENT_WEIGHTS)  # fmt: skip
        truth, predicted = per_study(val_cases, v_names, v_owner, p_val, prior, rule, patient_fits[rule])
        rules[rule] = patient_metrics(truth, predicted)["patient_log_loss"]
    rule = min(rules, key=lambda r: rules[r])
    calibration["patient"] = patient_fits[rule]
    truth, predicted = per_study(val_cases, v_names, v_owner, p_val, prior, rule, calibration["patient"])
    # the patient's call is "any vertebra called fractured" (the workflow), so only the vertebra threshold is chosen
    thresholds = {"vertebra": round(youden_threshold(v_y, p_val), 4)}
    log(f"patient rule {rule} (validation patient log loss after calibration {rules}); calibration {calibration}; "
        f"thresholds {thresholds}")  # fmt: skip

    what = f"{len(test_cases)} held-out test cases ({source['name']}; never trained or tuned on)"
    crops_at = (f"crops at the vertebrae {seg.metadata['bundle_id']} {seg.metadata['version']} found and named (the workflow's "
                "crops); vertebrae not found predicted as the training prior" if crop_seg else "crops at the labelled vertebrae")
    metrics = [{"name": "vertebra_log_loss_validation", "value": best["val_log_loss"],
                "data": f"{len(val_cases)} validation cases, {crops_at}"}]  # fmt: skip
    t_hu, t_mask, t_y, t_owner, t_names = stack(test_cases)
    p_test = calibrate(predict_inputs(model, centre_inputs(t_hu, t_mask), device), calibration["vertebra"])
    truth, predicted = per_study(test_cases, t_names, t_owner, p_test, prior, rule, calibration["patient"])
    gt = {"vertebra_auc": auc(t_y, p_test), "rsna2022_score": rsna2022_score(truth, predicted), **patient_metrics(truth, predicted)}
    baseline = rsna2022_score(truth, {s: dict(prior) for s in truth})
    metrics += [{"name": f"{k}_test_crops", "value": None if v is None else round(v, 4), "data": f"{what}; {crops_at}"}
                for k, v in gt.items()]  # fmt: skip
    metrics.append({"name": "rsna2022_score_prior_only_baseline_test", "value": round(baseline, 4),
                    "data": what + "; every target predicted as the training cases' frequency (no model)"})
    log(json.dumps({"test_crops": gt, "prior_baseline": baseline}))

    command = shlex.join(["spineai-train", "cervical-fracture", *argv])
    meta = dict(
        bundle_id=BUNDLE_ID, version=VERSION, task=FRACTURE_TASK, network=spec,
        input={"channels": 2, "size": [CROP_SIZE] * 3, "spacing": [CROP_SPACING] * 3, "intensity": INTENSITY,
               "channels_meaning": ["CT in the bone window", "mask of the vertebra asked about"],
               "layout": "canonical axes inferior, posterior, left (SpineAILib.ct_grid.Layout), centred on the vertebra"},
        labels=["fractured"], data=source["data"] + (f"; {extra['data']}" if extra else ""), seed=args.seed,
        split={"method": "seeded shuffle by case", "seed": args.split_seed, **split},
        thresholds=thresholds, command=command,
        description="3-D ResNet10 on 60 mm crops around each cervical vertebra: probability that it is fractured"
        + (" - trained on synthetic phantoms only" if source.get("synthetic", False) else ""),
        extra_training={
            "synthetic": source.get("synthetic", False), "phantom": source.get("phantom"), "epochs": epoch, "best_epoch": best["epoch"],
            "batch_size": args.batch_size, "lr": args.lr, "device": str(device), "threads": torch.get_num_threads(),
            "prepare_seconds": round(prepare_seconds, 1), "train_seconds": round(trained, 1), "history": history,
            "extra_training_phantoms": {"count": len(extra["ids"]), "first_seed": args.extra_first_seed,
                                        "fracture_rate": args.extra_fracture_rate} if extra else None,
            "prior": prior, "patient_rule_validation_log_loss": rules, "crop_masks": args.masks,
            "weights_from": weights_from,
            "loss": f"binary cross entropy, positives weighted {POSITIVE_WEIGHT:g} (as the RSNA 2022 metric)",
            "augmentation": "shift +-5 mm, left-right mirror, HU gain 0.9-1.1 / offset +-40 / noise up to 30 HU, "
                            "mask grown or shrunk by one or two voxels (60% of the time)",
        },
    )  # fmt: skip
    meta_fracture = {"patient_rule": rule, "prior": prior, "calibration": calibration,
                     "calibration_note": "Platt scaling sigmoid(a * logit(p) + b) fitted on the validation split, "
                                         "vertebra weights 1/2, patient 7/14 (the RSNA 2022 weights)"}  # fmt: skip
    folder = export_bundle(model.cpu(), args.out, metrics=metrics, overwrite=args.overwrite, **meta)
    _add_section(folder, "fracture", meta_fracture)

    test_ids = split["test"][: args.max_test] if args.max_test else split["test"]
    if seg is not None and test_ids:
        log(f"scoring {len(test_ids)} test cases through the workflow path (segmentation {seg.path})")
        pipeline, per_case = workflow_path_metrics(folder, seg, test_ids, source, prior, rule, log, calibration["patient"])
        data = (what + f"; the workflow path: vertebrae found and named by {seg.metadata['bundle_id']} "
                f"{seg.metadata['version']}, vertebrae not found predicted as the training prior")  # fmt: skip
        metrics += [{"name": f"{k}_test", "value": None if v is None else round(v, 4), "data": data} for k, v in pipeline.items()]
        meta["extra_training"]["test_per_case"] = per_case
        folder = export_bundle(model.cpu(), args.out, metrics=metrics, overwrite=True, **meta)
        _add_section(folder, "fracture", meta_fracture)
    log(f"best epoch {best['epoch']}: validation weighted log loss {best['val_log_loss']:.4f}; wrote {folder}")
    return 0


def workflow_path_metrics(folder, seg, ids, source, prior, rule, log, calibration=None):
    """RSNA 2022 score and AUCs of the test cases through segment() + fracture.score_vertebrae()."""
    from SpineAILib.models.bundle import load_bundle
    from SpineAILib.workflows.cervical.fracture import score_vertebrae
    from SpineAILib.workflows.cervical.segment import segment

    loaded = load_bundle(folder, device="cpu", expected_task=FRACTURE_TASK)
    threshold = float(loaded.thresholds.get("vertebra", 0.5))
    truth, predicted, per_case, ys, ps, found_all, calls, kinds = {}, {}, {}, [], [], 0, [], []
    for case_id in ids:
        case = source["case"](case_id)
        result = segment(case.ct, seg)
        entries, _ = score_vertebrae(case.ct, result, loaded)
        found = {e["name"]: e["probability"] for e in entries if e["present"]}
        found_all += len(found) == len(CERVICAL)
        truth[case_id] = {name: int(case.fractured[name]) for name in CERVICAL}
        truth[case_id][PATIENT_ROW] = int(any(truth[case_id].values()))
        predicted[case_id] = {name: found.get(name, prior[name]) for name in CERVICAL}
        patient = patient_probability(list(found.values()), rule, calibration)
        predicted[case_id][PATIENT_ROW] = prior[PATIENT_ROW] if patient is None else patient
        for name, p in found.items():
            ys.append(truth[case_id][name])
            ps.append(p)
            kinds.append((case.kinds or {}).get(name, []))
        calls.append((truth[case_id][PATIENT_ROW], any(p >= threshold for p in found.values())))
        per_case[case_id] = {"found": sorted(found), "probabilities": {k: round(v, 4) for k, v in predicted[case_id].items()},
                             "truth": truth[case_id]}  # fmt: skip
        log(f"test {case_id}: {len(found)} vertebrae scored; patient p {predicted[case_id][PATIENT_ROW]:.3f} "
            f"(truth {truth[case_id][PATIENT_ROW]})")  # fmt: skip
    ys, called = np.array(ys), np.array(ps) >= threshold
    patients = np.array(calls, dtype=bool).reshape(-1, 2)
    rate = lambda hit, of: float(hit.sum() / of.sum()) if of.sum() else None  # noqa: E731
    metrics = {"rsna2022_score": rsna2022_score(truth, predicted), "vertebra_auc": auc(ys, ps),
               **patient_metrics(truth, predicted), "cases_with_all_7_found": found_all / max(1, len(ids)),
               "vertebra_call_sensitivity": rate(called & (ys > 0), ys > 0),
               "vertebra_call_specificity": rate(~called & (ys == 0), ys == 0),
               "patient_call_sensitivity": rate(patients[:, 1] & patients[:, 0], patients[:, 0]),
               "patient_call_specificity": rate(~patients[:, 1] & ~patients[:, 0], ~patients[:, 0])}  # fmt: skip
    metrics.update(auc_by_kind(ys, ps, kinds))
    log(json.dumps({"test_workflow_path": metrics}))
    return metrics, per_case


def auc_by_kind(ys, ps, kinds):
    """{"vertebra_auc_<region>": AUC of the vertebrae fractured in that region against every intact one}: which
    fractures the model sees (phantoms record the kind drawn; real data has none, so nothing is returned)."""
    regions = {"body": {"compression", "burst", "teardrop", "body_line"}, "dens": {"dens", "hangman"},
               "posterior": {"lamina", "spinous", "pillar", "transverse", "ring_break"}}  # fmt: skip
    ys, ps = np.asarray(ys), np.asarray(ps)
    negatives = ps[ys == 0]
    out = {}
    for region, members in regions.items():
        hit = np.array([y > 0 and bool(set(k) & members) for y, k in zip(ys, kinds)], bool)
        if hit.any() and len(negatives):
            out[f"vertebra_auc_{region}"] = auc(np.r_[np.ones(hit.sum()), np.zeros(len(negatives))], np.r_[ps[hit], negatives])
    return out


def _add_section(folder, key, value):
    """Inference settings that belong in metadata.json (the sha256 covers only the weights)."""
    import os
    import tempfile

    path = Path(folder) / "metadata.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta[key] = value
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".metadata.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(json.dumps(meta, indent=2) + "\n")
    os.chmod(temp, 0o644)
    os.replace(temp, path)


if __name__ == "__main__":
    sys.exit(main())
