"""The inference engine: every bundled network run on numpy arrays, through ONNX Runtime.

A bundle carries its inference graph (``model.onnx``, exported from its safetensors by
``spineai-train export-onnx``; sha256, opset, input/output names and a fixed-input check
in ``metadata.json["onnx"]``). ``load_model`` gives an ``EngineBundle`` whose ``model``
takes and returns numpy arrays, whichever engine runs it:

* ``onnx`` (the default whenever the bundle has a graph and onnxruntime is installed):
  an ONNX Runtime session on the CPU, or on the CUDA execution provider when
  onnxruntime-gpu sees a GPU (``--device`` keeps its meaning). torch and MONAI are
  never imported.
* ``torch`` (``--engine torch``, ``SPINEAI_ENGINE=torch``, or a bundle without a graph):
  the network built from the allow-list and its safetensors weights, for development
  and comparison.

Before a session is built, the ONNX file is checked against its sha256, the graph must
have been exported from the very weights the bundle holds (``onnx.weights_sha256`` ==
``sha256``), and it must reproduce the outputs recorded at export on a fixed input;
anything else is a one-line BundleError. Nothing is unpickled.

The numpy helpers the workflows need instead of torch/MONAI live here too:
``interpolate`` (= ``F.interpolate`` linear modes; box max-pooling is ``morphology.max_filter``),
``sliding_window`` (= MONAI's ``sliding_window_inference``, gaussian blending),
``softmax`` / ``sigmoid``; and ``class_activation_maps`` (CAM from the exported
feature maps and the linear head's weights: for global-average-pooling + linear heads,
the same maps Grad-CAM gives on that layer).
"""

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SpineAILib.colourmaps import normalise
from SpineAILib.errors import BundleError, SpineAIError
from SpineAILib.models.bundle import BundleFacts
from SpineAILib.models.device import cpu_threads

ENGINES = ("auto", "onnx", "torch")
ENGINE_VARIABLE = "SPINEAI_ENGINE"
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17
CHECK_VALUES = 32  # output values recorded at export and compared at load


class EngineUnavailableError(SpineAIError):
    """The engine asked for cannot run here (onnxruntime or torch missing, bundle without a graph)."""


def default_engine():
    """'auto' unless ``SPINEAI_ENGINE`` (set by ``spineai run --engine``) says otherwise."""
    text = (os.environ.get(ENGINE_VARIABLE) or "auto").strip().lower()
    if text not in ENGINES:
        raise SpineAIError(f"{ENGINE_VARIABLE} must be one of {', '.join(ENGINES)} (got {text!r})")
    return text


def onnxruntime_available():
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# -- numpy operations (what the workflows used torch for) --------------------------------


def sigmoid(x):
    x = np.asarray(x, dtype=np.float32)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def softmax(x, axis=1):
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _linear_weights(n_in, n_out, align_corners):
    """Source indices and weights of 1-D linear interpolation, exactly as torch computes them."""
    out = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = out * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        src = np.maximum((out + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def interpolate(array, size, align_corners=False):
    """Linear (bi-/tri-linear) resize of the trailing ``len(size)`` axes of ``array`` to ``size``:
    ``torch.nn.functional.interpolate(mode='linear'|'bilinear'|'trilinear')`` in numpy (separable)."""
    out = np.asarray(array, dtype=np.float32)
    first = out.ndim - len(size)
    for k, n_out in enumerate(size):
        axis = first + k
        n_in = out.shape[axis]
        if n_in == int(n_out):
            continue
        i0, i1, w = _linear_weights(n_in, int(n_out), align_corners)
        shape = [1] * out.ndim
        shape[axis] = len(w)
        w = w.reshape(shape)
        out = np.take(out, i0, axis=axis) * (1.0 - w) + np.take(out, i1, axis=axis) * w
    return out.astype(np.float32, copy=False)


def gaussian_importance(patch_size, sigma_scale=0.125):
    """MONAI's gaussian importance map (compute_importance_map, mode 'gaussian')."""
    importance = None
    for n in patch_size:
        x = np.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=np.float32)
        x = np.exp(x**2 / np.float32(-2 * (n * sigma_scale) ** 2)).astype(np.float32)
        importance = x if importance is None else importance[..., None] * x
    return np.maximum(importance, max(float(importance.min()), 1e-3)).astype(np.float32)


def _window_starts(image, roi, interval):
    if interval == 0:
        return [0]
    num = int(math.ceil(float(image) / interval))
    count = next((d + 1 for d in range(num) if d * interval + roi >= image), 1)
    return [i * interval - max(i * interval + roi - image, 0) for i in range(count)]


def sliding_window(x, roi_size, predictor, overlap=0.25, sigma_scale=0.125, cval=0.0, batch_size=1):
    """MONAI's ``sliding_window_inference`` (gaussian blending, constant padding) in numpy.

    ``x``: (B, C, *spatial) float32; ``predictor``: numpy (n, C, *roi) -> (n, K, *roi).
    Returns (B, K, *spatial) float32.
    """
    x = np.asarray(x, dtype=np.float32)
    spatial = x.shape[2:]
    roi = [int(r) if r and r > 0 else int(s) for r, s in zip(roi_size, spatial)]
    pads = [(max(r - s, 0) // 2, max(r - s, 0) - max(r - s, 0) // 2) for r, s in zip(roi, spatial)]
    if any(sum(p) for p in pads):
        x = np.pad(x, [(0, 0), (0, 0), *pads], constant_values=cval)
    size = x.shape[2:]
    intervals = [r if r == s else max(int(r * (1 - overlap)), 1) for r, s in zip(roi, size)]
    starts = [_window_starts(s, r, i) for s, r, i in zip(size, roi, intervals)]
    windows = [tuple(slice(a, a + r) for a, r in zip(start, roi)) for start in np.array(np.meshgrid(*starts, indexing="ij")).reshape(len(size), -1).T]
    weight = gaussian_importance(roi, sigma_scale)
    output, count = None, np.zeros(size, np.float32)
    for b in range(x.shape[0]):
        for first in range(0, len(windows), batch_size):
            chunk = windows[first : first + batch_size]
            predicted = np.asarray(predictor(np.stack([x[b][(slice(None),) + w] for w in chunk])), dtype=np.float32)
            if output is None:
                output = np.zeros((x.shape[0], predicted.shape[1], *size), np.float32)
            for w, p in zip(chunk, predicted):
                output[(b, slice(None)) + w] += p * weight
                if b == 0:
                    count[w] += weight
    output /= count
    crop = tuple(slice(p[0], p[0] + s) for p, s in zip(pads, spatial))
    return np.ascontiguousarray(output[(slice(None), slice(None)) + crop])


# -- devices and sessions ------------------------------------------------------------------


def onnx_providers(device="auto"):
    """(providers for InferenceSession, device name): CPU, or CUDA when onnxruntime-gpu offers it."""
    import onnxruntime as ort

    from SpineAILib.models.device import DEVICE_CHOICES, DeviceUnavailableError

    text = str(device or "auto").strip().lower()
    if text not in DEVICE_CHOICES and not re.fullmatch(r"cuda:\d+", text):
        raise SpineAIError(f"device must be auto, cpu, cuda or cuda:N (got {device!r})")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if text == "auto":
        text = "cuda" if has_cuda else "cpu"
    if text.startswith("cuda"):
        if not has_cuda:
            raise DeviceUnavailableError(
                f"CUDA was requested but onnxruntime {ort.__version__} has no CUDA execution provider "
                "(install onnxruntime-gpu, or use --device cpu / auto, or --engine torch)"
            )
        index = int(text.split(":")[1]) if ":" in text else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], f"cuda:{index}"
    return ["CPUExecutionProvider"], "cpu"


def make_session(model_bytes_or_path, device="auto", threads=None):
    import onnxruntime as ort

    providers, name = onnx_providers(device)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or cpu_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # No CPU arena: the slices, windows and crops change size from call to call, and an arena
    # keeps the largest of each for the whole run (hundreds of MB); malloc gives it back.
    options.enable_cpu_mem_arena = os.environ.get("SPINEAI_ORT_ARENA", "0") == "1"
    source = model_bytes_or_path if isinstance(model_bytes_or_path, bytes) else str(model_bytes_or_path)
    session = ort.InferenceSession(source, options, providers=providers)
    if name.startswith("cuda") and "CUDAExecutionProvider" not in session.get_providers():
        name = "cpu"  # onnxruntime-gpu without a usable GPU falls back on its own
    return session, name


# -- runners: numpy in, numpy out -----------------------------------------------------------


class Runner:
    """A network on numpy arrays: ``runner(x)`` -> first output (logits);
    ``runner.with_features(x)`` -> (logits, feature maps) for networks exported with them."""

    engine = ""
    device = "cpu"

    def __call__(self, x):
        raise NotImplementedError

    def with_features(self, x):
        raise NotImplementedError


class OnnxRunner(Runner):
    engine = "onnx"

    def __init__(self, session, device, output_names):
        self.session = session
        self.device = device
        self.input_name = session.get_inputs()[0].name
        self.output_names = list(output_names)

    def __call__(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(self.output_names[:1], {self.input_name: x})[0]

    def with_features(self, x):
        if len(self.output_names) < 2:
            raise EngineUnavailableError("this graph was exported without feature maps (no class activation maps)")
        x = np.ascontiguousarray(x, dtype=np.float32)
        logits, features = self.session.run(self.output_names[:2], {self.input_name: x})
        return logits, features


class TorchRunner(Runner):
    """A torch module behind the numpy interface (``--engine torch`` and the trainers' own models)."""

    engine = "torch"

    def __init__(self, module, device=None, features_layer=None):
        import torch

        self.module = module
        param = next(iter(module.parameters()), None)
        self.torch_device = torch.device(device) if device is not None else (param.device if param is not None else torch.device("cpu"))
        self.device = str(self.torch_device)
        self.features_layer = features_layer

    def __call__(self, x):
        import torch

        self.module.eval()
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.torch_device))
        return out.float().cpu().numpy()

    def with_features(self, x):
        import torch

        if not self.features_layer:
            raise EngineUnavailableError("no feature layer named for this network")
        layer = dict(self.module.named_modules())[self.features_layer]
        captured = {}
        handle = layer.register_forward_hook(lambda module, inputs, output: captured.__setitem__("f", output.clone()))
        try:
            self.module.eval()
            with torch.inference_mode():
                out = self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.torch_device))
        finally:
            handle.remove()
        return out.float().cpu().numpy(), captured["f"].float().cpu().numpy()


def as_runner(model, device=None):
    """``model`` as a Runner: an EngineBundle's model as is, a torch module wrapped (trainers)."""
    if isinstance(model, Runner):
        return model
    if hasattr(model, "model") and isinstance(getattr(model, "model"), Runner):
        return model.model
    return TorchRunner(model, device)


# -- bundles --------------------------------------------------------------------------------


@dataclass
class EngineBundle(BundleFacts):
    model: Runner
    metadata: dict
    device: str
    path: Path
    engine: str
    notes: list = field(default_factory=list)
    _torch: object = None  # the LoadedBundle, when torch loaded it

    @property
    def torch_model(self):
        """The eager torch network (loaded on first use; needs torch): Grad-CAM where CAM does not hold."""
        if self._torch is None:
            from SpineAILib.models.bundle import load_bundle

            self._torch = load_bundle(self.path, device="cpu" if self.device == "cpu" else "auto")
        return self._torch.model

    def head(self):
        """(weight (K, C), bias (K,)) of the linear head after global pooling, as numpy; None when the
        bundle names none (``onnx.cam``)."""
        cam = (self.metadata.get("onnx") or {}).get("cam")
        if not cam:
            return None
        if not hasattr(self, "_head"):
            from safetensors.numpy import load_file

            from SpineAILib.models.bundle import WEIGHTS_FILE

            tensors = load_file(str(self.path / WEIGHTS_FILE))
            self._head = (tensors[cam["weight"]].astype(np.float32), tensors[cam["bias"]].astype(np.float32))
        return self._head


def fixed_input(shape):
    """The deterministic input (0..1) the export check and the load check run on."""
    n = int(np.prod(shape))
    return ((np.sin(np.arange(n, dtype=np.float64) * 0.37) + 1.0) * 0.5).astype(np.float32).reshape(shape)


def check_values(output):
    """What the export records of an output on the fixed input: evenly spaced values, mean, max |x|."""
    flat = np.asarray(output, dtype=np.float64).ravel()
    index = np.linspace(0, len(flat) - 1, min(CHECK_VALUES, len(flat))).astype(np.int64)
    return {"values": [float(v) for v in flat[index]], "mean": float(flat.mean()), "max_abs": float(np.abs(flat).max())}


def compare_check(recorded, output, tolerance):
    """Largest difference between an output on the fixed input and what the export recorded."""
    now = check_values(output)
    diffs = [abs(a - b) for a, b in zip(recorded["values"], now["values"])]
    diffs += [abs(recorded["mean"] - now["mean"]), abs(recorded["max_abs"] - now["max_abs"])]
    scale = max(1.0, float(recorded["max_abs"]))
    return max(diffs) / scale


def _onnx_session_for(folder, meta, device, threads=None):
    """A verified ONNX Runtime session for the bundle in ``folder`` (checksums, provenance, fixed input)."""
    from SpineAILib.models.bundle import WEIGHTS_FILE, file_sha256

    spec = meta.get("onnx")
    path = folder / (spec or {}).get("file", ONNX_FILE)
    if not spec or not path.is_file():
        raise EngineUnavailableError(f"model bundle {folder} carries no {ONNX_FILE} "
                                     f"(add it with `spineai-train export-onnx {folder}`)")  # fmt: skip
    if path.resolve().parent != folder.resolve():
        raise BundleError(f"{folder}: onnx.file must name a file inside the bundle (got {spec['file']!r})")
    actual = file_sha256(path)
    if actual != spec["sha256"]:
        raise BundleError(f"{path} does not match onnx.sha256 in metadata.json (file {actual[:12]}..., metadata "
                          f"{spec['sha256'][:12]}...): it is corrupt or was replaced")  # fmt: skip
    if spec.get("weights_sha256") != meta.get("sha256"):
        raise BundleError(f"{path} was exported from other weights than {WEIGHTS_FILE} (onnx.weights_sha256 "
                          f"{str(spec.get('weights_sha256'))[:12]}..., sha256 {str(meta.get('sha256'))[:12]}...): "
                          "export it again with `spineai-train export-onnx`")  # fmt: skip
    weights = folder / WEIGHTS_FILE
    if weights.is_file() and file_sha256(weights) != meta["sha256"]:
        raise BundleError(f"{weights} does not match the sha256 in metadata.json: it is corrupt or was replaced")
    try:
        session, name = make_session(path.read_bytes(), device, threads)
    except SpineAIError:
        raise
    except Exception as error:  # onnxruntime refuses the graph
        raise BundleError(f"{path} cannot be loaded by ONNX Runtime ({type(error).__name__}: "
                          f"{' '.join(str(error).split())[:160]})") from None  # fmt: skip
    outputs = [o.name for o in session.get_outputs()]
    if outputs[: len(spec["outputs"])] != list(spec["outputs"]):
        raise BundleError(f"{path}: graph outputs {outputs} are not those metadata.json names ({spec['outputs']})")
    check = spec.get("check")
    if check:
        logits = session.run(outputs[:1], {session.get_inputs()[0].name: fixed_input(check["input_shape"])})[0]
        difference = compare_check(check["output"], logits, 0)
        tolerance = float(check.get("tolerance", 1e-3)) * (10.0 if name.startswith("cuda") else 1.0)
        if not difference <= tolerance:
            raise BundleError(f"{path} does not reproduce the outputs its export recorded on the fixed input "
                              f"(difference {difference:.3g} > {tolerance:g}): the graph and the weights disagree")  # fmt: skip
    return session, name, outputs


def load_model(folder, device="auto", engine=None, expected_task=None, threads=None):
    """An EngineBundle for the bundle in ``folder``.

    ``engine``: 'onnx', 'torch' or 'auto' (None: ``SPINEAI_ENGINE``, else 'auto'): ONNX Runtime
    when the bundle has a graph and onnxruntime is installed, else torch (with a note saying so).
    """
    from SpineAILib.models.bundle import bundle_folder, read_metadata

    engine = (engine or default_engine()).lower()
    if engine not in ENGINES:
        raise SpineAIError(f"engine must be one of {', '.join(ENGINES)} (got {engine!r})")
    folder = bundle_folder(folder)
    meta = read_metadata(folder)
    if expected_task is not None and meta["task"] != expected_task:
        raise BundleError(f"model bundle {folder} is for task '{meta['task']}', not '{expected_task}'")
    notes = []
    if engine in ("auto", "onnx"):
        has_graph = bool(meta.get("onnx")) and (folder / meta["onnx"].get("file", ONNX_FILE)).is_file()
        if engine == "onnx" or (has_graph and onnxruntime_available()):
            if not onnxruntime_available():
                raise EngineUnavailableError("--engine onnx needs onnxruntime (pip install onnxruntime)")
            session, name, outputs = _onnx_session_for(folder, meta, device, threads)
            return EngineBundle(OnnxRunner(session, name, outputs), meta, name, folder, "onnx", notes)
        why = (f"{meta['bundle_id']} carries no {ONNX_FILE}" if not has_graph else "onnxruntime is not installed")
        notes.append(f"{why}: running it with torch")
    if not torch_available():
        raise EngineUnavailableError(
            f"model bundle {folder} cannot run: " + (notes[0].split(':')[0] if notes else "--engine torch")
            + " and PyTorch is not installed (install onnxruntime, or `pip install spineai[train]` for torch)"
        )
    from SpineAILib.models.bundle import load_bundle

    loaded = load_bundle(folder, device=device, expected_task=expected_task)
    features = ((meta.get("onnx") or {}).get("cam") or {}).get("features_layer") or _default_features_layer(meta)
    runner = TorchRunner(loaded.model, loaded.device, features)
    return EngineBundle(runner, meta, str(loaded.device), folder, "torch", notes, loaded)


def _default_features_layer(meta):
    name = meta["network"]["name"]
    return "layer4" if name.startswith(("resnet", "tv_resnet")) else None


def release_memory():
    """Give freed memory back to the system between a workflow's stages (glibc keeps the
    per-thread arenas ONNX Runtime and numpy used: 100+ MB that the scene stage would add to)."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to trim
        pass


# -- class activation maps --------------------------------------------------------------------


def class_activation_maps(bundle, x, classes):
    """CAM (Zhou et al., 2016) of ``classes`` for the batch ``x`` (B, C, *spatial), float32 0..1,
    shaped (len(classes), B, *spatial) like ``explain.grad_cam`` with a list of classes.

    For global-average-pooling + linear heads, Grad-CAM's channel weights on the pooled
    layer are d logit_c / d A_k = w_ck / (number of positions): the same map up to a
    positive factor, which the 0..1 scaling removes. Needs no gradients and no torch.
    """
    head = bundle.head()
    if head is None:
        raise EngineUnavailableError(f"{bundle.metadata['bundle_id']} names no linear head for class activation maps")
    weight, _ = head
    _, features = bundle.model.with_features(np.asarray(x, dtype=np.float32))
    spatial = np.asarray(x).shape[2:]
    out = np.zeros((len(classes), features.shape[0], *spatial), np.float32)
    for k, c in enumerate(classes):
        cam = np.maximum(np.einsum("c,bc...->b...", weight[int(c)], features), 0.0)
        cam = interpolate(cam[:, None], spatial, align_corners=False)[:, 0] if cam.shape[1:] != tuple(spatial) else cam
        for b in range(cam.shape[0]):
            out[k, b] = normalise(cam[b])  # as Grad-CAM scales its maps
    return out
