"""Convert a user's own torch.save checkpoint into a bundle, the one place a .pt file is opened.

It is opened only with ``torch.load(weights_only=True)``, which refuses any pickled
object other than tensors and plain containers, so even this explicit, user-requested
conversion cannot run code hidden in the file.
"""

import re
from pathlib import Path

from SpineAILib.errors import BundleError
from SpineAILib.models.bundle import save_bundle

# Where training frameworks keep the weights inside a checkpoint dictionary.
_STATE_KEYS = ("state_dict", "model_state_dict", "model", "network", "net", "weights")


def _is_state_dict(obj):
    import torch

    return isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())


def find_state_dict(obj, source="checkpoint"):
    """The tensor dictionary inside a loaded checkpoint, without a DataParallel 'module.' prefix."""
    if not _is_state_dict(obj):
        inner = [obj[k] for k in _STATE_KEYS if isinstance(obj, dict) and _is_state_dict(obj.get(k))]
        if not inner:
            keys = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__
            raise BundleError(
                f"{source} holds no state dict of tensors (looked at the top level and {', '.join(_STATE_KEYS)}; found {keys})"
            )
        obj = inner[0]
    if all(str(k).startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def convert_checkpoint(pt_path, bundle_folder, metadata, overwrite=False):
    """Write the bundle ``bundle_folder`` from checkpoint ``pt_path`` and ``metadata``; returns its Path."""
    import pickle

    import torch

    pt_path = Path(pt_path).expanduser()
    if not pt_path.is_file():
        raise BundleError(f"checkpoint {pt_path} does not exist")
    try:
        loaded = torch.load(str(pt_path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message is a page of advice; the class it refused is the useful part.
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        detail = f" (it pickles {found.group(1)})" if found else ""
        raise BundleError(
            f"checkpoint {pt_path} holds Python objects besides tensors, which are never unpickled{detail}; "
            "save it with torch.save(model.state_dict(), PATH) and convert that"
        ) from None
    except Exception as error:  # not a torch.save file at all, truncated zip, ...
        reason = " ".join(str(error).split())[:160]
        raise BundleError(
            f"checkpoint {pt_path} cannot be read as a torch.save file ({type(error).__name__}: {reason})"
        ) from None
    return save_bundle(bundle_folder, metadata, find_state_dict(loaded, str(pt_path)), overwrite=overwrite)
