"""The inference engine (SpineAILib.models.engine): ONNX Runtime gives what torch gives.

* the numpy operations that replaced torch/MONAI at run time equal them (interpolate,
  max pooling, MONAI's gaussian sliding window);
* every shipped bundle's model.onnx reproduces its safetensors network (probabilities
  within 1e-4 on inputs the export never saw);
* class activation maps from the exported feature maps and the head's weights are the
  Grad-CAM maps of the ResNet classifiers (ultrasound, severity, fracture);
* a graph that is not the bundle's (checksum, other weights, other outputs) is refused;
* the same outputs through the workflows' own functions on real and phantom inputs:
  level names and Dice, severity rows, ultrasound probabilities, fracture calls.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED_DATA

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

MODELS = REPO / "SpineAI" / "Resources" / "Models"
BUNDLES = sorted(p.name for p in MODELS.iterdir() if (p / "model.onnx").is_file())
CLASSIFIERS = ("lp-ultrasound-classifier", "lumbar-mri-severity", "cervical-ct-fracture")


def test_every_shipped_bundle_carries_a_checked_graph():
    catalogued = {Path(m["path"]).name for m in json.loads((MODELS.parent / "Models.json").read_text())["models"]}
    assert sorted(catalogued) == BUNDLES, (catalogued, BUNDLES)  # every shipped bundle has its graph, no stray one
    for name in BUNDLES:
        meta = json.loads((MODELS / name / "metadata.json").read_text())
        spec = meta["onnx"]
        assert spec["weights_sha256"] == meta["sha256"] and spec["opset"] == 17 and spec["inputs"] == ["image"]
        assert spec["command"].startswith("spineai-train export-onnx")
        size = (MODELS / name / "model.onnx").stat().st_size
        assert size < 1.1 * (MODELS / name / "model.safetensors").stat().st_size + 200_000  # no bloat
        assert ("cam" in spec) == (name in CLASSIFIERS)


def test_numpy_operations_equal_torch():
    import torch.nn.functional as F

    from SpineAILib.models.engine import interpolate
    from SpineAILib.morphology import max_filter

    rng = np.random.default_rng(0)
    x2 = rng.random((2, 3, 13, 17), dtype=np.float32)
    x3 = rng.random((1, 2, 7, 9, 11), dtype=np.float32)
    for align in (True, False):
        for size in ((29, 8), (13, 40)):
            want = F.interpolate(torch.from_numpy(x2), size=size, mode="bilinear", align_corners=align).numpy()
            np.testing.assert_allclose(interpolate(x2, size, align), want, atol=1e-5)
        want = F.interpolate(torch.from_numpy(x3), size=(14, 5, 22), mode="trilinear", align_corners=align).numpy()
        np.testing.assert_allclose(interpolate(x3, (14, 5, 22), align), want, atol=1e-5)
    mask = rng.random((9, 10, 11)) > 0.7
    want = F.max_pool3d(torch.from_numpy(mask.astype(np.float32))[None, None], (3, 5, 1), stride=1, padding=(1, 2, 0))[0, 0]
    np.testing.assert_array_equal(max_filter(mask, (1, 2, 0), fill=False), want.numpy() > 0.5)


def test_sliding_window_equals_monai():
    from monai.inferers import sliding_window_inference

    from SpineAILib.models.engine import TorchRunner, sliding_window

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 3, 3, padding=1), torch.nn.Tanh()).eval()
    x = np.random.default_rng(1).random((1, 1, 40, 21, 70), dtype=np.float32)
    roi = (32, 32, 32)  # larger than one axis (padding), smaller than the others (overlapping windows)
    with torch.inference_mode():
        want = sliding_window_inference(torch.from_numpy(x), roi, 1, net, overlap=0.25, mode="gaussian",
                                        padding_mode="constant", cval=0.0).numpy()  # fmt: skip
    np.testing.assert_allclose(sliding_window(x, roi, TorchRunner(net), overlap=0.25), want, atol=2e-5)


def _random_input(meta, batch=3, seed=5):
    spec = meta["input"]
    size = spec.get("size") or spec.get("patch_size")
    return np.random.default_rng(seed).random((batch, spec["channels"], *size), dtype=np.float32)


@pytest.mark.parametrize("name", BUNDLES)
def test_onnx_and_torch_give_the_same_probabilities(name):
    from SpineAILib.models.engine import load_model, sigmoid, softmax

    onnx = load_model(MODELS / name, device="cpu", engine="onnx")
    eager = load_model(MODELS / name, device="cpu", engine="torch")
    assert onnx.engine == "onnx" and eager.engine == "torch"
    x = _random_input(onnx.metadata)
    a, b = onnx.model(x), eager.model(x)
    assert a.shape == b.shape
    squash = sigmoid if name in ("lp-ultrasound-classifier", "lp-ultrasound-localiser", "cervical-ct-fracture") else None
    if name == "lumbar-mri-severity":
        pa, pb = softmax(a.reshape(-1, 3, 3), 2), softmax(b.reshape(-1, 3, 3), 2)
    elif squash is not None:
        pa, pb = squash(a), squash(b)
    else:
        pa, pb = softmax(a, 1), softmax(b, 1)
    assert float(np.abs(pa - pb).max()) < 1e-4


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_class_activation_maps_are_the_grad_cam_maps(name):
    """CAM (ONNX features x head weights, no gradients) == Grad-CAM (torch autograd on layer4)."""
    from SpineAILib.explain import class_maps, grad_cam
    from SpineAILib.models.engine import load_model

    onnx = load_model(MODELS / name, device="cpu", engine="onnx")
    eager = load_model(MODELS / name, device="cpu", engine="torch")
    x = _random_input(onnx.metadata, batch=2, seed=9)
    if name == "cervical-ct-fracture":  # a vertebra's mask in channel 1, so the fracture logit has evidence
        grid = np.indices(x.shape[2:]) - x.shape[2] // 2
        x[:, 1] = np.sqrt((grid**2).sum(0)) < 12
        x[:, 0] *= 0.5
    n_classes = onnx.model(x[:1]).shape[1]
    classes = list(range(n_classes))
    cam = class_maps(onnx, x, classes)
    gradcam = np.asarray(grad_cam(eager.torch_model, x, classes)).reshape(cam.shape)
    assert cam.shape == (n_classes, 2, *x.shape[2:])
    assert float(np.abs(cam - gradcam).max()) < 1e-4
    assert float(cam.max()) == pytest.approx(1.0)  # maps with evidence, not all zeros


def _copy(tmp_path, name="lp-ultrasound-localiser"):
    folder = tmp_path / name
    shutil.copytree(MODELS / name, folder)
    return folder


def test_a_graph_that_is_not_the_bundles_is_refused(tmp_path):
    from SpineAILib.errors import BundleError
    from SpineAILib.models.bundle import file_sha256
    from SpineAILib.models.engine import load_model

    # 1. bytes changed: the checksum refuses it before a session is built
    folder = _copy(tmp_path / "a")
    data = bytearray((folder / "model.onnx").read_bytes())
    data[-100] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match onnx.sha256"):
        load_model(folder, device="cpu", engine="onnx")
    # 2. a graph exported from other weights, checksum updated: provenance refuses it
    folder = _copy(tmp_path / "b")
    shutil.copy(MODELS / "lumbar-mri-body-refiner" / "model.onnx", folder / "model.onnx")
    meta = json.loads((folder / "metadata.json").read_text())
    meta["onnx"]["sha256"] = file_sha256(folder / "model.onnx")
    (folder / "metadata.json").write_text(json.dumps(meta))
    # (same output names and sizes: only the fixed-input check can tell once provenance is forged)
    meta["onnx"]["weights_sha256"] = "0" * 64
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="exported from other weights"):
        load_model(folder, device="cpu", engine="onnx")
    # 3. provenance forged too: the fixed-input check sees the graph and the weights disagree
    meta["onnx"]["weights_sha256"] = meta["sha256"]
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="fixed input"):
        load_model(folder, device="cpu", engine="onnx")
    # 4. no graph: auto falls back to torch with a note, onnx says how to add one
    folder = _copy(tmp_path / "c")
    (folder / "model.onnx").unlink()
    with pytest.raises(Exception, match="export-onnx"):
        load_model(folder, device="cpu", engine="onnx")
    meta = json.loads((folder / "metadata.json").read_text())
    del meta["onnx"]
    (folder / "metadata.json").write_text(json.dumps(meta))
    fallback = load_model(folder, device="cpu", engine="auto")
    assert fallback.engine == "torch" and "carries no model.onnx" in fallback.notes[0]


def test_training_export_writes_a_graph_that_loads(tmp_path):
    from SpineAILib.models.engine import load_model
    from SpineAILib.models.networks import build_network
    from SpineAITraining.common.export import export_bundle

    network = {"name": "resnet18", "args": {"spatial_dims": 2, "n_input_channels": 5, "num_classes": 9, "widen_factor": 0.125}}
    folder = export_bundle(build_network(network["name"], **network["args"]), tmp_path / "b", bundle_id="tiny",
                           version="0", task="lumbar-mri/severity", network=network,
                           input={"channels": 5, "size": [32, 32], "intensity": {"method": "zscore"}},
                           labels=["normal_mild", "moderate", "severe"], data="none", seed=0, split="none")  # fmt: skip
    meta = json.loads((folder / "metadata.json").read_text())
    assert (folder / "model.onnx").is_file() and meta["onnx"]["cam"]["weight"] == "fc.weight"
    assert meta["onnx"]["check"]["torch_vs_onnx_max_abs_logits"] < 1e-4
    assert load_model(folder, device="cpu", engine="onnx").engine == "onnx"


def test_workflow_functions_give_the_same_outputs_on_both_engines(monkeypatch):
    """Ultrasound probabilities, lumbar names, Dice and severity rows, both engines (one real case)."""
    from SpineAILib.workflows.ultrasound.inference import FrameClassifier
    from SpineAILib.samples.cine_phantom import make_cine_phantom

    frames = make_cine_phantom(n_frames=6).frames
    onnx = FrameClassifier(MODELS / "lp-ultrasound-classifier", device="cpu", backend="onnx")
    eager = FrameClassifier(MODELS / "lp-ultrasound-classifier", device="cpu", backend="torch")
    assert onnx.backend == "onnxruntime" and onnx.onnx_path.parent == MODELS / "lp-ultrasound-classifier"
    assert float(np.abs(onnx.cine_probabilities(frames) - eager.cine_probabilities(frames)).max()) < 1e-4

    case = SHARED_DATA / "mri_lumbar" / "vb2_02.nii.gz"
    if not case.is_file():
        pytest.skip("../shared/data/mri_lumbar is absent")
    from SpineAILib.io import load
    from SpineAILib.models.engine import load_model
    from SpineAILib.workflows.lumbar.pipeline import segment_vertebrae
    from SpineAILib.workflows.lumbar.refine import load_refiner

    image = load(case)
    results = {}
    for engine in ("onnx", "torch"):
        monkeypatch.setenv("SPINEAI_ENGINE", engine)
        bundle = load_model(MODELS / "lumbar-mri-vertebrae", device="cpu")
        refiner = load_refiner("cpu")
        assert bundle.engine == refiner.engine == engine
        results[engine] = segment_vertebrae(image, bundle, refiner=refiner)
    a, b = results["onnx"], results["torch"]
    assert [v["name"] for v in a.vertebrae] == [v["name"] for v in b.vertebrae]
    la, lb = a.labelmap.voxels, b.labelmap.voxels
    for value in np.unique(lb[lb > 0]):
        dice = 2 * np.sum((la == value) & (lb == value)) / (np.sum(la == value) + np.sum(lb == value))
        assert dice > 0.999, (value, dice)  # onnx vs torch on the same case: Dice within 0.001 of identical
