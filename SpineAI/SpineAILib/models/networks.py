"""Network factory: a bundle names its network and JSON arguments; we build it from an allow-list.

Only names listed in NETWORKS can be built, so a metadata.json can never make us
import or call arbitrary code. Pretrained weights are fetched only when a training
script asks for them (build_pretrained_network); loading a bundle never does.
"""

import json

from SpineAILib.errors import BundleError


def _tuples(value):
    """JSON turns tuples into lists; MONAI's layer factories want ('name', {args}) tuples."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _monai(class_name, defaults=None):
    def build(args, pretrained):
        from monai.networks import nets

        merged = dict(defaults or {})
        merged.update(args)
        if class_name in ("DenseNet121", "EfficientNetBN"):
            merged["pretrained"] = pretrained
        elif pretrained:
            raise BundleError(f"network {class_name} has no pretrained weights to start from")
        return getattr(nets, class_name)(**_tuples(merged))

    return build


def _monai_resnet(depth):
    # MONAI's ResNet defaults to a stride-1 first convolution (about 4x the compute of
    # torchvision's); 7x7 stride 2 matches the ImageNet design. Explicit args still win.
    def build(args, pretrained):
        from monai.networks import nets

        if pretrained:
            raise BundleError(f"network resnet{depth} has no pretrained weights here; use tv_resnet18 for ImageNet transfer")
        merged = {"conv1_t_size": 7, "conv1_t_stride": 2}
        merged.update(args)
        return getattr(nets, f"resnet{depth}")(**_tuples(merged))

    return build


def _tv_resnet18(args, pretrained):
    """torchvision ResNet18 (2-D), optionally ImageNet-initialised; in_channels != 3 replaces conv1."""
    import torch
    from torchvision.models import ResNet18_Weights, resnet18

    args = dict(args)
    in_channels = int(args.pop("in_channels", 3))
    num_classes = int(args.pop("num_classes", 1000))
    if args:
        raise BundleError(f"network tv_resnet18 accepts only in_channels and num_classes (got {', '.join(sorted(args))})")
    model = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1 if pretrained else None)
    if in_channels != 3:
        old = model.conv1
        model.conv1 = torch.nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if pretrained:  # grey input: start from the mean of the RGB filters
            with torch.no_grad():
                model.conv1.weight.copy_(old.weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1))
    if num_classes != model.fc.out_features:
        model.fc = torch.nn.Linear(model.fc.in_features, num_classes)
    return model


NETWORKS = {
    "UNet": _monai("UNet"),
    "BasicUNet": _monai("BasicUNet"),
    "DynUNet": _monai("DynUNet"),
    "SegResNet": _monai("SegResNet"),
    "DenseNet121": _monai("DenseNet121"),
    "EfficientNetBN": _monai("EfficientNetBN"),
    "resnet10": _monai_resnet(10),  # small 3-D crop classifiers (cervical-ct/fracture)
    "resnet18": _monai_resnet(18),
    "resnet34": _monai_resnet(34),
    "tv_resnet18": _tv_resnet18,
}


def build_network(name, /, **args):
    """Build the allow-listed network ``name`` with JSON-able keyword ``args`` (random weights)."""
    return _build(name, args, pretrained=False)


def build_pretrained_network(name, /, **args):
    """As build_network, starting from published weights (tv_resnet18: ImageNet); for training only."""
    return _build(name, args, pretrained=True)


def _build(name, args, pretrained):
    if name not in NETWORKS:
        raise BundleError(f"unknown network {name!r}; allowed networks: {', '.join(NETWORKS)}")
    # Weights come from the bundle; arguments that fetch others would download at load time.
    if "pretrained" in args or "weights" in args:
        raise BundleError(f"network {name} arguments must not ask for pretrained weights (the bundle holds the weights)")
    try:
        json.dumps(args, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise BundleError(f"network {name} arguments are not plain JSON values: {error}") from None
    try:
        return NETWORKS[name](args, pretrained)
    except BundleError:
        raise
    except (TypeError, ValueError, AssertionError, KeyError, IndexError) as error:
        reason = " ".join(str(error).split())[:200]
        raise BundleError(f"network {name} cannot be built from arguments {json.dumps(args)}: {reason}") from None
