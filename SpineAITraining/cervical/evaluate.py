"""Evaluate the cervical-ct bundles through the workflow's own path, and write the numbers down.

    python -m SpineAITraining.cervical.evaluate --segmentation SEG_BUNDLE [--fracture FRACTURE_BUNDLE] \
        [--shared ../shared/data] [--markdown benchmarks/results/cervical_ct_eval.md] [--write-metadata]

1. Segmentation: the test cases recorded in SEG_BUNDLE's split (phantoms are drawn again
   from their seeds with the recorded options), SpineAILib.workflows.cervical.segment on each
   case's own grid: Dice per vertebra, every cervical level named (Dice >= 0.5).
2. Fractures: the test cases of FRACTURE_BUNDLE's split through segment() +
   fracture.score_vertebrae(): the RSNA 2022 score, vertebra and patient AUC.
3. The real abdominal CT in ../shared/data/ct_thoracolumbar (no cervical spine in it):
   which levels are named (none is right) and their Dice against TotalSegmentator's labels.
``--write-metadata`` replaces those metrics in the bundles' metadata.json (same names),
each saying what it was measured on, with the date and git commit of the evaluation.
"""

import argparse
import datetime
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from SpineAILib.vocabulary import CERVICAL_VERTEBRAE as CERVICAL

TOTALSEGMENTATOR_TO_VERSE = {26: 26, 27: 24, 28: 23, 29: 22, 30: 21, 31: 20, 32: 19, 33: 18}  # S1, L5 ... T11


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m SpineAITraining.cervical.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--segmentation", type=Path, required=True, help="cervical-ct bundle")
    p.add_argument("--fracture", type=Path, help="cervical-ct/fracture bundle")
    p.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    p.add_argument("--max-cases", type=int, help="at most this many test cases per bundle")
    p.add_argument("--markdown", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--write-metadata", action="store_true")
    p.add_argument("--threads", type=int)
    return p.parse_args(argv)


def phantom_source(meta):
    """The make_case options a bundle's phantoms were drawn with (recorded, or read from its data text)."""
    from SpineAITraining.cervical.cases import phantom_case

    options = meta["training"].get("phantom") or {}
    rate = options.get("fracture_rate")
    if rate is None:
        found = re.search(r"fracture_rate ([0-9.]+)", meta["training"]["data"])
        rate = float(found.group(1)) if found else 0.3
    limit = tuple(options["shape_limit"]) if options.get("shape_limit") else None
    return {"name": f"phantom(fracture_rate={rate:g})", "case": lambda case_id: phantom_case(case_id, rate, limit)}


def evaluate_segmentation(seg_path, max_cases, log):
    from SpineAILib.models.bundle import read_metadata
    from SpineAITraining.cervical.train_segmentation import evaluate_pipeline

    meta = read_metadata(seg_path)
    ids = meta["training"]["split"]["test"][:max_cases] if max_cases else meta["training"]["split"]["test"]
    per_case, levels, seconds = evaluate_pipeline(seg_path, ids, phantom_source(meta), "cpu", log)
    cervical = [np.mean([s[n] for n in CERVICAL if n in s]) for s in per_case.values() if any(n in s for n in CERVICAL)]
    named = [all(s.get(n, 1.0) >= 0.5 for n in CERVICAL) for s in per_case.values()]
    summary = {"dice_cervical_mean_test": float(np.mean(cervical)), "levels_named_test": float(np.mean(named)),
               **{f"dice_{n}_test": v for n, v in levels.items()}, "seconds_per_case": seconds}  # fmt: skip
    data = (f"{len(ids)} held-out test phantoms ({', '.join(ids)}; never trained or tuned on), "
            "SpineAILib.workflows.cervical.segment on each phantom's own grid")  # fmt: skip
    return summary, per_case, data


def evaluate_fractures(frac_path, seg_path, max_cases, log):
    from SpineAILib.models.bundle import load_bundle, read_metadata
    from SpineAITraining.cervical.train_fracture import workflow_path_metrics

    meta = read_metadata(frac_path)
    seg = load_bundle(seg_path, device="cpu", expected_task="cervical-ct")
    ids = meta["training"]["split"]["test"][:max_cases] if max_cases else meta["training"]["split"]["test"]
    rule, prior = meta["fracture"]["patient_rule"], meta["fracture"]["prior"]
    calibration = (meta["fracture"].get("calibration") or {}).get("patient")
    metrics, per_case = workflow_path_metrics(frac_path, seg, ids, phantom_source(meta), prior, rule, log, calibration)
    data = (f"{len(ids)} held-out test phantoms (never trained or tuned on); the workflow path: vertebrae found and "
            f"named by {seg.metadata['bundle_id']} {seg.metadata['version']}, vertebrae not found predicted as the "
            "training prior")  # fmt: skip
    return {f"{k}_test": v for k, v in metrics.items()}, per_case, data


def evaluate_abdominal_ct(seg_path, shared, log):
    """Levels named on the real abdominal CT (none is right) and their Dice against TotalSegmentator."""
    from SpineAILib.io import load
    from SpineAILib.io.volumes import load_volume_file
    from SpineAILib.models.bundle import load_bundle
    from SpineAILib.terminology import vertebra_name
    from SpineAILib.workflows.cervical.segment import segment

    ct_path = shared / "ct_thoracolumbar" / "ct.nii.gz"
    labels_path = shared / "ct_thoracolumbar" / "ct_model_labels_totalsegmentator.nii.gz"
    if not ct_path.is_file():
        log(f"{ct_path} is absent: the real abdominal CT is not evaluated")
        return None
    result = segment(load(ct_path), load_bundle(seg_path, device="cpu"))
    truth = load_volume_file(labels_path, labelmap=True).voxels if labels_path.is_file() else None
    found = {v["name"]: v["label"] for v in result.vertebrae}
    dice = {}
    if truth is not None:
        for ts, verse in TOTALSEGMENTATOR_TO_VERSE.items():
            if vertebra_name(verse) in found:
                p, t = result.labelmap.voxels == verse, truth == ts
                dice[vertebra_name(verse)] = 2.0 * float((p & t).sum()) / max(1.0, float(p.sum() + t.sum()))
    entry = {"levels_named": sorted(found), "cervical_levels_named": [n for n in found if n in CERVICAL],
             "dice_vs_totalsegmentator": dice, "notes": result.notes}  # fmt: skip
    log(f"real abdominal CT: {json.dumps(entry)}")
    return entry


def write_metrics(bundle, values, data, extra=None):
    """Replace (or add) these metrics in the bundle's metadata.json, atomically."""
    from SpineAILib.models.bundle import update_metadata
    from SpineAITraining.common.export import git_commit

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    stamp = f"; measured {when} by SpineAITraining.cervical.evaluate at commit {git_commit() or 'unknown'}"

    def change(meta):
        keep = [m for m in meta["metrics"] if m["name"] not in values]
        meta["metrics"] = keep + [{"name": k, "value": None if v is None else round(float(v), 4), "data": data + stamp}
                                  for k, v in values.items()]  # fmt: skip
        if extra:
            meta.setdefault("evaluation", {}).update(extra)
        return meta

    update_metadata(bundle, change)


def markdown(report):
    lines = ["# cervical-ct evaluation (phantoms and the real abdominal CT)", "",
             f"{report['date']}; {report['machine']}.", ""]  # fmt: skip
    seg = report["segmentation"]
    lines += [f"## Segmentation — {seg['bundle']}", "", seg["data"], "",
              "| metric | value |", "|---|---|"]  # fmt: skip
    lines += [f"| {k} | {v:.4f} |" for k, v in seg["summary"].items()]
    if report.get("fracture"):
        frac = report["fracture"]
        lines += ["", f"## Fractures — {frac['bundle']}", "", frac["data"], "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {'n/a' if v is None else f'{v:.4f}'} |" for k, v in frac["summary"].items()]
    abd = report.get("abdominal_ct")
    if abd:
        lines += ["", "## Real abdominal CT (../shared/data/ct_thoracolumbar/ct.nii.gz: T11-S1, no cervical spine)", "",
                  f"Levels named: {', '.join(abd['levels_named']) or 'none'} (cervical: "
                  f"{', '.join(abd['cervical_levels_named']) or 'none'}). Dice against TotalSegmentator's labels for "
                  f"the levels named: {json.dumps(abd['dice_vs_totalsegmentator']) if abd['dice_vs_totalsegmentator'] else 'none to compare (nothing named)'}.",
                  "", "Clean-up notes: " + ("; ".join(abd["notes"]) or "none")]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import platform

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    summary, per_case, data = evaluate_segmentation(args.segmentation, args.max_cases, log)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
              "segmentation": {"bundle": str(args.segmentation), "summary": summary, "per_case": per_case, "data": data}}  # fmt: skip
    log(json.dumps(summary))
    abdominal = evaluate_abdominal_ct(args.segmentation, args.shared, log)
    report["abdominal_ct"] = abdominal
    if args.write_metadata:
        values = {k: v for k, v in summary.items() if k != "seconds_per_case"}
        write_metrics(args.segmentation, values, data, {"test_per_case": per_case, "abdominal_ct": abdominal,
                                                          "seconds_per_test_case": round(summary["seconds_per_case"], 2)})
    if args.fracture:
        frac_summary, frac_cases, frac_data = evaluate_fractures(args.fracture, args.segmentation, args.max_cases, log)
        report["fracture"] = {"bundle": str(args.fracture), "summary": frac_summary, "per_case": frac_cases, "data": frac_data}
        if args.write_metadata:
            write_metrics(args.fracture, frac_summary, frac_data, {"test_per_case": frac_cases})
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(report))
    log(f"evaluated in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    from SpineAILib.errors import run_reporting_errors

    sys.exit(run_reporting_errors("evaluate", main))
