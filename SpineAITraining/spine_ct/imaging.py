"""Image formation helpers of the whole-spine phantom, fast on large fields (numpy only).

The cervical phantom's filters (SpineAITraining.cervical.artefacts) pad and copy the whole
volume for every tap; a whole-body field at 1 mm has ~60 M voxels, so these shift and add in
place and renormalise the weights at the edges instead (same result away from the edges).
"""

import numpy as np

from SpineAITraining.cervical.artefacts import gaussian_kernel


def smooth_axis(volume, kernel, axis):
    """``volume`` convolved along ``axis`` with a symmetric ``kernel`` (float32; edges renormalised)."""
    r = len(kernel) // 2
    if r == 0:
        return volume
    n = volume.shape[axis]
    out = np.float32(kernel[r]) * volume
    norm = np.full(n, kernel[r], np.float64)
    for o in range(1, min(r, n - 1) + 1):
        w = np.float32(kernel[r + o])
        lo = [slice(None)] * volume.ndim
        hi = [slice(None)] * volume.ndim
        lo[axis], hi[axis] = slice(o, None), slice(None, n - o)
        out[tuple(lo)] += w * volume[tuple(hi)]
        out[tuple(hi)] += w * volume[tuple(lo)]
        norm[o:] += w
        norm[:n - o] += w
    shape = [1] * volume.ndim
    shape[axis] = n
    out /= norm.astype(np.float32).reshape(shape)
    return out


def blur_in_plane(volume, sigma_px):
    """Gaussian blur along J and I (the reconstruction kernel's sharpness), sigma in pixels."""
    if sigma_px < 0.2:
        return volume
    kernel = gaussian_kernel(sigma_px)
    return smooth_axis(smooth_axis(volume, kernel, 1), kernel, 2)


def correlated_noise(rng, shape, sigma):
    """Gaussian noise with CT-like short in-plane correlation and std ``sigma`` (broadcast on K)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    kernel = np.array([0.25, 0.5, 0.25])
    noise = smooth_axis(smooth_axis(noise, kernel, 1), kernel, 2)
    noise *= np.asarray(sigma, np.float32) / np.float32(0.375)  # 0.375: std after two [1,2,1]/4 passes
    return noise
