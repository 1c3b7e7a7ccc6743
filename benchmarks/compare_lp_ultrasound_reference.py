"""LP-ultrasound: the shipped fast classifier against an eager ResNet18 at 224² on the same held-out cines.

    .venv/bin/python benchmarks/compare_lp_ultrasound_reference.py --reference BUNDLE [--bundle BUNDLE]
        [--threads 1] [--out benchmarks/results/lp_ultrasound_reference.json]

The issue's speed rule: whole-cine analysis at >= 60 frames/s on 2 CPU cores at no
more than 1 point of F1 below eager ResNet18 at 224². ``--reference`` is a bundle
trained by ``spineai-train lp-ultrasound --network resnet18 --size 224`` with the same
data arguments and seed as the shipped bundle (its metadata records the command).

Both bundles run through the deployed path (SpineAILib.workflows.ultrasound.inference.FrameClassifier:
preprocessing, the network, the bundle's own smoothing window and validation
thresholds, the bad-quality gate) in eager torch and in ONNX Runtime, on the test
cines and the held-out-machine cines that ``spineai-train lp-ultrasound --generate``
makes from the seed in the shipped bundle's metadata (regenerated here; their names
are checked against both bundles' recorded splits). Frames/s is the whole-cine rate
of that path (preprocessing + network, 32 frames a batch) over the 1152 test frames
at ``--threads``. A paired bootstrap over the test cines (resampled together for both
models) gives a 95 % interval for the F1 difference. Writes the .json and a .md
beside it. Not a test: nothing is asserted.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from machine import describe_machine  # noqa: E402

BUNDLED = REPO / "SpineAI" / "Resources" / "Models" / "lp-ultrasound-classifier"
RULE_POINTS = 1.0  # F1 points the fast model may lose
RULE_FPS = 60.0


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def held_out_cines(meta):
    """The test and held-out-machine cines the trainer generated for ``meta``'s bundle."""
    from SpineAITraining.ultrasound.machines import MACHINES
    from SpineAITraining.ultrasound.train_classifier import DEFAULT_HOLD_OUT, generated_videos

    split = meta["training"]["split"]
    seed = int(meta["training"]["seed"])
    hold_out = split.get("held_out_machine") or DEFAULT_HOLD_OUT
    machines = [m for m in MACHINES if m != hold_out]
    frames = _eval_frames(meta["training"]["command"])
    test = generated_videos(len(split["test"]), machines, seed + 2000, frames, prefix="test")
    held = generated_videos(len(split["held_out"]), [hold_out], seed + 1, frames, prefix="held")
    for part, videos in (("test", test), ("held_out", held)):
        if [v.name for v in videos] != list(split[part]):
            raise SystemExit(f"regenerated {part} cines do not match the bundle's split record")
    return {"test": test, "held_out_machine": held}, {"seed": seed, "machines": machines, "hold_out": hold_out,
                                                      "frames_per_cine": frames}


def _eval_frames(command):
    words = command.split()
    return int(words[words.index("--eval-frames-per-video") + 1]) if "--eval-frames-per-video" in words else 48


def run_bundle(bundle, backend, parts, threads):
    """Deployed-path calls and probabilities per part, and the whole-cine rate on the test cines."""
    import torch

    from SpineAILib.workflows.ultrasound.inference import FrameClassifier, decide, smooth_centred

    torch.set_num_threads(threads)
    clf = FrameClassifier(bundle, device="cpu", backend=backend, threads=threads)
    clf.cine_probabilities(parts["test"][0].frames[:32], 32)  # warm-up (ONNX session, torch kernels)
    out = {"backend": clf.backend, "window_ms": clf.window_ms, "thresholds": dict(clf.thresholds), "parts": {}}
    for name, videos in parts.items():
        seconds, per_video = 0.0, []
        for v in videos:
            t0 = time.perf_counter()
            raw = clf.cine_probabilities(v.frames, 32)
            seconds += time.perf_counter() - t0
            probs = smooth_centred(raw, v.times_ms, clf.window_ms)
            per_video.append((probs, decide(probs, clf.thresholds, clf.labels)))
        n = sum(v.n for v in videos)
        out["parts"][name] = {"per_video": per_video, "frames": n, "seconds": seconds, "frames_per_s": n / seconds}
        print(f"  {Path(bundle).name} {backend} {name}: {n} frames, {n / seconds:.1f} frames/s", flush=True)
    return out


def table(videos, per_video, labels):
    from SpineAITraining.ultrasound.metrics import evaluate

    y = np.concatenate([v.labels for v in videos])
    p = np.concatenate([pv[0] for pv in per_video])
    calls = np.concatenate([pv[1] for pv in per_video])
    return evaluate(y, calls, p, labels)


def micro_counts(videos, per_video):
    """Per video (tp, fp, fn) summed over labels: micro F1 of any resample of videos."""
    counts = []
    for v, (_, calls) in zip(videos, per_video):
        y = v.labels.astype(bool)
        c = calls.astype(bool)
        counts.append(((y & c).sum(), (~y & c).sum(), (y & ~c).sum()))
    return np.asarray(counts, dtype=np.float64)


def paired_bootstrap(a, b, resamples=5000, seed=0):
    """95 % interval of micro F1(a) - micro F1(b), test cines resampled with replacement."""
    rng = np.random.default_rng(seed)
    n = a.shape[0]

    def f1(c):
        tp, fp, fn = c.sum(axis=-2).T
        return 2 * tp / np.maximum(2 * tp + fp + fn, 1)

    idx = rng.integers(0, n, size=(resamples, n))
    diff = f1(a[idx]) - f1(b[idx])
    return [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))], float(np.mean(diff < -RULE_POINTS / 100))


def summarise(meta, runs, parts, labels):
    entry = {"bundle_id": meta["bundle_id"], "network": meta["network"], "input_size": meta["input"]["size"],
             "training_command": meta["training"]["command"], "initialisation": meta["training"].get("initialisation"),
             "epochs_run": meta["training"].get("epochs_run"), "train_minutes": meta["training"].get("train_minutes"),
             "smoothing_window_ms": runs["torch"]["window_ms"], "thresholds": runs["torch"]["thresholds"], "backends": {}}
    for backend, run in runs.items():
        b = {"runtime": run["backend"], "frames_per_s_test": round(run["parts"]["test"]["frames_per_s"], 1), "parts": {}}
        for part, videos in parts.items():
            t = table(videos, run["parts"][part]["per_video"], labels)
            b["parts"][part] = {
                "frames": t["overall"]["frames"], "f1_micro": t["overall"]["f1_micro"], "f1_macro": t["overall"]["f1_macro"],
                "roc_auc_macro": t["overall"]["roc_auc_macro"],
                "per_label": {k: {m: t["per_label"][k][m] for m in ("f1", "roc_auc", "precision", "recall", "tp", "fp", "fn")}
                              for k in labels},
                "clinical": t["clinical"],
            }
        entry["backends"][backend] = b
    return entry


def verdict_text(r):
    v = r["verdict"]
    diff, fps = v["f1_difference"], v["shipped_onnx_frames_per_s"]
    if diff >= 0:
        where = f"not below the reference: {100 * diff:.2f} F1 points above it"
    elif diff >= -RULE_POINTS / 100:
        where = f"within {RULE_POINTS:g} F1 point of the reference ({100 * diff:+.2f} points)"
    else:
        where = f"NOT within {RULE_POINTS:g} F1 point of the reference ({100 * diff:+.2f} points)"
    return (f"The shipped model is {where}, at {fps} frames/s whole-cine in ONNX Runtime on {r['threads']} thread(s) "
            f"({'over' if fps >= RULE_FPS else 'under'} the {RULE_FPS:g} frames/s of the rule).")


def _num(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def render(r):
    ship, ref = r["shipped"], r["reference"]
    s_test, f_test = ship["backends"]["onnx"]["parts"]["test"], ref["backends"]["torch"]["parts"]["test"]
    lines = [
        f"# LP-ultrasound: shipped classifier vs eager ResNet18 at 224², {r['date']}",
        "",
        f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores (shared with other jobs), {r['threads']} thread(s), "
        f"torch {r['machine'].get('torch')}; load average before/after {r['load_average_before']} / {r['load_average_after']}.",
        "",
        f"Data: the {r['data']['test_cines']} test cines ({s_test['frames']} frames) and {r['data']['held_out_cines']} "
        f"held-out-machine cines ({r['data']['hold_out']}) that `spineai-train lp-ultrasound --generate` makes with seed "
        f"{r['data']['seed']} (split by video: other simulated subjects than the training cines; regenerated here and "
        "checked against both bundles' split records). Both models run the deployed path (preprocessing, network, "
        "their own validation-chosen smoothing and thresholds, bad-quality gate).",
        "",
        "| model | backend | test F1 (micro) | F1 macro | AUC macro | bad_quality F1 / AUC | spinal_cord F1 / AUC | csf F1 / AUC "
        "| cord FN | CSF FP | held-out machine F1 | whole-cine frames/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, e in (("shipped: " + ship["bundle_id"], ship), ("reference: ResNet18 224²", ref)):
        for backend in ("torch", "onnx"):
            b = e["backends"][backend]
            t, h = b["parts"]["test"], b["parts"]["held_out_machine"]
            pl = t["per_label"]
            lines.append(
                f"| {label} | {'eager torch' if backend == 'torch' else 'ONNX Runtime'} | {t['f1_micro']:.4f} | {t['f1_macro']:.4f} | "
                f"{_num(t['roc_auc_macro'], 4)} | "
                + " | ".join(f"{_num(pl[k]['f1'])} / {_num(pl[k]['roc_auc'])}" for k in ("bad_quality", "spinal_cord", "csf"))
                + f" | {t['clinical']['fn_spinal_cord']} | {t['clinical']['fp_csf']} | {h['f1_micro']:.4f} | {b['frames_per_s_test']} |"
            )
    v = r["verdict"]
    lines += [
        "",
        f"**Rule** (whole cine >= {RULE_FPS:g} frames/s on 2 CPU cores at no more than {RULE_POINTS:g} point of F1 below eager "
        f"ResNet18 at 224²): shipped model in ONNX Runtime {s_test['f1_micro']:.4f} against the reference in eager torch "
        f"{f_test['f1_micro']:.4f}: difference {100 * v['f1_difference']:+.2f} points "
        f"(paired bootstrap over the test cines, 95 %: {100 * v['f1_difference_ci95'][0]:+.2f} to {100 * v['f1_difference_ci95'][1]:+.2f}; "
        f"share of resamples more than {RULE_POINTS:g} point below: {v['share_of_resamples_below_rule']:.2f}). "
        f"**{v['text']}**",
        "",
        "Reference: " + ref["network"]["name"] + f", initialisation {ref['initialisation']}, {ref['epochs_run']} epochs in "
        f"{ref['train_minutes']} min; trained with",
        "",
        "```",
        ref["training_command"],
        "```",
        "",
        "Shipped bundle trained with",
        "",
        "```",
        ship["training_command"],
        "```",
        "",
        "The reference bundle is not in the repository (kept outside it); only these numbers and the command are. "
        "All cines are synthetic (SpineAITraining.ultrasound.generator); no real infant spine ultrasound was available.",
    ]
    if r.get("notes"):
        lines += [""] + [f"Note: {n}" for n in r["notes"]]
    return lines


def _plain(value):
    return int(value) if isinstance(value, np.integer) else float(value)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=BUNDLED)
    p.add_argument("--reference", type=Path, required=True, help="bundle of the ResNet18 224² reference")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cines", type=int, help="only the first N test and held-out cines (a quick check, not a result)")
    p.add_argument("--note", action="append", default=[], help="a sentence for the report (e.g. the training budget)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "lp_ultrasound_reference.json")
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the existing --out JSON")
    args = p.parse_args(argv)
    from SpineAILib.outputs import write_text_atomic

    if args.render:
        result = json.loads(args.out.read_text())
        result["verdict"]["text"] = verdict_text(result)
        result["notes"] = result.get("notes", []) + args.note
        write_text_atomic(args.out, json.dumps(result, indent=2, default=_plain) + "\n")
        args.out.chmod(0o644)
        lines = render(result)
        write_text_atomic(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0
    os.environ["SPINEAI_THREADS"] = str(args.threads)
    from SpineAILib.models.bundle import read_metadata
    from SpineAILib.workflows.ultrasound.inference import LABELS

    ship_meta, ref_meta = read_metadata(args.bundle), read_metadata(args.reference)
    for key in ("seed", "data"):
        if ship_meta["training"][key] != ref_meta["training"][key]:
            raise SystemExit(f"the two bundles were not trained on the same data ({key} differs)")
    for part in ("train", "val", "test", "held_out"):
        if ship_meta["training"]["split"][part] != ref_meta["training"]["split"][part]:
            raise SystemExit(f"the two bundles' {part} splits differ")
    load_before = load_average()
    t0 = time.perf_counter()
    parts, data = held_out_cines(ship_meta)
    if args.cines:
        parts = {k: v[: args.cines] for k, v in parts.items()}
        args.note.append(f"quick check on the first {args.cines} cines only")
    print(f"regenerated {len(parts['test'])} test and {len(parts['held_out_machine'])} held-out cines "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    labels = list(LABELS)
    runs = {name: {backend: run_bundle(bundle, backend, parts, args.threads) for backend in ("torch", "onnx")}
            for name, bundle in (("shipped", args.bundle), ("reference", args.reference))}
    result = {
        "benchmark": "lp-ultrasound shipped classifier vs eager ResNet18 224 reference (issue speed rule)",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": describe_machine(),
        "threads": args.threads,
        "load_average_before": load_before,
        "data": {**data, "test_cines": len(parts["test"]), "held_out_cines": len(parts["held_out_machine"]),
                 "test_frames": sum(v.n for v in parts["test"])},
        "shipped": summarise(ship_meta, runs["shipped"], parts, labels),
        "reference": summarise(ref_meta, runs["reference"], parts, labels),
        "notes": args.note,
    }
    result["shipped"]["bundle"] = str(args.bundle.resolve().relative_to(REPO)) if args.bundle.resolve().is_relative_to(REPO) else str(args.bundle)
    result["reference"]["bundle"] = "(outside the repository)"
    a = micro_counts(parts["test"], runs["shipped"]["onnx"]["parts"]["test"]["per_video"])
    b = micro_counts(parts["test"], runs["reference"]["torch"]["parts"]["test"]["per_video"])
    ci, below = paired_bootstrap(a, b)
    diff = result["shipped"]["backends"]["onnx"]["parts"]["test"]["f1_micro"] - result["reference"]["backends"]["torch"]["parts"]["test"]["f1_micro"]
    fps = result["shipped"]["backends"]["onnx"]["frames_per_s_test"]
    result["verdict"] = {"f1_difference": diff, "f1_difference_ci95": ci, "share_of_resamples_below_rule": below,
                         "within_one_point": bool(diff >= -RULE_POINTS / 100), "shipped_onnx_frames_per_s": fps}
    result["verdict"]["text"] = verdict_text(result)
    result["load_average_after"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=2, default=_plain) + "\n")
    lines = render(result)
    write_text_atomic(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    for path in (args.out, args.out.with_suffix(".md")):
        path.chmod(0o644)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
