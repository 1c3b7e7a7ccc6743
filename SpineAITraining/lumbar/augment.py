"""Augmentation for sagittal MRI slices: robustness to sequence, field of view, intensity and resolution.

MONAI dictionary transforms on {"image": (1, rows, cols) float32 in [0, 1], "label": (1, rows, cols)},
rows S->I and columns A->P. Two transforms are our own: a random field-of-view
window (scans cut at any level) and a random intensity curve (T1 vs T2 vs STIR
contrast: tissues swap their order of brightness, which gamma alone never does).
No flips: up/down and front/back are anatomy, and left/right does not exist within
one sagittal slice.
"""

import numpy as np
from monai.transforms import MapTransform, RandomizableTransform


class RandFieldOfViewd(RandomizableTransform, MapTransform):
    """Blank everything outside a random S-I window (and sometimes an A-P window)."""

    def __init__(self, keys, prob=0.4, min_rows=80, min_cols=100, prob_cols=0.3):
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.min_rows, self.min_cols, self.prob_cols = min_rows, min_cols, prob_cols

    def _window(self, n, minimum):
        size = int(self.R.randint(min(minimum, n), n + 1))
        start = int(self.R.randint(0, n - size + 1))
        return start, start + size

    def __call__(self, data):
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        rows, cols = d[self.keys[0]].shape[-2:]
        r0, r1 = self._window(rows, self.min_rows)
        c0, c1 = (0, cols) if self.R.rand() >= self.prob_cols else self._window(cols, self.min_cols)
        for key in self.key_iterator(d):
            out = np.zeros_like(np.asarray(d[key]))
            out[..., r0:r1, c0:c1] = np.asarray(d[key])[..., r0:r1, c0:c1]
            d[key] = out
        return d


class RandIntensityCurved(RandomizableTransform, MapTransform):
    """Map intensities through a random piecewise-linear curve (not monotonic), 0 kept at 0."""

    def __init__(self, keys, prob=0.3, points=(4, 8)):
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.points = points

    def __call__(self, data):
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        n = int(self.R.randint(self.points[0], self.points[1] + 1))
        xs = np.linspace(0.0, 1.0, n)
        ys = self.R.uniform(0.05, 1.0, n)
        ys[0] = 0.0  # air stays dark: padding and background must look alike
        for key in self.key_iterator(d):
            image = np.asarray(d[key], dtype=np.float32)
            d[key] = np.interp(np.clip(image, 0, 1), xs, ys).astype(np.float32)
        return d


def training_transforms(patch, seed):
    """The training pipeline: output {"image", "label"} of shape (1, *patch)."""
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandBiasFieldd,
        RandGaussianNoised,
        RandGaussianSmoothd,
        RandScaleIntensityd,
        RandShiftIntensityd,
        RandSimulateLowResolutiond,
    )

    rows, cols = patch
    pipeline = Compose(
        [
            RandFieldOfViewd(["image", "label"], prob=0.4, min_rows=80, min_cols=100),
            RandAffined(
                ["image", "label"],
                prob=0.9,
                rotate_range=0.2,
                scale_range=(0.2, 0.2),
                shear_range=(0.05, 0.05),
                translate_range=(rows // 5, cols // 6),
                spatial_size=patch,
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            RandSimulateLowResolutiond(["image"], prob=0.25, zoom_range=(0.35, 0.9), upsample_mode="bilinear"),
            RandGaussianSmoothd(["image"], prob=0.2, sigma_x=(0.25, 1.2), sigma_y=(0.25, 1.2)),
            RandBiasFieldd(["image"], prob=0.4, coeff_range=(0.0, 0.4)),
            RandIntensityCurved(["image"], prob=0.3),
            RandAdjustContrastd(["image"], prob=0.5, gamma=(0.6, 1.7)),
            RandScaleIntensityd(["image"], prob=0.3, factors=0.2),
            RandShiftIntensityd(["image"], prob=0.3, offsets=0.1),
            RandGaussianNoised(["image"], prob=0.4, std=0.06),
        ]
    )
    pipeline.set_random_state(seed=seed)
    return pipeline


def worker_share(n, seed, patch):
    """(rng, transforms, count) for the DataLoader worker calling it: its own seed and its share of ``n`` samples."""
    import torch

    info = torch.utils.data.get_worker_info()
    worker, workers = (info.id, info.num_workers) if info else (0, 1)
    seed = seed * 100 + worker
    return np.random.default_rng(seed), training_transforms(patch, seed), n // workers + (worker < n % workers)


def augment_pair(transforms, image, label):
    """(image float32 tensor (1, rows, cols), label long tensor (rows, cols)) after ``transforms``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small per-sample ops: extra threads only add overhead
    try:
        sample = transforms({"image": image[None].astype(np.float32), "label": label[None].astype(np.float32)})
    finally:
        torch.set_num_threads(threads)  # the training step (same process when workers=0) keeps its own
    return (torch.as_tensor(np.asarray(sample["image"]), dtype=torch.float32),
            torch.as_tensor(np.asarray(sample["label"])[0]).round().long())  # fmt: skip
