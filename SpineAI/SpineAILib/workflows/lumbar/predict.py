"""Run the 2-D level model over every sagittal slice of a canonical volume.

Shared by the workflow, the trainer's validation and the evaluation script, so a
number measured in training is measured on exactly what users get.
"""

import numpy as np

from SpineAILib.workflows.lumbar.grid import normalise, pad_to_multiple, resample_slices

DIVISOR = 16  # the UNet halves the image four times


def prepare(canonical, spacing, target_spacing, intensity=None):
    """Normalised, in-plane-resampled slices (N, rows', cols') float32, as the model was trained on."""
    intensity = intensity or {}
    normalised, _ = normalise(canonical, intensity.get("lower_percentile", 0.5), intensity.get("upper_percentile", 99.5))
    slices, _ = resample_slices(normalised, spacing, target_spacing)
    return slices


def predict_labels(model, slices, out_shape, device, batch_size=8, progress=None, background_offset=0.0, step=1):
    """Class index (uint8) per voxel of the canonical grid ``out_shape`` (N, rows, cols).

    Logits are interpolated back to the input's own rows and columns (align-corners,
    matching ``resample_slices``) before the argmax, so boundaries are not blocky.
    ``background_offset`` is subtracted from the background logit: the bundle's
    validation-tuned correction for a model that draws bodies too small.
    ``step`` > 1 runs the model on every step-th slice only (and the last one); the
    slices between take the logits interpolated linearly across from their two
    neighbours: for thin slices (1 mm) neighbours hardly differ, and it halves the time.
    """
    from SpineAILib.models.engine import as_runner, interpolate

    runner = as_runner(model, device)  # an engine model (ONNX Runtime or torch) or a trainer's torch module
    n, rows, cols = out_shape
    labels = np.zeros(out_shape, np.uint8)
    run = sorted(set(range(0, n, max(1, int(step)))) | {n - 1})
    previous = None  # (index, logits) of the last slice the model ran on
    for start in range(0, len(run), batch_size):
        indices = run[start : start + batch_size]
        chunk = np.ascontiguousarray(slices[indices], dtype=np.float32)[:, None]
        padded, (r, c) = pad_to_multiple(chunk, DIVISOR)
        logits = np.array(runner(padded)[:, :, :r, :c], dtype=np.float32)
        logits[:, 0] -= background_offset
        logits = interpolate(logits, (rows, cols), align_corners=True)
        labels[indices] = logits.argmax(1).astype(np.uint8)
        for index, current in zip(indices, logits):
            if previous is not None and index - previous[0] > 1:
                gap = index - previous[0]
                for k in range(previous[0] + 1, index):
                    w = (k - previous[0]) / gap
                    labels[k] = ((1 - w) * previous[1] + w * current).argmax(0).astype(np.uint8)
            previous = (index, current)
        if progress is not None:
            progress(min(1.0, (start + len(indices)) / len(run)))
    return labels
