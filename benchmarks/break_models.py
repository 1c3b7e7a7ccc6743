"""Do the model regression tests catch a broken model? Break each shipped bundle and see.

For every bundle in SpineAI/Resources/Models this writes two broken copies whose
checksums are valid (model.safetensors rewritten, metadata.json's sha256 updated), so
that they load and give outputs that look valid:

* ``swapped`` - the network's output labels exchanged: the final layer's output channels
  permuted (classifier and localiser: spinal cord <-> CSF; level models: the level order
  reversed; refiner: background <-> body; severity: the grades reversed inside each
  condition group) or, for the single-output fracture model, inverted (logit negated);
* ``zeroed`` - every floating-point tensor set to zero;

(a bundle that ships an ONNX graph gets one exported from the broken weights, with its checksums);

then runs the bundle's regression tests (Testing/models/test_model_regression_*.py) with
SPINEAI_TEST_MODELS_DIR pointing at a models folder that holds the broken copy beside the
shipped others, and writes which tests failed into benchmarks/results/broken_models.md.

    .venv/bin/python benchmarks/break_models.py [--only BUNDLE] [--out benchmarks/results/broken_models.md]

Not a test (pytest collects Testing/ only): about 4 minutes on 2 cores.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "SpineAI" / "Resources" / "Models"
TESTS = REPO / "Testing" / "models"

# bundle folder -> (how its outputs are swapped, the regression test files that use it)
BUNDLES = {
    "lp-ultrasound-classifier": ("fc rows spinal_cord <-> csf", ["test_model_regression_ultrasound.py"]),
    "lp-ultrasound-localiser": ("output channels spinal_cord <-> csf", ["test_model_regression_ultrasound.py"]),
    "lumbar-mri-vertebrae": ("level channels reversed (T11 <-> L5, ...)", ["test_model_regression_lumbar_levels.py"]),
    "lumbar-mri-body-refiner": ("background <-> vertebral body", ["test_model_regression_lumbar_levels.py"]),
    "lumbar-mri-severity": ("grades reversed in each group (normal/mild <-> severe)", ["test_model_regression_severity.py"]),
    "cervical-ct-vertebrae": ("level channels reversed (C1 <-> T1, ...)",
                              ["test_model_regression_cervical_vertebrae.py", "test_model_regression_cervical_fracture.py"]),
    "cervical-ct-fracture": ("single output inverted (logit negated: p -> 1 - p)", ["test_model_regression_cervical_fracture.py"]),
}


def unet_output_permutation(tensors, prefix, order):
    """Permute the output channels of a MONAI UNet's last block (``prefix``: its state-dict prefix).

    The block is a transposed convolution (weight [in, out, ...]) with its norm/activation,
    optionally followed by a residual unit whose conv maps out -> out with an identity skip:
    permuting the transposed convolution's outputs, the norm's channels and both dimensions of
    the residual conv permutes the network's output exactly."""
    import torch

    n = len(order)
    index = torch.tensor(order)
    changed = []
    for key, value in tensors.items():
        if not key.startswith(prefix) or not value.is_floating_point():
            continue
        if value.ndim == 1 and value.shape[0] == n:
            tensors[key] = value[index].clone()
        elif value.ndim >= 3 and ".unit" in key:
            assert value.shape[0] == value.shape[1] == n, key
            tensors[key] = value[index][:, index].clone()
        elif value.ndim >= 3:
            assert value.shape[1] == n, key
            tensors[key] = value[:, index].clone()
        else:
            continue
        changed.append(key)
    assert changed, f"nothing under {prefix} has {n} channels"


def swap_outputs(folder, tensors):
    if folder in ("lp-ultrasound-classifier",):
        tensors["fc.weight"] = tensors["fc.weight"][[0, 2, 1]].clone()
        tensors["fc.bias"] = tensors["fc.bias"][[0, 2, 1]].clone()
    elif folder == "lumbar-mri-severity":
        order = [2, 1, 0, 5, 4, 3, 8, 7, 6]
        tensors["fc.weight"] = tensors["fc.weight"][order].clone()
        tensors["fc.bias"] = tensors["fc.bias"][order].clone()
    elif folder == "cervical-ct-fracture":
        tensors["fc.weight"] = -tensors["fc.weight"]
        tensors["fc.bias"] = -tensors["fc.bias"]
    elif folder == "lp-ultrasound-localiser" or folder == "lumbar-mri-body-refiner":
        unet_output_permutation(tensors, "model.2.", [1, 0])
    elif folder == "lumbar-mri-vertebrae":
        unet_output_permutation(tensors, "model.2.", [0, 7, 6, 5, 4, 3, 2, 1])
    elif folder == "cervical-ct-vertebrae":
        unet_output_permutation(tensors, "model.2.", [0, 8, 7, 6, 5, 4, 3, 2, 1])
    else:
        raise ValueError(folder)


def zero_weights(tensors):
    for key, value in tensors.items():
        if value.is_floating_point():
            tensors[key] = value.new_zeros(value.shape)


def broken_models_dir(root, folder, kind):
    """A models folder: the shipped bundles (linked) and a broken copy of ``folder`` with a valid checksum."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from SpineAILib.models.bundle import file_sha256, load_bundle

    models = root / f"{folder}-{kind}"
    models.mkdir()
    for bundle in MODELS.iterdir():
        if bundle.is_dir() and bundle.name != folder:
            (models / bundle.name).symlink_to(bundle, target_is_directory=True)
    broken = models / folder
    broken.mkdir()
    source = MODELS / folder / "model.safetensors"
    with safe_open(str(source), "pt") as stream:
        header = stream.metadata()
    tensors = load_file(str(source))
    if kind == "swapped":
        swap_outputs(folder, tensors)
    else:
        zero_weights(tensors)
    save_file(tensors, str(broken / "model.safetensors"), metadata=header)
    meta = json.loads((MODELS / folder / "metadata.json").read_text(encoding="utf-8"))
    meta["sha256"] = file_sha256(broken / "model.safetensors")
    shipped_graph = meta.pop("onnx", None)  # an inference graph exported from the good weights does not travel
    (broken / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    if shipped_graph is not None:  # the bundle ships model.onnx: export the broken weights' own graph
        from SpineAILib.models.onnx_export import add_onnx

        add_onnx(broken)
    load_bundle(broken, device="cpu")  # the checksums are valid: the copy loads like a good bundle
    return models


def run_tests(models, files, cache, report):
    env = dict(os.environ, SPINEAI_TEST_MODELS_DIR=str(models), SPINEAI_CACHE=str(cache))
    env.setdefault("OMP_NUM_THREADS", "2")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
               *[str(TESTS / f) for f in files]]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(command, check=False, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    failed, passed, skipped = [], [], []
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname').split('.')[-1]}::{case.get('name')}"
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if problem is not None:
            message = " ".join((problem.get("message") or "").split())
            failed.append((name, message[:110]))
        elif case.find("skipped") is not None:
            skipped.append(name)
        else:
            passed.append(name)
    return failed, passed, skipped, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(BUNDLES), action="append")
    parser.add_argument("--kinds", default="swapped,zeroed")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "broken_models.md"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "SpineAI"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="spineai-broken-") as temp:
        root = Path(temp)
        for folder in args.only or BUNDLES:
            how, files = BUNDLES[folder]
            for kind in args.kinds.split(","):
                models = broken_models_dir(root, folder, kind)
                failed, passed, skipped, seconds = run_tests(models, files, root / "cache", root / f"{folder}-{kind}.xml")
                shutil.rmtree(models)
                what = how if kind == "swapped" else "every weight zero"
                rows.append((folder, kind, what, failed, passed, skipped, seconds))
                print(f"{folder} {kind}: {len(failed)} failed, {len(passed)} passed, {len(skipped)} skipped "
                      f"({seconds:.0f} s)", flush=True)  # fmt: skip
    lines = [
        "# Broken model bundles against the model regression tests",
        "",
        "Made by `benchmarks/break_models.py`: each shipped bundle copied with its outputs swapped",
        "(a single output: inverted) or all its weights zeroed, the checksum in metadata.json",
        "updated so the copy loads, then the bundle's regression tests run against it",
        "(`SPINEAI_TEST_MODELS_DIR`). Every broken copy must fail at least one test.",
        "",
        "| bundle | broken copy | tests failed / run | failed tests (first assertion) |",
        "|---|---|---|---|",
    ]
    for folder, kind, what, failed, passed, skipped, seconds in rows:
        total = len(failed) + len(passed)
        names = "<br>".join(f"`{n}`: {m.replace('|', '/')}" for n, m in failed) or "**none - not caught**"
        lines.append(f"| {folder} | {kind}: {what} | {len(failed)} / {total} | {names} |")
    caught = sum(1 for r in rows if r[3])
    lines += ["", f"{caught} of {len(rows)} broken copies caught."]
    if any(r[5] for r in rows):
        lines.append("Skipped (missing data): " + ", ".join(sorted({n for r in rows for n in r[5]})))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {caught} of {len(rows)} caught")
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
