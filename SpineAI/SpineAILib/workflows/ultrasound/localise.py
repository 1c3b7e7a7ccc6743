"""Where the spinal cord and the CSF are on each ultrasound frame: masks and boxes.

A small 2-D UNet (bundle task ``lp-ultrasound/localiser``, labels ``spinal_cord``,
``csf``) sees each frame as grey, resized to its input size (128 x 128 by default),
scaled to 0..1, and returns two sigmoid maps. Those are resized back to the frame's
own size and thresholded; components smaller than a fraction of the frame are
dropped (speckle), small enclosed holes are filled (not where the other structure
is: the cord inside the CSF ring stays out of the CSF), and each structure's box is the bounding box of what is left
(the generator's definition of the reference boxes). Frames are processed in
batches; ONNX Runtime is used when asked (``backend='onnx'``), else torch.

    localiser = load_localiser(bundle_path)            # or default_localiser_path()
    found = localise(localiser, frames)                # frames: (N, H, W) or (N, H, W, 3) uint8
    found["cord_masks"], found["csf_masks"]            # (N, H, W) bool
    found["boxes"]["csf"]                              # (N, 4) x0, y0, x1, y1 pixels; NaN row = none
    found["scores"]["csf"]                             # (N,) highest probability on the frame

The boxes follow the half-open pixel convention x1 = last column + 1.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SpineAILib.errors import BundleError, InputError

TASK = "lp-ultrasound/localiser"
STRUCTURES = ("spinal_cord", "csf")
MASK_KEYS = {"spinal_cord": "cord_masks", "csf": "csf_masks"}
DEFAULT_INPUT_SIZE = (128, 128)
DEFAULT_THRESHOLD = 0.5
# Components smaller than this fraction of the frame are dropped (about 12 px of a 224 x 224 frame).
DEFAULT_MIN_COMPONENT_FRACTION = 0.00025
# Enclosed holes up to this fraction of the frame are filled (about 50 px of a 224 x 224 frame).
DEFAULT_MAX_HOLE_FRACTION = 0.001
BUNDLE_DIR_NAME = "lp-ultrasound-localiser"
# Overlay colours (RGB): cord green, CSF blue, as the task's overlay PNGs show them.
COLOURS = {"spinal_cord": (60, 220, 60), "csf": (70, 140, 255)}


@dataclass
class Localiser:
    model: object  # torch.nn.Module in eval mode (kept even when ONNX Runtime runs it)
    metadata: dict
    device: object
    path: Path
    input_size: tuple = DEFAULT_INPUT_SIZE  # (rows, cols) the network sees
    thresholds: dict = field(default_factory=lambda: {s: DEFAULT_THRESHOLD for s in STRUCTURES})
    min_component_fraction: float = DEFAULT_MIN_COMPONENT_FRACTION
    max_hole_fraction: float = DEFAULT_MAX_HOLE_FRACTION
    backend: str = "torch"
    session: object = None  # onnxruntime.InferenceSession when backend == "onnx"

    @property
    def labels(self):
        return list(self.metadata["labels"])


# -- preprocessing (shared with SpineAITraining.ultrasound.localise) ----------------------


def grey_frames(frames):
    """(N, H, W) uint8 luminance of (N, H, W) grey or (N, H, W, 3) RGB frames (a single frame also accepted)."""
    frames = np.asarray(frames)
    if frames.ndim == 2 or (frames.ndim == 3 and frames.shape[2] in (3, 4)):
        frames = frames[None]  # one grey (H, W) or one RGB (H, W, 3) frame
    if frames.ndim == 4:
        if frames.shape[3] not in (3, 4):
            raise InputError(f"colour frames must be (N, H, W, 3), got {frames.shape}")
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        frames = np.clip(frames[..., :3].astype(np.float32) @ weights + 0.5, 0, 255).astype(np.uint8)
    if frames.ndim != 3:
        raise InputError(f"frames must be (N, H, W) or (N, H, W, 3), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(frames.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
    return frames


def prepare_frames(frames, size=DEFAULT_INPUT_SIZE):
    """(N, 1, rows, cols) float32 network input: grey, resized (area averaging), scaled to 0..1."""
    import cv2

    grey = grey_frames(frames)
    rows, cols = int(size[0]), int(size[1])
    out = np.empty((grey.shape[0], 1, rows, cols), np.float32)
    for i, frame in enumerate(grey):
        resized = frame if frame.shape == (rows, cols) else cv2.resize(frame, (cols, rows), interpolation=cv2.INTER_AREA)
        out[i, 0] = resized
    out *= 1.0 / 255.0
    return out


# -- post-processing -------------------------------------------------------------------


def clean_mask(mask, min_pixels):
    """``mask`` without connected components (8-connectivity) smaller than ``min_pixels``."""
    import cv2

    if min_pixels <= 1 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_pixels
    return keep[labels]


def fill_small_holes(mask, max_pixels, keep_out=None):
    """``mask`` with enclosed background regions (4-connectivity, not touching the frame edge)
    of at most ``max_pixels`` filled, except on ``keep_out`` pixels (the other structure: the
    cord inside the CSF ring of a transverse view is not a hole in the CSF)."""
    import cv2

    if max_pixels < 1 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    rows, cols = mask.shape
    x, y, w, h, area = (stats[:, k] for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                                               cv2.CC_STAT_HEIGHT, cv2.CC_STAT_AREA))  # fmt: skip
    inside = (x > 0) & (y > 0) & (x + w < cols) & (y + h < rows)
    fill = inside & (area <= max_pixels)
    fill[0] = False  # label 0 of the inverted mask is the mask itself
    if not fill.any():
        return mask
    filled = mask | fill[labels]
    if keep_out is not None:
        filled &= mask | ~keep_out
    return filled


def mask_boxes(masks):
    """(N, 4) float32 x0, y0, x1, y1 (x1, y1 = last column / row + 1) of each mask; NaN rows when empty."""
    masks = np.asarray(masks, bool)
    boxes = np.full((masks.shape[0], 4), np.nan, np.float32)
    for i, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size:
            cols = np.flatnonzero(mask.any(axis=0))
            boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def probabilities_to_result(probabilities, frame_shape, thresholds=None, min_component_fraction=DEFAULT_MIN_COMPONENT_FRACTION,
                            max_hole_fraction=DEFAULT_MAX_HOLE_FRACTION):
    """Network probabilities (N, 2, h, w) -> the ``localise`` result at ``frame_shape`` (rows, cols)."""
    import cv2

    thresholds = thresholds or {s: DEFAULT_THRESHOLD for s in STRUCTURES}
    n = probabilities.shape[0]
    rows, cols = int(frame_shape[0]), int(frame_shape[1])
    min_pixels = max(1, int(round(min_component_fraction * rows * cols)))
    max_hole = int(round(max_hole_fraction * rows * cols))
    masks = {s: np.zeros((n, rows, cols), bool) for s in STRUCTURES}
    scores = {s: np.zeros(n, np.float32) for s in STRUCTURES}
    for i in range(n):
        for c, structure in enumerate(STRUCTURES):
            p = probabilities[i, c]
            scores[structure][i] = float(p.max()) if p.size else 0.0
            if scores[structure][i] < thresholds[structure]:
                continue
            if p.shape != (rows, cols):
                p = cv2.resize(p, (cols, rows), interpolation=cv2.INTER_LINEAR)
            masks[structure][i] = clean_mask(p >= thresholds[structure], min_pixels)
        if max_hole > 0:
            cord, csf = masks["spinal_cord"][i], masks["csf"][i]
            masks["spinal_cord"][i] = fill_small_holes(cord, max_hole, keep_out=csf)
            masks["csf"][i] = fill_small_holes(csf, max_hole, keep_out=cord)
    result = {"boxes": {}, "scores": {}}
    for structure in STRUCTURES:
        result[MASK_KEYS[structure]] = masks[structure]
        result["boxes"][structure] = mask_boxes(masks[structure])
        found = masks[structure].reshape(n, -1).any(axis=1)
        result["scores"][structure] = np.where(found, scores[structure], 0.0).astype(np.float32)  # 0: no detection
    return result


# -- bundle and inference ------------------------------------------------------------


def default_localiser_path():
    """The bundled localiser: the catalogue's entry for ``lp-ultrasound/localiser`` when it lists
    one, else ``SpineAI/Resources/Models/lp-ultrasound-localiser`` when present; else None."""
    from SpineAILib.models.catalogue import sub_model_path

    return sub_model_path(TASK, BUNDLE_DIR_NAME)


def load_localiser(bundle_path=None, device="auto", backend="torch"):
    """Load a localiser bundle (``None``: the bundled one). ``backend``: 'torch', 'onnx' (ONNX
    Runtime on CPU; falls back to torch when onnxruntime or the export is unavailable) or 'auto'
    (ONNX Runtime on CPU, torch on a GPU). A bundle that carries its graph (``model.onnx``) runs
    it through the engine for 'auto' and 'onnx' (CPU or CUDA; torch is never imported)."""
    from SpineAILib.models.bundle import load_bundle, read_metadata
    from SpineAILib.models.engine import default_engine, load_model, onnxruntime_available

    if bundle_path is None:
        bundle_path = default_localiser_path()
        if bundle_path is None:
            raise BundleError(f"no {TASK} bundle is installed (train one with `spineai-train lp-ultrasound-localiser`)")
    if backend == "auto" and default_engine() == "torch":
        backend = "torch"
    if backend in ("auto", "onnx") and read_metadata(bundle_path).get("onnx") and onnxruntime_available():
        bundle = load_model(bundle_path, device=device, engine="onnx", expected_task=TASK)
        backend = "engine"
    else:
        bundle = load_bundle(bundle_path, device=device, expected_task=TASK)
    meta = bundle.metadata
    if list(meta["labels"]) != list(STRUCTURES):
        raise BundleError(f"{bundle.path}: a localiser must have labels {list(STRUCTURES)}, not {meta['labels']}")
    size = tuple(int(v) for v in meta["input"].get("size", DEFAULT_INPUT_SIZE))
    post = meta.get("postprocessing", {})
    thresholds = {s: float(meta.get("thresholds", {}).get(s, DEFAULT_THRESHOLD)) for s in STRUCTURES}
    localiser = Localiser(
        model=bundle.model,
        metadata=meta,
        device=bundle.device,
        path=bundle.path,
        input_size=size,
        thresholds=thresholds,
        min_component_fraction=float(post.get("min_component_fraction", DEFAULT_MIN_COMPONENT_FRACTION)),
        max_hole_fraction=float(post.get("max_hole_fraction", DEFAULT_MAX_HOLE_FRACTION)),
    )
    if backend == "engine":
        localiser.model, localiser.session, localiser.backend = None, bundle.model.session, "onnx"
        return localiser
    if backend not in ("torch", "onnx", "auto"):
        raise ValueError(f"backend must be torch, onnx or auto, not {backend!r}")
    if backend == "onnx" or (backend == "auto" and bundle.device.type == "cpu"):
        localiser.session = _onnx_session(bundle.model, size)
        if localiser.session is not None:
            localiser.backend = "onnx"
    return localiser


def _onnx_session(model, size):
    """An ONNX Runtime session for ``model`` (exported in memory), or None when that is not possible."""
    import io
    import warnings

    try:
        import onnxruntime as ort
        import torch
    except ImportError:
        return None
    from SpineAILib.models.device import configure_cpu_threads

    buffer = io.BytesIO()
    try:
        cpu_model = model.to("cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                cpu_model, torch.zeros(1, 1, *size), buffer, input_names=["image"], output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = configure_cpu_threads()
        options.log_severity_level = 3
        return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    except Exception:  # an exporter or runtime problem only costs speed: torch still works
        return None


def predict_probabilities(localiser, frames, batch_size=32):
    """(N, 2, rows, cols) float32 sigmoid maps at the network's input size."""
    x = prepare_frames(frames, localiser.input_size)
    out = np.empty((x.shape[0], len(STRUCTURES), *localiser.input_size), np.float32)
    if localiser.session is not None:
        for start in range(0, x.shape[0], batch_size):
            logits = localiser.session.run(["logits"], {"image": x[start : start + batch_size]})[0]
            out[start : start + batch_size] = 1.0 / (1.0 + np.exp(-logits))
        return out
    import torch

    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            batch = torch.from_numpy(x[start : start + batch_size]).to(localiser.device)
            out[start : start + batch_size] = torch.sigmoid(localiser.model(batch)).float().cpu().numpy()
    return out


def localise(localiser, frames, batch_size=32):
    """Masks and boxes of spinal cord and CSF on every frame, at the frames' own size.

    ``frames``: (N, H, W) grey or (N, H, W, 3) RGB uint8 (a single (H, W) or (H, W, 3)
    frame is taken as N = 1). Returns dict(cord_masks (N, H, W) bool, csf_masks (N, H, W) bool,
    boxes {'spinal_cord': (N, 4), 'csf': (N, 4)} float32 x0, y0, x1, y1 pixels with NaN
    rows where nothing was found, scores {'spinal_cord': (N,), 'csf': (N,)} the highest
    probability on each frame (0 where nothing was found)).
    """
    grey = grey_frames(frames)
    if grey.shape[0] == 0:
        raise InputError("no frames to localise")
    probabilities = predict_probabilities(localiser, grey, batch_size)
    return postprocess(localiser, probabilities, grey.shape[1:])


def postprocess(localiser, probabilities, frame_shape):
    """``probabilities_to_result`` with the localiser's thresholds and cleaning parameters."""
    return probabilities_to_result(probabilities, frame_shape, localiser.thresholds, localiser.min_component_fraction,
                                   localiser.max_hole_fraction)


# -- pictures -------------------------------------------------------------------------


def draw_localisation(frame, cord_mask=None, csf_mask=None, boxes=None, alpha=0.35, outline=True):
    """One frame with the masks tinted (cord green, CSF blue) and boxes drawn -> (H, W, 3) uint8 RGB.

    ``boxes``: {'spinal_cord': (4,), 'csf': (4,)} for this frame (NaN = none).
    """
    import cv2

    frame = np.asarray(frame)
    rgb = np.repeat(frame[..., None], 3, axis=2) if frame.ndim == 2 else frame[..., :3]
    out = rgb.astype(np.float32)
    for structure, mask in (("csf", csf_mask), ("spinal_cord", cord_mask)):
        if mask is None or not np.any(mask):
            continue
        mask = np.asarray(mask, bool)
        colour = np.array(COLOURS[structure], np.float32)
        out[mask] = out[mask] * (1.0 - alpha) + colour * alpha
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if outline:
        for structure, mask in (("csf", csf_mask), ("spinal_cord", cord_mask)):
            if mask is not None and np.any(mask):
                contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                cv2.drawContours(out, contours, -1, COLOURS[structure], 1)
    for structure, box in (boxes or {}).items():
        box = np.asarray(box, np.float32)
        if box.shape == (4,) and np.all(np.isfinite(box)):
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), COLOURS.get(structure, (255, 255, 0)), 1)
    return out
