"""Export a bundle's network to ONNX (``model.onnx`` next to ``model.safetensors``), compared first.

``add_onnx(folder)`` builds the network from the bundle (allow-list + safetensors), exports
it with torch's TorchScript-based exporter (opset ONNX_OPSET; dynamic batch, and dynamic
spatial axes for the fully convolutional segmenters), runs the graph in ONNX Runtime and
the network in torch on a fixed input and on random ones, and refuses (BundleError, nothing
written) when they differ by more than ``tolerance``. Only then are ``model.onnx`` and
``metadata.json`` (new field ``onnx``: file, sha256, weights_sha256, opset, input/output
names, dynamic axes, the fixed-input check, the CAM head, the command) replaced,
atomically. Classifiers with global pooling + a linear head export their last feature maps
as a second output, for class activation maps without gradients.

Training (``SpineAITraining.common.export.export_bundle``) calls it at the end; for the
shipped bundles: ``spineai-train export-onnx SpineAI/Resources/Models/*``.
torch is imported only here, when called.
"""

import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from SpineAILib.errors import BundleError
from SpineAILib.models.engine import ONNX_FILE, ONNX_OPSET, check_values, fixed_input, make_session

EXPORT_COMMAND = "spineai-train export-onnx"
TOLERANCE = 1e-3  # largest |onnx - torch| on logits, relative to max(1, max |logit|)
SEGMENTERS = ("UNet", "BasicUNet", "DynUNet", "SegResNet")


def _input_shape(meta):
    spec = meta["input"]
    size = spec.get("size") or spec.get("patch_size")
    return [1, int(spec["channels"]), *(int(s) for s in size)]


def _cam_head(meta, model):
    """The linear head after global average pooling, for class activation maps (ResNets)."""
    name = meta["network"]["name"]
    if name.startswith(("resnet", "tv_resnet")) and hasattr(model, "fc") and hasattr(model, "layer4"):
        return {"features_layer": "layer4", "weight": "fc.weight", "bias": "fc.bias",
                "pooling": "global average", "method": "CAM = relu(sum_k w_ck A_k), 0..1 (= Grad-CAM on layer4)"}  # fmt: skip
    return None


def export_graph(model, meta):
    """(onnx bytes, spec without checksums) for the torch ``model`` built from ``meta``."""
    import torch

    model = model.to("cpu").eval()
    shape = _input_shape(meta)
    cam = _cam_head(meta, model)
    segmenter = meta["network"]["name"] in SEGMENTERS
    spatial = len(shape) - 2
    names = ["row", "column"] if spatial == 2 else ["depth", "row", "column"]
    if cam:
        captured = {}
        layer = dict(model.named_modules())[cam["features_layer"]]

        class WithFeatures(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = model

            def forward(self, x):
                logits = self.net(x)
                return logits, captured["features"]

        handle = layer.register_forward_hook(lambda module, inputs, output: captured.__setitem__("features", output))
        exported, outputs = WithFeatures().eval(), ["logits", "features"]
    else:
        handle, exported, outputs = None, model, ["logits"]
    axes = {"image": {0: "batch"}, "logits": {0: "batch"}}
    if segmenter:
        for k, n in enumerate(names):
            axes["image"][2 + k] = n
            axes["logits"][2 + k] = n
    if cam:
        axes["features"] = {0: "batch"}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(exported, torch.from_numpy(fixed_input(shape)), buffer, input_names=["image"],
                              output_names=outputs, dynamic_axes=axes, opset_version=ONNX_OPSET,
                              dynamo=False, do_constant_folding=True)  # fmt: skip
    finally:
        if handle is not None:
            handle.remove()
    spec = {
        "file": ONNX_FILE,
        "opset": ONNX_OPSET,
        "inputs": ["image"],
        "outputs": outputs,
        "input_shape": shape,
        "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in axes.items()},
    }
    if cam:
        spec["cam"] = cam
    return buffer.getvalue(), spec


def _torch_outputs(model, x, cam):
    import torch

    from SpineAILib.models.engine import TorchRunner

    runner = TorchRunner(model.to("cpu").eval(), "cpu", cam["features_layer"] if cam else None)
    with torch.inference_mode():
        return runner.with_features(x) if cam else (runner(x), None)


def compare(model, graph, spec, seed=0, random_inputs=2):
    """{'max_abs_logits', 'max_abs_features', 'inputs'} between torch and ONNX Runtime, on the fixed
    input and ``random_inputs`` random ones (batch 2; segmenters also at another size)."""
    session, _ = make_session(graph, "cpu")
    shape = spec["input_shape"]
    rng = np.random.default_rng(seed)
    inputs = [fixed_input(shape)] + [rng.random([2, *shape[1:]], dtype=np.float32) for _ in range(random_inputs)]
    if "row" in spec["dynamic_axes"]["image"].values():  # a size the export did not see
        inputs.append(rng.random([1, shape[1], *(max(16, s - 16) for s in shape[2:])], dtype=np.float32))
    worst_logits, worst_features, scale = 0.0, 0.0, 1.0
    for x in inputs:
        got = session.run(spec["outputs"], {"image": x})
        want_logits, want_features = _torch_outputs(model, x, spec.get("cam"))
        scale = max(scale, float(np.abs(want_logits).max()))
        worst_logits = max(worst_logits, float(np.abs(got[0] - want_logits).max()))
        if want_features is not None:
            worst_features = max(worst_features, float(np.abs(got[1] - want_features).max()))
    return {"max_abs_logits": worst_logits, "max_abs_features": worst_features, "logit_scale": scale,
            "inputs": [list(x.shape) for x in inputs]}  # fmt: skip


def add_onnx(folder, tolerance=TOLERANCE, command=None, dry_run=False):
    """Export, compare and (unless ``dry_run``) write ``model.onnx`` + the ``onnx`` metadata of the
    bundle in ``folder``; returns {'bundle', 'onnx_bytes', 'comparison', 'written'}."""
    from SpineAILib.models.bundle import METADATA_FILE, file_sha256, load_bundle
    from SpineAILib.models.schema import validate_metadata

    loaded = load_bundle(folder, device="cpu")
    folder, meta = loaded.path, dict(loaded.metadata)
    graph, spec = export_graph(loaded.model, meta)
    comparison = compare(loaded.model, graph, spec)
    if not comparison["max_abs_logits"] <= tolerance * comparison["logit_scale"]:
        raise BundleError(f"{folder}: the ONNX export differs from the torch network by "
                          f"{comparison['max_abs_logits']:.3g} (tolerance {tolerance:g} x {comparison['logit_scale']:.3g}); "
                          "nothing was written")  # fmt: skip
    session, _ = make_session(graph, "cpu")
    reference = session.run(spec["outputs"][:1], {"image": fixed_input(spec["input_shape"])})[0]
    spec.update({
        "weights_sha256": meta["sha256"],
        "check": {"input": "engine.fixed_input(input_shape)", "input_shape": spec["input_shape"],
                  "output": check_values(reference), "tolerance": tolerance,
                  "torch_vs_onnx_max_abs_logits": comparison["max_abs_logits"],
                  "torch_vs_onnx_max_abs_features": comparison["max_abs_features"]},
        "command": command or f"{EXPORT_COMMAND} {folder}",
    })  # fmt: skip
    result = {"bundle": str(folder), "onnx_bytes": len(graph), "comparison": comparison, "written": False}
    if dry_run:
        return result
    fd, temp_graph = tempfile.mkstemp(prefix=f".{ONNX_FILE}.", dir=folder)
    with os.fdopen(fd, "wb") as stream:
        stream.write(graph)
    os.chmod(temp_graph, 0o644)
    spec["sha256"] = file_sha256(temp_graph)
    meta["onnx"] = spec
    validate_metadata(meta, where=f"{folder / METADATA_FILE}")
    fd, temp_meta = tempfile.mkstemp(prefix=f".{METADATA_FILE}.", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(json.dumps(meta, indent=2) + "\n")
    os.chmod(temp_meta, 0o644)
    os.replace(temp_graph, folder / ONNX_FILE)
    os.replace(temp_meta, folder / METADATA_FILE)
    result["written"] = True
    return result


def main(argv=None):
    """``spineai-train export-onnx BUNDLE...``: export, compare, write; one line per bundle."""
    import argparse

    parser = argparse.ArgumentParser(prog=EXPORT_COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+", type=Path, help="bundle folders")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    parser.add_argument("--dry-run", action="store_true", help="export and compare only; write nothing")
    args = parser.parse_args(argv)
    for folder in args.bundles:
        result = add_onnx(folder, args.tolerance, command=f"{EXPORT_COMMAND} {folder}", dry_run=args.dry_run)
        c = result["comparison"]
        print(f"{folder}: {result['onnx_bytes'] / 1e6:.2f} MB, torch vs ONNX max |logits| {c['max_abs_logits']:.2e}, "
              f"|features| {c['max_abs_features']:.2e} on {len(c['inputs'])} inputs; "
              f"{'written' if result['written'] else 'not written (dry run)'}")  # fmt: skip
    return 0
