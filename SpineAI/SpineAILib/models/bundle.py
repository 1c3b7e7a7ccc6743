"""Model bundles: a folder with metadata.json and model.safetensors.

Loading never unpickles: weights are read only with safetensors, the network is
built from an allow-list (networks.py), and every failure is a one-line BundleError.
"""

import copy
import datetime
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from SpineAILib.errors import BundleError, OutputError
from SpineAILib.models.schema import FORMAT_VERSION, validate_metadata

METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.safetensors"
# Files torch.save / pickle write; offered as weights they are refused, never opened.
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")
CONVERT_HINT = (
    "pickles are never loaded; convert your own checkpoint with "
    "`spineai-train convert CHECKPOINT.pt --metadata META.json --out BUNDLE`"
)


class BundleFacts:
    """What a loaded bundle's metadata says, for any engine that loaded it (needs ``self.metadata``)."""

    @property
    def task(self):
        return self.metadata["task"]

    @property
    def labels(self):
        return list(self.metadata["labels"])

    @property
    def thresholds(self):
        return dict(self.metadata.get("thresholds") or {})


@dataclass
class LoadedBundle(BundleFacts):
    model: object  # torch.nn.Module in eval mode, on ``device``
    metadata: dict
    device: object  # torch.device
    path: Path


def trained_on_synthetic_data(metadata):
    """True when a bundle was trained without patient data (phantoms, generated studies or cines), as
    its metadata's ``training.data`` says. The one decision behind every "trained on synthetic data"
    warning, the severity grades' research-output flag and the DICOM SR's note."""
    data = str((metadata.get("training") or {}).get("data", "")).strip().lower()
    return any(word in data for word in ("synthetic", "phantom", "generated")) and not data.startswith("real")


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _refuse_pickle(path, what=None):
    raise BundleError(f"{what or path} is a PyTorch pickle checkpoint, not safetensors: {CONVERT_HINT}")


def bundle_folder(path):
    """The bundle folder for ``path`` (its metadata.json or model.safetensors also accepted)."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            _refuse_pickle(path)
        if path.name in (METADATA_FILE, WEIGHTS_FILE):
            return path.parent
        raise BundleError(f"{path} is a file, not a model bundle folder (a folder with {METADATA_FILE} and {WEIGHTS_FILE})")
    if not path.is_dir():
        raise BundleError(f"model bundle folder {path} does not exist")
    return path


def update_metadata(folder, change):
    """Rewrite the bundle's metadata.json with ``change(meta)`` applied (it returns the new dict),
    atomically and readable by all: for a trainer or evaluation adding what the weights' sha256
    does not cover (metrics, grading recipe, calibration). Re-read first, so keys others added stay."""
    from SpineAILib.outputs import write_text_atomic

    path = Path(folder) / METADATA_FILE
    meta = change(json.loads(path.read_text(encoding="utf-8")))
    write_text_atomic(path, json.dumps(meta, indent=2) + "\n", mode=0o644)
    return path


def read_metadata(folder):
    """The validated metadata.json of the bundle in ``folder``."""
    folder = bundle_folder(folder)
    path = folder / METADATA_FILE
    if not path.is_file():
        raise BundleError(f"no {METADATA_FILE} in model bundle {folder}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BundleError(f"{path} is not valid JSON (line {error.lineno} column {error.colno}: {error.msg})") from None
    except (UnicodeDecodeError, OSError) as error:
        raise BundleError(f"{path} cannot be read as UTF-8 JSON ({error})") from None
    return validate_metadata(meta, where=str(path))


def _read_weights(path):
    """Tensors from model.safetensors, refusing pickles by their first bytes before safetensors sees them."""
    with open(path, "rb") as stream:
        head = stream.read(9)
    # safetensors = 8-byte little-endian header length, then the JSON header '{'.
    # Pickles start with 0x80 (protocol >= 2); torch.save archives are zip files ('PK').
    if head[8:9] != b"{" and (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        _refuse_pickle(path, f"{path.name} in {path.parent}")
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # SafetensorError, OSError, ...: the file is damaged
        reason = " ".join(str(error).split())[:200]
        raise BundleError(f"{path} is truncated or corrupt (safetensors: {reason})") from None


def check_weights(model, tensors, where, network_name):
    """Raise BundleError unless ``tensors`` has exactly the keys and shapes of ``model``'s state dict."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    shape = next(
        (k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)), None
    )
    if not (missing or unexpected or shape):
        return
    parts = []
    for name, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            parts.append(f"{len(keys)} {name} key(s) ({shown})")
    if shape:
        parts.append(
            f"first shape mismatch: {shape} is {list(tensors[shape].shape)} in the file "
            f"but {list(expected[shape].shape)} in the network"
        )
    raise BundleError(f"weights in {where} do not match network {network_name} built from its metadata: {'; '.join(parts)}")


def _build(meta):
    from SpineAILib.models.networks import build_network

    try:
        return build_network(meta["network"]["name"], **meta["network"]["args"])
    except BundleError:
        raise
    except (TypeError, ValueError, KeyError, RuntimeError, MemoryError) as error:  # arguments the network refuses
        raise BundleError(f"bundle {meta.get('bundle_id')}: network {meta['network']['name']} cannot be built from "
                          f"its metadata ({type(error).__name__}: {' '.join(str(error).split())[:200]})") from None


def load_bundle(folder, device="auto", expected_task=None):
    """Load a bundle: validated metadata, network built from it, safetensors weights; model in eval mode."""
    folder = bundle_folder(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            _refuse_pickle(folder / pickles[0], f"model bundle {folder} has no {WEIGHTS_FILE}, only {pickles[0]}, which")
    meta = read_metadata(folder)
    if expected_task is not None and meta["task"] != expected_task:
        raise BundleError(f"model bundle {folder} is for task '{meta['task']}', not '{expected_task}'")
    if not weights.is_file():
        raise BundleError(f"no {WEIGHTS_FILE} in model bundle {folder}")

    tensors = _read_weights(weights)
    actual = file_sha256(weights)
    if actual != meta["sha256"]:
        raise BundleError(
            f"{weights} does not match the sha256 in {METADATA_FILE} (file {actual[:12]}..., "
            f"metadata {meta['sha256'][:12]}...): it is corrupt or was replaced"
        )

    from SpineAILib.models.device import choose_device

    torch_device = choose_device(device)
    model = _build(meta)
    check_weights(model, tensors, weights, meta["network"]["name"])
    model.load_state_dict(tensors, strict=True)
    model.to(torch_device).eval()
    return LoadedBundle(model=model, metadata=meta, device=torch_device, path=folder)


def _tensors_of(model_or_state_dict):
    import torch

    state = model_or_state_dict.state_dict() if hasattr(model_or_state_dict, "state_dict") else model_or_state_dict
    if not isinstance(state, dict):
        raise BundleError(f"save_bundle needs a torch.nn.Module or a state dict (got {type(state).__name__})")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise BundleError(f"state dict entries that are not tensors cannot be saved: {', '.join(map(str, bad[:3]))}")
    # safetensors wants contiguous CPU tensors that share no memory (tied weights would).
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_bundle(folder, metadata, model_or_state_dict, overwrite=False):
    """Write ``folder`` atomically (temp folder, then rename); fills format_version, created and sha256."""
    from safetensors.torch import save_file

    folder = Path(folder).expanduser()
    meta = copy.deepcopy(metadata)
    meta.setdefault("format_version", FORMAT_VERSION)
    meta.setdefault("created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    meta.pop("sha256", None)
    validate_metadata(meta, where="bundle metadata", require_sha=False)
    tensors = _tensors_of(model_or_state_dict)
    # A bundle that saves must load: check the weights against the network the metadata describes.
    check_weights(_build(meta), tensors, "the model being saved", meta["network"]["name"])

    if folder.exists() and not overwrite:
        raise OutputError(f"model bundle folder {folder} already exists (choose another folder or allow overwriting)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        os.chmod(temp, 0o755)  # mkdtemp makes it private; a bundle is meant to be shared
        save_file(tensors, str(temp / WEIGHTS_FILE), metadata={"format": "pt", "bundle_id": meta["bundle_id"]})
        meta["sha256"] = file_sha256(temp / WEIGHTS_FILE)
        validate_metadata(meta, where="bundle metadata")
        (temp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        old = None
        if folder.exists():  # overwrite: move the old bundle aside so the swap is two renames
            old = folder.parent / f".{folder.name}.old-{os.getpid()}"
            os.replace(folder, old)
        os.replace(temp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return folder
