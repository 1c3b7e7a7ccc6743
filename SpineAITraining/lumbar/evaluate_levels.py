"""Evaluate a lumbar-mri level bundle on held-out real cases, through the same pipeline users run.

    python -m SpineAITraining.lumbar.evaluate_levels --bundle BUNDLE --data ../shared/data/mri_lumbar \
        [--part test] [--refiner installed|none|REFINER] [--sacrum installed|none|SACRUM] [--markdown benchmarks/results/lumbar_mri_eval.md] [--write-metadata]

Per case, on the input's own 1 mm grid: Dice per labelled vertebral body; level
identification (every labelled level named correctly: the predicted body of that
name overlaps the true one with Dice >= 0.5 and no other name overlaps it more);
disc-point error in mm against disc points derived the same way
(SpineAILib.workflows.lumbar.discs) from the ground-truth labels, L5/S1 included: the truth
there is the team's rule-made S1 label (SpineAITraining/labels/mri_lumbar_s1), so S1 Dice and
the L5/S1 error measure agreement with that rule, not with a manual outline. The sacrum model
(``--sacrum``, the installed one by default) anchors the names from below as in the workflow;
the report says which anchor named each case. The outline refiner
(SpineAILib.workflows.lumbar.refine) runs as in the workflow (the installed one by default).
``--write-metadata`` adds the summary to the metrics of the last model of the
pipeline (the refiner, or the level bundle without one), naming the cases.
"""

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
LEVEL_DICE_NAMED = 0.5
DISC_TOLERANCE_MM = 3.0


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m SpineAITraining.lumbar.evaluate_levels", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--part", default="test", choices=("train", "validation", "test"))
    p.add_argument("--device", default="auto")
    p.add_argument("--refiner", default="installed",
                   help="outline refiner bundle folder, 'installed' (the workflow's default) or 'none'")
    p.add_argument("--sacrum", default="installed",
                   help="sacrum (S1) bundle folder, 'installed' (the workflow's default) or 'none' (names from the column)")
    p.add_argument("--sweep-refiner", help="validation tuning: comma-separated refiner zone margins (mm) to compare")
    p.add_argument("--set-refiner", type=float, help="store this zone margin (mm) in the refiner bundle's thresholds first")
    p.add_argument("--markdown", type=Path, help="write the metric table here")
    p.add_argument("--json", type=Path, help="write every per-case number here")
    p.add_argument("--write-metadata", action="store_true",
                   help="add the summary to the metrics of the refiner bundle (or, with --refiner none, the level bundle)")
    p.add_argument("--sweep-background-offset", help="validation tuning: comma-separated offsets to compare")
    p.add_argument("--set-background-offset", type=float, help="store this offset in the bundle's thresholds first")
    return p.parse_args(argv)


def evaluate_case(case, bundle, refiner=None, sacrum=None):
    from SpineAILib.io import load
    from SpineAILib.terminology import vertebra_name
    from SpineAILib.workflows.lumbar.discs import disc_levels, estimate_disc_below
    from SpineAILib.workflows.lumbar.pipeline import segment_vertebrae
    from SpineAITraining.lumbar.sacrum_labels import S1, with_s1

    image, truth = load(case.image), load(case.labels)
    voxels, has_s1 = with_s1(case.case_id, truth)  # S1 truth: the team's rule-made label
    truth = type(truth)(voxels=voxels, ijk_to_ras=truth.ijk_to_ras, modality=truth.modality, is_labelmap=True)
    t0 = time.perf_counter()
    result = segment_vertebrae(image, bundle, refiner=refiner, **({"sacrum": sacrum} if sacrum is not None else {}))
    seconds = time.perf_counter() - t0
    predicted, true = result.labelmap.voxels, np.asarray(truth.voxels)
    dice, named = {}, {}
    for value in (*case.labelled_values, *((S1,) if has_s1 and sacrum is not None else ())):
        t = true == value
        if not t.any():
            continue
        name = vertebra_name(value)
        p = predicted == value
        dice[name] = 2.0 * float((p & t).sum()) / float(p.sum() + t.sum())
        overlaps = np.bincount(predicted[t].astype(np.int64), minlength=S1 + 2)
        overlaps[0] = 0
        # S1's truth is a rule's outline: named right when its voxels that got a name mostly got S1 (no Dice bar)
        named[name] = (value == S1 or dice[name] >= LEVEL_DICE_NAMED) and int(np.argmax(overlaps)) == value
    truth_discs = {d["level"]: d for d in disc_levels(truth) if d["visible"]}
    predicted_discs = {d["level"]: d for d in estimate_disc_below(result.labelmap, disc_levels(result.labelmap))}
    discs = {}
    for level, reference in truth_discs.items():
        found = predicted_discs.get(level, {})
        discs[level] = float(np.linalg.norm(found["centre"] - reference["centre"])) if found.get("visible") else None
    estimated = [level for level, d in predicted_discs.items() if d.get("estimated")]
    return {
        "case": case.case_id,
        "source": case.source,
        "discs_estimated": estimated,  # L5/S1 without S1 found, as the workflow estimates it
        "dice": dice,
        "named": named,
        "all_named": all(named.values()),
        "disc_error_mm": discs,
        "levels_found": [v["name"] for v in result.vertebrae],
        "seconds": round(seconds, 2),
        "notes": result.notes,
        "naming": {k: result.naming.get(k) for k in ("anchor", "status", "reasons", "warnings")},
    }


def summarise(cases):
    levels = sorted({n for c in cases for n in c["dice"]}, key=lambda n: ("TLS".index(n[0]), int(n[1:])))
    per_level = {n: float(np.mean([c["dice"][n] for c in cases if n in c["dice"]])) for n in levels}
    all_dice = [v for c in cases for n, v in c["dice"].items() if n != "S1"]  # S1's truth is a rule's outline
    lumbar = [v for c in cases for n, v in c["dice"].items() if n.startswith("L")]
    anchors = [c.get("naming", {}).get("anchor") or "column" for c in cases]
    errors = [e for c in cases for e in c["disc_error_mm"].values() if e is not None]
    expected = sum(len(c["disc_error_mm"]) for c in cases)
    return {
        "cases": len(cases),
        "dice_per_level": per_level,
        "dice_mean": float(np.mean(all_dice)),
        "dice_min": float(np.min(all_dice)),
        "dice_L1_L5_mean": float(np.mean(lumbar)) if lumbar else None,
        "level_accuracy": float(np.mean([v for c in cases for n, v in c["named"].items()])),
        "anchors": {a: anchors.count(a) for a in sorted(set(anchors))},
        "level_identification_accuracy": float(np.mean([c["all_named"] for c in cases])),
        "levels_named_correctly": f"{sum(v for c in cases for v in c['named'].values())}/{sum(len(c['named']) for c in cases)}",
        "disc_points_expected": expected,
        "disc_points_found": len(errors),
        "disc_error_mean_mm": float(np.mean(errors)) if errors else None,
        "disc_error_median_mm": float(np.median(errors)) if errors else None,
        "disc_error_max_mm": float(np.max(errors)) if errors else None,
        "l5_s1_error_mm": [None if c["disc_error_mm"]["L5/S1"] is None else round(c["disc_error_mm"]["L5/S1"], 1)
                           for c in cases if "L5/S1" in c["disc_error_mm"]],
        "l5_s1_estimated": sum("L5/S1" in c.get("discs_estimated", []) for c in cases),
        "disc_points_within_3mm": (sum(e <= DISC_TOLERANCE_MM for e in errors) / expected) if expected else None,
        "seconds_per_case": float(np.mean([c["seconds"] for c in cases])),
        # naming checks (SpineAILib.workflows.lumbar.naming): cases with any level name withheld, and why
        "cases_with_names_withheld": [c["case"] for c in cases if c.get("naming", {}).get("status", "named") != "named"],
    }


def markdown(summary, cases, meta, data_text, machine):
    f = lambda v, d=3: "—" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [
        "# Lumbar MRI level model — held-out evaluation",
        "",
        f"Bundle `{meta['bundle_id']}` {meta['version']} (sha256 {meta['sha256'][:12]}…), "
        f"evaluated {datetime.date.today().isoformat()} with `SpineAITraining/lumbar/evaluate_levels.py`.",
        f"Data: {data_text}.",
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, torch {machine.get('torch')}, "
        f"GPU: {machine.get('gpu') or 'none'}.",
        "",
        "| metric | value | target |",
        "|---|---|---|",
        f"| Dice, mean over all manually labelled bodies | {f(summary['dice_mean'])} (min {f(summary['dice_min'])}) | ≥ 0.90 |",
        f"| Dice, mean over L1–L5 | {f(summary['dice_L1_L5_mean'])} | ≥ 0.92 |",
        *[f"| Dice {name}{' (against the rule-made S1 label)' if name == 'S1' else ''} | {f(v)} | "
          f"{'—' if name == 'S1' else '≥ 0.90'} |" for name, v in summary["dice_per_level"].items()],
        f"| per-level accuracy (levels named right) | {f(summary['level_accuracy'], 3)} | 1.00 |",
        f"| anchor that named the cases | {', '.join(f'{k} {v}' for k, v in summary['anchors'].items())} | |",
        f"| level identification (cases with every labelled level named correctly) | "
        f"{f(summary['level_identification_accuracy'], 2)} ({summary['levels_named_correctly']} levels) | 1.00 |",
        f"| disc points found / expected (L1/L2–L5/S1; L5/S1 against the rule-made S1 label) | "
        f"{summary['disc_points_found']}/{summary['disc_points_expected']} | all |",
        f"| disc-point error, mean / median / max (mm) | {f(summary['disc_error_mean_mm'], 2)} / "
        f"{f(summary['disc_error_median_mm'], 2)} / {f(summary['disc_error_max_mm'], 2)} | ≤ 3 |",
        f"| disc points within 3 mm | {f(summary['disc_points_within_3mm'], 2)} | 1.00 |",
        f"| L5/S1 error per case (mm; estimated below L5 in {summary['l5_s1_estimated']} case(s), where S1 was not "
        f"found) | {', '.join('missed' if v is None else f'{v:.1f}' for v in summary['l5_s1_error_mm'])} | ≤ 3 |",
        f"| cases with level names withheld (naming checks) | {len(summary['cases_with_names_withheld'])}"
        f"{' (' + ', '.join(summary['cases_with_names_withheld']) + ')' if summary['cases_with_names_withheld'] else ''} | 0 |",
        f"| time per case (prediction + 3-D clean-up, this machine) | {f(summary['seconds_per_case'], 1)} s | |",
        "",
        "## Per case",
        "",
        "| case | source | levels found | anchor | Dice per body | named | disc errors (mm) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        dice = ", ".join(f"{n} {v:.3f}" for n, v in c["dice"].items())
        discs = ", ".join(f"{k} {'missed' if v is None else f'{v:.1f}'}" for k, v in c["disc_error_mm"].items())
        lines.append(f"| {c['case']} | {c['source']} | {' '.join(c['levels_found'])} | {c['naming'].get('anchor')} | {dice} | "
                     f"{'yes' if c['all_named'] else 'NO'} | {discs} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_thresholds(bundle_path, thresholds):
    """Merge ``thresholds`` into the bundle's metadata (same weights, same sha256)."""
    from safetensors.torch import load_file

    from SpineAILib.models.bundle import WEIGHTS_FILE, read_metadata, save_bundle

    meta = read_metadata(bundle_path)
    meta["thresholds"] = dict(meta.get("thresholds") or {}, **thresholds)
    save_bundle(bundle_path, meta, load_file(str(Path(bundle_path) / WEIGHTS_FILE)), overwrite=True)


def write_metrics(bundle_path, summary, data_text):
    """Replace the bundle's held-out metrics in its metadata.json alone (weights, model.onnx and report untouched)."""
    from SpineAILib.models.bundle import update_metadata

    def change(meta):
        kept = [m for m in meta["metrics"] if not m["name"].endswith("_test")]
        meta["metrics"] = kept + [{"name": n, "value": None if v is None else round(float(v), 4), "data": data_text}
                                  for n, v in new]  # fmt: skip
        return meta

    new = [
        ("dice_mean_test", summary["dice_mean"]),
        *[(f"dice_{name}_test", v) for name, v in summary["dice_per_level"].items()],
        ("level_identification_accuracy_test", summary["level_identification_accuracy"]),
        ("level_accuracy_test", summary["level_accuracy"]),
        ("dice_L1_L5_mean_test", summary["dice_L1_L5_mean"]),
        ("disc_point_error_mean_mm_test", summary["disc_error_mean_mm"]),
        ("disc_point_error_max_mm_test", summary["disc_error_max_mm"]),
        ("disc_points_within_3mm_test", summary["disc_points_within_3mm"]),
    ]
    return update_metadata(bundle_path, change)


def load_sacrum_option(option, device):
    """The sacrum bundle ``--sacrum`` names: 'installed' (None when none is), 'none', or a folder."""
    from SpineAILib.workflows.lumbar.sacrum import load_sacrum, sacrum_bundle_path

    if option == "none":
        return None
    path = sacrum_bundle_path() if option == "installed" else Path(option)
    return None if path is None else load_sacrum(device, path)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from machine import describe_machine
    from tqdm import tqdm

    from SpineAILib.models.bundle import load_bundle
    from SpineAILib.workflows.lumbar.refine import load_refiner, refiner_bundle_path
    from SpineAITraining.lumbar import mri_lumbar

    if args.set_background_offset is not None:
        write_thresholds(args.bundle, {"background_logit_offset": args.set_background_offset})
    bundle = load_bundle(args.bundle, device=args.device, expected_task="lumbar-mri")
    if args.set_refiner is not None:
        write_thresholds(refiner_bundle_path() if args.refiner == "installed" else Path(args.refiner),
                         {"zone_margin_mm": args.set_refiner})  # fmt: skip
    refiner = None if args.refiner == "none" else load_refiner(args.device, None if args.refiner == "installed" else Path(args.refiner))
    sacrum = load_sacrum_option(args.sacrum, args.device)
    cases = mri_lumbar.require_cases(mri_lumbar.split_cases(args.data, args.part), args.data, args.part)
    if not cases:
        raise SystemExit(f"no {args.part} cases found in {args.data}")
    if (args.sweep_background_offset or args.sweep_refiner) and args.part == "test":
        raise SystemExit("tuning on the test part is not allowed; sweep on --part validation")
    if args.sweep_refiner:
        for margin in (float(v) for v in args.sweep_refiner.split(",")):
            refiner.metadata["thresholds"] = dict(refiner.metadata.get("thresholds") or {}, zone_margin_mm=margin)
            s = summarise([evaluate_case(case, bundle, refiner, sacrum) for case in cases])
            print(f"refiner zone margin {margin:g} mm: Dice {s['dice_mean']:.4f} (min {s['dice_min']:.3f}), named "
                  f"{s['levels_named_correctly']}, disc error mean {s['disc_error_mean_mm']:.2f} max "
                  f"{s['disc_error_max_mm']:.2f} mm", flush=True)
        return 0
    if args.sweep_background_offset:
        for offset in (float(v) for v in args.sweep_background_offset.split(",")):
            bundle.metadata["thresholds"] = dict(bundle.thresholds, background_logit_offset=offset)
            s = summarise([evaluate_case(case, bundle, refiner, sacrum) for case in cases])
            print(f"offset {offset:4.2f}: Dice {s['dice_mean']:.4f} (min {s['dice_min']:.3f}), named "
                  f"{s['levels_named_correctly']}, disc error mean {s['disc_error_mean_mm']:.2f} max "
                  f"{s['disc_error_max_mm']:.2f} mm, found {s['disc_points_found']}/{s['disc_points_expected']}", flush=True)
        return 0
    data_text = (f"{args.part} split of mri_lumbar ({len(cases)} cases: {', '.join(c.case_id for c in cases)}; "
                 "SpineAITraining/splits/mri_lumbar_split.json), input grid 1 mm, full pipeline with 3-D clean-up, "
                 + (f"outlines redrawn by {refiner.metadata['bundle_id']} {refiner.metadata['version']}" if refiner
                    else "outlines of the level model (no refiner)")
                 + (f", names counted from S1 found by {sacrum.metadata['bundle_id']} {sacrum.metadata['version']}"
                    if sacrum is not None else ", names from the column (no sacrum model)")
                 + "; S1 and L5/S1 truth: the team's rule-made S1 labels (SpineAITraining/labels/mri_lumbar_s1)")  # fmt: skip
    results = [evaluate_case(case, bundle, refiner, sacrum) for case in tqdm(cases, desc=f"evaluating {args.part}", file=sys.stderr)]
    summary = summarise(results)
    machine = describe_machine()
    print(json.dumps(summary, indent=2))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(summary, results, bundle.metadata, data_text, machine), encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "cases": results, "machine": machine}, indent=2))
    if args.write_metadata:  # the whole pipeline's numbers go to the last model in it
        target = refiner.path if refiner is not None else args.bundle
        print(f"metrics written to {write_metrics(target, summary, data_text)}", file=sys.stderr)
        if sacrum is not None:
            print(f"metrics written to {write_metrics(sacrum.path, summary, data_text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from SpineAILib.errors import run_reporting_errors

    sys.exit(run_reporting_errors("evaluate_levels", main))
