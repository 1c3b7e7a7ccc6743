"""cervical-ct: vertebrae C1-C7 (and T1 ...) named on a CT, fracture probabilities per vertebra (RSNA 2022).

Writes ``vertebrae.seg.nrrd`` (one segment per vertebra, named, SNOMED CT terminology,
label value = VerSe number), ``fractures.tsv`` (C1...C7 and patient_overall: present,
probability, call, the reason for rows not scored), ``fracture_heatmap.nrrd`` (Grad-CAM
of the fracture classifier on the CT's grid, 0..1), ``overlay_sagittal.png``,
``overlay_coronal.png``, ``overlay_3d.png`` and ``scene.mrb``; the summary (vertebrae,
volumes, centres, fracture calls, dropped candidates) goes into report.json.

An MRI or a scout is refused with one line; a head or abdominal CT is a clean result
that says "no cervical vertebrae found" (nothing named, every fracture row not in view).
"""

import time

from SpineAILib.ct_checks import check_ct
from SpineAILib.vocabulary import (
    CERVICAL_CT,
    CERVICAL_VERTEBRAE,
    FRACTURE_CALL,
    NO_FRACTURE_CALL,
    NOT_ASSESSED,
    NOT_IN_VIEW,
)
from SpineAILib.workflows.base import Workflow
from SpineAILib.workflows.cervical import FRACTURE_TASK, PATIENT_ROW, SEGMENTATION_TASK

OUTPUTS = {
    "segmentation": "vertebrae.seg.nrrd",
    "fractures": "fractures.tsv",
    "heatmap": "fracture_heatmap.nrrd",
    "scene": "scene.mrb",
}
TABLE_COLUMNS = ("vertebra", "present", "probability", "call", "threshold", "volume_ml", "reason", "row_id")


def run(job):
    from SpineAILib.models.engine import load_model
    from SpineAILib.workflows.cervical.segment import segment

    layout, warnings = check_ct(job.image)  # before any model loads: an MRI or a scout is refused at once
    job.warnings.extend(warnings)
    segmentation_path, fracture_path = bundle_paths(job)
    job.progress(0.05, "loading the vertebra model")
    bundle = load_model(segmentation_path, device=job.device, expected_task=SEGMENTATION_TASK)
    job.results["engine"] = bundle.engine
    job.warnings.extend(bundle.notes)
    job.warnings.extend(synthetic_warning(bundle.metadata, "vertebra names and outlines"))
    job.progress(0.1, "finding and naming vertebrae")
    t0 = time.perf_counter()
    result = segment(job.image, bundle, layout, progress=lambda f: job.progress(0.1 + 0.45 * f, "segmenting vertebrae"))
    job.timings.update(result.timings)
    job.timings["segmentation_s"] = round(time.perf_counter() - t0, 3)
    job.results.update(summarise(result))
    from SpineAILib.models.engine import release_memory

    del bundle
    release_memory()

    fractures = None
    if fracture_path is not None:
        job.progress(0.6, "scoring each vertebra for fractures")
        fractures = score_fractures(job, result, fracture_path)
        release_memory()
    job.progress(0.75, "writing the segmentation, fracture table and heat map")
    write_scene(job, result, fractures)


def bundle_paths(job):
    """(segmentation bundle, fracture bundle or None); ``--model`` may name either kind."""
    from SpineAILib.models.bundle import read_metadata
    from SpineAILib.models.catalogue import resolve_bundle
    from SpineAILib.workflows.cervical.fracture import fracture_bundle_path

    if read_metadata(job.bundle_path).get("task") == FRACTURE_TASK:
        return resolve_bundle(SEGMENTATION_TASK), job.bundle_path
    fracture = fracture_bundle_path()
    if fracture is None:
        job.warnings.append("no fracture bundle is installed: vertebrae only (train one with `spineai-train cervical-fracture`)")
    return job.bundle_path, fracture


def synthetic_warning(meta, what):
    from SpineAILib.models.bundle import trained_on_synthetic_data

    if trained_on_synthetic_data(meta):
        return [f"{what} come from {meta.get('bundle_id')}, a model trained on synthetic CT phantoms, not on real CT: "
                "they show the pipeline working, not a clinical reading"]  # fmt: skip
    return []


def summarise(result):
    found = [v["name"] for v in result.vertebrae]
    cervical = [name for name in found if name in CERVICAL_VERTEBRAE]
    if cervical:
        missing = [name for name in CERVICAL_VERTEBRAE if name not in cervical]
        message = f"{len(cervical)} cervical vertebra(e) found ({', '.join(cervical)})"
        if missing:
            message += f"; not in view or not found: {', '.join(missing)}"
    else:
        message = "no cervical vertebrae found"
    return {"message": message, "levels_found": found, "cervical_levels_found": cervical,
            "vertebrae": result.vertebrae, "notes": result.notes}  # fmt: skip


def score_fractures(job, result, fracture_path):
    """Per-vertebra and patient probabilities and calls, the heat map; summary into report.json."""
    from SpineAILib.models.engine import load_model
    from SpineAILib.workflows.cervical import fracture

    loaded = load_model(fracture_path, device=job.device, expected_task=FRACTURE_TASK)
    job.warnings.extend(synthetic_warning(loaded.metadata, "fracture probabilities"))
    vertebra_threshold = float(loaded.thresholds.get("vertebra", 0.5))
    rule, calibration = fracture.settings(loaded.metadata)
    t0 = time.perf_counter()
    entries, crops = fracture.score_vertebrae(job.image, result, loaded)
    job.timings["fracture_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    from SpineAILib.explain import GradCamUnavailable

    try:
        heat = fracture.heatmap(job.image, result, loaded, entries, crops)
    except GradCamUnavailable as error:  # a bundle of one's own without a CAM head, and no torch: calls stand
        heat = None
        job.warnings.append(f"fracture {error}")
    job.timings["fracture_heatmap_s"] = round(time.perf_counter() - t0, 3)
    if heat is not None and heat.voxels.shape != job.image.voxels.shape:
        job.warnings.append("the volume is very large: the fracture heat map is on the model's coarser grid")

    volumes = {v["name"]: v["volume_ml"] for v in result.vertebrae}
    rows = []
    for entry in entries:
        if entry["present"]:
            p = entry["probability"]
            rows.append({"vertebra": entry["name"], "present": 1, "probability": round(p, 4),
                         "call": FRACTURE_CALL if p >= vertebra_threshold else NO_FRACTURE_CALL,
                         "threshold": vertebra_threshold, "volume_ml": volumes.get(entry["name"]),
                         "reason": ""})  # fmt: skip
        else:
            rows.append({"vertebra": entry["name"], "present": 0, "probability": None, "call": NOT_IN_VIEW,
                         "threshold": vertebra_threshold, "volume_ml": None,
                         "reason": "not found in the image (outside the field of view, or not recognised)"})  # fmt: skip
    scored = [r["probability"] for r in rows if r["present"]]
    patient = fracture.patient_probability(scored, rule, calibration["patient"])
    if patient is None:
        rows.append({"vertebra": PATIENT_ROW, "present": 0, "probability": None, "call": NOT_ASSESSED,
                     "threshold": None, "volume_ml": None, "reason": "no cervical vertebrae found"})  # fmt: skip
    else:
        # The call is the definition of patient_overall: any vertebra called fractured. The probability
        # combines the vertebrae's (rule, calibration) and is what an RSNA 2022 submission takes.
        missing = [r["vertebra"] for r in rows if not r["present"]]
        called = [r["vertebra"] for r in rows if r["call"] == FRACTURE_CALL]
        rows.append({"vertebra": PATIENT_ROW, "present": 1, "probability": round(patient, 4),
                     "call": FRACTURE_CALL if called else NO_FRACTURE_CALL, "threshold": None, "volume_ml": None,
                     "reason": f"probability from {len(scored)} vertebra(e) ({rule}); call: "
                     + (f"{', '.join(called)} called fractured" if called else "no vertebra called fractured")
                     + (f"; {', '.join(missing)} not in view" if missing else "")})  # fmt: skip
    study = str(job.image.metadata.get("StudyInstanceUID") or job.image.description or "study")
    for row in rows:
        row["row_id"] = f"{study}_{row['vertebra']}"
    meta = loaded.metadata
    job.results["fractures"] = {
        "rows": [{k: row[k] for k in ("vertebra", "present", "probability", "call")} for row in rows],
        "fractured": [r["vertebra"] for r in rows[:-1] if r["call"] == FRACTURE_CALL],
        "patient_overall": {"probability": rows[-1]["probability"], "call": rows[-1]["call"]},
        "thresholds": {"vertebra": vertebra_threshold},
        "patient_rule": rule,
        "calibration": calibration,
        "model": {"bundle_id": meta.get("bundle_id"), "version": meta.get("version"), "path": str(fracture_path),
                  "trained_on": meta.get("training", {}).get("data", "")},
    }  # fmt: skip
    return {"rows": rows, "heat": heat}


def table_columns(rows):
    return {column: [row[column] for row in rows] for column in TABLE_COLUMNS}


def write_scene(job, result, fractures):
    from SpineAILib.workflows.scene_outputs import ct_with_vertebrae, overlays_and_scene, save_table_and_heatmap

    t0 = time.perf_counter()
    ctx, volume, segmentation = ct_with_vertebrae(job, result.labelmap if result.vertebrae else None,
                                                  OUTPUTS["segmentation"])  # fmt: skip
    if fractures is not None:
        save_table_and_heatmap(ctx, job, volume, "Fractures", table_columns(fractures["rows"]), fractures["heat"],
                               {"table": ("fractures", OUTPUTS["fractures"]), "heatmap": ("heatmap", OUTPUTS["heatmap"])})  # fmt: skip
    job.timings["write_nodes_s"] = round(time.perf_counter() - t0, 3)
    cervical = [v["centre_ras"] for v in result.vertebrae if v["name"] in CERVICAL_VERTEBRAE] or [v["centre_ras"] for v in result.vertebrae]
    overlays_and_scene(ctx, job, volume, segmentation, cervical, OUTPUTS["scene"])


WORKFLOW = Workflow(CERVICAL_CT, "Cervical spine CT", "volume", ("CT", ""),
                    "C1-C7 vertebra segmentation and per-vertebra fracture probabilities (RSNA 2022)",
                    run)
