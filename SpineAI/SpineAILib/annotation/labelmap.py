"""Segment Editor operations on a label map (numpy + OpenCV), so any front end can offer them.

A label map is a (K, J, I) integer array (one slice, K = 1, for a cine frame) on a grid
given by its 4x4 IJK->RAS matrix, as everywhere in SpineAILib. The operations mirror
3D Slicer's Segment Editor effects:

* paint / erase: a brush of ``radius_mm`` swept along a stroke of RAS points; a disk in the
  view's plane (Slicer's default brush) or a sphere;
* threshold: the segment becomes the voxels whose intensity lies in [low, high]
  (optionally only inside a box);
* islands: remove the islands (6-connected pieces) smaller than a number of voxels, or keep
  only the largest.

Each returns a boolean mask over a bounding box (``Region``) so the caller changes, saves
and can undo only what the brush touched.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Region:
    """A box of voxels: half-open index ranges along K, J, I."""

    k0: int
    k1: int
    j0: int
    j1: int
    i0: int
    i1: int

    @property
    def slices(self):
        return (slice(self.k0, self.k1), slice(self.j0, self.j1), slice(self.i0, self.i1))

    @property
    def empty(self):
        return self.k1 <= self.k0 or self.j1 <= self.j0 or self.i1 <= self.i0

    @classmethod
    def whole(cls, shape):
        return cls(0, shape[0], 0, shape[1], 0, shape[2])

    @classmethod
    def of_mask(cls, mask):
        """The tightest region around the True voxels of a (K, J, I) mask (empty when none)."""
        if not mask.any():
            return cls(0, 0, 0, 0, 0, 0)
        bounds = []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            hits = np.flatnonzero(mask.any(axis=other))
            bounds += [int(hits[0]), int(hits[-1]) + 1]
        return cls(*bounds)


def voxel_steps(ijk_to_ras):
    """Length (mm) of one voxel step along I, J, K."""
    return np.linalg.norm(np.asarray(ijk_to_ras, float)[:3, :3], axis=0)


def ras_to_ijk(ijk_to_ras, points_ras):
    """(N, 3) continuous IJK of (N, 3) RAS points."""
    points = np.atleast_2d(np.asarray(points_ras, float))
    homogeneous = np.c_[points, np.ones(len(points))]
    return (np.linalg.inv(np.asarray(ijk_to_ras, float)) @ homogeneous.T).T[:, :3]


def _centres_ras(ijk_to_ras, region):
    """(k, j, i, 3) RAS of the voxel centres of ``region``."""
    m = np.asarray(ijk_to_ras, float)
    k = np.arange(region.k0, region.k1)[:, None, None, None]
    j = np.arange(region.j0, region.j1)[None, :, None, None]
    i = np.arange(region.i0, region.i1)[None, None, :, None]
    return m[:3, 3] + i * m[:3, 0] + j * m[:3, 1] + k * m[:3, 2]


def _clip_region(shape, low_ijk, high_ijk):
    """Voxel region covering continuous IJK bounds, clipped to the grid."""
    lo = np.floor(np.asarray(low_ijk)).astype(int)
    hi = np.ceil(np.asarray(high_ijk)).astype(int) + 1
    i0, j0, k0 = np.maximum(lo, 0)
    i1, j1, k1 = np.minimum(hi, [shape[2], shape[1], shape[0]])
    return Region(int(k0), int(k1), int(j0), int(j1), int(i0), int(i1))


def brush_mask(shape, ijk_to_ras, points_ras, radius_mm, normal=None, sphere=False):
    """(Region, mask) of the voxels a brush of ``radius_mm`` covers along the stroke ``points_ras``.

    Without ``sphere`` the brush is a disk in the plane with ``normal`` (the view's; default:
    the grid's K axis) one voxel thick, as Slicer paints in a slice view; a voxel is in when
    its centre is within the radius of the stroke. A single point paints one disk. At least
    the voxel under each point is painted, however small the radius.
    """
    points = np.atleast_2d(np.asarray(points_ras, float))
    if points.size == 0:
        return Region(0, 0, 0, 0, 0, 0), np.zeros((0, 0, 0), bool)
    m = np.asarray(ijk_to_ras, float)
    steps = voxel_steps(m)
    radius = max(float(radius_mm), 0.0)
    if normal is None:
        normal = m[:3, 2] / steps[2]
    normal = np.asarray(normal, float)
    normal = normal / (np.linalg.norm(normal) or 1.0)
    # Half the grid's thickness along the normal: a voxel whose centre is that close to the plane is on it.
    half_thickness = 0.5 * max(abs(float(m[:3, a] @ normal)) for a in range(3))
    reach = radius if sphere else max(radius, half_thickness)
    ijk = ras_to_ijk(m, points)
    margin = reach / steps + 1.0
    region = _clip_region(shape, ijk.min(axis=0) - margin, ijk.max(axis=0) + margin)
    if region.empty:
        return region, np.zeros((0, 0, 0), bool)
    centres = _centres_ras(m, region)
    mask = np.zeros(centres.shape[:3], bool)
    segments = [(points[0], points[0])] + list(zip(points[:-1], points[1:]))
    for p, q in segments:
        d = q - p
        length2 = float(d @ d)
        offset = centres - p
        t = np.clip((offset @ d) / length2, 0.0, 1.0)[..., None] if length2 > 0 else 0.0
        rel = offset - t * d
        along = rel @ normal
        if sphere:
            inside = np.einsum("...c,...c->...", rel, rel) <= radius**2
        else:
            in_plane = rel - along[..., None] * normal
            inside = (np.einsum("...c,...c->...", in_plane, in_plane) <= radius**2) & (np.abs(along) <= half_thickness + 1e-6)
        mask |= inside
    # The voxel under each point, so a tiny brush on a coarse grid still marks something.
    for index in np.round(ijk).astype(int):
        i, j, k = index
        if region.k0 <= k < region.k1 and region.j0 <= j < region.j1 and region.i0 <= i < region.i1:
            mask[k - region.k0, j - region.j0, i - region.i0] = True
    return region, mask


def threshold_mask(intensity, low, high, region=None):
    """(Region, mask) of the voxels of ``intensity`` (K, J, I) in [low, high], inside ``region``."""
    region = region or Region.whole(intensity.shape)
    if low > high:
        low, high = high, low
    block = intensity[region.slices]
    return region, (block >= low) & (block <= high)


def islands_mask(segment, min_voxels=None, keep_largest=False):
    """The segment (bool, K, J, I) without islands smaller than ``min_voxels`` (or all but the largest)."""
    from SpineAILib.morphology import connected_components  # 6-connected, labels ranked by size (1 = largest)

    labels, sizes = connected_components(segment)
    keep = np.zeros(len(sizes) + 1, bool)  # index 0: outside the segment
    if keep_largest:
        keep[1:2] = True
    else:
        keep[1:] = sizes >= int(min_voxels or 0)
    return keep[labels]


# -- boxes ----------------------------------------------------------------------------------------


def box_from_corners(shape, ijk_to_ras, ras_a, ras_b):
    """The voxel box (i0, j0, k0, i1, j1, k1; ends exclusive) spanned by two RAS points, clipped to
    the grid: whole voxels from the one under ``ras_a`` to the one under ``ras_b``. None when it
    lies outside the grid."""
    ijk = np.round(ras_to_ijk(ijk_to_ras, [ras_a, ras_b])).astype(int)
    lo, hi = ijk.min(axis=0), ijk.max(axis=0) + 1
    limits = np.array([shape[2], shape[1], shape[0]])
    lo, hi = np.clip(lo, 0, limits), np.clip(hi, 0, limits)
    if np.any(hi <= lo):
        return None
    return tuple(int(v) for v in (*lo, *hi))


def box_to_ras(box, ijk_to_ras):
    """(center, size along the box axes, axes 3x3) of voxel box (i0, j0, k0, i1, j1, k1): the box
    covers the voxels' full extent (as ``scene.cine_overlays.box_to_ras`` for pixel boxes)."""
    m = np.asarray(ijk_to_ras, float)
    lo = np.array(box[:3], float) - 0.5
    hi = np.array(box[3:], float) - 0.5
    centre = (m @ np.append((lo + hi) / 2.0, 1.0))[:3]
    steps = voxel_steps(m)
    size = (hi - lo) * steps
    axes = m[:3, :3] / steps
    return centre, size, axes


def ras_to_box(center, size, axes, ijk_to_ras):
    """Inverse of ``box_to_ras`` (boxes whose axes follow the grid): voxel box, ends exclusive."""
    m = np.asarray(ijk_to_ras, float)
    half = np.asarray(axes, float) * (np.asarray(size, float) / 2.0)
    corners = [np.asarray(center, float) + sx * half[:, 0] + sy * half[:, 1] + sz * half[:, 2]
               for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
    ijk = ras_to_ijk(m, corners)
    lo, hi = ijk.min(axis=0) + 0.5, ijk.max(axis=0) + 0.5
    return tuple(int(round(v)) for v in (*lo, *hi))
