"""spine-ct: every vertebra of a CT's spine in view, named from anatomy or left unnamed, and measured.

Writes ``vertebrae.seg.nrrd`` (one segment per vertebra: VerSe numbers and names for named
ones, ``vertebra N`` for unnamed ones), ``vertebrae.tsv`` (heights, volume, trabecular HU per
named thoracic/lumbar vertebra: ``vertebral_bodies``; a Genant grade only where the body's two
endplates were found on the fine grid, ``measure_named``),
``heights.png`` (the mid-sagittal slice with each measured height drawn), a line node per height in
the scene, overlays and ``scene.mrb``; report.json carries the vertebrae, how they were named (the anchor,
or why none), the L1 bone-density flag with its threshold and source, and every warning.

No network: the column, its discs, the sacrum, the ribs and the endplates are found from Hounsfield
units (column.py, anchors.py, ribs.py, endplates.py) by rules whose constants were set on development
phantoms, not fitted to any patient. The cervical fracture scores stay with ``cervical-ct`` (a model
trained on cervical CTs).
"""

import time

from SpineAILib.vocabulary import SPINE_CT
from SpineAILib.workflows.base import Workflow
from SpineAILib.workflows.spine_ct.segment import UNNAMED_BASE

OUTPUTS = {"segmentation": "vertebrae.seg.nrrd", "table": "vertebrae.tsv", "scene": "scene.mrb", "heights_picture": "heights.png"}
METHOD = ("rule-based, no trained model: spinal canal tracked and discs found from Hounsfield units; levels named "
          "only where the sacrum (joined to both iliac bones) and the last rib-bearing vertebra (T12) are both in view "
          "and agree, or not named; bodies cut at their endplates on a ~1 mm grid")  # fmt: skip


def run(job):
    from SpineAILib.ct_checks import check_ct
    from SpineAILib.vertebral_bodies import l1_bone_density
    from SpineAILib.workflows.spine_ct.segment import segment_spine

    layout, warnings = check_ct(job.image, task=SPINE_CT, what="a CT with the spine in view")
    job.warnings.extend(warnings)
    job.progress(0.05, "tracking the spinal column and its discs")
    t0 = time.perf_counter()
    result = segment_spine(job.image, layout)
    job.timings.update(result.timings)
    job.timings["segmentation_s"] = round(time.perf_counter() - t0, 3)
    job.warnings.extend(result.warnings)

    job.progress(0.45, "measuring the vertebral bodies")
    t0 = time.perf_counter()
    rows = measure_named(result)
    density = l1_bone_density(rows)
    withheld = [r["name"] for r in rows if GRADE_WITHHELD in r["notes"]]
    if withheld:
        job.warnings.append(f"Genant grade withheld for {', '.join(withheld)}: {GRADE_WITHHELD_WHY}")
    job.timings["measure_s"] = round(time.perf_counter() - t0, 3)
    job.results.update(summarise(result, rows, density))
    job.progress(0.6, "writing the segmentation and the table")
    write_outputs(job, result, rows)


GRADE_WITHHELD = "Genant grade withheld"
HEIGHTS_WITHHELD = "heights withheld: its two endplates were not both found"
GRADE_WITHHELD_WHY = ("its two endplates were not both found on the fine grid (its outline ends at a coarse boundary, "
                      "about mid-disc, so its heights are not the body's own: they are withheld too), or metal is in "
                      "or beside it (grade a corrected outline with `spineai measure`)")
# How far the outline's heights may be off beyond half a voxel: the mean absolute error of the anterior,
# middle and posterior heights on the development phantoms (seeds 600000-600029, 700000-700007,
# 800000-800023, 900000-900023; 1.5-2.5 mm), rounded up. A grade within it of another is borderline.
OUTLINE_HEIGHT_TOLERANCE_MM = 2.0
# L5 (and an L6) is wedge-shaped in lordosis and its lower endplate meets the tilted lumbosacral disc: there the
# rule-based outline's anterior height was off by 4-10 mm on held-out phantoms (1000000-1200023; a healthy L5 read
# grade 3 once). Genant's semi-quantitative method grades T4-L4 (Genant et al. 1993), so L5 is left out here.
NOT_GRADED = frozenset([24, 25])
L5_NOT_GRADED = ("Genant grade not given at L5: its outline's anterior height is unreliable on the tilted lumbosacral "
                 "disc (Genant's method grades T4-L4)")
POSTERIOR_ALONE = ("Genant grade withheld: only its posterior height is low (against its neighbours'), its anterior "
                   "and middle heights are not; the outline is least certain at the posterior wall")
GENANT_FIELDS = ("genant_grade", "genant_morphology", "genant_reference", "height_loss_percent", "height_loss_own",
                 "height_loss_neighbours", "genant_grade_range", "genant_borderline")
HEIGHT_FIELDS = ("anterior_height_mm", "middle_height_mm", "posterior_height_mm", "height_lines")
ARCH_ONLY = ("only its arch is in view, behind the top vertebra's canal (its body is above the image): "
             "nothing measured")


def measure_named(result):
    """The named vertebrae's measurements as spine-ct reports them (``vertebral_bodies`` rows, on the grid the
    outlines were drawn on: ``result.measuring``): heights and a Genant grade only where the body's two
    endplates were found (``endplates_found``, endplates.py); a grade only where no metal is in or beside it,
    not at L5 (NOT_GRADED) and not on the posterior height alone; borderline within
    OUTLINE_HEIGHT_TOLERANCE_MM. The evaluation script measures through this too, so its figures are what
    users get."""
    from SpineAILib.vertebral_bodies import GENANT_LEVELS, METAL_NOTE, measure_vertebral_bodies

    if not any(v["label"] < UNNAMED_BASE for v in result.vertebrae):
        return []
    rows = measure_vertebral_bodies(*result.measuring, height_tolerance_mm=OUTLINE_HEIGHT_TOLERANCE_MM)
    bounded = {v["name"] for v in result.vertebrae if v.get("endplates_found")}
    arches = {v["name"] for v in result.vertebrae if v.get("arch_only")}
    for row in rows:
        if row["name"] in arches:  # its notes (cut by the field of view) are said better by this one
            row["notes"] = []
            _withhold(row, GENANT_FIELDS + HEIGHT_FIELDS + ("hu_mean", "hu_median", "hu_sd", "depth_mm", "width_mm"),
                      ARCH_ONLY)  # fmt: skip
            continue
        if row["name"] not in bounded and row.get("middle_height_mm") is not None:
            _withhold(row, GENANT_FIELDS + HEIGHT_FIELDS, HEIGHTS_WITHHELD)
            if row["label"] in GENANT_LEVELS:
                row["notes"].append(GRADE_WITHHELD)
        if row.get("genant_grade") is not None and any(n.startswith(METAL_NOTE) for n in row["notes"]):
            _withhold(row, GENANT_FIELDS, GRADE_WITHHELD)
        if row.get("genant_grade") is not None and row["label"] in NOT_GRADED:
            _withhold(row, GENANT_FIELDS, L5_NOT_GRADED)
        if row.get("genant_grade") and _posterior_alone(row):
            _withhold(row, GENANT_FIELDS, POSTERIOR_ALONE)
    return rows


def _posterior_alone(row):
    """Does the row's grade rest on its posterior height alone: lower than the neighbours' posterior heights
    while its anterior and middle heights are not (a crush lowers the whole body; the outline is least sure
    at the posterior wall, beside the canal, where a held-out phantom's L4 lost 6 mm to L5)? (With the
    posterior height the lowest, the own-posterior loss is no loss at all.)"""
    from SpineAILib.vertebral_bodies import GENANT_THRESHOLDS

    a, m, p = (row.get(f"{band}_height_mm") for band in ("anterior", "middle", "posterior"))
    loss = row.get("height_loss_neighbours")
    if None in (a, m, p, loss) or p > min(a, m) or loss >= 1.0:
        return False
    reference = p / (1.0 - loss)  # the neighbours' mean posterior height
    mild = min(threshold for threshold, _ in GENANT_THRESHOLDS)  # Genant's grade 1 starts here
    return 1.0 - min(a, m) / reference < mild


def _withhold(row, fields, note):
    for key in fields:
        row[key] = None
    row["notes"] = [n for n in row["notes"] if not n.startswith("Genant grade")] + [note]


def summarise(result, rows, density):
    names = [v["name"] for v in result.vertebrae]
    named = [v["name"] for v in result.vertebrae if v["label"] < UNNAMED_BASE]
    anchor = result.naming.get("anchor")
    if not names:
        message = f"no vertebrae found ({result.naming.get('reason')})"
    elif anchor and named:
        cut = [v["name"] for v in result.vertebrae if v["cut_by_field_of_view"] and v["label"] < UNNAMED_BASE]
        message = (f"{len(named)} vertebra(e) named from the {anchor}: {named[0]}-{named[-1]}"
                   + (f" ({', '.join(cut)} cut by the field of view)" if cut else "")
                   + (f"; {len(names) - len(named)} more above, not named" if len(names) > len(named) else ""))
    else:
        message = f"{len(names)} vertebra(e) found, not named: {result.naming.get('reason')}"
    graded = [r for r in rows if r.get("genant_grade")]
    return {
        "message": message,
        "method": METHOD,
        "levels_found": names,
        "vertebrae": result.vertebrae,
        "naming": result.naming,
        "measurements": rows,
        "bone_density": density,
        "compressions": [{"vertebra": r["name"], "genant_grade": r["genant_grade"],
                          "morphology": r.get("genant_morphology")} for r in graded],  # fmt: skip
    }


def write_outputs(job, result, rows):
    from SpineAILib.outputs import write_text_atomic
    from SpineAILib.scene.tables import add_table
    from SpineAILib.vertebral_bodies import TSV_COLUMNS, tsv_row, tsv_text
    from SpineAILib.workflows.scene_outputs import ct_with_vertebrae, overlays_and_scene
    from SpineAILib.workflows.spine_ct.heights_picture import write_heights_picture

    t0 = time.perf_counter()
    ctx, volume, segmentation = ct_with_vertebrae(job, result.labelmap, OUTPUTS["segmentation"], result.names)
    if rows:
        write_text_atomic(job.out_dir / OUTPUTS["table"], tsv_text(rows))
        job.outputs["table"] = OUTPUTS["table"]
        cells = [tsv_row(r) for r in rows]
        add_table(ctx, "Vertebral bodies", {name: [c[i] for c in cells] for i, (name, _) in enumerate(TSV_COLUMNS)})
        add_height_lines(ctx, rows)
        if write_heights_picture(*result.measuring, rows, job.out_dir / OUTPUTS["heights_picture"]):
            job.outputs["heights_picture"] = OUTPUTS["heights_picture"]
    job.timings["write_nodes_s"] = round(time.perf_counter() - t0, 3)
    overlays_and_scene(ctx, job, volume, segmentation, [v["centre_ras"] for v in result.vertebrae], OUTPUTS["scene"])


def add_height_lines(ctx, rows):
    """Each measured height as a locked line node ("L1 anterior height"): Slicer shows it with its length."""
    from SpineAILib.scene.markups import add_line
    from SpineAILib.workflows.spine_ct.heights_picture import COLOURS

    for row in rows:
        for band, (inferior, superior) in (row.get("height_lines") or {}).items():
            add_line(ctx, f"{row['name']} {band} height", inferior, superior,
                     color=tuple(c / 255.0 for c in COLOURS.get(band, (255, 255, 255))))  # fmt: skip


WORKFLOW = Workflow(SPINE_CT, "Spine CT", "volume", ("CT", ""),
                    "every vertebra in view, named from the sacrum and the last rib or left unnamed; body heights, Genant grades, "
                    "L1 bone density (no trained model)", run, uses_model=False)  # fmt: skip
