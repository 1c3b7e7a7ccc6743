"""Measure the rule-based spine-ct workflow on fresh whole-spine phantoms and on the real CT.

    python -m SpineAITraining.spine_ct.evaluate_rules --phantoms 30 [--first-seed 300000] [--real DIR] [--out FILE]
        [--field-of-view abdomen] [--plant-compression]

Phantoms: ``make_spine_ct(seed)`` for seeds first-seed ... first-seed + n - 1 (random field of view,
spacing and variants); seeds from 300000 on were never looked at while the rules were written.
``--field-of-view`` fixes the field (e.g. abdomen: where both anchors are most often in view);
``--plant-compression`` plants one compression per phantom at a level drawn from the seed among
PLANTED_LEVELS (grade and morphology drawn by the phantom): the grades' sensitivity, which random
phantoms (compressions in 10-40 % of them, often at unnamed levels) measure on too few bodies.
Per case, two checks: at each vertebra's planted body centre, the name the workflow gave the label
there (the naming check: ``by_body_centre``); and each vertebra the workflow labels matched to the
truth label it overlaps best (Dice: an outline check too, as a body that spills into its neighbour
is counted wrong). Reported: cases named all
right / with a wrong name / not named, per region (cervical, thoracic, lumbar, sacrum) names right
and wrong and mean Dice, L1 trabecular HU against the planted value, and Genant grades against the
planted compressions. The real CT (``--real``: ct_thoracolumbar with TotalSegmentator's labels) is
scored the same way against that reference, which is a model's output, not a manual truth.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from SpineAILib.errors import InputError, run_reporting_errors

PLANTED_LEVELS = ("T12", "L1", "L2", "L3", "L4")  # graded levels that an abdominal field holds (no grade at L5)
REGIONS = (("cervical", range(1, 8)), ("thoracic", (*range(8, 20), 28)), ("lumbar", range(20, 26)), ("sacrum", (26,)))


def region_of(number):
    return next((name for name, numbers in REGIONS if number in numbers), "other")


def score(result, truth_labels):
    """Per labelled vertebra: name, truth number it overlaps best, Dice with it, named right?"""
    from SpineAILib.terminology import VERTEBRAE

    ours = result.labelmap.voxels
    rows = []
    for v in result.vertebrae:
        mask = ours == v["label"]
        overlap = np.bincount(truth_labels[mask].ravel(), minlength=256)
        overlap[0] = 0
        if not overlap.any():
            rows.append({"name": v["name"], "truth": None, "dice": 0.0, "named": v["label"] < 100, "right": False})
            continue
        candidates = np.nonzero(overlap)[0]
        sizes = np.bincount(truth_labels.ravel(), minlength=256)
        dice = {int(t): 2.0 * overlap[t] / (mask.sum() + sizes[t]) for t in candidates}
        best = max(dice, key=dice.get)
        named = v["label"] < 100
        rows.append({"name": v["name"], "truth": VERTEBRAE.get(best, str(best)), "truth_number": best,
                     "dice": round(dice[best], 3), "named": named, "right": named and v["label"] == best})  # fmt: skip
    return rows


def names_at_body_centres(result, truth, to_ijk):
    """Per vertebra in the phantom's view: the name the workflow gave the label at its body centre."""
    out = {}
    labels = result.labelmap.voxels
    for name in truth["levels_in_view"]:
        level = truth["levels"].get(name) or {}
        if not level.get("body_centre_ras"):
            continue
        i, j, k = np.rint(to_ijk @ np.array([*level["body_centre_ras"], 1.0]))[:3].astype(int)
        if not (0 <= k < labels.shape[0] and 0 <= j < labels.shape[1] and 0 <= i < labels.shape[2]):
            continue
        value = int(labels[k, j, i])
        out[name] = result.names.get(value) if value else None
    return out


def grades_against_planted(measured, truth, names):
    """Per measured vertebra named right (``names``) that Genant grades (thoracic, lumbar, not cut by the field of
    view): the grade shown (None: withheld), whether borderline, and the planted grade (0: no compression)."""
    from SpineAILib.workflows.spine_ct.workflow import GRADE_WITHHELD

    out = []
    for m in measured:
        withheld = any(n.startswith(GRADE_WITHHELD) for n in m["notes"])
        if m["name"] not in names or (m.get("genant_grade") is None and not withheld):
            continue
        out.append({"name": m["name"], "grade": m.get("genant_grade"), "borderline": bool(m.get("genant_borderline")),
                    "planted": int((truth["levels"].get(m["name"]) or {}).get("genant_grade", 0))})  # fmt: skip
    return out


def phantom_variants(seed, plant_compression):
    """The phantom's fixed variants: one compression at a level drawn from the seed, or none fixed."""
    if not plant_compression:
        return None
    level = PLANTED_LEVELS[int(np.random.default_rng([seed, 5]).integers(len(PLANTED_LEVELS)))]
    return {"compressions": [level]}


def evaluate_phantom(seed, field_of_view="random", plant_compression=False):
    from SpineAILib.vertebral_bodies import measure_vertebral_bodies
    from SpineAILib.workflows.spine_ct.workflow import measure_named
    from SpineAITraining.spine_ct.phantom import make_spine_ct
    from SpineAILib.workflows.spine_ct.segment import segment_spine

    case = make_spine_ct(seed, field_of_view, variants=phantom_variants(seed, plant_compression))
    t0 = time.perf_counter()
    result = segment_spine(case.ct)
    seconds = time.perf_counter() - t0
    rows = score(result, np.asarray(case.vertebrae.voxels))
    at_centres = names_at_body_centres(result, case.truth, np.linalg.inv(case.ct.ijk_to_ras))
    measured = measure_named(result)  # grades as the workflow shows them
    truth = case.truth
    right = {r["name"] for r in rows if r["right"]}
    grades = grades_against_planted(measured, truth, right)
    heights = height_errors([m for m in measured if m["name"] in right], truth)
    # the same measurement on the phantom's own vertebra labels: how much of the error is the method's, not the outline's
    on_truth = height_errors(measure_vertebral_bodies(case.ct, case.vertebrae) if heights else [], truth, right)
    l1 = next((m for m in measured if m["name"] == "L1" and m.get("hu_mean") is not None), None)
    return {"case": f"phantom {seed}", "field_of_view": truth["field_of_view"], "transitional": truth["transitional"],
            "sacrum_in_view": truth["anchors_in_view"]["sacrum"], "anchor": result.naming.get("anchor"),
            "last_rib_in_view": truth["anchors_in_view"]["last_rib"], "rib_pairs": truth["rib_pairs"],
            "reason": result.naming.get("reason"), "rows": rows, "grades": grades, "at_body_centres": at_centres,
            "heights": heights, "heights_on_truth_labels": on_truth,
            "l1_hu": None if l1 is None else {"measured": l1["hu_mean"], "planted": truth.get("l1_trabecular_hu")},
            "seconds": round(seconds, 2)}  # fmt: skip


HEIGHTS = ("anterior", "middle", "posterior")


def height_errors(measured, truth, names=None):
    """Per measured thoracic/lumbar body (``names``: only these): measured minus planted anterior, middle and
    posterior heights (mm), and the planted compression grade."""
    out = []
    for m in measured:
        level = truth["levels"].get(m["name"]) or {}
        planted = level.get("heights_mm")
        if not planted or (names is not None and m["name"] not in names) or m.get("middle_height_mm") is None:
            continue
        out.append({"name": m["name"], "planted_grade": level.get("genant_grade", 0),
                    "errors_mm": [round(float(m[f"{h}_height_mm"]) - planted[h], 2) for h in HEIGHTS],
                    "planted_mm": [planted[h] for h in HEIGHTS]})  # fmt: skip
    return out


def _height_line(entries, what):
    errors = np.array([e["errors_mm"] for e in entries], float).reshape(-1, 3)
    relative = np.abs(errors) / np.array([e["planted_mm"] for e in entries], float).reshape(-1, 3)
    if not len(errors):
        return f"| {what} | 0 | | | |"
    return (f"| {what} | {len(errors)} | " + " | ".join(f"{np.mean(np.abs(errors[:, i])):.1f} mm "
            f"({100 * np.mean(relative[:, i]):.0f}%)" for i in range(3)) + " |")  # fmt: skip


def evaluate_real(folder):
    from SpineAILib.images import VolumeImage
    from SpineAILib.io import load
    from SpineAILib.measure_vertebrae import to_verse
    from SpineAILib.vertebral_bodies import l1_bone_density, measure_vertebral_bodies
    from SpineAILib.workflows.spine_ct.segment import segment_spine
    from SpineAILib.workflows.spine_ct.workflow import measure_named

    ct = load(Path(folder) / "ct.nii.gz")
    reference = to_verse(np.asarray(load(Path(folder) / "ct_model_labels_totalsegmentator.nii.gz").voxels), "totalsegmentator")
    t0 = time.perf_counter()
    result = segment_spine(ct)
    seconds = time.perf_counter() - t0
    rows = score(result, reference)
    measured = measure_named(result)
    # the same measurement on the reference's outlines: how far apart the two outlines' heights and grades are
    theirs = {m["name"]: m for m in measure_vertebral_bodies(ct, VolumeImage(reference, ct.ijk_to_ras.copy(), is_labelmap=True))}
    keys = [f"{h}_height_mm" for h in HEIGHTS] + ["genant_grade", "hu_mean"]
    return {"case": "real ct_thoracolumbar/ct.nii.gz", "anchor": result.naming.get("anchor"), "rows": rows,
            "grades": [{"name": m["name"], "grade": m.get("genant_grade"), "borderline": m.get("genant_borderline")}
                       for m in measured],
            "measured": [{"name": m["name"], "ours": [m.get(k) for k in keys],
                          "on_reference": [(theirs.get(m["name"]) or {}).get(k) for k in keys]} for m in measured],
            "l1": l1_bone_density(measured), "seconds": round(seconds, 2),
            "reference": "TotalSegmentator's output (a model's labels, not a manual truth)"}  # fmt: skip


def summary(cases):
    out = {"cases": len(cases), "named_all_right": 0, "named_with_a_wrong_name": 0, "not_named": 0, "regions": {},
           "by_body_centre": {"named_all_right": 0, "named_with_a_wrong_name": 0, "not_named": 0,
                              "names_right": 0, "names_wrong": 0}}  # fmt: skip
    for case in cases:
        centres = case.get("at_body_centres") or {}
        given = {truth: ours for truth, ours in centres.items() if ours and not ours.startswith("vertebra")}
        wrong = [truth for truth, ours in given.items() if ours != truth]
        tally = out["by_body_centre"]
        tally["names_right"] += len(given) - len(wrong)
        tally["names_wrong"] += len(wrong)
        tally["not_named" if not given else ("named_with_a_wrong_name" if wrong else "named_all_right")] += 1
        named = [r for r in case["rows"] if r["named"]]
        if not named:
            out["not_named"] += 1
        elif all(r["right"] for r in named):
            out["named_all_right"] += 1
        else:
            out["named_with_a_wrong_name"] += 1
        for r in case["rows"]:
            if r.get("truth_number") is None:
                continue
            region = out["regions"].setdefault(region_of(r["truth_number"]), {"right": 0, "wrong": 0, "unnamed": 0, "dice": []})
            region["right" if r["right"] else ("wrong" if r["named"] else "unnamed")] += 1
            if r["right"]:
                region["dice"].append(r["dice"])
    for region in out["regions"].values():
        region["dice_mean_named_right"] = round(float(np.mean(region.pop("dice"))), 3) if region.get("dice") else None
    return out


RUN_OPTIONS = {"phantoms": int, "first_seed": int, "field_of_view": str, "plant_compression": bool}


def run_options(report, args):
    """The options of the run that wrote ``report`` (kept in it, so ``--render`` says that run's command, not its own
    defaults); a report from before they were kept takes them from ``args``."""
    kept = report.get("options")
    if kept is None:
        return argparse.Namespace(**{key: getattr(args, key) for key in RUN_OPTIONS})
    if not isinstance(kept, dict) or any(type(kept.get(key)) is not kind for key, kind in RUN_OPTIONS.items()):
        raise InputError("the JSON's options are not those an earlier --out wrote (phantoms, first_seed, "
                         "field_of_view, plant_compression)")
    return argparse.Namespace(**{key: kept[key] for key in RUN_OPTIONS})


def markdown(report, args):
    """The summary as a page: naming per case, per region, HU, and the real CT against its reference."""
    run = run_options(report, args)
    p = report["phantoms"]
    centre = p["by_body_centre"]
    lines = [
        "# spine-ct (rule-based): naming and outlines",
        "",
        f"Command: `python -m SpineAITraining.spine_ct.evaluate_rules --phantoms {run.phantoms} --first-seed "
        f"{run.first_seed}" + (f" --field-of-view {run.field_of_view}" if run.field_of_view != "random" else "")
        + (" --plant-compression" if run.plant_compression else "")
        + (" --real ../shared/data/ct_thoracolumbar" if "real" in report else "") + "`, "
        f"{time.strftime('%Y-%m-%d')}. Phantoms: `make_spine_ct(seed)` for seeds {run.first_seed}-"
        f"{run.first_seed + run.phantoms - 1} ("
        + ("random field of view" if run.field_of_view == "random" else f"field of view {run.field_of_view}")
        + ", spacing and variants" + ("; one compression planted per phantom at a level drawn from the seed among "
                                      + ", ".join(PLANTED_LEVELS) if run.plant_compression else "") + ").",
        "",
        "## Naming, by the name given at each planted body centre",
        "",
        "| phantoms | named, all right | named, a name wrong | not named (no anchor found) | names right | names wrong |",
        "|---|---|---|---|---|---|",
        f"| {p['cases']} | {centre['named_all_right']} | {centre['named_with_a_wrong_name']} | {centre['not_named']} | "
        f"{centre['names_right']} | {centre['names_wrong']} |",
        "",
        "## Per region, each labelled vertebra matched to the truth label it overlaps best (Dice)",
        "",
        "| region | named right | named wrong | not named | mean Dice (named right) |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    for name, _ in REGIONS:
        r = p["regions"].get(name, {})
        lines.append(f"| {name} | {r.get('right', 0)} | {r.get('wrong', 0)} | {r.get('unnamed', 0)} | "
                     f"{r.get('dice_mean_named_right')} |")  # fmt: skip
    lines += ["", "## Per case", "", "Truth: the anchors the phantom has in view (S: sacrum, R: its last rib-bearing vertebra) and "
              "its rib pairs when not 12.", "",
              "| case | field of view | truth | transitional | anchor used | wrong at body centres |", "|---|---|---|---|---|---|"]
    for case in report["cases"]:
        wrong = {t: o for t, o in case["at_body_centres"].items() if o and not o.startswith("vertebra") and o != t}
        truth = "".join(k for k, key in (("S", "sacrum_in_view"), ("R", "last_rib_in_view")) if case.get(key))
        pairs = case.get("rib_pairs")
        truth += f" ({pairs} rib pairs)" if pairs not in (None, 12) else ""
        lines.append(f"| {case['case']} | {case['field_of_view']} | {truth} | {case['transitional'] or ''} | "
                     f"{case['anchor'] or 'none'} | {', '.join(f'{t} called {o}' for t, o in wrong.items()) or ''} |")  # fmt: skip
    hu = [c["l1_hu"] for c in report["cases"] if c.get("l1_hu")]
    if hu:
        errors = [abs(h["measured"] - h["planted"]) for h in hu]
        lines += ["", f"L1 trabecular HU against the planted value ({len(hu)} phantom(s) with L1 named and its attenuation read): mean absolute "
                  f"error {np.mean(errors):.1f} HU, largest {max(errors):.1f} HU."]  # fmt: skip
    lines += ["", "Body heights against the planted ones (vertebrae named right; mean absolute error, and as a share of "
              "the planted height), on the workflow's outlines and, measured the same way, on the phantom's own labels:",
              "", "| outline | bodies | anterior | middle | posterior |", "|---|---|---|---|---|",
              _height_line([e for c in report["cases"] for e in c.get("heights", [])], "the workflow's"),
              _height_line([e for c in report["cases"] for e in c.get("heights_on_truth_labels", [])], "the truth labels")]
    graded = [g for c in report["cases"] for g in c["grades"]]
    lines += ["", "Genant grades as spine-ct shows them (vertebrae named right, thoracic and lumbar, not cut by the image; "
              "a grade is withheld where the body's two endplates were not both found), against the planted grade:", "",
              "| planted | shown 0 | shown 1 | shown 2 | shown 3 | withheld | of them borderline |", "|---|---|---|---|---|---|---|"]
    for planted in range(4):
        row = [g for g in graded if g["planted"] == planted]
        cells = [sum(1 for g in row if g["grade"] == shown) for shown in range(4)]
        lines.append(f"| {planted} | " + " | ".join(map(str, cells)) + f" | {sum(1 for g in row if g['grade'] is None)} | "
                     f"{sum(1 for g in row if g['borderline'])} |")  # fmt: skip
    false = [g for g in graded if g["grade"] and not g["planted"]]
    lines += ["", f"Graded 1-3 with no compression planted: {len(false)}, of them borderline (another grade within the "
              f"heights' tolerance, shown with its range): {sum(1 for g in false if g['borderline'])}."]
    if "real" in report:
        real = report["real"]
        lines += ["", "## The real CT (ct_thoracolumbar/ct.nii.gz)", "",
                  "Reference: TotalSegmentator's labels — a model's output, not a manual truth. The real CT was looked at "
                  "while the rules were written (their constants were adjusted while watching it), so these figures are "
                  "not a held-out measurement. Nothing was trained on it.", "",
                  "| ours | overlaps best | Dice |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {r['name']} | {r['truth']} | {r['dice']} |" for r in real["rows"]]
        lines += ["", "Heights (mm), Genant grade and core HU on our outlines and, measured the same way, on the reference's:", "",
                  "| vertebra | anterior | middle | posterior | Genant | HU |", "|---|---|---|---|---|---|"]
        for m in real.get("measured", []):
            if m["ours"][1] is None and m["on_reference"][1] is None:
                continue
            lines.append(f"| {m['name']} | " + " | ".join(f"{a} / {b}" for a, b in zip(m["ours"], m["on_reference"])) + " |")
        lines += ["", f"L1: {real['l1']['text']}"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    from SpineAITraining.spine_ct.phantom import FIELDS_OF_VIEW

    parser = argparse.ArgumentParser(prog="python -m SpineAITraining.spine_ct.evaluate_rules", description=__doc__.split("\n")[0])
    parser.add_argument("--phantoms", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=300000)
    parser.add_argument("--field-of-view", default="random", choices=FIELDS_OF_VIEW, help="the phantoms' field of view (default: drawn)")
    parser.add_argument("--plant-compression", action="store_true", help="plant one compression per phantom (T12-L4)")
    parser.add_argument("--real", help="the ct_thoracolumbar folder (real CT and TotalSegmentator's labels)")
    parser.add_argument("--out", help="write the JSON here")
    parser.add_argument("--markdown", help="write a summary table here (benchmarks/results/spine_ct_eval.md)")
    parser.add_argument("--render", help="only write --markdown from this JSON (an earlier --out)")
    args = parser.parse_args(argv)
    if args.render:
        if not args.markdown:
            parser.error("--render writes --markdown: give it")
        render = Path(args.render)
        if not render.is_file():
            raise InputError(f"{render}: no such file (--render takes the JSON an earlier run wrote with --out)")
        try:
            report = json.loads(render.read_text())
        except (ValueError, UnicodeError) as error:
            raise InputError(f"{render}: not the JSON of an earlier --out ({type(error).__name__})") from None
        if not isinstance(report, dict):
            raise InputError(f"{render}: not the JSON of an earlier --out (not an object)")
        try:  # a report is nested deep: any part missing or of another type means it is not one this script wrote
            page = markdown(report, args)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise InputError(f"{render}: not the JSON of an earlier --out ({type(error).__name__}: {error})") from None
        Path(args.markdown).write_text(page)
        return
    cases = []
    for i in range(args.phantoms):
        case = evaluate_phantom(args.first_seed + i, args.field_of_view, args.plant_compression)
        cases.append(case)
        names = " ".join(r["name"] if r["right"] or not r["named"] else f"{r['name']}({r['truth']})" for r in case["rows"])
        wrong_centres = {t: o for t, o in case["at_body_centres"].items() if o and not o.startswith("vertebra") and o != t}
        names += f" | at body centres, wrong: {wrong_centres or 'none'}"
        print(f"{case['case']} {case['field_of_view']} anchor={case['anchor']}: {names}", file=sys.stderr, flush=True)
    report = {"options": {key: getattr(args, key) for key in RUN_OPTIONS}, "phantoms": summary(cases), "cases": cases}
    if args.real:
        report["real"] = evaluate_real(args.real)
    text = json.dumps(report, indent=1, default=str)
    if args.out:
        Path(args.out).write_text(text)
    if args.markdown:
        Path(args.markdown).write_text(markdown(report, args))
    print(json.dumps({k: v for k, v in report.items() if k != "cases"}, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(run_reporting_errors("evaluate_rules", main))
