"""What every workflow is: a name, the input it takes, how it reads it, and run(job).

A workflow package (``workflows/ultrasound``, ``lumbar``, ``cervical``) holds its
preprocessing, its models' inference, post-processing, explanations and review
helpers, and a ``workflow.py`` whose ``WORKFLOW`` says what it is; ``registry`` lists
them. ``tasks.run_task`` drives a workflow with the output contract (checks first,
staged output, report.json).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from SpineAILib.errors import InputError
from SpineAILib.images import Cine, VolumeImage


def _no_progress(fraction, message):
    pass


@dataclass
class Job:
    """Everything a workflow's run(job) needs; it writes its files into job.out_dir."""

    workflow: object  # the Workflow
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
    arrays: dict = field(default_factory=dict)  # in-memory results that no file holds (e.g. per-frame masks), for DICOM outputs


def load_any(path, series=None):
    """The default input reader: any file or folder SpineAI reads (io.load)."""
    from SpineAILib.io import load

    return load(path, series=series)


@dataclass(frozen=True)
class Workflow:
    name: str  # the task name (vocabulary.TASKS)
    title: str
    input_kind: str  # "cine" or "volume"
    modalities: tuple  # DICOM modality codes accepted ("" = unknown, allowed for NIfTI/NRRD)
    description: str
    run: Callable  # run(job): writes the results into job.out_dir, fills job.outputs/results/warnings
    load_input: Callable = load_any  # load_input(path, series=None) -> the image run(job) gets
    uses_model: bool = True  # False: no bundle is resolved or loaded (job.bundle_path is None)

    def check_input(self, image):
        """Refuse an input the workflow cannot read, saying what it is and what is needed."""
        if self.input_kind == "cine" and not isinstance(image, Cine):
            raise InputError(
                f"{self.name} needs an ultrasound cine or frame, but the input is a 3-D "
                f"{image.modality or 'unknown-modality'} volume {'x'.join(map(str, image.dimensions))}"
            )
        if self.input_kind == "volume" and not isinstance(image, VolumeImage):
            raise InputError(f"{self.name} needs a 3-D volume, but the input is a {image.n_frames}-frame 2-D cine")
        if image.modality not in self.modalities:
            wanted = " or ".join(m for m in self.modalities if m)
            raise InputError(f"{self.name} needs {wanted} images, but the input's modality is {image.modality}")
