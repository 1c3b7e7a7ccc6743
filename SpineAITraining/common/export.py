"""Export a trained network as a SpineAI model bundle, with the provenance filled in.

The bundle records how it was made (git commit, command line, seed, split, library
versions) next to its metrics, so a number in metadata.json can be traced to a run.
"""

import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def git_commit(repo=REPO):
    """'<sha>' or '<sha>-dirty' for the checkout this code runs from; None outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _versions():
    import monai
    import torch

    return {"python": sys.version.split()[0], "torch": torch.__version__, "monai": monai.__version__}


def export_bundle(
    model,
    folder,
    *,
    bundle_id,
    version,
    task,
    network,
    input,
    labels,
    data,
    seed,
    split,
    metrics=(),
    thresholds=None,
    command=None,
    description=None,
    extra_training=None,
    overwrite=False,
    onnx=True,
):
    """Save ``model`` (nn.Module or state dict) to the bundle ``folder``; returns the folder Path.

    ``network`` is {"name", "args"} as for build_network; ``metrics`` a list of
    {"name", "value", "data"} measured on the data named in each entry. ``onnx``: also export
    ``model.onnx`` (SpineAILib.models.onnx_export.add_onnx), which inference without torch runs.
    """
    from SpineAILib.models.bundle import save_bundle

    training = {
        "data": data,
        "command": command if command is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seed": seed,
        "split": split,
        "git_commit": git_commit(),
        "versions": _versions(),
    }
    training.update(extra_training or {})
    metadata = {
        "bundle_id": bundle_id,
        "version": version,
        "task": task,
        "network": {"name": network["name"], "args": dict(network.get("args", {}))},
        "input": input,
        "labels": list(labels),
        "training": training,
        "metrics": [dict(m) for m in metrics],
    }
    if thresholds is not None:
        metadata["thresholds"] = dict(thresholds)
    if description:
        metadata["description"] = description
    folder = save_bundle(folder, metadata, model, overwrite=overwrite)
    if onnx:  # the inference graph the run-only install uses, compared with torch before it is written
        from SpineAILib.models.onnx_export import add_onnx

        add_onnx(folder)
    return folder
