"""A multi-series lumbar MRI study (DICOM) made from one sagittal volume, for demos, tests and benchmarks.

Real studies hold a sagittal T2/STIR, a sagittal T1 and an axial T2 series in one patient
space. From one sagittal volume this writes: the volume itself as "Sagittal T2/STIR", its
contrast inverted as "Sagittal T1" (fluid dark, marrow bright: the look of a T1, not a T1
acquisition) and an "Axial T2" resliced from it every ``axial_step_mm``; optionally the axial
series as short stacks with gaps between them, as RSNA axial series often are.
"""

from pathlib import Path

import numpy as np

from SpineAILib.images import VolumeImage
from SpineAILib.workflows.lumbar.grid import SagittalLayout

SERIES = ("Sagittal T2/STIR", "Sagittal T1", "Axial T2")
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"


def t1_like(image):
    """The same anatomy with the contrast inverted (fluid dark, marrow bright)."""
    v = image.voxels.astype(np.float32)
    return VolumeImage(voxels=(v.max() - v).astype(np.int16), ijk_to_ras=image.ijk_to_ras.copy(), modality="MR")


def axial_reslice(image, step=4):
    """Axial slices every ``step`` rows (superior -> inferior) of a volume, in the same patient space."""
    layout = SagittalLayout.of(image.voxels.shape, image.ijk_to_ras)
    canonical = layout.to_canonical(image.voxels)  # (sagittal, rows S->I, columns A->P)
    axial = np.ascontiguousarray(np.transpose(canonical, (1, 2, 0))[::step])  # (S->I, A->P, across)
    m = layout.canonical_to_ras  # its ijk = (column, row, sagittal)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = m[:3, 2], m[:3, 0], m[:3, 1] * step
    matrix[:3, 3] = m[:3, 3]
    return VolumeImage(voxels=axial.astype(np.int16), ijk_to_ras=matrix, modality="MR")


def write_mri_study(image, folder, series=SERIES, axial_stacks=False, axial_step=4):
    """Write the chosen ``series`` of the study into ``folder/seriesN``; returns ``folder``.

    ``axial_stacks``: the axial series as 3-slice stacks 10 slices apart, nothing in between.
    """
    from SpineAILib.samples.dicom_writer import write_dicom_series

    folder = Path(folder)
    image = VolumeImage(voxels=np.asarray(image.voxels).astype(np.int16), ijk_to_ras=image.ijk_to_ras, modality="MR")
    volumes = {"Sagittal T2/STIR": image, "Sagittal T1": t1_like(image), "Axial T2": axial_reslice(image, axial_step)}
    for n, description in enumerate(SERIES, start=1):
        if description not in series:
            continue
        volume = volumes[description]
        gaps = ()
        if axial_stacks and description == "Axial T2":
            gaps = [k for k in range(volume.voxels.shape[0]) if k % 10 >= 3]
        write_dicom_series(volume, folder / f"series{n}", modality="MR", series_description=description,
                           study_uid=STUDY_UID, rescale=(1.0, 0.0), drop_slices=gaps)  # fmt: skip
    return folder
