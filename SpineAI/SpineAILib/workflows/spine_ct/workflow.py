"""spine-ct: every vertebra of a CT's spine in view, named from anatomy or left unnamed, and measured.

Writes ``vertebrae.seg.nrrd`` (one segment per vertebra: VerSe numbers and names for named
ones, ``vertebra N`` for unnamed ones), ``vertebrae.tsv`` (heights, volume, trabecular HU per
named thoracic/lumbar vertebra: ``vertebral_bodies``; its Genant cells empty, GRADES_WITHHELD),
overlays and ``scene.mrb``; report.json carries the vertebrae, how they were named (the anchor,
or why none), the L1 bone-density flag with its threshold and source, and every warning.

No network: the column, its discs, the sacrum and the ribs are found from Hounsfield units
(column.py, anchors.py, ribs.py), so nothing here was fitted to phantoms or to any patient. The
cervical fracture scores stay with ``cervical-ct`` (a model trained on cervical CTs).
"""

import time

from SpineAILib.vocabulary import SPINE_CT
from SpineAILib.workflows.base import Workflow
from SpineAILib.workflows.spine_ct.segment import UNNAMED_BASE

OUTPUTS = {"segmentation": "vertebrae.seg.nrrd", "table": "vertebrae.tsv", "scene": "scene.mrb"}
METHOD = ("rule-based, no trained model: spinal canal tracked and discs found from Hounsfield units; levels named "
          "from the sacrum (joined to both iliac bones) and the last rib-bearing vertebra (T12), checked against "
          "each other when both are in view, or not named")  # fmt: skip


def run(job):
    from SpineAILib.ct_checks import check_ct
    from SpineAILib.vertebral_bodies import l1_bone_density, measure_vertebral_bodies
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
    named = [v for v in result.vertebrae if v["label"] < UNNAMED_BASE]
    rows = withhold_grades(measure_vertebral_bodies(job.image, result.labelmap)) if named else []
    density = l1_bone_density(rows)
    if rows:
        job.warnings.append(GRADES_WITHHELD)
    job.timings["measure_s"] = round(time.perf_counter() - t0, 3)
    job.results.update(summarise(result, rows, density))
    job.progress(0.6, "writing the segmentation and the table")
    write_outputs(job, result, rows)


GRADES_WITHHELD = ("Genant grades withheld: the body outlines come from rules, not from a validated segmentation; on "
                   "held-out whole-spine phantoms they called compressions that were not there, so heights are shown "
                   "for reading, not graded (grade a corrected outline with `spineai measure`)")


def withhold_grades(rows):
    """The rows with every Genant field emptied and the reason noted (the heights and HU stay)."""
    for row in rows:
        if row.get("genant_grade") is None:
            continue
        for key in ("genant_grade", "genant_morphology", "genant_reference", "height_loss_percent", "height_loss_own",
                    "height_loss_neighbours", "genant_grade_range"):
            row[key] = None
        row["genant_borderline"] = None
        row["notes"] = [n for n in row["notes"] if not n.startswith("Genant grade")] + ["Genant grade withheld"]
    return rows


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
    graded = [r for r in rows if r.get("genant_grade")]  # none while grades are withheld (GRADES_WITHHELD)
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

    t0 = time.perf_counter()
    ctx, volume, segmentation = ct_with_vertebrae(job, result.labelmap, OUTPUTS["segmentation"], result.names)
    if rows:
        write_text_atomic(job.out_dir / OUTPUTS["table"], tsv_text(rows))
        job.outputs["table"] = OUTPUTS["table"]
        cells = [tsv_row(r) for r in rows]
        add_table(ctx, "Vertebral bodies", {name: [c[i] for c in cells] for i, (name, _) in enumerate(TSV_COLUMNS)})
    job.timings["write_nodes_s"] = round(time.perf_counter() - t0, 3)
    overlays_and_scene(ctx, job, volume, segmentation, [v["centre_ras"] for v in result.vertebrae], OUTPUTS["scene"])


WORKFLOW = Workflow(SPINE_CT, "Spine CT", "volume", ("CT", ""),
                    "every vertebra in view, named from the sacrum and the last rib or left unnamed; body heights, Genant grades, "
                    "L1 bone density (no trained model)", run, uses_model=False)  # fmt: skip
