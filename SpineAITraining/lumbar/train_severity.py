"""`spineai-train lumbar-severity`: train the RSNA 2024 severity grading model.

    spineai-train lumbar-severity --data RSNA_DIR --out BUNDLE [--epochs 40] [--seed 0]
    spineai-train lumbar-severity calibrate BUNDLE --real-data DIR --synthetic DIR   (post-hoc, see severity/calibrate.py)

RSNA_DIR is the Kaggle competition folder (train.csv, train_label_coordinates.csv,
train_series_descriptions.csv, train_images/). Studies are split (seeded, by study)
into train / validation (epoch selection) / test (never tuned on); the test part is
graded through the same inference path users get (predict.py) and scored with the
competition metric. `--generate N` first writes N synthetic studies into RSNA_DIR
(the generator), which is how the bundled model was made.
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from SpineAILib.workflows.lumbar.severity import grading
from SpineAILib.workflows.lumbar.severity.submission import GRADES, GROUPS, condition_group, write_submission
from SpineAITraining.common.split import split_ids
from SpineAITraining.lumbar.severity.layout import RSNADataset
from SpineAITraining.lumbar.severity.metric import score

BUNDLE_TASK = "lumbar-mri/severity"


def _parser():
    p = argparse.ArgumentParser(prog="spineai-train lumbar-severity", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="RSNA 2024 folder (Kaggle layout)")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=float, default=0.5, help="ResNet18 widen factor (0.5 = 32..256 channels)")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--patience", type=int, default=10, help="epochs without a better validation score before stopping")
    p.add_argument("--max-studies", type=int, default=None, help="use only the first N labelled studies")
    p.add_argument("--generate", type=int, default=None, metavar="N", help="first write N synthetic studies into --data")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--eval-dir", type=Path, default=None, help="write the test submission, solution and history here")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return p


def _load(dataset, ids):
    """[(study, crop entries at the labelled points)]; pixel caches dropped after cropping."""
    out = []
    for sid in ids:
        study = dataset.load_study(sid)
        out.append((study, grading.study_crops(study)))
        _drop_pixels(study)
    return out


def _drop_pixels(study):
    for series in study.series:
        series._cache.clear()  # keep geometry and labels, not pixels


def _arrays(loaded):
    """(X, group, grade) of every labelled crop, or None."""
    xs, gs, ys = [], [], []
    for study, entries in loaded:
        for condition, level, crop, _ in entries:
            grade = study.grades.get((condition, level))
            if crop is not None and grade is not None:
                xs.append(crop)
                gs.append(GROUPS.index(condition_group(condition)))
                ys.append(grade)
    if not xs:
        return None
    return np.stack(xs), np.array(gs, np.int64), np.array(ys, np.int64)


def _augment(x, rng):
    """Shift by up to 3 px, change gain/offset, add noise: what differs between scans."""
    import torch

    n, c, h, w = x.shape
    pad = torch.nn.functional.pad(x, (3, 3, 3, 3), mode="replicate")
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = rng.integers(0, 7, size=2)
        out[i] = pad[i, :, dy : dy + h, dx : dx + w]
    gain = torch.from_numpy(rng.uniform(0.8, 1.25, (n, 1, 1, 1)).astype(np.float32))
    offset = torch.from_numpy(rng.uniform(-0.2, 0.2, (n, 1, 1, 1)).astype(np.float32))
    noise = torch.from_numpy(rng.uniform(0, 0.15, (n, 1, 1, 1)).astype(np.float32))
    return out * gain + offset + noise * torch.randn_like(out)


def _rows_for(loaded, model, prior, device):
    """Predicted rows through the inference path (predict.rows_from_crops) for [(study, entries)]."""
    from SpineAILib.workflows.lumbar.severity.predict import rows_from_crops

    rows = []
    for study, entries in loaded:
        rows.extend(rows_from_crops(study.study_id, entries, model, prior, device))
    return rows


def _canal_only(loaded, offsets):
    """Crop entries when only the canal points are given, the rest placed by the learned offsets."""
    out = []
    for study, _ in loaded:
        canal = {l: p.ras for (c, l), p in study.points.items() if c == "spinal_canal_stenosis"}
        out.append((study, grading.study_crops(study, grading.points_from_canal(canal, offsets))))
        _drop_pixels(study)
    return out


def _score(dataset, loaded, rows):
    return score(dataset.solution_rows([study.study_id for study, _ in loaded]), rows)


def train(args):
    import torch

    from SpineAILib.models.device import choose_device
    from SpineAILib.models.networks import build_network
    from SpineAITraining.common.export import export_bundle

    started = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = choose_device(args.device)

    if args.generate:
        from SpineAITraining.lumbar.severity.generator import generate

        generate(args.data, args.generate, seed=args.seed)
    dataset = RSNADataset(args.data, "train")
    ids = [sid for sid in dataset.study_ids if dataset.grades.get(sid)]
    if args.max_studies:
        ids = ids[: args.max_studies]
    if len(ids) < 3:
        raise SystemExit(f"spineai-train lumbar-severity: {args.data} holds {len(ids)} labelled studies; at least 3 are needed")
    split = split_ids(ids, args.seed, args.val_fraction, args.test_fraction)
    print(f"studies: {len(split['train'])} train, {len(split['validation'])} validation, {len(split['test'])} test", flush=True)

    train_set = _load(dataset, split["train"])
    val_set = _load(dataset, split["validation"])
    test_set = _load(dataset, split["test"])
    train_data = _arrays(train_set)
    if train_data is None:
        raise SystemExit("spineai-train lumbar-severity: no labelled crops in the training studies")
    x_all, g_all, y_all = (torch.from_numpy(a) for a in train_data)
    train_studies = [study for study, _ in train_set]
    prior = grading.grade_prior(train_studies)
    offsets = grading.point_offsets(train_studies)
    print(f"crops ready after {time.time() - started:.0f} s", flush=True)
    slices = int(x_all.shape[1])
    print(f"training crops: {len(y_all)} ({np.bincount(y_all.numpy(), minlength=3).tolist()} per grade)", flush=True)

    spec = grading.network_spec(slices, args.width)
    model = build_network(spec["name"], **spec["args"]).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = max(1, args.epochs * int(np.ceil(len(y_all) / args.batch)))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    weights = torch.tensor(grading.CLASS_WEIGHTS, device=device)

    best = (float("inf"), None, -1)
    history = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(y_all)))
        total, seen = 0.0, 0
        for start in range(0, len(order), args.batch):
            idx = order[start : start + args.batch]
            if len(idx) < 2:
                continue  # batch norm needs two samples
            x = _augment(x_all[idx], rng).to(device)
            g, y = g_all[idx].to(device), y_all[idx].to(device)
            logits = model(x).view(len(idx), len(GROUPS), len(GRADES))[torch.arange(len(idx), device=device), g]
            loss = torch.nn.functional.cross_entropy(logits, y, weight=weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        entry = {"epoch": epoch + 1, "train_loss": round(total / max(seen, 1), 5)}
        if val_set:
            val = _score(dataset, val_set, _rows_for(val_set, model, prior, device))
            entry.update({f"val_{k}": round(v, 5) for k, v in val.items() if v is not None})
            if val["score"] < best[0]:
                best = (val["score"], {k: v.detach().clone() for k, v in model.state_dict().items()}, epoch + 1)
        else:
            best = (entry["train_loss"], {k: v.detach().clone() for k, v in model.state_dict().items()}, epoch + 1)
        history.append(entry)
        print(json.dumps(entry), flush=True)
        if epoch + 1 - best[2] >= args.patience:
            print(f"stopping: no better validation score for {args.patience} epochs", flush=True)
            break
    model.load_state_dict(best[1])
    model.eval()

    # The held-out test studies, through the inference path, with the competition metric.
    metrics, test_scores = [], {}
    synthetic = dataset.is_synthetic
    what = f"{len(test_set)} held-out {'synthetic generator' if synthetic else 'RSNA 2024'} studies (test split, never tuned on)"
    if test_set:
        test_rows = _rows_for(test_set, model, prior, device)
        test_scores = _score(dataset, test_set, test_rows)
        derived = _score(dataset, test_set, _rows_for(_canal_only(test_set, offsets), model, prior, device))
        baseline_rows = [dict(r, **dict(zip(GRADES, prior[condition_group(r["condition"])]))) for r in test_rows]
        baseline = _score(dataset, test_set, baseline_rows)
        for name, value in test_scores.items():
            metrics.append({"name": f"rsna2024_{name}", "value": round(value, 5), "data": what + "; labelled points"})
        metrics.append({"name": "rsna2024_score_canal_points_only", "value": round(derived["score"], 5),
                        "data": what + "; only the canal points given, other points placed by the learned offsets"})
        metrics.append({"name": "rsna2024_score_prior_only_baseline", "value": round(baseline["score"], 5),
                        "data": what + "; every row predicted as the training split's grade frequencies weighted 1/2/4 (no model: the baseline to beat)"})
        print(json.dumps({"test": test_scores, "test_canal_points_only": derived["score"], "prior_baseline": baseline["score"]}), flush=True)
        if args.eval_dir:
            args.eval_dir.mkdir(parents=True, exist_ok=True)
            write_submission(args.eval_dir / "test_submission.csv", {r["row_id"]: r for r in test_rows if r["assessed"]},
                             [study.study_id for study, _ in test_set], prior)
            with open(args.eval_dir / "test_solution.json", "w", encoding="utf-8") as stream:
                json.dump(dataset.solution_rows([study.study_id for study, _ in test_set]), stream)
    if args.eval_dir:
        args.eval_dir.mkdir(parents=True, exist_ok=True)
        (args.eval_dir / "history.json").write_text(json.dumps({"history": history, "test": test_scores}, indent=1) + "\n")

    if synthetic:
        data = (f"SYNTHETIC phantom studies written by SpineAITraining.lumbar.severity.generator into {args.data} "
                f"({len(ids)} studies in the RSNA 2024 Kaggle layout), NOT real MRI; a demonstration of the pipeline, "
                "not a clinical model. Train on the real Kaggle data with `spineai-train lumbar-severity --data RSNA_DIR --out BUNDLE`.")
    else:
        data = f"RSNA 2024 Lumbar Spine Degenerative Classification training set at {args.data} ({len(ids)} labelled studies used)"
    network_input = {
        "channels": slices,
        "size": [int(grading.CROPS["spinal"]["size"])] * 2,
        "spacing": None,
        "intensity": {"method": "zscore", "scope": "each crop (all its slices together)"},
        "note": "one crop per condition and level, cut as grading.crops says; logits (N, 9) = 3 groups x 3 grades",
    }
    folder = export_bundle(
        model.cpu(), args.out,
        bundle_id="lumbar-mri-severity-synthetic" if synthetic else "lumbar-mri-severity",
        version="0.1.0",
        task=BUNDLE_TASK,
        network=spec,
        input=network_input,
        labels=list(GRADES),
        data=data,
        seed=args.seed,
        split={"method": "seeded shuffle by study", "seed": args.seed, **split},
        metrics=metrics,
        command=shlex.join(["spineai-train", "lumbar-severity", *args.argv]),
        description=("RSNA 2024 severity grading (Normal/Mild, Moderate, Severe) for canal, foraminal and subarticular "
                     "stenosis at L1/L2..L5/S1" + (" - trained on synthetic phantom studies only" if synthetic else "")),
        extra_training={
            "synthetic": synthetic,
            "epochs_run": len(history), "best_epoch": best[2], "batch": args.batch, "lr": args.lr,
            "loss": "cross entropy weighted 1/2/4 (Normal/Mild, Moderate, Severe)",
            "augmentation": "shift <= 3 px, gain 0.8-1.25, offset +-0.2, Gaussian noise sigma <= 0.15 (on z-scored crops)",
            "history": history, "seconds": round(time.time() - started, 1),
        },
        overwrite=args.overwrite,
    )
    _add_grading(folder, {
        "groups": list(GROUPS),
        "crops": grading.CROPS,
        "point_offsets_mm": offsets,
        "prior": prior,
        "class_weights": list(grading.CLASS_WEIGHTS),
    })
    print(f"wrote model bundle {folder} in {time.time() - started:.0f} s", flush=True)
    return folder


def _add_grading(folder, grading_meta):
    """The crop recipe, offsets and prior belong in metadata.json (the sha256 covers only the weights)."""
    from SpineAILib.models.bundle import update_metadata

    update_metadata(folder, lambda meta: {**meta, "grading": grading_meta})


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["calibrate"]:  # post-hoc calibration on real volunteers (SpineAITraining.lumbar.severity.calibrate)
        from SpineAITraining.lumbar.severity.calibrate import main as calibrate

        calibrate(argv[1:])
        return 0
    args = _parser().parse_args(argv)
    args.argv = argv
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
