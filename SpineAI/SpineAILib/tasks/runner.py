"""Run a workflow with the output contract every front end relies on.

Order matters for the user: cheap checks first (task name, output folder, input
readable and of the right kind, model bundle present), the expensive work after,
and the results appear in ``out_dir`` only when all of them are written.
"""

import json
import platform
import time
from pathlib import Path

from SpineAILib import __version__
from SpineAILib.outputs import check_output_folder, output_lock, staged_output_folder, write_text_atomic
from SpineAILib.workflows.base import Job, _no_progress


def run_task(task, input_path, out_dir, *, model=None, device="auto", force=False, series=None, progress=None,
             dicom=False):  # fmt: skip
    """Run ``task``; returns the report dict also written to ``out_dir/report.json``.

    ``dicom``: also write ``out_dir/dicom/`` (DICOM SEG, SR and secondary captures in the source's
    study, SpineAILib.pacs); a non-DICOM input is refused before anything is read.
    """
    from SpineAILib.models.catalogue import resolve_bundle
    from SpineAILib.workflows.registry import get_workflow

    progress = progress or _no_progress
    workflow = get_workflow(task)
    if model and not workflow.uses_model:
        from SpineAILib.errors import InputError

        raise InputError(f"{task} uses no model bundle: leave out --model")
    out_dir = check_output_folder(out_dir, force)
    input_path = Path(input_path).absolute()  # the run folder names its input so that it can be exported later
    if dicom:
        from SpineAILib.pacs import check_dicom_input

        check_dicom_input(input_path)
    with output_lock(out_dir):  # held from the first read: a second run into out_dir is refused at once
        t0 = time.perf_counter()
        progress(0.0, f"reading {input_path}")
        image = workflow.load_input(input_path, series=series)
        workflow.check_input(image)
        source = None
        if dicom:  # the source instances, checked before the run (SOP Instance UIDs, one study)
            from SpineAILib.pacs import find_source

            t_source = time.perf_counter()
            source = find_source(input_path, image)
            t_source = time.perf_counter() - t_source
        t_load = time.perf_counter() - t0
        bundle_path = resolve_bundle(task, model) if workflow.uses_model else None

        with staged_output_folder(out_dir, force) as staging:
            job = Job(workflow, image, input_path, staging, bundle_path, device, progress)
            job.timings["load_s"] = round(t_load, 3)
            t1 = time.perf_counter()
            workflow.run(job)
            job.timings["run_s"] = round(time.perf_counter() - t1, 3)
            report = build_report(job)
            if source is not None:  # into the staging folder: a failed DICOM write leaves no half run
                from SpineAILib.pacs import DICOM_FOLDER, write_dicom_outputs

                progress(0.97, "writing DICOM SEG, SR and secondary captures")
                written = write_dicom_outputs(staging, report, source, arrays=job.arrays)
                report["outputs"]["dicom"] = DICOM_FOLDER
                report["dicom"] = {"files": written["files"], "note": "carries the source's patient and study "
                                   "identifiers: for the patient's record, not for sharing"}  # fmt: skip
                report["timings"]["dicom_source_s"] = round(t_source, 3)  # finding and checking the source instances
                report["timings"]["dicom_s"] = written["seconds"]  # writing SEG, SR and secondary captures
            write_text_atomic(staging / "report.json", json.dumps(report, indent=2))
    progress(1.0, f"results written to {out_dir}")
    return report


def build_report(job):
    from SpineAILib.models.bundle import read_metadata

    meta = read_metadata(job.bundle_path) if job.bundle_path is not None else {}
    return {
        "task": job.workflow.name,
        "spineai_version": __version__,
        "model": ({"bundle_id": meta.get("bundle_id"), "version": meta.get("version"), "path": str(job.bundle_path)}
                  if job.bundle_path is not None else None),
        "device": job.device,
        "input": {"path": str(job.input_path), **job.image.summary()},
        "outputs": job.outputs,
        "results": job.results,
        "warnings": list(job.image.warnings) + job.warnings,
        "timings": job.timings,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
