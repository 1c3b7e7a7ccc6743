"""How far an estimated disc (SpineAILib.workflows.lumbar.discs.estimate_disc_below) lands from a measured one.

The level model has no sacrum label, so the workflow estimates L5/S1 from L5 alone. No
data here labels S1, so the rule cannot be checked at L5/S1 itself; it is checked one level
up instead, on the ground-truth label maps: L4/L5 estimated from L4 alone (with the L3/L4
disc height and the L3 -> L4 direction, as L5/S1 uses L4/L5 and L4 -> L5) against L4/L5
measured between the labelled L4 and L5 bodies. At L5/S1 the lumbosacral angle is larger,
so expect the error there to be at least this.

    python -m SpineAITraining.lumbar.evaluate_disc_estimate --data ../shared/data/mri_lumbar [--part all|train|validation|test]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def estimate_errors(cases):
    """[(case id, error mm or None when the estimate is not visible)] over cases with L3/L4 and L4/L5 measured."""
    from SpineAILib.io import load
    from SpineAILib.terminology import vertebra_number
    from SpineAILib.workflows.lumbar.discs import LabelGeometry, disc_levels, extrapolated_disc

    l3, l4 = vertebra_number("L3"), vertebra_number("L4")
    out = []
    for case in cases:
        labels = load(case.labels)
        measured = {d["level"]: d for d in disc_levels(labels)}
        if not (measured["L3/L4"]["visible"] and measured["L4/L5"]["visible"]):
            continue
        geometry = LabelGeometry(labels)
        toward = geometry.centre(l4) - geometry.centre(l3)
        estimate = extrapolated_disc(geometry, "L4/L5", l4, measured["L3/L4"]["height_mm"], toward)
        error = float(np.linalg.norm(estimate["centre"] - measured["L4/L5"]["centre"])) if estimate["visible"] else None
        out.append((case.case_id, error))
    return out


def summary(errors):
    e = np.array([v for _, v in errors if v is not None])
    if not len(e):
        return {"cases": len(errors), "estimated": 0}
    return {"cases": len(errors), "estimated": int(len(e)), "mean_mm": round(float(e.mean()), 2),
            "median_mm": round(float(np.median(e)), 2), "p90_mm": round(float(np.percentile(e, 90)), 2),
            "max_mm": round(float(e.max()), 2), "within_3mm": round(float((e <= 3).mean()), 2),
            "within_5mm": round(float((e <= 5).mean()), 2)}  # fmt: skip


def main(argv=None):
    from SpineAITraining.lumbar import mri_lumbar

    p = argparse.ArgumentParser(prog="python -m SpineAITraining.lumbar.evaluate_disc_estimate", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the mri_lumbar folder (images + _labels)")
    p.add_argument("--part", default="all", choices=("all", "train", "validation", "test"))
    args = p.parse_args(argv)
    cases = mri_lumbar.list_cases(args.data) if args.part == "all" else mri_lumbar.split_cases(args.data, args.part)
    mri_lumbar.require_cases(cases, args.data, args.part)
    errors = estimate_errors(cases)
    print(json.dumps({"part": args.part, **summary(errors), "per_case_mm": {c: None if e is None else round(e, 2)
                                                                            for c, e in errors}}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    from SpineAILib.errors import run_reporting_errors

    sys.exit(run_reporting_errors("evaluate_disc_estimate", main))
