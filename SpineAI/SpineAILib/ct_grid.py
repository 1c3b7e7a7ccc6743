"""Any CT volume -> a canonical view (inferior, posterior, left) and a model's coarse grid.

The shared canonical CT grid of the CT workflows (cervical-ct, spine-ct) and their training
code. The canonical array is a permutation and flips of the input's own axes (a numpy view,
never a copy), so every input voxel has an exact canonical index and results go back
onto the input grid exactly; an oblique acquisition is taken along its nearest axes
(the networks are trained with rotations). The model grid covers the same field of view
at about the bundle's spacing (voxel edges coincide: align-corners off). Going down,
thin slices are block-averaged first (no aliased noise) and interpolated linearly after;
both run slab by slab over the region asked for, so a large volume never exists as
float32 at once. Canonical arrays are indexed ``[inferior, posterior, left]``.
"""

import itertools
from dataclasses import dataclass

import numpy as np

R, A, S = np.eye(3)
TARGETS = (-S, -A, -R)  # where canonical axes 0, 1, 2 point: inferior, posterior, left
SLAB_VOXELS = 1 << 23  # block averaging converts at most this many voxels to float32 at a time


@dataclass(frozen=True)
class Layout:
    perm: tuple  # input numpy axes taken as canonical axes 0, 1, 2
    flips: tuple  # per canonical axis: reversed?
    shape: tuple  # canonical shape
    spacing: tuple  # canonical voxel size in mm
    canonical_to_ras: np.ndarray  # 4x4; ijk = (axis 2, axis 1, axis 0) as for any [k, j, i] array
    obliquity_deg: float  # largest angle between a canonical axis and its anatomical direction

    @classmethod
    def of(cls, shape_kji, ijk_to_ras):
        matrix = np.asarray(ijk_to_ras, dtype=float)
        columns = [matrix[:3, 2 - a] for a in range(3)]  # numpy axis a is IJK axis 2 - a
        units = [c / (np.linalg.norm(c) or 1.0) for c in columns]
        perm = max(itertools.permutations(range(3)), key=lambda p: sum(abs(units[p[m]] @ TARGETS[m]) for m in range(3)))
        flips = tuple(bool(units[perm[m]] @ TARGETS[m] < 0) for m in range(3))
        shape = tuple(int(shape_kji[a]) for a in perm)
        spacing = tuple(float(np.linalg.norm(columns[a])) for a in perm)
        canonical = np.eye(4)
        origin = matrix[:3, 3].copy()
        for m, a in enumerate(perm):
            canonical[:3, 2 - m] = columns[a] * (-1.0 if flips[m] else 1.0)
            if flips[m]:
                origin += (shape[m] - 1) * columns[a]
        canonical[:3, 3] = origin
        cosines = [abs(units[perm[m]] @ TARGETS[m]) for m in range(3)]
        oblique = float(np.degrees(np.arccos(np.clip(min(cosines), -1.0, 1.0))))
        return cls(tuple(perm), flips, shape, spacing, canonical, oblique)

    def view(self, voxels):
        """The canonical view of an input-ordered array (no copy; writing to it writes the input)."""
        out = np.transpose(voxels, self.perm)
        for m, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis=m)
        return out

    def ras(self, index):
        """RAS of canonical (continuous) indices, shape (..., 3) in axis order 0, 1, 2."""
        index = np.asarray(index, dtype=float)
        ijk1 = np.concatenate([index[..., ::-1], np.ones(index.shape[:-1] + (1,))], axis=-1)
        return (ijk1 @ self.canonical_to_ras.T)[..., :3]


@dataclass(frozen=True)
class ModelGrid:
    """The coarse grid the network runs on: the canonical field of view at about ``target`` mm."""

    shape: tuple
    scale: tuple  # canonical voxels per model voxel, per axis
    spacing: tuple  # mm

    @classmethod
    def of(cls, layout, target):
        shape = tuple(max(1, int(round(n * s / target))) for n, s in zip(layout.shape, layout.spacing))
        scale = tuple(n / m for n, m in zip(layout.shape, shape))
        return cls(shape, scale, tuple(sc * s for sc, s in zip(scale, layout.spacing)))

    def canonical_index(self, axis, model_index):
        """Canonical continuous index of model voxel centres along ``axis``."""
        return (np.asarray(model_index, dtype=float) + 0.5) * self.scale[axis] - 0.5

    def model_index(self, axis, canonical_index):
        return (np.asarray(canonical_index, dtype=float) + 0.5) / self.scale[axis] - 0.5

    def positions(self):
        return [self.canonical_index(a, np.arange(n)) for a, n in enumerate(self.shape)]

    def to_ras(self, layout):
        """4x4 IJK->RAS of an array on this grid (canonical order, like the layout's)."""
        m = np.eye(4)
        for a in range(3):
            m[2 - a, 2 - a] = self.scale[a]
            m[2 - a, 3] = 0.5 * self.scale[a] - 0.5
        return layout.canonical_to_ras @ m


def _blocks(source, factors, lo, hi):
    """Block means (factor per axis, float32) over source[lo:hi] (edge-padded to whole blocks), slab by slab."""
    f0, f1, f2 = factors
    n = [h - l for l, h in zip(lo, hi)]
    nb = [-(-size // f) for size, f in zip(n, factors)]
    out = np.empty(nb, np.float32)
    rows = max(1, SLAB_VOXELS // max(1, n[1] * n[2] * f0)) * f0
    for r0 in range(0, nb[0] * f0, rows):
        r1 = min(r0 + rows, nb[0] * f0)
        a0, a1 = lo[0] + r0, min(lo[0] + r1, hi[0])
        slab = np.asarray(source[a0:a1, lo[1] : hi[1], lo[2] : hi[2]], dtype=np.float32)
        pad = [(0, (r1 - r0) - (a1 - a0)), (0, nb[1] * f1 - n[1]), (0, nb[2] * f2 - n[2])]
        if any(p[1] for p in pad):
            slab = np.pad(slab, pad, mode="edge")
        shaped = slab.reshape((r1 - r0) // f0, f0, nb[1], f1, nb[2], f2)
        out[r0 // f0 : r1 // f0] = shaped.mean(axis=(1, 3, 5), dtype=np.float32)
    return out


def linear_along(array, axis, positions):
    """Linear interpolation of ``array`` along ``axis`` at continuous ``positions`` (clamped to the ends)."""
    n = array.shape[axis]
    p = np.clip(np.asarray(positions, dtype=np.float64), 0.0, n - 1)
    i0 = np.floor(p).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (p - i0).astype(np.float32)
    shape = [1] * array.ndim
    shape[axis] = len(p)
    w = w.reshape(shape)
    return np.take(array, i0, axis=axis) * (1.0 - w) + np.take(array, i1, axis=axis) * w


def resample_linear(source, positions, antialias_step=None):
    """``source`` (3-D, any dtype, may be a strided view) sampled at continuous ``positions``
    (one float array per axis) -> float32 array of their lengths.

    ``antialias_step``: the output's step in source voxels per axis (default: from the
    positions); axes stepping 1.5 voxels or more are block-averaged by the whole step
    first. Only the source region the positions need is read.
    """
    positions = [np.asarray(p, dtype=np.float64) for p in positions]
    if antialias_step is None:
        antialias_step = [float(np.median(np.abs(np.diff(p)))) if len(p) > 1 else 1.0 for p in positions]
    factors = [max(1, int(step + 1e-6)) if step >= 1.5 else 1 for step in antialias_step]
    lo = [max(0, int(np.floor(p.min())) - f) for p, f in zip(positions, factors)]
    hi = [min(n, int(np.ceil(p.max())) + 1 + f) for p, f, n in zip(positions, factors, source.shape)]
    if any(h <= l for l, h in zip(lo, hi)):
        lo = [min(max(0, l), n - 1) for l, n in zip(lo, source.shape)]
        hi = [l + 1 for l in lo]
    blocks = _blocks(source, factors, lo, hi)
    # source index c -> block index (c - lo - (f - 1) / 2) / f
    out = blocks
    for axis, (p, l, f) in enumerate(zip(positions, lo, factors)):
        out = linear_along(out, axis, (p - l - (f - 1) / 2.0) / f)
    return np.ascontiguousarray(out, dtype=np.float32)


def resample_nearest(source, positions):
    """``source`` at the nearest voxels to ``positions`` (outside -> 0), dtype kept."""
    index = [np.rint(np.asarray(p, dtype=float)).astype(np.int64) for p in positions]
    inside = [(i >= 0) & (i < n) for i, n in zip(index, source.shape)]
    clipped = [np.clip(i, 0, n - 1) for i, n in zip(index, source.shape)]
    out = np.asarray(source[np.ix_(*clipped)])
    mask = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
    if not mask.all():
        out = np.where(mask, out, np.zeros((), out.dtype))
    return out


def to_model_grid(view, grid):
    """The canonical view on the model grid (block average + linear), float32."""
    return resample_linear(view, grid.positions(), antialias_step=grid.scale)
