"""The run-only install: every workflow end to end in a process where torch and MONAI cannot
be imported (as in `pip install spineai` without the [train] extra, or Slicer without the
PyTorch extension). The shipped bundles run through ONNX Runtime, the heat maps are class
activation maps, nothing falls back to torch, and nothing is skipped."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

pytest.importorskip("onnxruntime")

CHILD = r"""
import json, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "monai", "torchvision"):
            raise ImportError(f"{name} is not installed (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
from SpineAILib.tasks import run_task
out = {}
for task, path, folder in json.loads(sys.argv[1]):
    report = run_task(task, path, folder, device="auto", force=True)
    out[task] = {"warnings": report["warnings"], "results": report["results"], "outputs": report["outputs"]}
out["torch_imported"] = any(m.split(".")[0] in ("torch", "monai") for m in sys.modules)
print(json.dumps(out, default=str))
"""


def test_every_workflow_runs_where_torch_cannot_be_imported(tmp_path):
    from SpineAILib.io.volumes import save_volume_file
    from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_dicom

    phantom = pytest.importorskip("SpineAITraining.cervical.phantom")
    case = phantom.make_case(4242, spacing=(1.0, 1.0, 1.2), levels=("C1", "C2", "C3", "C4", "C5", "C6", "C7"),
                             shape_limit=(140, 110, 110), fracture_levels=["C5"])  # fmt: skip
    save_volume_file(case.ct, tmp_path / "ct.nii.gz")
    write_cine_dicom(make_cine_phantom(n_frames=12), tmp_path / "cine.dcm")
    mri = REPO / "SpineAI" / "Resources" / "SampleData" / "mri_t2_thoracolumbar.nii.gz"
    jobs = [("lumbar-mri", str(mri), str(tmp_path / "lumbar")), ("lp-ultrasound", str(tmp_path / "cine.dcm"), str(tmp_path / "us")),
            ("cervical-ct", str(tmp_path / "ct.nii.gz"), str(tmp_path / "ct"))]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(jobs)], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "SPINEAI_THREADS": "2", "HOME": str(tmp_path),
                                             "PYTHONPATH": f"{REPO / 'SpineAI'}:{REPO}"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["torch_imported"] is False
    for task in ("lumbar-mri", "lp-ultrasound", "cervical-ct"):
        warnings = " ".join(out[task]["warnings"]).lower()
        assert "skipped" not in warnings and "torch" not in warnings, (task, out[task]["warnings"])
    assert out["lumbar-mri"]["results"]["engine"] == "onnx" and out["lumbar-mri"]["results"]["lumbar_levels_found"]
    assert "heatmap" in out["lumbar-mri"]["outputs"] and "severity" in out["lumbar-mri"]["outputs"]
    assert out["lp-ultrasound"]["results"]["backend"] == "onnxruntime" and "heatmaps" in out["lp-ultrasound"]["results"]
    assert out["cervical-ct"]["results"]["engine"] == "onnx" and out["cervical-ct"]["results"]["cervical_levels_found"]
    assert "heatmap" in out["cervical-ct"]["outputs"] and "fractures" in out["cervical-ct"]["outputs"]
    from SpineAILib.io import load

    heat = load(tmp_path / "ct" / "fracture_heatmap.nrrd").voxels
    assert np.isfinite(heat).all() and 0.0 <= heat.min() and heat.max() <= 1.0


GRADCAM_CHILD = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "monai", "torchvision"):
            raise ImportError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Block())
import numpy as np
from SpineAILib.explain import GradCamUnavailable, class_maps
from SpineAILib.models.engine import load_model
bundle = load_model(sys.argv[1], device="cpu")
assert bundle.engine == "onnx" and bundle.head() is None
try:
    class_maps(bundle, np.zeros((1, 5, 48, 48), np.float32), [1])
except GradCamUnavailable as error:
    print(str(error))
"""


def test_a_map_that_needs_grad_cam_is_skipped_with_one_line_without_torch(tmp_path):
    """A bundle without a linear head for CAM (here: the severity grader with its head entry removed)
    needs torch for Grad-CAM: without torch the workflows get one line to warn with, never a failure."""
    import shutil

    folder = tmp_path / "severity"
    shutil.copytree(REPO / "SpineAI" / "Resources" / "Models" / "lumbar-mri-severity", folder)
    meta = json.loads((folder / "metadata.json").read_text())
    del meta["onnx"]["cam"]
    (folder / "metadata.json").write_text(json.dumps(meta))
    done = subprocess.run([sys.executable, "-c", GRADCAM_CHILD, str(folder)], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO / 'SpineAI'}:{REPO}"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    line = done.stdout.strip()
    assert line.startswith("heat map skipped:") and "PyTorch" in line and "\n" not in line
