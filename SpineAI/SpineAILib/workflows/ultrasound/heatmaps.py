"""Per-frame Grad-CAM heat maps of an ultrasound cine: the "Heat map" overlay of a review.

Each frame's map is the larger of the spinal-cord and CSF Grad-CAM maps (SpineAILib.explain)
*of the labels called on that frame*, and 0 where neither is called: a heat map explains a
call, and Grad-CAM scales every map to 0..1, so a map of a class the model did not find
would still show hot spots. Maps are computed on the model's input square, ``BATCH`` frames
per forward and backward pass, and laid onto a coarse grid covering the whole frame (at most
``MAX_SIDE`` px a side; 0 outside the analysed crop): Grad-CAM of this network has a 4 x 4
resolution at the input, so a finer grid would add bytes and nothing to see.

Cost limits (each with a warning in report.json, never an error):
* at most ``MAX_FRAMES`` frames are explained; above that every k-th called frame is, the
  others stay empty;
* the grid of the whole cine holds at most ``MAX_BYTES`` of float32: long cines get a
  coarser grid, down to ``MIN_SIDE`` px; a cine that would not fit even then gets none.
"""

import numpy as np

EXPLAINED = ("spinal_cord", "csf")
BATCH = 32
MAX_SIDE = 96
MIN_SIDE = 32
MAX_BYTES = 96 * 1024**2
MAX_FRAMES = 2000


def grid_shape(frame_shape, n_frames, max_side=MAX_SIDE, max_bytes=MAX_BYTES):
    """(rows, cols) of the heat-map grid for ``n_frames`` frames of ``frame_shape``, keeping the
    frame's aspect, or None when even ``MIN_SIDE`` px would exceed ``max_bytes``."""
    rows, cols = (int(v) for v in frame_shape[:2])
    longest = max(rows, cols)
    side = min(max_side, longest)
    budget_side = int(np.sqrt(max_bytes / 4.0 / max(1, n_frames) * longest / min(rows, cols)))
    side = min(side, budget_side)
    if side < min(MIN_SIDE, longest):
        return None
    scale = side / longest
    return max(1, round(rows * scale)), max(1, round(cols * scale))


def square_to_grid(square_map, frame_shape, box, pre, shape):
    """A map on the model's input square -> a ``shape`` grid covering the frame (0 outside the
    crop the model saw). With ``shape`` = the frame's own shape this is the frame's pixel grid."""
    import cv2

    from SpineAILib.workflows.ultrasound.preprocess import centre_crop_box

    square_map = np.asarray(square_map, np.float32)
    rows, cols = (int(v) for v in frame_shape[:2])
    g_rows, g_cols = (int(v) for v in shape)
    s_rows, s_cols = square_map.shape
    r0, r1, c0, c1 = centre_crop_box(box, pre.crop_fraction)
    h, w = r1 - r0, c1 - c0
    if pre.letterbox:
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        extent_y, extent_x, origin_y, origin_x = side, side, r0 - top, c0 - left
    else:
        extent_y, extent_x, origin_y, origin_x = h, w, r0, c0
    # square pixel centre u -> frame x = origin + (u + 0.5) * extent / S - 0.5 -> grid (x + 0.5) * g / n - 0.5
    ax, ay = extent_x / s_cols * g_cols / cols, extent_y / s_rows * g_rows / rows
    bx = (origin_x + 0.5 * extent_x / s_cols) * g_cols / cols - 0.5
    by = (origin_y + 0.5 * extent_y / s_rows) * g_rows / rows - 0.5
    matrix = np.array([[ax, 0.0, bx], [0.0, ay, by]], np.float64)
    # Edges replicated as cv2.resize does; what lies outside the crop is cut below.
    out = cv2.warpAffine(square_map, matrix, (g_cols, g_rows), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Keep only grid pixels whose centre falls inside the crop.
    y = (np.arange(g_rows) + 0.5) * rows / g_rows - 0.5
    x = (np.arange(g_cols) + 0.5) * cols / g_cols - 0.5
    inside = ((y >= r0 - 0.5) & (y < r1 - 0.5))[:, None] & ((x >= c0 - 0.5) & (x < c1 - 0.5))[None, :]
    out[~inside] = 0.0
    return np.clip(out, 0.0, 1.0)


def frames_to_explain(calls, labels, max_frames=MAX_FRAMES):
    """(frame indices to explain, stride): the frames with cord or CSF called, every
    ``stride``-th of them when there are more than ``max_frames``."""
    columns = [labels.index(label) for label in EXPLAINED if label in labels]
    called = np.nonzero(np.asarray(calls)[:, columns].any(axis=1))[0] if columns else np.zeros(0, int)
    stride = max(1, int(np.ceil(len(called) / max_frames)))
    return called[::stride], stride


def cine_heatmaps(model, pre, frames, box, calls, labels, keep=(), progress=None):
    """Per-frame heat maps of a cine (see the module docstring).

    ``model``: the classifier's EngineBundle (class activation maps from its ONNX feature maps,
    no torch; the same maps as Grad-CAM for this ResNet) or an eager torch classifier (Grad-CAM); ``pre``: its Preprocessor; ``calls``: (N, L) 0/1 in
    ``labels`` order. ``keep``: frame indices whose per-label square maps are also returned
    (the best-frame pictures show cord and CSF side by side).

    Returns {'heats': (N, rows, cols) float32 or None, 'kept': {index: {label: square map}},
    'explained': frames explained, 'stride': k, 'grid': (rows, cols) or None, 'warnings': [...]}.
    """
    from SpineAILib.explain import class_maps, grad_cam

    n = len(frames)
    frame_shape = frames.shape[1:3]
    calls = np.asarray(calls)
    warnings = []
    shape = grid_shape(frame_shape, n)
    if shape is None:
        warnings.append(f"per-frame heat maps skipped: {n} frames of {frame_shape[1]}x{frame_shape[0]} are over the "
                        f"{MAX_BYTES // 1024**2} MB heat-map budget")
    indices, stride = frames_to_explain(calls, labels) if shape is not None else (np.zeros(0, int), 1)
    if stride > 1:
        warnings.append(f"per-frame heat maps on every {stride}th frame with cord or CSF called "
                        f"(more than {MAX_FRAMES} such frames)")
    wanted = sorted(set(int(i) for i in indices) | {int(i) for i in keep})
    heats = np.zeros((n, *shape), np.float32) if shape is not None else None
    kept = {}
    explained_columns = [labels.index(label) for label in EXPLAINED]
    in_sequence = set(int(i) for i in indices)
    for start in range(0, len(wanted), BATCH):
        chunk = wanted[start : start + BATCH]
        x = pre.batch(frames[chunk], box)
        if hasattr(model, "head"):  # an EngineBundle: class activation maps (= Grad-CAM here), no torch
            maps = class_maps(model, x, explained_columns)
        else:
            maps = np.asarray(grad_cam(model, x, explained_columns))  # (labels, batch, H, W)
        maps = maps.reshape(len(EXPLAINED), len(chunk), *maps.shape[-2:])
        for b, index in enumerate(chunk):
            if index in keep:
                kept[index] = {label: maps[k, b] for k, label in enumerate(EXPLAINED)}
            if heats is not None and index in in_sequence:
                called = [k for k, column in enumerate(explained_columns) if calls[index, column]]
                square = maps[called, b].max(axis=0)
                heats[index] = square_to_grid(square, frame_shape, box, pre, shape)
        if progress is not None:
            progress(min(1.0, (start + len(chunk)) / max(1, len(wanted))))
    return {"heats": heats, "kept": kept, "explained": len(indices), "stride": stride, "grid": shape,
            "warnings": warnings}
