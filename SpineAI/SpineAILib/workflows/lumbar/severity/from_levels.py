"""From the level model's result to the grading's inputs: the study, its series kinds, the canal points.

The level model finds vertebral bodies and disc centres on one sagittal series. The
grader needs, per disc level, a point in the spinal canal (the foramen and recess
points follow from it with the offsets the bundle learned) and a study whose series
are typed sagittal T1 / sagittal T2/STIR / axial T2. A DICOM study folder brings its
series and descriptions; a lone volume file does not say its weighting, so it is
read from the image itself: cerebrospinal fluid is brighter than vertebral marrow
on T2 and STIR, darker on T1.
"""

from pathlib import Path

import numpy as np

from SpineAILib.images import VolumeImage
from SpineAILib.workflows.lumbar.grid import SagittalLayout
from SpineAILib.workflows.lumbar.severity.study import KIND_TITLES, Study, load_study_folder, series_from_volume
from SpineAILib.workflows.lumbar.severity.submission import level_key

CANAL_BEHIND_BODY_MM = 7.0  # posterior body wall -> canal centre: half an adult lumbar canal's depth (14-16 mm)
WALL_PERCENTILE = 95.0  # of the bodies' voxels along the posterior direction: their back wall, not a stray voxel
NEAR_DISC_MM = 8.0  # the part of each body, along the spine, whose back wall bounds the canal at the disc
MIDLINE_MM = 6.0  # ... and across the body: the midline, where the canal is
CSF_RADIUS_MM = 2.5
T2_RATIO, T1_RATIO = 1.15, 0.85  # CSF / marrow signal: above -> T2-like, below -> T1-like, between -> unknown
VERTEBRA_LABELS = range(18, 26)  # VerSe T11 ... L6


def posterior_direction(spine_axis):
    """Unit vector towards the patient's back, perpendicular to the spine's axis at a disc."""
    axis = np.asarray(spine_axis, float)
    axis = axis / (np.linalg.norm(axis) or 1.0)
    posterior = np.array([0.0, -1.0, 0.0]) - axis * (-axis[1])
    return posterior / (np.linalg.norm(posterior) or 1.0)


def _ras_of_voxels(labelmap, mask):
    kji = np.argwhere(mask).astype(float)
    ijk1 = np.c_[kji[:, ::-1], np.ones(len(kji))]
    return (ijk1 @ np.asarray(labelmap.ijk_to_ras, float).T)[:, :3]


def canal_points(discs, labelmap):
    """{level key ('l4_l5'): RAS of the spinal canal at that disc} for each visible disc.

    The canal lies behind the posterior wall of the two bodies next to the disc:
    the wall is the 95th percentile of their midline voxels, near the disc, along the
    posterior direction; the canal centre is ``CANAL_BEHIND_BODY_MM`` behind it.
    """
    from SpineAILib.terminology import vertebra_number

    points = {}
    for disc in discs:
        if not disc.get("visible"):
            continue
        centre = np.asarray(disc["centre"], float)
        axis = np.asarray(disc["normal"], float)
        axis /= np.linalg.norm(axis) or 1.0
        posterior = posterior_direction(axis)
        lateral = np.cross(axis, posterior)
        upper, lower = disc["level"].split("/")
        wall = []
        for name in (upper, lower):
            try:
                mask = np.asarray(labelmap.voxels) == vertebra_number(name)
            except KeyError:
                continue
            if not mask.any():
                continue
            rel = _ras_of_voxels(labelmap, mask) - centre
            near = (np.abs(rel @ axis) <= NEAR_DISC_MM) & (np.abs(rel @ lateral) <= MIDLINE_MM)
            if near.sum() >= 10:
                wall.append(np.percentile(rel[near] @ posterior, WALL_PERCENTILE))
        if not wall:
            continue  # bodies too thin here to find their wall: leave the level ungraded, do not guess
        points[level_key(disc["level"])] = centre + (max(wall) + CANAL_BEHIND_BODY_MM) * posterior
    return points


def weighting_from_signal(image, labelmap, canal):
    """('t1' | 't2' | None, CSF/marrow ratio or None): the weighting read from the image.

    CSF: voxels within 2.5 mm of the canal points; marrow: the vertebral bodies' voxels.
    """
    bodies = np.isin(np.asarray(labelmap.voxels), list(VERTEBRA_LABELS))
    if not canal or not bodies.any():
        return None, None
    voxels = np.asarray(image.voxels, float)
    marrow = float(np.median(voxels[bodies]))
    inverse = np.linalg.inv(np.asarray(image.ijk_to_ras, float))
    spacing = image.spacing
    reach = [int(np.ceil(CSF_RADIUS_MM / s)) for s in spacing]
    samples = []
    for point in canal.values():
        ijk = (inverse @ np.r_[point, 1.0])[:3]
        i0, j0, k0 = (int(round(v)) for v in ijk)
        for dk in range(-reach[2], reach[2] + 1):
            for dj in range(-reach[1], reach[1] + 1):
                for di in range(-reach[0], reach[0] + 1):
                    if (di * spacing[0]) ** 2 + (dj * spacing[1]) ** 2 + (dk * spacing[2]) ** 2 > CSF_RADIUS_MM**2:
                        continue
                    k, j, i = k0 + dk, j0 + dj, i0 + di
                    if 0 <= k < voxels.shape[0] and 0 <= j < voxels.shape[1] and 0 <= i < voxels.shape[2]:
                        samples.append(voxels[k, j, i])
    if not samples or marrow <= 0:
        return None, None
    ratio = float(np.median(samples)) / marrow
    if ratio >= T2_RATIO:
        return "t2", ratio
    if ratio <= T1_RATIO:
        return "t1", ratio
    return None, ratio


def sagittal_copy(image):
    """``image`` with its K axis made the sagittal one (the grader cuts sagittal crops slice by slice)."""
    layout = SagittalLayout.of(image.voxels.shape, image.ijk_to_ras)
    if layout.perm == (0, 1, 2) and not any(layout.flips):
        return image
    return VolumeImage(voxels=layout.to_canonical(np.asarray(image.voxels)), ijk_to_ras=layout.canonical_to_ras,
                       modality=image.modality, description=image.description, source=image.source)  # fmt: skip


def study_for_run(image, input_path, labelmap, discs):
    """(Study, canal points, notes) for grading the study ``image`` came from.

    A DICOM folder: every series in it, typed by description and geometry; the series
    the levels were found on is typed from its signal when its description does not
    say. A volume file: a study of that one series, typed from its signal.
    """
    notes = []
    canal = canal_points(discs, labelmap) if labelmap is not None else {}
    weighting, ratio = weighting_from_signal(image, labelmap, canal) if labelmap is not None else (None, None)
    signal = f"CSF/marrow signal ratio {ratio:.2f}" if ratio is not None else "no CSF/marrow signal to compare"
    path = Path(input_path)
    study_id = path.name.split(".")[0] or "study"
    if path.is_dir():
        study = load_study_folder(path, study_id=study_id)
        level_uid = str(image.metadata.get("SeriesInstanceUID", ""))
        own = next((s for s in study.series if s.series_id == level_uid), None)
        if own is not None and own.kind is None and weighting and own.orientation == "sagittal":
            own.kind = f"sagittal_{weighting}"
            notes.append(f"series '{own.description or own.series_id}' taken as {KIND_TITLES[own.kind]} ({signal})")
    else:
        study = Study(study_id, [])
        if weighting:
            kind = f"sagittal_{weighting}"
            study.series.append(series_from_volume(sagittal_copy(image), kind, series_id=study_id))
            notes.append(f"the volume's weighting was read from its signal: {KIND_TITLES[kind]} ({signal})")
        else:
            notes.append(f"the volume's weighting (T1 or T2) could not be told from its signal ({signal}); "
                         "give a DICOM series whose description names it to have it graded")  # fmt: skip
    return study, canal, notes


def series_summary(study):
    """[{series, description, kind, slices}] for report.json: what each series was used as."""
    return [
        {"series": s.series_id, "description": s.description, "used_as": KIND_TITLES.get(s.kind, "not used"),
         "orientation": s.orientation, "slices": len(s.instances)}  # fmt: skip
        for s in study.series
    ]


__all__ = ["canal_points", "series_summary", "study_for_run", "weighting_from_signal"]
