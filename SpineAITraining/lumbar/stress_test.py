"""Stress test of the lumbar-mri level names: crops and warps of real cases that keep a known truth.

    python -m SpineAITraining.lumbar.stress_test --data ../shared/data/mri_lumbar --part test \
        [--bundle BUNDLE] [--json out.json] [--markdown benchmarks/results/lumbar_mri_stress.md]

From each case of the chosen part of the recorded split (``--part train,validation`` to choose
thresholds, ``test`` to report), variants are made on the canonical grid
(``SpineAILib.workflows.lumbar.grid``), the truth label map going through the same crop or warp:

- **field of view**: the top of the image cut in the disc above T10, T11, T12, L1 or L2 (T10 from
  T11's position, and T12 on ``vb3`` cases, which label L1-L5 only, from L1's: estimated, ±4 mm)
  and the bottom cut just below L4, just below L5, or left as acquired (sacrum in view);
  ``as acquired`` is the uncropped case;
- **lateral curve**: each axial row of the volume shifted left-right by a smooth function of its
  height (a C curve of 10 mm, an S curve of ±15 mm), as in a scoliosis;
- **missing body**: one mid-column body (L2, L3) blanked to the local background (the intensities of
  the non-vertebral voxels around it, resampled), its truth kept only to check a name there.

Every variant runs through ``segment_vertebrae`` (level model only: the outline refiner never
changes a name). A study is **right** when every name given is right and every labelled body in
view (≥ 60% of its voxels; not a blanked one) is named; **wrong** when any name given is off (the
body's true level is read at its centre; an unlabelled body's, from the labelled bodies next to
it and the spacing); **withheld** when no name given is wrong and some names were withheld with a
reason; **incomplete** otherwise. *Before*: the column's names as the workflow gave them before
the naming checks (``naming.column_names``, the same prediction); *after*: the names it gives now.
"""

import argparse
import json
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

STARTS = ("T10", "T11", "T12", "L1", "L2")
ENDS = ("L4", "L5", "below")
CUT_MM = 2.0  # the cut lies this far into the disc above the first body / below the last
PRESENT_SHARE = 0.6
BLANK = ("L2", "L3")
OUTCOMES = ("right", "wrong", "withheld", "incomplete")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m SpineAITraining.lumbar.stress_test", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, help="level bundle (default: the installed lumbar-mri one)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--part", default="test", help="test, validation, train or a comma-separated list")
    p.add_argument("--cases", help="comma-separated case ids (default: every case of the part)")
    p.add_argument("--max-cases", type=int, help="the first N cases only")
    p.add_argument("--kinds", default="fov,curve,missing", help="which variants: fov, curve, missing")
    p.add_argument("--only", help="only the variants whose type contains this text")
    p.add_argument("--json", type=Path, help="every variant's outcome and evidence")
    p.add_argument("--markdown", type=Path, help="the per-type table")
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


# -- variants -----------------------------------------------------------------------------


def _rows_of(truth, value):
    rows = np.nonzero((truth == value).any(axis=(0, 2)))[0]
    return (int(rows.min()), int(rows.max())) if len(rows) else None


def body_rows(truth, spacing):
    """{name: (top row, bottom row)} of the labelled bodies, with T10 (and T12 where unlabelled) estimated."""
    from SpineAILib.terminology import vertebra_name, vertebra_number

    rows = {}
    for value in np.unique(truth):
        if value:
            rows[vertebra_name(int(value))] = _rows_of(truth, value)
    disc = int(round(4.0 / spacing[1]))
    order = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    for name in reversed(order[:3]):  # extrapolate upwards from the body below, its own height plus a disc
        below = order[order.index(name) + 1]
        if name not in rows and below in rows:
            top, bottom = rows[below]
            height = bottom - top + 1
            if top - disc - height >= 0:
                rows[name] = (top - disc - height, top - disc - 1)
        if name not in rows:
            break
    return {n: rows[n] for n in order if n in rows}, {vertebra_number(n) for n in rows if np.any(truth == vertebra_number(n))}


def crop(image, truth, spacing, rows, start, end):
    """(image, truth, row offset) cropped so the field of view starts at ``start`` and ends at ``end``; None if not possible."""
    cut = max(1, int(round(CUT_MM / spacing[1])))
    if start is None:
        r0 = 0
    elif start in rows:
        r0 = max(0, rows[start][0] - cut)
        if start == "T10" and rows[start][0] - cut < 0:
            return None
    else:
        return None
    if end == "below":
        r1 = image.shape[1]
    elif end in rows:
        r1 = min(image.shape[1], rows[end][1] + 1 + cut)
    else:
        return None
    if r1 - r0 < 60 / spacing[1]:
        return None
    return image[:, r0:r1], truth[:, r0:r1], r0


def lateral_curve(image, truth, spacing, amplitude_mm, s_curve):
    """Every axial row shifted left-right by a smooth function of its height (scoliosis-like)."""
    n, rows, _ = image.shape
    t = np.linspace(0.0, 1.0, rows)
    shift = amplitude_mm * (np.sin(2 * np.pi * t) if s_curve else np.sin(np.pi * t)) / spacing[0]
    source = np.arange(n)[:, None] - shift[None, :]  # (sagittal, row): where each output voxel comes from
    k0 = np.floor(source).astype(int)
    w = (source - k0)[:, :, None]
    rr = np.arange(rows)[None, :]
    lo, hi = np.clip(k0, 0, n - 1), np.clip(k0 + 1, 0, n - 1)
    data = image.astype(np.float32)
    warped = (1 - w) * data[lo, rr] + w * data[hi, rr]
    nearest = np.rint(source).astype(int)
    inside = ((nearest >= 0) & (nearest < n))[:, :, None]
    labels = np.where(inside, truth[np.clip(nearest, 0, n - 1), rr], 0)
    return warped.astype(image.dtype), labels.astype(truth.dtype)


def blank_body(image, truth, spacing, value, seed=0):
    """``value``'s body (grown by 1 mm) blanked to the dark end of its local background: the lowest tenth of the
    non-vertebral voxels within 5 mm of it, with a little noise (a body without signal, which the model misses)."""
    from SpineAILib.morphology import dilation

    body = truth == value
    nz = np.nonzero(body)
    margin = [int(np.ceil(6.5 / s)) + 1 for s in spacing]
    lo = [max(0, int(a.min()) - g) for a, g in zip(nz, margin)]
    hi = [min(m, int(a.max()) + 1 + g) for a, m, g in zip(nz, body.shape, margin)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    grown = np.zeros_like(body)
    grown[box] = dilation(body[box], 1.0, spacing)
    ring = np.zeros_like(body)
    ring[box] = dilation(grown[box], 5.0, spacing)
    ring &= ~grown & (truth == 0)
    out = image.copy()
    samples = image[ring].astype(np.float32)
    if len(samples):  # dark, like a body without signal (the lowest tenth of its surroundings), with a little noise
        low, spread = np.percentile(samples, 10), 0.1 * float(samples.std())
        fill = low + spread * np.random.default_rng(seed).standard_normal(int(grown.sum()))
        out[grown] = np.clip(fill, image.min(), image.max()).astype(image.dtype)
    return out


def variants(image, truth, spacing, kinds):
    """Yield (type, start, end, image, truth, blanked value or None) for one case (canonical arrays)."""
    from SpineAILib.terminology import vertebra_number

    rows, _ = body_rows(truth, spacing)
    if "fov" in kinds:
        yield "as acquired", "", "", image, truth, None
        for end in ENDS[:2]:
            made = crop(image, truth, spacing, rows, None, end)
            if made is not None:
                yield f"starts as acquired, ends {end}", "", end, made[0], made[1], made[2]
        for start in STARTS:
            for end in ENDS:
                made = crop(image, truth, spacing, rows, start, end)
                if made is not None:
                    yield f"starts {start}, ends {end}", start, end, made[0], made[1], made[2]
    if "curve" in kinds:
        for amplitude, s_curve, title in ((10.0, False, "lateral C curve 10 mm"), (15.0, True, "lateral S curve ±15 mm")):
            warped, labels = lateral_curve(image, truth, spacing, amplitude, s_curve)
            yield title, "", "", warped, labels, None
    if "missing" in kinds:
        for name in BLANK:
            value = vertebra_number(name)
            if np.any(truth == value):
                yield f"missing {name} body", "", "", blank_body(image, truth, spacing, value), truth, ("blank", value)


# -- scoring ------------------------------------------------------------------------------


def _true_value_at(truth, kji, spacing, radius_mm=4.0):
    k, j, i = (int(round(v)) for v in kji)
    reach = [max(1, int(round(radius_mm / s))) for s in spacing]
    box = truth[max(0, k - reach[0]) : k + reach[0] + 1, max(0, j - reach[1]) : j + reach[1] + 1,
                max(0, i - reach[2]) : i + reach[2] + 1]  # fmt: skip
    values = box[box > 0]
    return int(np.bincount(values).argmax()) if len(values) else 0


def true_levels(bodies, truth, ras_to_canonical, spacing):
    """The true VerSe value of each predicted body (top to bottom), unlabelled ones from their labelled neighbours."""
    centres = []
    for b in bodies:
        ijk = (ras_to_canonical @ np.r_[b["centre_ras"], 1.0])[:3]
        centres.append(ijk[::-1])  # canonical (sagittal, row, column)
    values = [_true_value_at(truth, c, spacing) for c in centres]
    rows_mm = np.array([c[1] * spacing[1] for c in centres])
    labelled = [i for i, v in enumerate(values) if v]
    if labelled and len(labelled) < len(values):
        steps = np.diff(rows_mm[labelled]) / np.maximum(1, np.diff([values[i] for i in labelled])) if len(labelled) > 1 else [32.0]
        step = float(np.median(steps)) if len(steps) else 32.0
        for i, v in enumerate(values):
            if not v:
                j = min(labelled, key=lambda m: abs(rows_mm[m] - rows_mm[i]))
                values[i] = -(values[j] + int(np.rint((rows_mm[i] - rows_mm[j]) / step)))  # negative: estimated
    return values


def score(bodies, truth, ras_to_canonical, spacing, required, use_column):
    """(outcome, details) for one variant; ``use_column``: score the column's names (before the checks)."""
    from SpineAILib.terminology import vertebra_number

    values = true_levels(bodies, truth, ras_to_canonical, spacing) if bodies else []
    wrong, withheld, named = [], 0, set()
    for body, value in zip(bodies, values):
        given = body["column_name"] if use_column else body["name"]
        if given is None:
            withheld += 1
            continue
        number = vertebra_number(given)
        if number == abs(value):
            named.add(number)
        elif value:  # a labelled body's level, or an unlabelled one's estimated from its labelled neighbours
            wrong.append(f"{given} on true {abs(value)}{'(est)' if value < 0 else ''}")
    missing = sorted(required - named)
    if wrong:
        return "wrong", wrong
    if withheld:
        return "withheld", []
    return ("right" if not missing else "incomplete"), missing


def evaluate_variant(bundle, image_canonical, truth, affine, spacing, blanked):
    from SpineAILib.images import VolumeImage
    from SpineAILib.workflows.lumbar.pipeline import segment_vertebrae

    image = VolumeImage(voxels=np.ascontiguousarray(image_canonical), ijk_to_ras=affine, modality="MR")
    t0 = time.perf_counter()
    result = segment_vertebrae(image, bundle)
    seconds = time.perf_counter() - t0
    required = set()
    for value in np.unique(truth):
        if not value or (blanked and value == blanked[1]):
            continue
        # present: most of the body lies in view (the crop cut it less than 40%)
        required.add(int(value))
    inverse = np.linalg.inv(affine)
    bodies = result.naming.get("bodies", [])
    before = score(bodies, truth, inverse, spacing, required, use_column=True)
    after = score(bodies, truth, inverse, spacing, required, use_column=False)
    return {"before": before[0], "before_detail": before[1], "after": after[0], "after_detail": after[1],
            "status": result.naming["status"], "reasons": result.naming["reasons"],
            "column_names": result.naming["column_names"], "named": [v["name"] for v in result.vertebrae],
            "evidence": result.naming["evidence"], "gaps": result.naming["gaps"], "seconds": round(seconds, 2)}  # fmt: skip


def run_case(case, bundle, kinds, only=None):
    from SpineAILib.io import load
    from SpineAILib.workflows.lumbar.grid import SagittalLayout

    image, labels = load(case.image), load(case.labels)
    layout = SagittalLayout.of(image.voxels.shape, image.ijk_to_ras)
    canonical = layout.to_canonical(np.asarray(image.voxels))
    truth = layout.to_canonical(np.asarray(labels.voxels)).astype(np.uint8)
    truth[~np.isin(truth, list(case.labelled_values))] = 0
    full_counts = {int(v): int((truth == v).sum()) for v in np.unique(truth) if v}
    out = []
    for title, start, end, img, tru, extra in variants(canonical, truth, layout.spacing, kinds):
        if only and only not in title:
            continue
        affine = layout.canonical_to_ras.copy()
        blanked = None
        if isinstance(extra, tuple):
            blanked = extra
        elif isinstance(extra, int):
            affine[:3, 3] += extra * affine[:3, 1]  # rows cut from the top
        tru = tru.copy()
        for v in np.unique(tru):  # a body the crop cut by more than 40% is not required (nor scored if named)
            if v and (tru == v).sum() < PRESENT_SHARE * full_counts.get(int(v), 1) and title.startswith("starts"):
                tru[tru == v] = 0
        record = evaluate_variant(bundle, img, tru, affine, layout.spacing, blanked)
        record.update({"case": case.case_id, "source": case.source, "type": title, "start": start, "end": end})
        out.append(record)
        print(f"{case.case_id:7s} {title:28s} before {record['before']:10s} after {record['after']:10s} "
              f"{' '.join(record['column_names'])} {record['reasons'][:1]}", flush=True)
    return out


def group(title):
    if title.startswith("starts"):
        return "field of view " + title.split(",")[0].replace("starts ", "from ") + ", to " + title.split("ends ")[1]
    return title


def table(records):
    rows = OrderedDict()
    for r in records:
        rows.setdefault(group(r["type"]), []).append(r)
    lines = ["| type | studies | before: right / wrong / withheld / incomplete | after: right / wrong / withheld / incomplete |",
             "|---|---|---|---|"]
    def fmt(rs, key):
        return " / ".join(str(sum(r[key] == o for r in rs)) for o in OUTCOMES)

    for name, rs in rows.items():
        lines.append(f"| {name} | {len(rs)} | {fmt(rs, 'before')} | {fmt(rs, 'after')} |")
    lines.append(f"| **all** | {len(records)} | {fmt(records, 'before')} | {fmt(records, 'after')} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from SpineAILib.models.bundle import load_bundle
    from SpineAILib.models.catalogue import resolve_bundle
    from SpineAITraining.lumbar import mri_lumbar

    bundle = load_bundle(args.bundle or resolve_bundle("lumbar-mri"), device=args.device, expected_task="lumbar-mri")
    cases = [c for part in args.part.split(",") for c in mri_lumbar.split_cases(args.data, part)]
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [c for c in cases if c.case_id in wanted]
    if args.max_cases:
        cases = cases[: args.max_cases]
    kinds = set(args.kinds.split(","))
    records = []
    for case in cases:
        records.extend(run_case(case, bundle, kinds, args.only))
    text = table(records)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"part": args.part, "cases": [c.case_id for c in cases], "records": records},
                                        indent=1, default=str))  # fmt: skip
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
