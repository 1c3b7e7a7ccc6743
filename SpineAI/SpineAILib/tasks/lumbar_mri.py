"""lumbar-mri: level-labelled vertebral bodies and disc levels on a sagittal MRI.

Writes ``vertebrae.seg.nrrd`` (T11 ... L5 segments with terminology),
``discs.mrk.json`` (points L1/L2 ... L5/S1 in the input's RAS space),
``levels.mrk.json`` (one ROI per visible disc level, sized for grading crops),
``overlay_sagittal.png`` / ``overlay_3d.png`` and ``scene.mrb``; the summary
(levels found, disc levels visible / not visible with the reason, body volumes)
goes into report.json. An MRI without lumbar vertebrae (a cervical or brain
study) is a clean result with zero levels and says "no lumbar levels found";
a CT is refused with the reason.
"""

import json
import time

import numpy as np

from ..levels.discs import ROI_SIZE_MM, disc_levels, roi_axes
from ..levels.pipeline import check_mri, segment_vertebrae

LUMBAR = ("L1", "L2", "L3", "L4", "L5")
OUTPUTS = {
    "segmentation": "vertebrae.seg.nrrd",
    "discs": "discs.mrk.json",
    "levels": "levels.mrk.json",
    "overlay_sagittal": "overlay_sagittal.png",
    "overlay_3d": "overlay_3d.png",
    "scene": "scene.mrb",
}


def run(job):
    from ..models.bundle import load_bundle

    check_mri(job.image)  # before the model loads: a CT is refused at once
    job.progress(0.05, "loading the level model")
    bundle = load_bundle(job.bundle_path, device=job.device, expected_task="lumbar-mri")
    job.progress(0.1, "finding and naming vertebral bodies")
    result = segment_vertebrae(job.image, bundle, progress=lambda f: job.progress(0.1 + 0.6 * f, "predicting slices"))
    job.timings.update(result.timings)

    discs = disc_levels(result.labelmap)
    if "S1" not in bundle.labels:
        for disc in discs:
            if disc["level"] == "L5/S1" and not disc["visible"]:
                disc["reason"] = "S1 is not segmented by this model (its training data has no sacrum labels)"
    job.results.update(summarise(result, discs))
    found = job.results["levels_found"]
    if job.results["lumbar_levels_found"] and "L5" not in found:
        # Without the lumbosacral junction the count rests on the bodies above: say so.
        job.warnings.append("L5 and the sacrum are not in view: level names rest on the vertebrae above "
                            "and may be off by one level; check them")  # fmt: skip
    job.progress(0.75, "writing the segmentation, disc points and level boxes")
    write_scene(job, result, discs)


def summarise(result, discs):
    found = [v["name"] for v in result.vertebrae]
    lumbar = [name for name in found if name in LUMBAR]
    visible = [d["level"] for d in discs if d["visible"]]
    if lumbar:
        message = f"{len(lumbar)} lumbar vertebra(e) found ({', '.join(lumbar)}); disc levels visible: {', '.join(visible) or 'none'}"
    else:
        message = "no lumbar levels found"
    return {
        "message": message,
        "levels_found": found,
        "lumbar_levels_found": lumbar,
        "vertebrae": result.vertebrae,
        "disc_levels": [_disc_summary(d) for d in discs],
        "visible_disc_levels": visible,
        "not_visible_disc_levels": [d["level"] for d in discs if not d["visible"]],
        "level_box_mm": {"left_right": ROI_SIZE_MM[0], "anterior_posterior": ROI_SIZE_MM[1], "along_spine": ROI_SIZE_MM[2]},
        "notes": result.notes,
    }


def _disc_summary(disc):
    if not disc["visible"]:
        return {"level": disc["level"], "visible": False, "reason": disc["reason"]}
    return {
        "level": disc["level"],
        "visible": True,
        "centre_ras": [round(float(v), 2) for v in disc["centre"]],
        "spine_axis_ras": [round(float(v), 4) for v in disc["normal"]],
        "height_mm": round(float(disc["height_mm"]), 2),
    }


def write_scene(job, result, discs):
    from ..render import render_views
    from ..scene.context import SceneContext
    from ..scene.markups import add_points, add_roi
    from ..scene.segmentations import add_segmentation_from_labelmap
    from ..scene.storage import save_node, save_scene_mrb
    from ..scene.volumes import add_volume

    out = job.out_dir
    t0 = time.perf_counter()
    ctx = SceneContext.headless()
    volume = add_volume(ctx, job.image, name=job.image.description or "MRI")
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
    if rois:  # a markups file needs at least one markup: none when no level is visible
        write_markups_list(rois, out / OUTPUTS["levels"], save_node)
        job.outputs["levels"] = OUTPUTS["levels"]

    job.timings["write_nodes_s"] = round(time.perf_counter() - t0, 3)
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
    t0 = time.perf_counter()
    save_scene_mrb(ctx, out / OUTPUTS["scene"])
    job.outputs["scene"] = OUTPUTS["scene"]
    job.timings["scene_mrb_s"] = round(time.perf_counter() - t0, 3)


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
