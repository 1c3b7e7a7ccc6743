"""What every workflow is: a name, the input it takes, how it reads it, and run(job).

A workflow package (``workflows/ultrasound``, ``lumbar``, ``cervical``) holds its
preprocessing, its models' inference, post-processing, explanations and review
helpers, and a ``workflow.py`` with one ``Workflow`` subclass; ``registry`` lists
them. ``tasks.run_task`` drives a workflow with the output contract (checks first,
staged output, report.json).
"""

from dataclasses import dataclass, field
from pathlib import Path

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


class Workflow:
    name = ""  # the task name (vocabulary.TASKS)
    title = ""
    input_kind = ""  # "cine" or "volume"
    modalities = ()  # DICOM modality codes accepted ("" = unknown, allowed for NIfTI/NRRD)
    description = ""

    def load_input(self, path, series=None):
        """The image this workflow runs on (a workflow may pick among a study's series itself)."""
        from SpineAILib.io import load

        return load(path, series=series)

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

    def run(self, job):
        raise NotImplementedError
