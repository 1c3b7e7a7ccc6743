"""Filters on canonical CT grids ([inferior, posterior, left], SpineAILib.ct_grid.Layout): box means
along any axes, and ring/disk means within axial slices (OpenCV), with sizes in millimetres."""

import numpy as np


def box_mean(array, half):
    """Mean over a box of half-edge ``half[a]`` voxels per axis (same size; the box is cut at the edges)."""
    out = np.asarray(array, dtype=np.float32)
    for axis, h in enumerate(half):
        h = int(h)
        if h <= 0:
            continue
        n = out.shape[axis]
        c = np.cumsum(out, axis=axis, dtype=np.float64)
        pad_shape = list(out.shape)
        pad_shape[axis] = 1
        c = np.concatenate([np.zeros(pad_shape), c], axis=axis)
        hi = np.minimum(np.arange(n) + h + 1, n)
        lo = np.maximum(np.arange(n) - h, 0)
        total = np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)
        shape = [1] * out.ndim
        shape[axis] = n
        out = (total / (hi - lo).astype(np.float64).reshape(shape)).astype(np.float32)
    return out


def disk_kernel(spacing, r0, r1):
    """A normalised in-slice kernel: the ring r0..r1 mm from the centre (r0 = 0: a disk)."""
    n = int(np.ceil(r1 / min(spacing[1:])))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    rr = np.hypot(yy * spacing[1], xx * spacing[2])
    kernel = ((rr >= r0) & (rr <= r1)).astype(np.float32)
    return kernel / max(kernel.sum(), 1.0)


def filter_slices(volume, kernel):
    """Each axial slice of ``volume`` (float32) filtered with ``kernel`` (zero outside the image)."""
    import cv2

    return np.stack([cv2.filter2D(s, -1, kernel, borderType=cv2.BORDER_CONSTANT) for s in volume])
