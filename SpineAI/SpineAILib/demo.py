"""The main job on bundled sample data: what the README's first command runs.

Copies the real samples shipped in SpineAI/Resources/SampleData (an abdominal CT, also as a
DICOM series, a thoraco-lumbar T2 MRI; licences beside them) and generates the one phantom left, an
ultrasound cine (no real spine ultrasound may be shipped), reads them back through the same
readers a user's files go through, puts them into an MRML scene (volumes, the cine as a
sequence), renders pictures, saves everything (.nrrd, scene.mrb), runs each workflow with its
bundled model on its sample (``runs/<task>/``: lumbar-mri on the real MRI, cervical-ct on the
real CT — which holds no cervical vertebrae, so the check before the run says so and the run
finds none — and lp-ultrasound on the cine) at the same time, each in its own process, writes
one picture per workflow (``pictures/workflow_<task>.png``) and the results as a reader sees
them (``runs/<task>/results.html``: warnings, grade grid, fractures, calls), and opens the CT
in the web app for a browser screenshot.
"""

import json
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from SpineAILib.outputs import staged_output_folder, write_text_atomic


def _say(message):
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def make_samples(folder):
    """Copy the real samples and write the ultrasound phantom; returns {name: path}."""
    from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_dicom
    from SpineAILib.samples.real import SAMPLE_DIR, real_sample

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(real_sample("ct_abdomen_dicom").path, folder / "ct_dicom")
    shutil.copy2(real_sample("ct_abdomen.nii.gz").path, folder / "ct_abdomen.nii.gz")
    shutil.copy2(real_sample("mri_t2_thoracolumbar.nii.gz").path, folder / "mri_t2.nii.gz")
    for licence in sorted(SAMPLE_DIR.glob("LICENSE-*")) + [SAMPLE_DIR / "README.md"]:
        shutil.copy2(licence, folder / licence.name)
    cine = make_cine_phantom(n_frames=24, seed=0)
    write_cine_dicom(cine, folder / "us_cine.dcm", color="MONOCHROME2", frame_time_ms=40.0)
    return {"ct_dicom": folder / "ct_dicom", "ct": folder / "ct_abdomen.nii.gz", "mri": folder / "mri_t2.nii.gz",
            "us_cine": folder / "us_cine.dcm"}


def build_scene(samples, out):
    """Load the samples through the readers into one scene; save the CT, pictures and the .mrb."""
    from SpineAILib.io import load
    from SpineAILib.render import render_views
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.sequences import add_cine
    from SpineAILib.scene.storage import save_node, save_scene_mrb
    from SpineAILib.scene.volumes import add_volume

    ctx = SceneContext.headless()
    ct = load(samples["ct_dicom"])  # a real DICOM series through the DICOM reader (JPEG 2000)
    add_volume(ctx, ct, name="CT abdomen DICOM")
    ct_node = add_volume(ctx, load(samples["ct"]), name="CT abdomen")
    mr_node = add_volume(ctx, load(samples["mri"]), name="T2 MRI thoraco-lumbar")
    cine = load(samples["us_cine"])
    add_cine(ctx, cine, name="Phantom ultrasound")

    save_node(ct_node, out / "ct.nrrd")
    pictures = render_views(ctx, ct_node, out / "pictures", prefix="ct")
    pictures.update(render_views(ctx, mr_node, out / "pictures", views=("sagittal",), prefix="mri"))
    save_scene_mrb(ctx, out / "scene.mrb")
    return {
        "ct": ct.summary(), "mri_volume": mr_node.GetName(), "cine": cine.summary(),
        "pictures": {k: str(Path(v).relative_to(out)) for k, v in pictures.items()},
    }


# The workflows the demo runs, the sample each one reads, and the picture that shows its result.
DEMO_RUNS = (("lumbar-mri", "mri", "overlay_sagittal.png"), ("cervical-ct", "ct", "overlay_sagittal.png"),
             ("lp-ultrasound", "us_cine", "timeline.png"))


def _run_one(task, sample_path, out):
    from SpineAILib.errors import SpineAIError
    from SpineAILib.tasks import run_task_isolated

    try:
        # a child process: VTK's offscreen rendering does not survive a second scene in this one
        report = run_task_isolated(task, sample_path, out, device="cpu")
        return report["results"].get("message") or report["results"].get("summary") or "done"
    except SpineAIError as error:  # a missing bundle must not stop the rest of the demo
        return f"not run: {error}"


def run_workflows(samples, out):
    """Run each workflow with its installed model on its sample, all at once; {task: message or error},
    the input-fit concerns the front ends would show first, and one picture per workflow."""
    from SpineAILib.io import load
    from SpineAILib.tasks.fit import concerns

    checks = {}
    for task, sample, _ in DEMO_RUNS:
        found = concerns(task, load(samples[sample]))
        checks[task] = found
        for line in found:
            _say(f"{task} on {Path(samples[sample]).name}: does the input fit? {line}")
    _say("running " + ", ".join(f"{task} on {Path(samples[sample]).name}" for task, sample, _ in DEMO_RUNS)
         + " (their bundled models, at the same time)")
    with ThreadPoolExecutor(len(DEMO_RUNS)) as pool:
        futures = {task: pool.submit(_run_one, task, samples[sample], out / task) for task, sample, _ in DEMO_RUNS}
    said = {task: future.result() for task, future in futures.items()}
    for task, message in said.items():
        _say(f"{task}: {message}")
    return said, checks


def workflow_pictures(runs, out):
    """pictures/workflow_<task>.png: the picture of each run's result; results.html: what a reader sees."""
    from SpineAILib.presentation import present, to_html

    made = {}
    for task, _, picture in DEMO_RUNS:
        run = runs / task
        if (run / picture).is_file():
            target = out / "pictures" / f"workflow_{task}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run / picture, target)
            made[task] = str(target.relative_to(out))
        if (run / "report.json").is_file():
            write_text_atomic(run / "results.html", f"<html><body>{to_html(present(run))}</body></html>")
    return made


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
        _say("copying the real samples (abdominal CT DICOM series, thoraco-lumbar T2 MRI) and writing a phantom "
             "ultrasound cine")
        samples = make_samples(staging / "samples")
        _say("loading them into an MRML scene and rendering pictures")
        summary = build_scene(samples, staging)
        summary["workflows"], summary["input_checks"] = run_workflows(samples, staging / "runs")
        summary["workflow_pictures"] = workflow_pictures(staging / "runs", staging)
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
