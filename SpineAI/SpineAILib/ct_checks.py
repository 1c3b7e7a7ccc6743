"""What a CT workflow's input must be, checked before the model loads: a CT volume, not a scout.

Shared by the CT workflows (cervical-ct, spine-ct): ``check_ct(image, task=..., what=...)``
names the task and what it needs in its messages.

Refused with one line: an MRI (by modality, or intensities that never reach fat or air
in Hounsfield units), a scout/localizer (by its ImageType, or a volume too thin to hold
a vertebra). Accepted with a warning: thick slices (small fractures and boundaries are
unreliable) and a volume tilted from the anatomical axes (read along its nearest axes).
A CT of the wrong region is accepted here: the workflow itself ends it (cervical-ct: a head
or abdominal CT ends as "no cervical vertebrae found").
"""

import numpy as np

from SpineAILib.ct_grid import Layout
from SpineAILib.errors import InputError

MAX_HU_FLOOR = -100.0  # a CT in HU has fat (-100) or air (-1000) somewhere; an MRI never goes below 0
MIN_EXTENT_MM = 20.0  # one cervical vertebra (the smallest) is about 15 mm tall: less than this cannot hold one
MIN_SLICES = 8
THICK_SLICE_MM = 3.0
OBLIQUE_WARN_DEG = 10.0


def check_ct(image, task="cervical-ct", what="a CT of the cervical spine"):
    """InputError unless ``image`` is a CT volume in Hounsfield units; returns its Layout and warnings.

    ``task`` (the task name) and ``what`` (what it needs, e.g. "a CT with the spine in view")
    word the messages.
    """
    if image.modality and image.modality != "CT":
        raise InputError(f"the input's modality is {image.modality}; {task} needs {what}")
    if image.is_labelmap:
        raise InputError(f"the input is a label map; {task} needs a CT image")
    image_type = [str(v).upper() for v in np.atleast_1d(image.metadata.get("ImageType") or [])]
    if "LOCALIZER" in image_type:
        raise InputError("the input is a scout/localizer image (ImageType LOCALIZER); give the axial CT series")
    voxels = image.voxels
    sample = voxels[:: max(1, voxels.shape[0] // 24)]
    low = float(np.percentile(sample, 0.1))
    if low > MAX_HU_FLOOR:
        raise InputError(
            f"the input does not look like a CT in Hounsfield units (its lowest values are about {low:.0f}; "
            f"fat is -100 and air -1000): an MRI, or a CT stored without its rescale intercept; {task} needs a CT"
        )
    layout = Layout.of(voxels.shape, image.ijk_to_ras)
    extent = [n * s for n, s in zip(layout.shape, layout.spacing)]
    names = ("superior-inferior", "anterior-posterior", "left-right")
    thin = [f"{names[a]} {extent[a]:.0f} mm ({layout.shape[a]} voxels)" for a in range(3)
            if extent[a] < MIN_EXTENT_MM or layout.shape[a] < MIN_SLICES]  # fmt: skip
    if thin:
        raise InputError(
            f"the volume is too thin to hold a vertebra ({', '.join(thin)}): a scout/localizer or a few slices; "
            f"{task} needs a CT volume of at least {MIN_EXTENT_MM:.0f} mm and {MIN_SLICES} voxels each way"
        )
    return layout, input_warnings(layout)


def input_warnings(layout):
    warnings = []
    thick = max(layout.spacing)
    if thick > THICK_SLICE_MM:
        axis = ("superior-inferior", "anterior-posterior", "left-right")[int(np.argmax(layout.spacing))]
        warnings.append(
            f"voxels are {thick:.1f} mm apart along the {axis} axis (more than {THICK_SLICE_MM:.0f} mm): vertebra boundaries are coarse and "
            "thin or undisplaced fractures can be missed; results are less reliable than on thin (<= 1.25 mm) slices"
        )
    if layout.obliquity_deg > OBLIQUE_WARN_DEG:
        warnings.append(
            f"the volume is tilted {layout.obliquity_deg:.0f} degrees from the anatomical axes; it was read along "
            "its nearest axes (the model is trained with tilts), check the vertebra names"
        )
    return warnings
