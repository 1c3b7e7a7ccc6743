"""Any volume -> sagittal slices with rows running S->I and columns A->P, and back again.

The level model sees 2-D sagittal slices at a fixed in-plane spacing. Training
and inference both go through ``SagittalLayout`` and ``resample_slices`` so they
prepare images identically, whatever the input's orientation (sagittal, axial or
coronal acquisitions, NIfTI/NRRD/DICOM). Only axis permutations and flips are
used (no oblique resampling), so predictions map back onto the input grid exactly.
Canonical arrays are indexed ``[sagittal, row, column]``.
"""

import itertools
from dataclasses import dataclass

import numpy as np

R, A, S = np.eye(3)


@dataclass(frozen=True)
class SagittalLayout:
    perm: tuple  # input numpy axes taken as (sagittal, rows, columns)
    flips: tuple  # per canonical axis: reversed?
    shape: tuple  # canonical array shape
    spacing: tuple  # canonical voxel size (sagittal, row, column) in mm
    canonical_to_ras: np.ndarray  # 4x4 IJK->RAS of the canonical array (ijk = column, row, sagittal)

    @classmethod
    def of(cls, shape_kji, ijk_to_ras):
        """Layout for a (K, J, I) voxel array with the given IJK->RAS matrix."""
        matrix = np.asarray(ijk_to_ras, dtype=float)
        # numpy axis a of a [k, j, i] array is IJK axis 2 - a
        columns = [matrix[:3, 2 - a] for a in range(3)]
        units = [c / (np.linalg.norm(c) or 1.0) for c in columns]
        # The permutation that best aligns (sagittal, rows, columns) with (R, S, A).
        perm = max(
            itertools.permutations(range(3)),
            key=lambda p: abs(units[p[0]] @ R) + abs(units[p[1]] @ S) + abs(units[p[2]] @ A),
        )
        flips = (False, bool(units[perm[1]] @ S > 0), bool(units[perm[2]] @ A > 0))  # rows go down, columns go back
        shape = tuple(int(shape_kji[a]) for a in perm)
        spacing = tuple(float(np.linalg.norm(columns[a])) for a in perm)
        canonical = np.eye(4)
        origin = matrix[:3, 3].copy()
        for m, a in enumerate(perm):
            direction = columns[a] * (-1.0 if flips[m] else 1.0)
            canonical[:3, 2 - m] = direction
            if flips[m]:
                origin += (shape[m] - 1) * columns[a]
        canonical[:3, 3] = origin
        return cls(tuple(perm), flips, shape, spacing, canonical)

    def to_canonical(self, voxels):
        out = np.transpose(voxels, self.perm)
        for m, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis=m)
        return np.ascontiguousarray(out)

    def from_canonical(self, canonical):
        out = canonical
        for m, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis=m)
        return np.ascontiguousarray(np.transpose(out, np.argsort(self.perm)))


def plane_size(n, spacing, target):
    """Samples and their exact spacing covering ``n`` voxels of ``spacing`` at about ``target`` mm.

    Grids share their first and last sample (align-corners), so resampling there and
    back is geometrically exact.
    """
    if n <= 1:
        return 1, float(target)
    size = max(2, int(round((n - 1) * spacing / target)) + 1)
    return size, (n - 1) * spacing / (size - 1)


def normalise(voxels, lower=0.5, upper=99.5):
    """Per volume: the ``lower``/``upper`` percentiles map to 0 and 1 (clipped), as float32."""
    data = np.asarray(voxels, dtype=np.float32)
    lo, hi = np.percentile(data, [lower, upper])
    if hi <= lo:
        return np.zeros(data.shape, np.float32), (float(lo), float(hi))
    return np.clip((data - lo) / (hi - lo), 0.0, 1.0), (float(lo), float(hi))


def resample_slices(canonical, spacing, target, mode="bilinear"):
    """Resample each sagittal slice of ``canonical`` (N, rows, cols) in-plane to ``target`` mm.

    mode 'bilinear' for images (float32 out), 'nearest' for labels (dtype kept).
    Returns (array, (row spacing, column spacing)).
    """
    from SpineAILib.models.engine import interpolate

    _, rows, cols = canonical.shape
    (new_rows, sr), (new_cols, sc) = plane_size(rows, spacing[1], target), plane_size(cols, spacing[2], target)
    if mode == "nearest":
        r = np.rint(np.linspace(0, rows - 1, new_rows)).astype(int)
        c = np.rint(np.linspace(0, cols - 1, new_cols)).astype(int)
        return canonical[:, r][:, :, c], (sr, sc)
    out = interpolate(np.ascontiguousarray(canonical, dtype=np.float32), (new_rows, new_cols), align_corners=True)
    return out, (sr, sc)


def pad_to_multiple(array, multiple):
    """Zero-pad the last two axes of a numpy array at the bottom/right to a multiple; returns (padded, (rows, cols))."""
    rows, cols = array.shape[-2:]
    pad_r, pad_c = (-rows) % multiple, (-cols) % multiple
    if pad_r or pad_c:
        array = np.pad(array, [(0, 0)] * (array.ndim - 2) + [(0, pad_r), (0, pad_c)])
    return array, (rows, cols)
