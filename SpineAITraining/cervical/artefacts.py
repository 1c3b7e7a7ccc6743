"""Image formation and artefacts of the CT phantom, in numpy only (no scipy here).

Blur (the reconstruction kernel in plane, the slice sensitivity profile across
slices), correlated noise that grows where the shoulders absorb, horizontal shoulder
streaks, metal streaks radiating in the scan plane, patient motion between slices and
the padding value outside the reconstruction circle.
"""

import numpy as np


def gaussian_kernel(sigma, radius=None):
    radius = int(np.ceil(3 * sigma)) if radius is None else int(radius)
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    w = np.exp(-0.5 * (offsets / max(float(sigma), 1e-6)) ** 2)
    return w / w.sum()


def convolve_axis(volume, kernel, axis):
    """Convolve along ``axis`` with a symmetric ``kernel``, edges repeated (in float32)."""
    r = len(kernel) // 2
    if r == 0:
        return volume
    pad = [(0, 0)] * volume.ndim
    pad[axis] = (r, r)
    padded = np.pad(volume, pad, mode="edge")
    out = np.zeros_like(volume, dtype=np.float32)
    n = volume.shape[axis]
    for j, w in enumerate(kernel):
        index = [slice(None)] * volume.ndim
        index[axis] = slice(j, j + n)
        out += np.float32(w) * padded[tuple(index)]
    return out


def blur_in_plane(volume, sigma_px):
    """Gaussian blur along J and I (the reconstruction kernel's sharpness)."""
    if sigma_px < 0.2:
        return volume
    kernel = gaussian_kernel(sigma_px)
    return convolve_axis(convolve_axis(volume, kernel, 1), kernel, 2)


def correlated_noise(rng, shape, sigma):
    """Gaussian noise with CT-like short in-plane correlation, std ``sigma`` (array broadcast on K)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    kernel = np.array([0.25, 0.5, 0.25], np.float32)
    noise = convolve_axis(convolve_axis(noise, kernel, 1), kernel, 2)
    return noise * (np.asarray(sigma, np.float32) / np.float32(0.375))  # 0.375: std after two [1,2,1]/4 passes


def smooth_texture(rng, shape, cell=2):
    """Unit-std noise varying over ``cell`` voxels (trabecular pattern, tissue mottle)."""
    small = rng.standard_normal(tuple(int(np.ceil(s / cell)) + 1 for s in shape), dtype=np.float32)
    big = small.repeat(cell, 0).repeat(cell, 1).repeat(cell, 2)[: shape[0], : shape[1], : shape[2]]
    kernel = np.ones(cell + 1, np.float32) / (cell + 1)
    for axis in range(3):
        big = convolve_axis(big, kernel, axis)
    return big / max(float(big.std()), 1e-6)


def metal_streaks(xy_distance, angles, amplitude, width_mm, signs):
    """Streaks through a metal object: one line per angle through it, alternating bright
    and dark, fading with distance. ``xy_distance`` = (dx, dy) in the scan plane, mm."""
    dx, dy = xy_distance
    r = np.sqrt(dx * dx + dy * dy)
    out = np.zeros(dx.shape, np.float32)
    for angle, a, sign in zip(angles, amplitude, signs):
        across = np.abs(dx * np.float32(np.sin(angle)) - dy * np.float32(np.cos(angle)))
        out += np.float32(sign * a) * np.exp(-0.5 * (across / np.float32(width_mm)) ** 2)
    return out / (1 + r / np.float32(45.0))


def motion_ghost(volume, k0, k1, shift_px, weight):
    """Slices k0:k1 blended with a copy of themselves shifted in plane (patient moved during them)."""
    block = volume[k0:k1]
    moved = np.roll(block, shift=shift_px, axis=(1, 2))
    volume[k0:k1] = (1 - weight) * block + weight * moved
    return volume


def shift_from(arrays, k0, shift_px, fill):
    """Shift every slice from k0 on by whole pixels (a patient who moved between slices);
    the strip uncovered at the edge takes ``fill`` (one per array)."""
    dj, di = shift_px
    for array, value in zip(arrays, fill):
        block = np.roll(array[k0:], shift=(dj, di), axis=(1, 2))
        if dj > 0:
            block[:, :dj] = value
        elif dj < 0:
            block[:, dj:] = value
        if di > 0:
            block[:, :, :di] = value
        elif di < 0:
            block[:, :, di:] = value
        array[k0:] = block


def outside_reconstruction_circle(shape, spacing, radius_factor):
    """(J, I) mask of the axial pixels outside the scanner's reconstruction circle: a disc centred in the
    slice, ``radius_factor`` times half the smaller in-plane extent (``spacing`` in I, J, K order)."""
    jj = (np.arange(shape[1]) - (shape[1] - 1) / 2) * spacing[1]
    ii = (np.arange(shape[2]) - (shape[2] - 1) / 2) * spacing[0]
    radius = min(shape[1] * spacing[1], shape[2] * spacing[0]) / 2 * radius_factor
    return (jj[:, None] ** 2 + ii[None, :] ** 2) > radius**2


def pad_outside(volume, label_maps, outside, padding):
    """Fill the axial pixels ``outside`` the reconstruction circle with ``padding`` in ``volume`` (K, J, I) and clear
    them in every label map (nothing is reconstructed there, so nothing is labelled); the artefact record, or None
    when no pixel lies outside."""
    if not outside.any():
        return None
    volume[:, outside] = padding
    for label_map in label_maps:
        label_map[:, outside] = 0
    return {"kind": "padding outside the reconstruction circle", "value": padding}


def slice_profile(values, shape, n_sub, margin, sigma_fine):
    """The output slices from ``n_sub``-times finer ones (``margin`` extra fine slices at each end): a Gaussian slice
    sensitivity profile of ``sigma_fine`` fine slices around each slice's centre (the slice thickness)."""
    offsets = np.arange(-margin, margin + 1)
    weights = np.exp(-0.5 * (offsets / max(sigma_fine, 1e-3)) ** 2)
    weights /= weights.sum()
    out = np.zeros(shape, np.float32)
    stop = n_sub * (shape[0] - 1) + 1
    for offset, weight in zip(offsets, weights):
        start = margin + offset
        out += np.float32(weight) * values[start:start + stop:n_sub]
    return out
