"""Networks and loss for the per-frame multi-label ultrasound classifier.

Three choices, all built through SpineAILib's allow-listed network factory so a
bundle's metadata.json names them and the module rebuilds them without any code
from the training package:

* ``resnet18`` (default, as the seeds found best): torchvision ResNet18
  (``tv_resnet18``), grey input (conv1 = mean of the RGB filters), starting from
  ImageNet weights when this machine can fetch them; offline it falls back to a
  random initialisation and says so in the log.
* ``densenet121``: MONAI DenseNet121, 2-D, grey input; ImageNet weights likewise.
* ``small``: MONAI ResNet18 at a quarter of the width (16-32-64-128 channels,
  0.7 M parameters, about 1/16 of ResNet18's compute): the fast network for
  whole-cine analysis and live use on a laptop CPU. Random initialisation.

Loss: BCE with logits, one ``pos_weight`` per label (negatives / positives in the
training frames, clipped to [0.2, 20]) so rare labels are not ignored.
"""

import logging
import socket

import numpy as np

log = logging.getLogger("spineai.train.lp_ultrasound")

from SpineAILib.vocabulary import ULTRASOUND_LABELS as LABELS

NETWORKS = {
    "resnet18": {"name": "tv_resnet18", "args": {"in_channels": 1, "num_classes": len(LABELS)}, "pretrained": True},
    "densenet121": {
        "name": "DenseNet121",
        "args": {"spatial_dims": 2, "in_channels": 1, "out_channels": len(LABELS)},
        "pretrained": True,
    },
    "small": {
        "name": "resnet18",
        "args": {"spatial_dims": 2, "n_input_channels": 1, "num_classes": len(LABELS), "widen_factor": 0.25},
        "pretrained": False,
    },
}

# Fetching ImageNet weights must not hang a training run on a machine without network.
FETCH_TIMEOUT_S = 20


def network_spec(choice):
    """{'name', 'args'} for the bundle's metadata (``choice``: resnet18, densenet121, small)."""
    if choice not in NETWORKS:
        raise ValueError(f"unknown network {choice!r}; choose one of {', '.join(NETWORKS)}")
    spec = NETWORKS[choice]
    return {"name": spec["name"], "args": dict(spec["args"])}


def build_classifier(choice, pretrained="auto"):
    """(model, init) where init says how it was initialised: 'imagenet' or 'random (...)'.

    ``pretrained``: 'auto' tries ImageNet weights (networks that have them) and falls
    back to random weights with a logged warning when they cannot be fetched; 'no'
    never tries; 'yes' fails when they cannot be had.
    """
    from SpineAILib.models.networks import build_network

    spec = network_spec(choice)
    want = pretrained in ("auto", "yes", True) and NETWORKS[choice]["pretrained"]
    if pretrained == "yes" and not NETWORKS[choice]["pretrained"]:
        raise ValueError(f"network {choice} has no ImageNet weights to start from")
    if not want:
        return build_network(spec["name"], **spec["args"]), "random"
    try:
        model = _pretrained(choice, spec)
        log.info("%s: starting from ImageNet weights", choice)
        return model, "imagenet"
    except Exception as error:  # no network, proxy, certificate, corrupt cache ...
        reason = " ".join(str(error).split())[:160]
        if pretrained == "yes":
            raise RuntimeError(f"ImageNet weights for {choice} could not be fetched: {reason}") from None
        log.warning(
            "%s: ImageNet weights could not be fetched (%s: %s); OFFLINE FALLBACK: starting from random initialisation",
            choice,
            type(error).__name__,
            reason,
        )
        return build_network(spec["name"], **spec["args"]), f"random (ImageNet weights unavailable: {type(error).__name__})"


def _pretrained(choice, spec):
    import torch

    from SpineAILib.models.networks import build_pretrained_network

    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(FETCH_TIMEOUT_S)
    try:
        if choice == "resnet18":
            return build_pretrained_network(spec["name"], **spec["args"])
        # DenseNet121: ImageNet weights exist for 3 input channels; build that, then make
        # conv0 grey (mean of the RGB filters). Keys and shapes then match in_channels=1.
        from monai.networks.nets import DenseNet121

        args = dict(spec["args"], in_channels=3)
        model = DenseNet121(pretrained=True, **args)
        old = model.features.conv0
        new = torch.nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        with torch.no_grad():
            new.weight.copy_(old.weight.mean(dim=1, keepdim=True))
        model.features.conv0 = new
        return model
    finally:
        socket.setdefaulttimeout(old_timeout)


def pos_weights(labels):
    """Per-label negatives/positives of the training frames (N, L), clipped to [0.2, 20]."""
    labels = np.asarray(labels, dtype=np.float64)
    pos = labels.sum(axis=0)
    neg = labels.shape[0] - pos
    return np.clip(neg / np.maximum(pos, 1.0), 0.2, 20.0)


def bce_loss(pos_weight):
    """BCEWithLogitsLoss with the per-label ``pos_weight``."""
    import torch

    return torch.nn.BCEWithLogitsLoss(pos_weight=torch.as_tensor(np.asarray(pos_weight), dtype=torch.float32))


def count_parameters(model):
    return int(sum(p.numel() for p in model.parameters()))
