"""Grad-CAM heat maps for any SpineAI network, and helpers to show them.

``grad_cam`` works on 2-D classifiers (torchvision ResNet18, MONAI DenseNet121 /
ResNet / EfficientNet, a small CNN), 2.5-D ones (slices as channels) and 3-D ones:
it hooks one layer (by default the last layer whose output still has a spatial
grid, found by one forward pass), weights its activations by the spatially
averaged gradient of the chosen class score (Selvaraju et al., 2017), keeps the
positive part, resizes it to the input's grid and scales it to 0..1.

Own hooks rather than ``monai.visualize.GradCAM``: MONAI's hooks stay on the model
for good and switch in-place ReLUs off; here they are removed after every call, so
the same loaded bundle keeps serving plain inference at full speed.

``heatmap_volume`` puts a map on a reference geometry (a float VolumeImage, shown as
a foreground layer by ``scene.overlays.add_heatmap_overlay``); colouring and blending
for pictures live in ``colourmaps``.
torch is imported only by the functions that need it.

``class_maps`` is what the workflows call: for a network with global average pooling and
a linear head (the ResNet classifiers and graders: ultrasound classifier, lumbar severity,
cervical fracture) it computes class activation maps from the feature maps the ONNX graph
exports and the head's weights (SpineAILib.models.engine.class_activation_maps): no
gradients and no torch, and the same maps ``grad_cam`` gives on that layer (Grad-CAM's
channel weights there are the head's weights divided by the number of positions; the
0..1 scaling removes that factor; Testing/models/test_engine_onnx.py checks it). Any other
network (the UNets) falls back to ``grad_cam``, which needs torch.
"""

import weakref

import numpy as np

from SpineAILib.colourmaps import normalise
from SpineAILib.images import VolumeImage

# model -> {input dimensionality: target layer name}, so the search pass runs once per model.
_TARGET_CACHE = weakref.WeakKeyDictionary()


# -- class activation maps, Grad-CAM where they do not hold ----------------------------


class GradCamUnavailable(ImportError):
    """A heat map needs Grad-CAM (no linear head for CAM) and torch is not installed: the run goes
    on without that map; ``str(error)`` is the one-line warning."""


def class_maps(bundle, x, classes):
    """Heat maps (len(classes), B, *spatial), 0..1, of ``classes`` for the batch ``x``.

    ``bundle``: an EngineBundle (SpineAILib.models.engine.load_model). CAM when its graph
    exports feature maps and it names a linear head; else Grad-CAM on its torch network
    (ImportError without torch: the caller goes on without the map and says so).
    """
    from SpineAILib.models.engine import class_activation_maps

    x = np.asarray(x, dtype=np.float32)
    head = getattr(bundle, "head", None)
    if head is not None and head() is not None:
        return class_activation_maps(bundle, x, classes)
    # a torch LoadedBundle (trainers, benchmarks) or an EngineBundle without a linear head: Grad-CAM
    try:
        model = bundle.torch_model if hasattr(bundle, "torch_model") else getattr(bundle, "model", bundle)
        maps = np.asarray(grad_cam(model, x, list(classes)))
    except ImportError as error:
        name = (getattr(bundle, "metadata", None) or {}).get("bundle_id", "this model")
        raise GradCamUnavailable(f"heat map skipped: {name} has no linear head for class activation maps, and its "
                                 f"Grad-CAM needs PyTorch ({error}; pip install spineai[train])") from None
    return maps.reshape(len(classes), x.shape[0], *x.shape[2:])


# -- Grad-CAM -----------------------------------------------------------------------


def _as_batch(input_tensor, model):
    """(B, C, *spatial) float tensor on the model's device; was the batch axis added?"""
    import torch

    x = torch.as_tensor(np.asarray(input_tensor) if not isinstance(input_tensor, torch.Tensor) else input_tensor)
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = x.to(device=device, dtype=dtype)
    if x.ndim < 3:
        raise ValueError(f"grad_cam needs (C, *spatial) or (B, C, *spatial) input, got shape {tuple(x.shape)}")
    added = False
    first = _first_conv(model)
    # (C, H, W) vs (B, C, H, W): decide by the first convolution's dimensionality when there is one.
    spatial_dims = first.weight.ndim - 2 if first is not None else None
    if spatial_dims is not None:
        if x.ndim == spatial_dims + 1:
            x, added = x[None], True
        elif x.ndim != spatial_dims + 2:
            raise ValueError(
                f"input of shape {tuple(x.shape)} does not fit a {spatial_dims}-D network "
                f"(expected (C, *{spatial_dims} spatial) with or without a batch axis)"
            )
    return x, added


def _first_conv(model):
    import torch

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            return module
    return None


def find_target_layer(model, input_tensor):
    """Name of the layer Grad-CAM should hook: the last one (in execution order) whose
    output is a spatial map of the input's dimensionality with more than one position
    (ResNet: ``layer4``; MONAI DenseNet121: ``class_layers.relu``)."""
    import torch

    x, _ = _as_batch(input_tensor, model)
    n_dims = x.ndim
    finished = []  # (name, spatial size) in the order the modules finish their forward pass
    handles = []

    def hook_for(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim == n_dims:
                finished.append((name, int(np.prod(output.shape[2:]))))

        return hook

    for name, module in model.named_modules():
        if name:  # not the model itself
            handles.append(module.register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    if not finished:
        raise ValueError("the model has no layer with a spatial output to explain")
    spatial = [name for name, size in finished if size > 1]
    return spatial[-1] if spatial else finished[-1][0]


def _module(model, name):
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f"the model has no layer named {name!r}")
    return modules[name]


def grad_cam(model, input_tensor, class_index, target_layer=None):
    """Grad-CAM heat map(s) of ``class_index`` for ``input_tensor``, float32 in 0..1.

    ``input_tensor``: (C, *spatial) or (B, C, *spatial), torch tensor or numpy array,
    already preprocessed as the model expects. ``class_index``: an int, or a list of
    ints to get one map per class from a single forward pass. For a classifier the
    score is the class logit; for a network with a spatial output (segmentation) it is
    the sum of that output channel. ``target_layer``: a module name from
    ``model.named_modules()``; None picks it with ``find_target_layer``.

    Returns the map(s) at the input's spatial size: (*spatial) for one input and one
    class; a leading batch axis when B > 1 was given; a leading class axis when a
    list of classes was given (classes first, then batch). Each map is scaled to 0..1
    on its own (all zeros when the class has no positive evidence).
    """
    import torch
    import torch.nn.functional as F

    classes = [int(c) for c in class_index] if isinstance(class_index, (list, tuple, np.ndarray)) else [int(class_index)]
    x, added_batch = _as_batch(input_tensor, model)
    name = target_layer
    if name is None:
        cached = _TARGET_CACHE.setdefault(model, {})
        if x.ndim not in cached:
            cached[x.ndim] = find_target_layer(model, x)
        name = cached[x.ndim]
    layer = _module(model, name)
    captured = {}

    def forward_hook(module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"layer {name!r} does not return a tensor; choose another target_layer")
        captured["activation"] = output
        # Hand the rest of the network a copy: in-place operations after this layer
        # (ReLU(inplace=True)) then cannot overwrite the activation we differentiate.
        return output.clone()

    handle = layer.register_forward_hook(forward_hook)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)  # a graph even when the weights are frozen
            output = model(x)
            if isinstance(output, (tuple, list)):
                output = output[0]
            activation = captured.get("activation")
            if activation is None:
                raise ValueError(f"layer {name!r} was not used in the forward pass")
            n_outputs = output.shape[1]
            maps = []
            for k, c in enumerate(classes):
                if not -n_outputs <= c < n_outputs:
                    raise ValueError(f"class_index {c} is out of range for a model with {n_outputs} outputs")
                score = output[:, c]
                score = score.reshape(score.shape[0], -1).sum(1)  # classifier: logit; segmenter: channel sum
                (gradient,) = torch.autograd.grad(score.sum(), activation, retain_graph=k < len(classes) - 1)
                weights = gradient.flatten(2).mean(2)  # (B, channels): global-average-pooled gradients
                weights = weights.reshape(*weights.shape, *([1] * (activation.ndim - 2)))
                cam = F.relu((weights * activation).sum(1, keepdim=True)).detach()
                maps.append(cam)
    finally:
        handle.remove()
        model.train(was_training)

    spatial = tuple(x.shape[2:])
    result = []
    for cam in maps:
        if tuple(cam.shape[2:]) != spatial:
            mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
            cam = F.interpolate(cam.float(), size=spatial, mode=mode, align_corners=False)
        cam = cam[:, 0].float().cpu().numpy()
        result.append(np.stack([normalise(m) for m in cam]))
    heat = np.stack(result)  # (classes, B, *spatial)
    if added_batch or heat.shape[1] == 1:
        heat = heat[:, 0]
    if not isinstance(class_index, (list, tuple, np.ndarray)):
        heat = heat[0]
    return heat.astype(np.float32)


# -- pictures -------------------------------------------------------------------------


def _resize_3d(heat, shape):
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape == tuple(shape):
        return heat
    from SpineAILib.models.engine import interpolate

    return interpolate(heat, tuple(int(s) for s in shape), align_corners=False)  # = F.interpolate(trilinear)


def _region_slices(region, shape):
    if len(region) != 6:
        raise ValueError(f"region must be (k0, k1, j0, j1, i0, i1), got {region!r}")
    slices = []
    for axis in range(3):
        low, high = int(region[2 * axis]), int(region[2 * axis + 1])
        if not 0 <= low < high <= shape[axis]:
            raise ValueError(f"region {tuple(region)} does not fit inside the volume {tuple(shape)}")
        slices.append(slice(low, high))
    return tuple(slices)


def paste_heatmap(target, heat, region):
    """Put ``heat`` (a crop's map, any size) into ``target`` (K, J, I) over the voxel box
    ``region`` = (k0, k1, j0, j1, i0, i1) (end exclusive), resized to it; where crops overlap
    the larger value wins. Returns ``target`` (changed in place)."""
    box = _region_slices(region, target.shape)
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim == 2:
        heat = heat[None]
    resized = _resize_3d(heat, tuple(s.stop - s.start for s in box))
    np.maximum(target[box], np.clip(np.nan_to_num(resized), 0.0, 1.0), out=target[box])
    return target


def heatmap_volume(heat_3d, reference: VolumeImage, name="Heat map", region=None):
    """A float32 VolumeImage of ``heat_3d`` on the geometry of ``reference``.

    ``heat_3d``: (K, J, I) as ``reference.voxels``; a map of another size covering the
    same field of view (computed on a resampled input) is resized to the reference
    grid (trilinear); a 2-D map is accepted for a single-slice reference. ``region``:
    (k0, k1, j0, j1, i0, i1) when the map covers only that voxel box of the reference
    (a crop classifier, e.g. one vertebra or one disc level); the rest is 0. Values
    are clipped to 0..1.
    """
    heat = np.asarray(heat_3d, dtype=np.float32)
    target = reference.voxels.shape
    if heat.ndim == 2 and (target[0] == 1 or region is not None):
        heat = heat[None]
    if heat.ndim != 3:
        raise ValueError(f"heat map must be 3-D (K, J, I), got shape {heat.shape}")
    if region is not None:
        voxels = paste_heatmap(np.zeros(target, np.float32), heat, region)
    else:
        voxels = np.clip(np.nan_to_num(_resize_3d(heat, target)), 0.0, 1.0).astype(np.float32)
    return VolumeImage(
        voxels=np.ascontiguousarray(voxels),
        ijk_to_ras=reference.ijk_to_ras.copy(),
        modality="",
        description=name,
        source=reference.source,
        metadata={"kind": "heatmap", "range": [0.0, 1.0], "reference": reference.description},
    )
