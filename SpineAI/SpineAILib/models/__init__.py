"""Model bundles, the network factory and device choice.

Nothing here imports torch, monai or safetensors at import time; the functions
that need them import them when called, so the CLI's --help stays instant.
"""

from SpineAILib.models.bundle import LoadedBundle, load_bundle, read_metadata, save_bundle
from SpineAILib.models.catalogue import default_bundle_path, list_models, resolve_bundle
from SpineAILib.models.convert import convert_checkpoint
from SpineAILib.models.device import DeviceUnavailableError, choose_device
from SpineAILib.models.networks import NETWORKS, build_network, build_pretrained_network
from SpineAILib.models.schema import FORMAT_VERSION, TASKS, validate_metadata

__all__ = [
    "FORMAT_VERSION",
    "NETWORKS",
    "TASKS",
    "DeviceUnavailableError",
    "LoadedBundle",
    "build_network",
    "build_pretrained_network",
    "choose_device",
    "convert_checkpoint",
    "default_bundle_path",
    "list_models",
    "load_bundle",
    "read_metadata",
    "resolve_bundle",
    "save_bundle",
    "validate_metadata",
]
