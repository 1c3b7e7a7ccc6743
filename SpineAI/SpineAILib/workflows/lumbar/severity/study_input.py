"""Which series of a lumbar MRI study the levels are found on.

A study folder holds several series (sagittal T1, sagittal T2/STIR, axial T2,
localizers). The level model needs a sagittal one: T2/STIR first (the canal is
graded on it too), then T1, then any sagittal series. An axial-only study has none:
its largest evenly spaced axial stack is loaded so the user sees the images, and
the workflow reports that no level can be located.
"""

from pathlib import Path

import numpy as np

from SpineAILib.errors import AmbiguousInputError, InputError
from SpineAILib.images import VolumeImage
from SpineAILib.io.checks import check_allocation, check_matrix
from SpineAILib.workflows.lumbar.severity.study import load_study_folder

PREFERENCE = ("sagittal_t2", "sagittal_t1")


def level_series(study):
    """The Series to find levels on, or None when the study has no sagittal series."""
    for kind in PREFERENCE:
        candidates = [s for s in study.series if s.kind == kind]
        if candidates:
            return max(candidates, key=lambda s: len(s.instances))
    sagittal = [s for s in study.series if s.orientation == "sagittal"]
    return max(sagittal, key=lambda s: len(s.instances)) if sagittal else None


def load_study_input(path, series=None):
    """The image for lumbar-mri: ``series`` when named, else the study's level series (see module doc)."""
    from SpineAILib.io import load

    path = Path(path)
    if series is not None or not path.is_dir():
        return load(path, series=series)
    try:
        return load(path)
    except AmbiguousInputError:
        pass  # several series: choose by kind below
    except InputError:
        study = load_study_folder(path)
        if level_series(study) is not None or not _axial(study):
            raise  # not an axial-only study: the reader's own reason stands
        return axial_stack_volume(max(_axial(study), key=lambda s: len(s.instances)))
    study = load_study_folder(path)
    chosen = level_series(study)
    if chosen is not None:
        return load(path, series=chosen.series_id)
    axial = _axial(study)
    if axial:
        return axial_stack_volume(max(axial, key=lambda s: len(s.instances)))
    raise InputError(f"{path}: none of its {len(study.series)} series is a sagittal or axial MRI series; "
                     "choose one with --series N")  # fmt: skip


def _axial(study):
    return [s for s in study.series if s.orientation == "axial"]


def axial_stack_volume(series):
    """A VolumeImage of the longest run of parallel, evenly spaced slices of ``series``.

    RSNA-style axial series are several short stacks, one per disc, each tilted its own
    way; no single IJK->RAS matrix covers them, so only one stack is shown.
    """
    groups = {}
    for inst in series.instances:
        groups.setdefault(tuple(np.round(inst.normal, 2)), []).append(inst)
    best = []
    for members in groups.values():
        normal = members[0].normal
        members = sorted(members, key=lambda i: float(i.origin @ normal))
        positions = np.array([float(i.origin @ normal) for i in members])
        steps = np.diff(positions)
        step = float(np.median(steps)) if len(steps) else max(members[0].thickness, 1.0)
        run = [members[0]]
        for inst, gap in zip(members[1:], steps):
            if abs(gap - step) <= 0.25 * step and inst.rows == run[0].rows and inst.cols == run[0].cols:
                run.append(inst)
            else:
                best = run if len(run) > len(best) else best
                run = [inst]
        best = run if len(run) > len(best) else best
    first = best[0]
    step = float((best[-1].origin - first.origin) @ first.normal) / (len(best) - 1) if len(best) > 1 else first.thickness or 1.0
    matrix = np.eye(4)
    matrix[:3, 0] = first.row_dir * first.spacing[1]
    matrix[:3, 1] = first.col_dir * first.spacing[0]
    matrix[:3, 2] = first.normal * step
    matrix[:3, 3] = first.origin
    check_allocation((len(best), first.rows, first.cols), np.float32, what=f"axial series '{series.description}'")
    voxels = np.stack([inst.pixels() for inst in best])
    check_matrix(matrix, what=f"axial series '{series.description}'", shape=voxels.shape)
    return VolumeImage(voxels=voxels, ijk_to_ras=matrix, modality="MR", description=series.description or "Axial",
                       source=str(series.folder or ""),
                       warnings=[f"axial series '{series.description}': {len(best)} of its {len(series.instances)} slices "
                                 "shown (one evenly spaced stack)"])  # fmt: skip
