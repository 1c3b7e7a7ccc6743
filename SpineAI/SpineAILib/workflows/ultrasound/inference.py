"""Per-frame ultrasound classification: engine, temporal smoothing, decisions, live mode.

``FrameClassifier(bundle)`` turns preprocessed frames into per-label
probabilities. A bundle that carries its graph (``model.onnx``) runs through the
engine (SpineAILib.models.engine: ONNX Runtime, CPU or CUDA, torch never imported).
For an older bundle without one, on CPU the network runs through ONNX Runtime from
an ONNX file exported from the bundle's safetensors weights on first use and cached (``~/.cache/spineai/onnx`` or
``$SPINEAI_CACHE/onnx``; the file name carries the weights' sha256, so a changed
bundle never meets a stale cache). When the cache is warm, torch is not even
imported. Anything going wrong with ONNX Runtime falls back to torch, with the
reason in ``backend_note``. On a CUDA device torch runs directly.

Across a cine (``smooth_centred``): each frame's probabilities are averaged with
those of the frames within +-window/2 ms (frame-rate aware: a 200 ms window is
7 frames at 30 frames/s, 3 at 10 frames/s; a one-frame cine is unchanged). Live
(``CausalSmoother``): an exponential moving average whose time constant is half
that window, so it sees only the past. ``decide`` applies the bundle's
per-label thresholds to the smoothed probabilities and enforces that a
bad-quality frame shows neither cord nor CSF.

``LiveClassifier(bundle).push(frame)`` classifies one frame at a time, as from
a streaming probe: same preprocessing, causal smoothing, same decisions.
"""

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from SpineAILib.workflows.ultrasound.preprocess import Preprocessor, to_grey

log = logging.getLogger("spineai.lp_ultrasound")

from SpineAILib.models.device import cpu_threads
from SpineAILib.vocabulary import ULTRASOUND_LABELS as LABELS

DEFAULT_WINDOW_MS = 200.0
DEFAULT_THRESHOLDS = {"bad_quality": 0.5, "spinal_cord": 0.5, "csf": 0.5}
ONNX_OPSET = 17


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


# ---------------------------------------------------------------------------- engine


def cache_name(metadata, weights_sha, size):
    """The cached graph's file name: it changes with the weights AND with everything in the metadata
    that shapes the graph (network and its arguments, input), so an altered bundle never meets the
    graph of another."""
    import hashlib
    import json

    shape = json.dumps({"network": metadata.get("network"), "input": metadata.get("input")}, sort_keys=True, default=str)
    graph = hashlib.sha256(shape.encode()).hexdigest()[:12]
    return f"{metadata['bundle_id']}-{weights_sha[:16]}-{graph}-{size[0]}x{size[1]}-op{ONNX_OPSET}.onnx"


def cache_dir():
    base = os.environ.get("SPINEAI_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "spineai")
    return Path(base) / "onnx"


class FrameClassifier:
    """Probabilities (N, L) for preprocessed frames (N, 1, H, W), from a model bundle.

    ``backend``: 'auto' (ONNX Runtime on CPU, torch on CUDA), 'onnx' or 'torch'.
    """

    def __init__(self, bundle_path, device="auto", backend="auto", threads=None, expected_task="lp-ultrasound"):
        from SpineAILib.errors import BundleError
        from SpineAILib.models.bundle import bundle_folder, file_sha256, read_metadata

        self.path = bundle_folder(bundle_path)
        self.metadata = read_metadata(self.path)
        if expected_task and self.metadata["task"] != expected_task:
            raise BundleError(f"model bundle {self.path} is for task '{self.metadata['task']}', not '{expected_task}'")
        self.labels = list(self.metadata["labels"])
        self.thresholds = {**DEFAULT_THRESHOLDS, **(self.metadata.get("thresholds") or {})}
        self.preprocessor = Preprocessor.from_metadata(self.metadata["input"])
        inference = self.metadata.get("inference") or {}
        self.window_ms = float(inference.get("smoothing_window_ms", DEFAULT_WINDOW_MS))
        self.device_name = str(device or "auto")
        self.threads = threads
        self.backend = None
        self.backend_note = ""
        self._session = None
        self._bundle = None  # LoadedBundle (torch), loaded only when needed
        self._engine = None  # EngineBundle when the bundle's own model.onnx runs
        from SpineAILib.models.engine import default_engine, load_model, onnxruntime_available

        if backend == "auto" and default_engine() == "torch":
            backend = "torch"
        if backend in ("auto", "onnx") and self.metadata.get("onnx") and onnxruntime_available():
            self._engine = load_model(self.path, device=self.device_name, engine="onnx", threads=threads)
            self._session = self._engine.model.session
            self._input_name = self._engine.model.input_name
            self.onnx_path = self.path / self.metadata["onnx"]["file"]
            self.backend = "onnxruntime"
            return
        want_cuda = self.device_name.startswith("cuda") or (self.device_name == "auto" and _cuda_available_cheaply())
        if backend in ("auto", "onnx") and not want_cuda:
            try:
                weights = self.path / "model.safetensors"
                sha = file_sha256(weights) if weights.is_file() else ""
                if sha != self.metadata["sha256"]:
                    raise RuntimeError("weights do not match the bundle's sha256")  # load_bundle gives the real error
                self._session = self._onnx_session(sha)
                self.backend = "onnxruntime"
            except Exception as error:
                if backend == "onnx":
                    raise
                self.backend_note = f"ONNX Runtime unavailable ({type(error).__name__}: {' '.join(str(error).split())[:150]}); using torch"
                log.warning(self.backend_note)
        if self._session is None:
            self._load_torch()
            self.backend = "torch"

    # -- backends ---------------------------------------------------------------------

    def _load_torch(self):
        from SpineAILib.models.bundle import load_bundle

        if self._bundle is None:
            device = self.device_name if self.device_name != "auto" else "auto"
            self._bundle = load_bundle(self.path, device=device, expected_task=self.metadata["task"].split("/")[0])
        return self._bundle

    @property
    def explainer(self):
        """What the heat maps run on: the EngineBundle (class activation maps, no torch) when the
        bundle's graph runs, else the eager torch model (Grad-CAM)."""
        return self._engine if self._engine is not None else self.torch_model

    @property
    def torch_model(self):
        """The eager torch model (loaded on first use; Grad-CAM needs it)."""
        return self._load_torch().model

    def _onnx_session(self, sha):
        import onnxruntime as ort

        path = cache_dir() / cache_name(self.metadata, sha, self.preprocessor.size)
        if not path.is_file():
            path = self._export_onnx(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(self.threads or cpu_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input_name = session.get_inputs()[0].name
        self.onnx_path = path
        return session

    def _export_onnx(self, path):
        """Export the bundle's network to ONNX (legacy exporter, dynamic batch), atomically."""
        import torch

        bundle = self._load_torch()
        model = bundle.model.to("cpu").eval()
        rows, cols = self.preprocessor.size
        dummy = torch.zeros(2, 1, rows, cols)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        except OSError:  # cache not writable: a private temporary file for this process
            fd, temp = tempfile.mkstemp(prefix="spineai-", suffix=".onnx")
            path = Path(temp)
        os.close(fd)
        t0 = time.perf_counter()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                dummy,
                temp,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        if Path(temp) != path:
            os.replace(temp, path)
        log.info("exported %s to ONNX in %.1f s: %s", self.metadata["bundle_id"], time.perf_counter() - t0, path)
        return path

    # -- inference --------------------------------------------------------------------

    def logits(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._session is not None:
            return self._session.run(None, {self._input_name: batch})[0]  # logits first (then features)
        import torch

        bundle = self._load_torch()
        with torch.inference_mode():
            return bundle.model(torch.from_numpy(batch).to(bundle.device)).float().cpu().numpy()

    def probabilities(self, batch):
        """(N, 1, H, W) float32 -> (N, L) probabilities."""
        return sigmoid(self.logits(batch))

    def cine_probabilities(self, frames, batch_size=32, box=None, progress=None):
        """Raw frames of a cine -> (N, L) probabilities, ``batch_size`` frames at a time."""
        n = len(frames)
        out = np.empty((n, len(self.labels)), dtype=np.float64)
        for start, batch in self.preprocessor.iter_batches(frames, batch_size, box):
            out[start : start + len(batch)] = self.probabilities(batch)
            if progress:
                progress(min(n, start + len(batch)) / max(n, 1))
        return out


def _cuda_available_cheaply():
    """True only when torch is already imported and sees CUDA (never imports torch)."""
    import sys

    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_available())
    except Exception:
        return False


# ---------------------------------------------------------------------------- smoothing and decisions


def smooth_centred(probabilities, times_ms, window_ms=DEFAULT_WINDOW_MS):
    """Mean of each frame's probabilities with those of frames within +-window_ms/2 (by time).

    Frame-rate aware and fine with irregular timing; frames at the ends average over
    the part of the window that exists. ``window_ms <= 0`` or one frame: unchanged.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    t = np.asarray(times_ms, dtype=np.float64)
    if len(p) < 2 or window_ms <= 0:
        return p.copy()
    half = window_ms / 2.0 + 1e-6
    lo = np.searchsorted(t, t - half, side="left")
    hi = np.searchsorted(t, t + half, side="right")
    cumsum = np.vstack([np.zeros((1,) + p.shape[1:]), np.cumsum(p, axis=0)])
    return (cumsum[hi] - cumsum[lo]) / (hi - lo)[:, None]


class CausalSmoother:
    """Exponential moving average over time for live use: tau = window_ms / 2."""

    def __init__(self, window_ms=DEFAULT_WINDOW_MS):
        self.tau = max(window_ms, 0.0) / 2.0
        self.state = None
        self.last_time = None

    def reset(self):
        self.state, self.last_time = None, None

    def update(self, probabilities, time_ms):
        p = np.asarray(probabilities, dtype=np.float64)
        if self.state is None or self.tau <= 0:
            self.state = p.copy()
        else:
            dt = max(float(time_ms) - float(self.last_time), 0.0)
            alpha = 1.0 - np.exp(-dt / self.tau) if dt > 0 else 0.0
            self.state = self.state + alpha * (p - self.state)
        self.last_time = time_ms
        return self.state.copy()


def decide(probabilities, thresholds, labels=LABELS, force_bad=None):
    """0/1 calls (N, L): p >= threshold per label; a bad-quality frame (or one in
    ``force_bad``) shows neither spinal cord nor CSF."""
    p = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    calls = np.zeros(p.shape, dtype=np.int64)
    for j, label in enumerate(labels):
        calls[:, j] = p[:, j] >= float(thresholds.get(label, 0.5))
    if "bad_quality" in labels:
        bad = labels.index("bad_quality")
        if force_bad is not None:
            calls[np.asarray(force_bad, dtype=bool), bad] = 1
        for label in ("spinal_cord", "csf"):
            if label in labels:
                calls[calls[:, bad] == 1, labels.index(label)] = 0
    return calls


def best_frames(probabilities, calls, times_ms, labels=LABELS, k=3, min_gap_ms=500.0):
    """Up to ``k`` frames to show: good quality, CSF called, highest p_csf, at least
    ``min_gap_ms`` apart (so they are not three neighbours of one moment)."""
    p = np.asarray(probabilities)
    csf, bad = labels.index("csf"), labels.index("bad_quality")
    candidates = np.nonzero((calls[:, csf] == 1) & (calls[:, bad] == 0))[0]
    order = candidates[np.argsort(-p[candidates, csf], kind="mergesort")]
    chosen = []
    for index in order:
        if all(abs(times_ms[index] - times_ms[c]) >= min_gap_ms for c in chosen):
            chosen.append(int(index))
        if len(chosen) == k:
            break
    return chosen


# ---------------------------------------------------------------------------- live mode


class LiveClassifier:
    """One frame at a time, as from a streaming probe.

    ``push(frame, time_ms=None)`` -> {'probabilities', 'smoothed', 'calls', 'time_ms',
    'latency_ms'} with label-keyed dicts. The crop box is estimated from the running
    maximum of the first ``box_frames`` frames, then kept, so the crop does not jump.
    Frames without a time stamp are taken ``1000 / fps`` ms apart.
    """

    def __init__(self, bundle_path, device="cpu", backend="auto", window_ms=None, fps=30.0, box_frames=16):
        self.classifier = FrameClassifier(bundle_path, device=device, backend=backend)
        self.labels = self.classifier.labels
        self.thresholds = self.classifier.thresholds
        self.smoother = CausalSmoother(self.classifier.window_ms if window_ms is None else window_ms)
        self.frame_ms = 1000.0 / fps
        self.box_frames = box_frames
        self.reset()

    def reset(self):
        self.smoother.reset()
        self._peak = None
        self._box = None
        self._count = 0
        self._last_time = None

    def _update_box(self, grey):
        from SpineAILib.workflows.ultrasound.preprocess import content_box

        if self._count < self.box_frames or self._box is None:
            if self._peak is None or self._peak.shape != grey.shape:
                self._peak = grey.copy()
            else:
                np.maximum(self._peak, grey, out=self._peak)
            self._box = content_box(self._peak, threshold=self.classifier.preprocessor.content_threshold)
        return self._box

    def push(self, frame, time_ms=None):
        t0 = time.perf_counter()
        frame = np.asarray(frame)
        if time_ms is None:
            time_ms = 0.0 if self._last_time is None else self._last_time + self.frame_ms
        grey = to_grey(frame)
        box = self._update_box(grey)
        x = self.classifier.preprocessor.frame(grey, box)[np.newaxis]
        p = self.classifier.probabilities(x)[0]
        smoothed = self.smoother.update(p, time_ms)
        calls = decide(smoothed[np.newaxis], self.thresholds, self.labels)[0]
        self._count += 1
        self._last_time = float(time_ms)
        return {
            "time_ms": float(time_ms),
            "probabilities": {k: float(v) for k, v in zip(self.labels, p)},
            "smoothed": {k: float(v) for k, v in zip(self.labels, smoothed)},
            "calls": {k: int(v) for k, v in zip(self.labels, calls)},
            "latency_ms": (time.perf_counter() - t0) * 1000.0,
        }
