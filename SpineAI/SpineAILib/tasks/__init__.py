"""The three workflows and the one way to run them.

Each workflow lives in its own module (``tasks/lp_ultrasound.py`` ...) with a
``run(job)`` function; this registry names them and says what input each takes,
so every front end (CLI, web app, desktop module) offers the same choices.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str  # as typed on the command line
    title: str
    input_kind: str  # "cine" or "volume"
    modalities: tuple  # DICOM modality codes the task accepts ("" = unknown, allowed for NIfTI/NRRD)
    module: str  # SpineAILib.tasks.<module> implements run(job)
    description: str


TASKS = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "lp-ultrasound",
            "Infant lumbar-puncture ultrasound",
            "cine",
            ("US", ""),
            "lp_ultrasound",
            "Per-frame image quality, spinal cord and CSF calls on an ultrasound cine",
        ),
        TaskSpec(
            "lumbar-mri",
            "Lumbar spine MRI",
            "volume",
            ("MR", ""),
            "lumbar_mri",
            "Level-labelled vertebrae, disc levels and RSNA 2024 severity grading",
        ),
        TaskSpec(
            "cervical-ct",
            "Cervical spine CT",
            "volume",
            ("CT", ""),
            "cervical_ct",
            "C1-C7 vertebra segmentation and per-vertebra fracture probabilities (RSNA 2022)",
        ),
    )
}


def task_spec(name):
    from ..errors import SpineAIError

    try:
        return TASKS[name]
    except KeyError:
        raise SpineAIError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None


def run_task(task, input_path, out_dir, **options):
    """Run ``task`` on ``input_path`` and write its results to ``out_dir`` (see runner.run_task)."""
    from .runner import run_task as _run

    return _run(task, input_path, out_dir, **options)


def run_task_isolated(task, input_path, out_dir, **options):
    """run_task in a child process (for long-running servers; see isolated.py)."""
    from .isolated import run_task_isolated as _run

    return _run(task, input_path, out_dir, **options)
