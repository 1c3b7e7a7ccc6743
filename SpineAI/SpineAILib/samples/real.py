"""The real sample images shipped in SpineAI/Resources/SampleData (licences and sources in its
README): what the demo runs its CT and MRI workflows on and what the desktop module registers
as Sample Data. The ultrasound sample stays a phantom (no real spine ultrasound may be shipped).
"""

from dataclasses import dataclass
from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "Resources" / "SampleData"


@dataclass(frozen=True)
class RealSample:
    name: str  # key, and the node name in Slicer
    file: str  # under SAMPLE_DIR (a folder for a DICOM series)
    title: str
    task: str  # the workflow the demo runs on it
    licence: str  # the licence file beside it

    @property
    def path(self):
        return SAMPLE_DIR / self.file


REAL_SAMPLES = (
    RealSample("SpineAI CT abdomen (DICOM)", "ct_abdomen_dicom", "Real abdominal CT, 20 DICOM slices (TotalSegmentator)",
               "cervical-ct", "LICENSE-TotalSegmentator"),
    RealSample("SpineAI CT abdomen", "ct_abdomen.nii.gz", "Real abdominal/pelvic CT with the lumbar spine (TotalSegmentator)",
               "cervical-ct", "LICENSE-TotalSegmentator"),
    RealSample("SpineAI T2 MRI thoraco-lumbar", "mri_t2_thoracolumbar.nii.gz",
               "Real sagittal T2 MRI of the thoraco-lumbar spine (Spinal Cord Toolbox)", "lumbar-mri",
               "LICENSE-sct_tutorial_data"),
)


def real_sample(file):
    """The RealSample whose file is ``file`` (e.g. 'ct_abdomen_dicom')."""
    return next(s for s in REAL_SAMPLES if s.file == file)
