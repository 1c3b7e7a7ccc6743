"""Run the 2-D level model over every sagittal slice of a canonical volume.

Shared by the workflow, the trainer's validation and the evaluation script, so a
number measured in training is measured on exactly what users get.
"""

import numpy as np

from .grid import normalise, pad_to_multiple, resample_slices

DIVISOR = 16  # the UNet halves the image four times


def prepare(canonical, spacing, target_spacing, intensity=None):
    """Normalised, in-plane-resampled slices (N, rows', cols') float32, as the model was trained on."""
    intensity = intensity or {}
    normalised, _ = normalise(canonical, intensity.get("lower_percentile", 0.5), intensity.get("upper_percentile", 99.5))
    slices, _ = resample_slices(normalised, spacing, target_spacing)
    return slices


def predict_labels(model, slices, out_shape, device, batch_size=8, progress=None, background_offset=0.0):
    """Class index (uint8) per voxel of the canonical grid ``out_shape`` (N, rows, cols).

    Logits are interpolated back to the input's own rows and columns (align-corners,
    matching ``resample_slices``) before the argmax, so boundaries are not blocky.
    ``background_offset`` is subtracted from the background logit: the bundle's
    validation-tuned correction for a model that draws bodies too small.
    """
    import torch
    import torch.nn.functional as F

    n, rows, cols = out_shape
    labels = np.zeros(out_shape, np.uint8)
    model.eval()
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(slices[start : start + batch_size]))[:, None].to(device)
            padded, (r, c) = pad_to_multiple(chunk, DIVISOR)
            logits = model(padded)[:, :, :r, :c].float()
            logits[:, 0] -= background_offset
            logits = F.interpolate(logits, size=(rows, cols), mode="bilinear", align_corners=True)
            labels[start : start + len(chunk)] = logits.argmax(1).to(torch.uint8).cpu().numpy()
            if progress is not None:
                progress(min(1.0, (start + len(chunk)) / n))
    return labels
