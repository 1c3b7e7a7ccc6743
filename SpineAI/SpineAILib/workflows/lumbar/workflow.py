"""lumbar-mri: level-labelled vertebral bodies, disc levels and RSNA 2024 severity grades.

Writes ``vertebrae.seg.nrrd`` (T11 ... L5 segments, and S1 when the sacrum model finds it, with terminology),
``discs.mrk.json`` (points L1/L2 ... L5/S1 in the input's RAS space),
``levels.mrk.json`` (one ROI per visible disc level, sized for grading crops),
``severity.tsv`` (5 levels x 5 conditions: probabilities, grade or "not assessed"
with the reason; ``research_output`` 1 on every row when the grading bundle was not
trained on patient labels, as report.json's ``results.severity.research_output`` and
``research_note`` say), ``severity_heatmap.nrrd`` (Grad-CAM of the grades on the image),
``overlay_sagittal.png`` / ``overlay_3d.png`` and ``scene.mrb``; the summary
(levels found, disc levels visible / not visible with the reason, body volumes,
grades) goes into report.json, with ``results.naming``: the anchor the levels were named
from (``sacrum``: counted up from S1; ``column``: no S1 in view or no sacrum model), the
column's names beside those counted from S1, and why any name is withheld.

INPUT may be a whole study folder: the levels are found on its sagittal T2/STIR
series (else T1), and every series grades what it shows (severity.study_input).
An MRI without lumbar vertebrae (a cervical study) is a clean result that says "no
lumbar levels found"; an axial-only study gives all rows "not assessed" (levels are
located on sagittal images); a CT or a brain/head MRI is refused with the reason.
"""

import json
import time

import numpy as np

from SpineAILib.errors import InputError
from SpineAILib.vocabulary import LUMBAR_MRI, LUMBAR_VERTEBRAE
from SpineAILib.workflows.base import Workflow
from SpineAILib.workflows.lumbar.discs import ROI_SIZE_MM, disc_levels, estimate_disc_below, roi_axes
from SpineAILib.workflows.lumbar.pipeline import check_field_of_view, check_modality, segment_vertebrae
from SpineAILib.workflows.lumbar.refine import load_refiner
from SpineAILib.workflows.lumbar.sacrum import load_sacrum
from SpineAILib.workflows.lumbar.severity.study_input import load_study_input

OUTPUTS = {
    "segmentation": "vertebrae.seg.nrrd",
    "discs": "discs.mrk.json",
    "levels": "levels.mrk.json",
    "overlay_sagittal": "overlay_sagittal.png",
    "overlay_3d": "overlay_3d.png",
    "severity": "severity.tsv",
    "heatmap": "severity_heatmap.nrrd",
    "scene": "scene.mrb",
}
SEVERITY_TASK = "lumbar-mri/severity"
NO_SACRUM_MODEL = "no sacrum model installed: levels named from the column"


def run(job):
    from SpineAILib.models.engine import load_model, release_memory

    check_modality(job.image)  # before the model loads: a CT or a brain MRI is refused at once
    level_path, severity_path = bundle_paths(job)
    try:
        check_field_of_view(job.image)
    except InputError:
        if not job.input_path.is_dir() or job.image.orientation != "axial":
            raise
        return run_axial_only(job, severity_path)
    job.progress(0.05, "loading the level model")
    bundle = load_model(level_path, device=job.device, expected_task="lumbar-mri")
    refiner = load_refiner(job.device)
    sacrum = load_sacrum(job.device)
    job.results["engine"] = bundle.engine
    job.warnings.extend(bundle.notes)
    if refiner is None:
        job.warnings.append("no outline refiner bundle is installed: body outlines come from the level model alone "
                            "(train one with `spineai-train lumbar-refiner`)")  # fmt: skip
    else:
        job.results["outline_refiner"] = {k: refiner.metadata.get(k) for k in ("bundle_id", "version", "sha256")}
    if sacrum is None:
        job.warnings.append(f"{NO_SACRUM_MODEL} (train one with `spineai-train lumbar-mri --target sacrum`)")
    else:
        job.results["sacrum_model"] = {k: sacrum.metadata.get(k) for k in ("bundle_id", "version", "sha256")}
    job.progress(0.1, "finding and naming vertebral bodies")
    result = segment_vertebrae(job.image, bundle, progress=lambda f: job.progress(0.1 + 0.5 * f, "predicting slices"),
                               refiner=refiner, sacrum=sacrum)  # fmt: skip
    job.timings.update(result.timings)
    s1_note = "was not found" if sacrum is not None else "is not segmented by this model"
    del bundle, refiner, sacrum  # the networks are done: their memory goes back before grading and the scene
    release_memory()

    discs = disc_levels(result.labelmap)
    if "S1" not in [v["name"] for v in result.vertebrae]:  # no S1 found: L5/S1 from L5 alone, marked estimated
        discs = estimate_disc_below(result.labelmap, discs, "L5/S1", lower_note=s1_note)
        for disc in discs:
            if disc.get("estimated"):
                job.warnings.append(f"{disc['level']} is estimated, not measured: {disc['method']}; check its point "
                                    "before reading its grades")  # fmt: skip
    discs = withhold_discs(discs, result.naming)
    job.warnings.extend(result.naming.get("warnings", []))
    job.results.update(summarise(result, discs))
    found = job.results["levels_found"]
    if job.results["lumbar_levels_found"] and "L5" not in found:
        # Without the lumbosacral junction the count rests on the bodies above: say so.
        job.warnings.append("L5 and the sacrum are not in view: level names rest on the vertebrae above "
                            "and may be off by one level; check them")  # fmt: skip
    job.progress(0.62, "grading the disc levels")
    severity = grade_severity(job, severity_path, result.labelmap, discs)
    release_memory()
    job.progress(0.75, "writing the segmentation, disc points, level boxes and grades")
    write_scene(job, result, discs, severity)


def bundle_paths(job):
    """(level bundle, severity bundle or None). ``--model`` may name either kind: the other is the installed default."""
    from SpineAILib.models.bundle import read_metadata
    from SpineAILib.models.catalogue import resolve_bundle
    from SpineAILib.workflows.lumbar.severity.grade_levels import severity_bundle_path

    if read_metadata(job.bundle_path).get("task") == SEVERITY_TASK:
        return resolve_bundle("lumbar-mri"), job.bundle_path
    severity = severity_bundle_path()
    if severity is None:
        job.warnings.append("no severity grading bundle is installed: levels only (train one with `spineai-train lumbar-severity`)")
    return job.bundle_path, severity


def grade_severity(job, severity_path, labelmap, discs):
    """{'rows', 'heat'} for the study, or None without a severity bundle; summary into report.json."""
    from SpineAILib.workflows.lumbar.severity import grade_levels
    from SpineAILib.workflows.lumbar.severity.from_levels import series_summary, study_for_run

    if severity_path is None:
        return None
    t0 = time.perf_counter()
    study, canal, notes = study_for_run(job.image, job.input_path, labelmap, discs)
    rows, entries, points, loaded = grade_levels.grade(study, canal, severity_path, discs, device=job.device)
    mark_withheld_rows(rows, discs)
    job.timings["grading_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    from SpineAILib.explain import GradCamUnavailable

    try:
        heat = grade_levels.heatmap(rows, entries, points, loaded, job.image, study)
    except GradCamUnavailable as error:  # a bundle of one's own without a CAM head, and no torch: grades stand
        heat = None
        job.warnings.append(f"severity {error}")
    job.timings["severity_heatmap_s"] = round(time.perf_counter() - t0, 3)
    job.warnings.extend(study.warnings)
    meta = loaded.metadata
    job.results["severity"] = {
        **grade_levels.summary(rows),
        "model": {"bundle_id": meta.get("bundle_id"), "version": meta.get("version"), "path": str(severity_path),
                  "trained_on": meta.get("training", {}).get("data", "")},
        "series": series_summary(study),
        "notes": notes,
        **grade_levels.research_fields(meta),
    }  # fmt: skip
    research = grade_levels.research_output(meta)
    if research:
        job.warnings.append(f"severity grades come from {meta.get('bundle_id')}, a model trained on synthetic studies, "
                            "not on real MRI: they show the pipeline working, not a clinical grading")  # fmt: skip
    return {"rows": rows, "heat": heat, "research": research}


def mark_withheld_rows(rows, discs):
    """Rows of a level whose body names were withheld say so, whatever else kept them from being graded."""
    from SpineAILib.workflows.lumbar.severity.submission import level_key

    withheld = {level_key(d["level"]): d["reason"] for d in discs
                if not d["visible"] and str(d.get("reason", "")).startswith("level names withheld")}  # fmt: skip
    for row in rows:
        if not row["assessed"] and row["level"] in withheld:
            row["reason"] = f"disc level not visible: {withheld[row['level']]}"
    return rows


def run_axial_only(job, severity_path):
    """An axial-only study: no level can be located, so every severity row is reported not assessed."""
    from SpineAILib.workflows.lumbar.severity import grade_levels
    from SpineAILib.workflows.lumbar.severity.study import load_study_folder

    study = load_study_folder(job.input_path)
    sagittal = "no sagittal series: disc levels are located on sagittal T1 or T2 images"
    job.results.update({"message": f"axial-only study: {sagittal}; no level named, nothing graded",
                        "levels_found": [], "lumbar_levels_found": [], "vertebrae": [], "disc_levels": [],
                        "visible_disc_levels": [], "not_visible_disc_levels": [], "notes": [sagittal]})  # fmt: skip
    job.warnings.append(f"axial-only study: {sagittal}")
    severity = None
    if severity_path is not None:
        rows, _, _, loaded = grade_levels.grade(study, {}, severity_path, device=job.device)
        for row in rows:
            row["reason"] = f"not assessed: {sagittal}"
        job.results["severity"] = {**grade_levels.summary(rows), **grade_levels.research_fields(loaded.metadata)}
        severity = {"rows": rows, "heat": None, "research": grade_levels.research_output(loaded.metadata)}
    write_scene(job, None, [], severity)


def withhold_discs(discs, naming):
    """``discs`` with each not-visible level next to a body whose name was withheld (by the column's name or the one
    counted from S1) saying why (naming.check_names).

    Those levels reach the severity rows as "disc level not visible: level names withheld: …".
    """
    withheld = {w.get(key) for w in naming.get("withheld", []) for key in ("column_name", "counted_name")} - {None}
    if not withheld:
        return discs
    reason = "; ".join(naming.get("reasons", [])) or "level names withheld"
    out = []
    for disc in discs:
        upper, lower = disc["level"].split("/")
        if not disc["visible"] and (upper in withheld or lower in withheld or naming.get("status") == "withheld"):
            disc = {**disc, "reason": f"level names withheld: {reason}"}
        out.append(disc)
    return out


def summarise(result, discs):
    found = [v["name"] for v in result.vertebrae]
    lumbar = [name for name in found if name in LUMBAR_VERTEBRAE]
    visible = [d["level"] for d in discs if d["visible"]]
    naming = result.naming
    if lumbar:
        message = (f"{len(lumbar)} lumbar vertebra(e) found ({', '.join(lumbar)}); disc levels visible: "
                   f"{', '.join(visible) or 'none'}; {anchor_phrase(naming)}")  # fmt: skip
    else:
        message = "no lumbar levels found"
    if naming.get("withheld"):
        count = len(naming["withheld"])
        message = (f"{count} vertebral bod{'y' if count == 1 else 'ies'} found but not named: "
                   f"{'; '.join(naming['reasons'])}" + (f"; named: {', '.join(found)}" if found else "")
                   + f"; {anchor_phrase(naming)}")  # fmt: skip
    return {
        "message": message,
        "levels_found": found,
        "lumbar_levels_found": lumbar,
        "vertebrae": result.vertebrae,
        "disc_levels": [_disc_summary(d) for d in discs],
        "visible_disc_levels": visible,
        "not_visible_disc_levels": [d["level"] for d in discs if not d["visible"]],
        "estimated_disc_levels": [d["level"] for d in discs if d.get("estimated")],
        "level_box_mm": {"left_right": ROI_SIZE_MM[0], "anterior_posterior": ROI_SIZE_MM[1], "along_spine": ROI_SIZE_MM[2]},
        "notes": result.notes,
        # which anchor named the levels (sacrum, column), whether any name is withheld and why, the warnings,
        # the column's names beside those counted from S1, S1 itself and the evidence checked
        "naming": {k: naming.get(k) for k in ("anchor", "status", "reasons", "warnings", "withheld", "named_across_gap",
                                              "gaps", "column_names", "cross_check", "sacrum", "evidence")},  # fmt: skip
    }


def anchor_phrase(naming):
    """How the levels were named, for the status line: 'levels counted up from S1' or from the column and why."""
    if naming.get("anchor") == "sacrum":
        return "levels counted up from S1 (the sacrum)"
    sacrum = naming.get("sacrum") or {}
    return f"levels named from the column ({sacrum.get('reason') or 'no sacrum in view'})"


def _disc_summary(disc):
    if not disc["visible"]:
        return {"level": disc["level"], "visible": False, "reason": disc["reason"]}
    return {
        "level": disc["level"],
        "visible": True,
        "centre_ras": [round(float(v), 2) for v in disc["centre"]],
        "spine_axis_ras": [round(float(v), 4) for v in disc["normal"]],
        "height_mm": round(float(disc["height_mm"]), 2),
        **({"estimated": True, "method": disc["method"]} if disc.get("estimated") else {}),
    }


def write_scene(job, result, discs, severity=None):
    from SpineAILib.render import render_views
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.markups import add_points, add_roi
    from SpineAILib.scene.segmentations import add_segmentation_from_labelmap
    from SpineAILib.scene.storage import save_node
    from SpineAILib.scene.volumes import add_volume
    from SpineAILib.workflows.lumbar.severity.grade_levels import table_columns
    from SpineAILib.workflows.scene_outputs import save_scene, save_table_and_heatmap

    out = job.out_dir
    t0 = time.perf_counter()
    ctx = SceneContext.headless()
    volume = add_volume(ctx, job.image, name=job.image.description or "MRI")
    segmentation, points = None, None
    if result is not None:
        segmentation = add_segmentation_from_labelmap(ctx, result.labelmap, reference_node=volume, name="Vertebrae")
        save_node(segmentation, out / OUTPUTS["segmentation"])
        job.outputs["segmentation"] = OUTPUTS["segmentation"]

        visible = [d for d in discs if d["visible"]]
        points = add_points(ctx, "Disc levels", [(d["level"], d["centre"]) for d in visible])
        display = points.GetDisplayNode()
        if display is not None:  # discs lie a few mm either side of any one sagittal slice: show them all
            display.SetSliceProjection(True)
            display.SetSliceProjectionUseFiducialColor(True)
            display.SetSliceProjectionOpacity(1.0)
        save_node(points, out / OUTPUTS["discs"])
        job.outputs["discs"] = OUTPUTS["discs"]

        rois = [add_roi(ctx, f"Level {d['level']}", d["centre"], ROI_SIZE_MM, label=d["level"], axes=roi_axes(d["normal"]))
                for d in visible]  # fmt: skip
        for roi in rois:  # boxes to read, not to drag: no handles cluttering the sagittal view (saved in the file)
            display = roi.GetDisplayNode()
            if display is not None:
                display.SetHandlesInteractive(False)
        if rois:  # a markups file needs at least one markup: none when no level is visible
            write_markups_list(rois, out / OUTPUTS["levels"], save_node)
            job.outputs["levels"] = OUTPUTS["levels"]

    if severity is not None:
        columns = table_columns(severity["rows"], severity.get("research"))
        # The Grad-CAM volume is handed over, not kept: the scene's copy is the one written and rendered.
        save_table_and_heatmap(ctx, job, volume, "Severity", columns, severity.pop("heat", None),
                               {"table": ("severity", OUTPUTS["severity"]), "heatmap": ("heatmap", OUTPUTS["heatmap"])})  # fmt: skip

    job.timings["write_nodes_s"] = round(time.perf_counter() - t0, 3)
    if result is not None:
        job.progress(0.85, "rendering overlays")
        t0 = time.perf_counter()
        centres = [v["centre_ras"] for v in result.vertebrae]
        midline = np.mean(centres, axis=0) if centres else None
        pictures = render_views(ctx, volume, out, segmentation_node=segmentation, markups_nodes=[points],
                                views=("sagittal", "3d"), prefix="overlay", center_ras=midline)  # fmt: skip
        for view, path in pictures.items():
            job.outputs[f"overlay_{view}"] = path.name
        job.timings["render_s"] = round(time.perf_counter() - t0, 3)
    job.progress(0.95, "saving the scene")
    save_scene(ctx, job, OUTPUTS["scene"])


def write_markups_list(nodes, path, save_node):
    """Several markups nodes in one Slicer markups JSON file (its "markups" list holds one entry per node).

    Each node is written by Slicer's own storage node, then the entries are joined;
    Slicer opens such a file as one node per entry.
    """
    entries, schema = [], None
    for i, node in enumerate(nodes):
        part = path.with_name(f".{path.name}.part{i}.mrk.json")
        try:
            save_node(node, part)
            document = json.loads(part.read_text(encoding="utf-8"))
        finally:
            part.unlink(missing_ok=True)
        schema = schema or document.get("@schema")
        entries.extend(document["markups"])
    text = json.dumps({"@schema": schema, "markups": entries}, indent=4)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    for node in nodes:  # their storage nodes name deleted part files: the .mrb makes fresh ones
        storage = node.GetStorageNode()
        if storage is not None:
            node.GetScene().RemoveNode(storage)
    return path


WORKFLOW = Workflow(LUMBAR_MRI, "Lumbar spine MRI", "volume", ("MR", ""),
                    "Level-labelled vertebrae, disc levels and RSNA 2024 severity grading",
                    run, load_input=load_study_input)
