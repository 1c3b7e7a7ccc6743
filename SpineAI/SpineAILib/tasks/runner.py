"""Run a workflow with the output contract every front end relies on.

Order matters for the user: cheap checks first (task name, output folder, input
readable and of the right kind, model bundle present), the expensive work after,
and the results appear in ``out_dir`` only when all of them are written.
"""

import importlib
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import InputError
from ..images import Cine, VolumeImage
from ..outputs import check_output_folder, staged_output_folder, write_text_atomic
from . import task_spec


def _no_progress(fraction, message):
    pass


@dataclass
class Job:
    """Everything a workflow's run(job) needs; it writes its files into job.out_dir."""

    spec: object
    image: object  # VolumeImage or Cine
    input_path: Path
    out_dir: Path  # the staging folder: becomes the user's out_dir on success
    bundle_path: Path
    device: str
    progress: object = _no_progress
    outputs: dict = field(default_factory=dict)  # role -> file name, filled by the workflow
    results: dict = field(default_factory=dict)  # summary figures for report.json
    warnings: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)


def check_input_fits(spec, image):
    """Refuse an input the task cannot read, saying what it is and what is needed."""
    is_cine = isinstance(image, Cine)
    if spec.input_kind == "cine" and not is_cine:
        raise InputError(
            f"{spec.name} needs an ultrasound cine or frame, but the input is a 3-D "
            f"{image.modality or 'unknown-modality'} volume {'x'.join(map(str, image.dimensions))}"
        )
    if spec.input_kind == "volume" and not isinstance(image, VolumeImage):
        raise InputError(f"{spec.name} needs a 3-D volume, but the input is a {image.n_frames}-frame 2-D cine")
    if image.modality not in spec.modalities:
        wanted = " or ".join(m for m in spec.modalities if m)
        raise InputError(f"{spec.name} needs {wanted} images, but the input's modality is {image.modality}")


def run_task(task, input_path, out_dir, *, model=None, device="auto", force=False, series=None, progress=None):
    """Run ``task``; returns the report dict also written to ``out_dir/report.json``."""
    from ..io import load
    from ..models.catalogue import resolve_bundle

    progress = progress or _no_progress
    spec = task_spec(task)
    out_dir = check_output_folder(out_dir, force)
    try:
        workflow = importlib.import_module(f"{__package__}.{spec.module}")
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}.{spec.module}":
            raise
        workflow = None  # said after the input and bundle checks, which tell the user more
    t0 = time.perf_counter()
    progress(0.0, f"reading {input_path}")
    # A workflow may choose among a study's series itself (lumbar-mri: the sagittal T2 of a study folder).
    image = getattr(workflow, "load_input", load)(input_path, series=series)
    check_input_fits(spec, image)
    t_load = time.perf_counter() - t0
    bundle_path = resolve_bundle(task, model)
    if workflow is None:
        from ..errors import SpineAIError

        raise SpineAIError(f"the {task} workflow is not part of this SpineAI version ({__version__})")

    with staged_output_folder(out_dir, force) as staging:
        job = Job(spec, image, Path(input_path), staging, bundle_path, device, progress)
        job.timings["load_s"] = round(t_load, 3)
        t1 = time.perf_counter()
        workflow.run(job)
        job.timings["run_s"] = round(time.perf_counter() - t1, 3)
        report = build_report(job)
        write_text_atomic(staging / "report.json", json.dumps(report, indent=2))
    progress(1.0, f"results written to {out_dir}")
    return report


def build_report(job):
    from ..models.bundle import read_metadata

    meta = read_metadata(job.bundle_path)
    return {
        "task": job.spec.name,
        "spineai_version": __version__,
        "model": {"bundle_id": meta.get("bundle_id"), "version": meta.get("version"), "path": str(job.bundle_path)},
        "device": job.device,
        "input": {"path": str(job.input_path), **job.image.summary()},
        "outputs": job.outputs,
        "results": job.results,
        "warnings": list(job.image.warnings) + job.warnings,
        "timings": job.timings,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
