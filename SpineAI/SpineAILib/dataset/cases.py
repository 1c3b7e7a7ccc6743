"""What one exported case holds, whatever it was read from (run folder, scene, annotation folder).

Only pixels, geometry and annotations; the identity fields (``series_uid``, ``study_uid``)
are raw here and replaced by keyed pseudonyms before anything is written (deid.py).
"""

import hashlib
from dataclasses import dataclass, field

import numpy as np

MASK_SUFFIX = {"spinal_cord": "cord", "csf": "csf"}  # the seeds' mask file names


@dataclass
class CineAnnotation:
    cine: object  # images.Cine
    labels: np.ndarray  # (N, 3) uint8 in ULTRASOUND_LABELS order
    masks: dict = field(default_factory=dict)  # structure -> (N, H, W) bool; frames without a drawn mask all False
    mask_frames: np.ndarray = None  # (N,) bool: frames whose masks were drawn (None: every frame, when masks exist)
    boxes: dict = field(default_factory=dict)  # structure -> (N, 4) x0 y0 x1 y1 pixels, NaN rows = none
    labelled: np.ndarray = None  # (N,) bool: frames whose labels were set (None: every frame)


@dataclass
class VolumeAnnotation:
    image: object  # images.VolumeImage
    labels: object = None  # images.VolumeImage label map on image's grid (VerSe numbers), or None
    points: list = field(default_factory=list)  # [(label, (r, a, s))], e.g. disc levels "L1/L2"
    rois: list = field(default_factory=list)  # [{"label", "center", "size", "axes" (3x3, columns = box axes)}]
    severity: list = field(default_factory=list)  # [{"level", "condition", "grade"}]
    fractures: dict = None  # {"C1": 0/1, ..., "patient_overall": 0/1} or None


@dataclass
class SourceCase:
    task: str
    origin: str  # what it was read from, for messages only (never written)
    annotation: object  # CineAnnotation or VolumeAnnotation
    series_uid: str = None
    study_uid: str = None
    dataset_key: str = None  # a case imported from a dataset: its key there (already a pseudonym)
    dataset_fingerprint: str = None  # ... and the key fingerprint that key was made under

    def identity(self):
        """Stable text naming the image: its series UID, else a digest of its pixels and geometry."""
        if self.series_uid:
            return "series:" + self.series_uid
        return "pixels:" + pixel_digest(self.annotation)


def pixel_digest(annotation):
    digest = hashlib.sha256()
    if isinstance(annotation, CineAnnotation):
        array = np.ascontiguousarray(annotation.cine.frames)
    else:
        array = np.ascontiguousarray(annotation.image.voxels)
        digest.update(np.round(annotation.image.ijk_to_ras, 3).astype(np.float64).tobytes())
    digest.update(str((array.dtype.str, array.shape)).encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def labels_on_grid(labels, image):
    """A label map (VolumeImage) moved onto ``image``'s voxel grid by nearest neighbour.

    A segmentation file may cover only its segments' extent (or another grid); voxels it
    does not cover are background.
    """
    from SpineAILib.images import VolumeImage

    if labels.voxels.shape == image.voxels.shape and np.allclose(labels.ijk_to_ras, image.ijk_to_ras, atol=1e-4):
        return labels
    # image voxel (i, j, k) -> label voxel index
    to_label = np.linalg.inv(labels.ijk_to_ras) @ image.ijk_to_ras
    out = np.zeros(image.voxels.shape, labels.voxels.dtype)
    kk, jj, ii = (np.arange(n) for n in image.voxels.shape)
    lk, lj, li = labels.voxels.shape
    grid = np.stack(np.meshgrid(ii, jj, indexing="xy"), axis=-1).reshape(-1, 2)
    for k in kk:  # slice by slice: bounded memory on big volumes
        ijk = np.column_stack([grid[:, 0], grid[:, 1], np.full(len(grid), k), np.ones(len(grid))])
        src = np.rint((to_label @ ijk.T)[:3]).astype(np.int64)
        inside = (src[0] >= 0) & (src[0] < li) & (src[1] >= 0) & (src[1] < lj) & (src[2] >= 0) & (src[2] < lk)
        values = np.zeros(len(grid), labels.voxels.dtype)
        values[inside] = labels.voxels[src[2, inside], src[1, inside], src[0, inside]]
        out[k] = values.reshape(len(jj), len(ii))
    return VolumeImage(voxels=out, ijk_to_ras=image.ijk_to_ras, is_labelmap=True)
