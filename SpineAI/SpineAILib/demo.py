"""The main job on bundled sample data: what the README's first command runs.

Generates phantoms (a CT written as a real DICOM series, a sagittal MRI as
NIfTI, an ultrasound cine as multi-frame DICOM), reads them back through the
same readers a user's files go through, puts them into an MRML scene
(volumes, segmentation with vertebra names, disc-level points, a table, the
cine as a sequence), renders pictures, saves everything (.nrrd, .seg.nrrd,
.mrk.json, .tsv, scene.mrb), runs each workflow with its bundled model on its
sample (``runs/<task>/``: lumbar-mri on a three-series MRI study made from the
phantom, lp-ultrasound on the cine), and opens the CT in the web app for a
browser screenshot. Each workflow adds its own run here as it lands.
"""

import json
import sys
import time
from pathlib import Path

from SpineAILib.outputs import staged_output_folder, write_text_atomic


def _say(message):
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def make_samples(folder):
    """Write the sample inputs; returns {name: path}."""
    from SpineAILib.io.volumes import save_volume_file
    from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_dicom
    from SpineAILib.samples.dicom_writer import write_dicom_series
    from SpineAILib.samples.mri_study import write_mri_study
    from SpineAILib.samples.spine_phantom import make_phantom

    folder.mkdir(parents=True, exist_ok=True)
    ct, ct_labels = make_phantom("CT", shape_kji=(64, 128, 128), spacing=(1.5, 1.5, 3.0), plane="axial")
    write_dicom_series(ct, folder / "ct_dicom", modality="CT", series_description="Phantom lumbar CT")
    save_volume_file(ct_labels, folder / "ct_labels.nii.gz")
    mr, mr_labels = make_phantom("MR", shape_kji=(40, 200, 160), spacing=(1.0, 1.0, 2.0), plane="sagittal", seed=1)
    save_volume_file(mr, folder / "mri_sagittal.nii.gz")
    save_volume_file(mr_labels, folder / "mri_sagittal_labels.nii.gz")
    write_mri_study(mr, folder / "mri_study")  # sagittal T2, T1-like and axial series: the lumbar-mri input
    cine = make_cine_phantom(n_frames=24, seed=0)
    write_cine_dicom(cine, folder / "us_cine.dcm", color="MONOCHROME2", frame_time_ms=40.0)
    return {
        "ct_dicom": folder / "ct_dicom",
        "ct_labels": folder / "ct_labels.nii.gz",
        "mri": folder / "mri_sagittal.nii.gz",
        "mri_labels": folder / "mri_sagittal_labels.nii.gz",
        "mri_study": folder / "mri_study",
        "us_cine": folder / "us_cine.dcm",
    }


def build_scene(samples, out):
    """Load the samples through the readers into one scene; save nodes, pictures and the .mrb."""
    import numpy as np

    from SpineAILib.io import load
    from SpineAILib.render import render_views
    from SpineAILib.samples.spine_phantom import disc_centres_ras
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.markups import add_points
    from SpineAILib.scene.segmentations import add_segmentation_from_labelmap
    from SpineAILib.scene.sequences import add_cine
    from SpineAILib.scene.storage import save_node, save_scene_mrb
    from SpineAILib.scene.tables import add_table
    from SpineAILib.scene.volumes import add_volume
    from SpineAILib.terminology import DISC_LEVELS, vertebra_name

    ctx = SceneContext.headless()
    ct = load(samples["ct_dicom"])
    ct_node = add_volume(ctx, ct, name="Phantom CT")
    ct_labels = load(samples["ct_labels"])
    seg = add_segmentation_from_labelmap(ctx, ct_labels, reference_node=ct_node, name="Vertebrae")
    discs = add_points(ctx, "Disc levels", list(zip(DISC_LEVELS, disc_centres_ras())))
    values, counts = np.unique(ct_labels.voxels[ct_labels.voxels > 0], return_counts=True)
    voxel_ml = float(np.prod(ct_labels.spacing)) / 1000.0
    table = add_table(ctx, "Vertebrae", {
        "label": [int(v) for v in values],
        "name": [vertebra_name(int(v)) for v in values],
        "volume_ml": [round(float(c) * voxel_ml, 2) for c in counts],
    })
    mr_node = add_volume(ctx, load(samples["mri"]), name="Phantom MRI")
    cine = load(samples["us_cine"])
    add_cine(ctx, cine, name="Phantom ultrasound")

    save_node(ct_node, out / "ct.nrrd")
    save_node(seg, out / "vertebrae.seg.nrrd")
    save_node(discs, out / "discs.mrk.json")
    save_node(table, out / "vertebrae.tsv")
    pictures = render_views(ctx, ct_node, out / "pictures", segmentation_node=seg, markups_nodes=[discs], prefix="ct")
    pictures.update(render_views(ctx, mr_node, out / "pictures", views=("sagittal",), prefix="mri"))
    save_scene_mrb(ctx, out / "scene.mrb")
    return {
        "ct": ct.summary(), "mri_volume": mr_node.GetName(), "cine": cine.summary(),
        "pictures": {k: str(Path(v).relative_to(out)) for k, v in pictures.items()},
    }


# The workflows the demo runs on the samples, and the sample each one reads.
DEMO_RUNS = (("lumbar-mri", "mri_study"), ("lp-ultrasound", "us_cine"))


def run_workflows(samples, out):
    """Run each workflow with its installed model on its sample; {task: message or error}."""
    from SpineAILib.errors import SpineAIError
    from SpineAILib.tasks import run_task_isolated

    said = {}
    for task, sample in DEMO_RUNS:
        _say(f"running {task} on {Path(samples[sample]).name} (its bundled model)")
        try:
            # a child process: VTK's offscreen rendering does not survive a second scene in this one
            report = run_task_isolated(task, samples[sample], out / task, device="cpu")
            said[task] = report["results"].get("message") or "done"
        except SpineAIError as error:  # a missing bundle must not stop the rest of the demo
            said[task] = f"not run: {error}"
        _say(f"{task}: {said[task]}")
    return said


def _name_final_inputs(runs, staging, out_dir):
    """The runs read their samples inside the staging folder; their reports name where the samples will be."""
    for report_path in sorted(Path(runs).glob("*/report.json")):
        report = json.loads(report_path.read_text(encoding="utf-8"))
        for key in ("path", "source"):
            value = str(report.get("input", {}).get(key, ""))
            if value.startswith(str(staging)):
                report["input"][key] = str(out_dir) + value[len(str(staging)):]
        write_text_atomic(report_path, json.dumps(report, indent=2))


def run_demo(out_dir, force=False, web=True):
    t0 = time.perf_counter()
    with staged_output_folder(out_dir, force) as staging:
        _say("writing phantom samples (CT DICOM series, sagittal MRI NIfTI, ultrasound cine DICOM)")
        samples = make_samples(staging / "samples")
        _say("loading them into an MRML scene and rendering pictures")
        summary = build_scene(samples, staging)
        summary["workflows"] = run_workflows(samples, staging / "runs")
        _name_final_inputs(staging / "runs", staging, Path(out_dir).absolute())
        summary["samples"] = {k: str(Path(v).relative_to(staging)) for k, v in samples.items()}
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        write_text_atomic(staging / "summary.json", json.dumps(summary, indent=2))
    out_dir = Path(out_dir).absolute()
    if web:
        _say("opening the CT in the web app and taking a browser screenshot")
        from SpineAILib.web.snapshot import snapshot_web_app

        shot = snapshot_web_app(out_dir / "samples" / "ct_dicom", out_dir / "web.png")
        _say(f"web app screenshot: {shot}" if shot else "web app check skipped (no Chromium)")
    _say(f"done in {time.perf_counter() - t0:.1f} s: {out_dir}")
    _say(f"explore it: .venv/bin/spineai web {out_dir / 'samples' / 'ct_dicom'}   (then open the address it prints: http://127.0.0.1:8080/?token=…)")
    return out_dir
