"""Grad-CAM (explain.py) and heat-map overlays (scene/overlays.py)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from SpineAILib.colourmaps import heatmap_to_rgb, overlay_heatmap  # noqa: E402
from SpineAILib.explain import find_target_layer, grad_cam, heatmap_volume  # noqa: E402
from SpineAILib.images import VolumeImage  # noqa: E402

SIZE, SQUARE = 32, 8


def _corner_batch(n, rng):
    """Noise images, each with a dim distractor square in the bottom half; class 1 also has a
    bright square in the top-right corner (a transposed or flipped map would land elsewhere)."""
    x = rng.normal(0.2, 0.1, (n, 1, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i in range(n):
        r, c = rng.integers(SIZE // 2, SIZE - SQUARE), rng.integers(0, SIZE - SQUARE)
        x[i, 0, r : r + SQUARE, c : c + SQUARE] += 0.4
        if y[i]:
            jr, jc = rng.integers(0, 3, 2)  # a little jitter, towards the image centre
            x[i, 0, jr : jr + SQUARE, SIZE - SQUARE - jc : SIZE - jc] += 1.0
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))


def _tiny_cnn():
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 1),
    )  # fmt: skip


@pytest.fixture(scope="module")
def corner_model():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = _tiny_cnn()
    optimiser = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(30):
        x, y = _corner_batch(32, rng)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def test_corner_detector_heat_peaks_in_its_corner(corner_model):
    x, y = _corner_batch(64, np.random.default_rng(123))
    with torch.no_grad():
        accuracy = ((corner_model(x)[:, 0] > 0).float() == y).float().mean().item()
    assert accuracy > 0.9, f"the tiny CNN did not learn the task (accuracy {accuracy:.2f})"
    positives = x[y == 1][:8]
    heat = grad_cam(corner_model, positives, 0)
    assert heat.shape == (len(positives), SIZE, SIZE)
    half = SIZE // 2
    for h in heat:
        assert h.max() == pytest.approx(1.0), "an all-zero map explains nothing"
        r, c = np.unravel_index(np.argmax(h), h.shape)
        assert r < half and c >= half, f"heat peak at {(r, c)}, not in the top-right corner"
        corner = h[: SQUARE + 2, -(SQUARE + 2) :].mean()
        distractor_half = h[half:, :].mean()
        assert corner > 3 * distractor_half


def test_heat_map_shape_range_and_hooks_removed(corner_model):
    x, _ = _corner_batch(2, np.random.default_rng(5))
    single = grad_cam(corner_model, x[0], 0)  # (C, H, W): no batch axis in, none out
    assert single.shape == (SIZE, SIZE) and single.dtype == np.float32
    assert 0.0 <= single.min() and single.max() <= 1.0
    assert single.max() in (0.0, 1.0)
    numpy_in = grad_cam(corner_model, x[0].numpy(), 0, target_layer="3")  # numpy input, explicit layer
    assert numpy_in.shape == (SIZE, SIZE)
    # The model is left as it was: no hooks, still trains / infers normally.
    assert all(not m._forward_hooks and not m._backward_hooks for m in corner_model.modules())
    with pytest.raises(ValueError):
        grad_cam(corner_model, x, 3)  # one output only
    with pytest.raises(ValueError):
        grad_cam(corner_model, x, 0, target_layer="no.such.layer")


def test_target_layer_found_for_library_networks():
    from SpineAILib.models import build_network

    resnet = build_network("tv_resnet18", in_channels=1, num_classes=3).eval()
    assert find_target_layer(resnet, torch.zeros(1, 1, 64, 64)) == "layer4"
    heat = grad_cam(resnet, torch.rand(1, 64, 64), [0, 1, 2])  # one map per class, one forward pass
    assert heat.shape == (3, 64, 64) and heat.min() >= 0 and heat.max() <= 1
    # 3-D classifier: a volume in, a volume-sized map out.
    resnet3d = build_network("resnet18", spatial_dims=3, n_input_channels=1, num_classes=2).eval()
    volume = grad_cam(resnet3d, torch.rand(1, 16, 24, 24), 1)
    assert volume.shape == (16, 24, 24)


def test_colour_and_overlay_pictures():
    heat = np.linspace(0, 1, 40 * 60, dtype=np.float32).reshape(40, 60)
    rgb = heatmap_to_rgb(heat, "jet")
    assert rgb.shape == (40, 60, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 2] > 100 and rgb[0, 0, 0] < 50  # jet: cold is blue
    assert rgb[-1, -1, 0] > 100 and rgb[-1, -1, 2] < 50  # hot is red
    assert heatmap_to_rgb(np.zeros((3, 4, 5)), "inferno").shape == (3, 4, 5, 3)
    grey = np.full((80, 120), 100, np.uint8)
    out = overlay_heatmap(grey, heat, alpha=0.5)  # heat is resized to the frame
    assert out.shape == (80, 120, 3) and out.dtype == np.uint8
    untouched = overlay_heatmap(grey, heat, alpha=0.5, min_heat=2.0)
    assert np.all(untouched == 100)
    colour = overlay_heatmap(np.zeros((40, 60, 3), np.uint8), heat, alpha=1.0)
    assert np.array_equal(colour, rgb)
    with pytest.raises(ValueError):
        heatmap_to_rgb(heat, "no-such-map")


def test_heatmap_volume_on_reference_geometry():
    matrix = np.array([[0, 0, -0.8, 10], [-0.5, 0, 0, 20], [0, -0.5, 0, 30], [0, 0, 0, 1]], float)
    reference = VolumeImage(voxels=np.zeros((12, 20, 16), np.int16), ijk_to_ras=matrix, description="MR")
    heat = heatmap_volume(np.random.default_rng(0).random((6, 10, 8)), reference)
    assert heat.voxels.shape == reference.voxels.shape and heat.voxels.dtype == np.float32
    assert np.array_equal(heat.ijk_to_ras, matrix) and not heat.is_labelmap
    assert 0 <= heat.voxels.min() and heat.voxels.max() <= 1
    frame = VolumeImage(voxels=np.zeros((1, 20, 16), np.uint8), ijk_to_ras=np.eye(4))
    assert heatmap_volume(np.ones((20, 16)), frame).voxels.shape == (1, 20, 16)
    # A crop classifier's map goes back into its box of the volume, zero elsewhere.
    crop = heatmap_volume(np.ones((3, 5, 5)), reference, region=(2, 8, 4, 14, 0, 10))
    assert crop.voxels[2:8, 4:14, 0:10].min() == 1.0 and crop.voxels.sum() == 6 * 10 * 10
    with pytest.raises(ValueError):
        heatmap_volume(np.ones((3, 5, 5)), reference, region=(0, 20, 0, 5, 0, 5))


def test_heatmap_overlay_in_scene_saves_and_reloads(tmp_path):
    pytest.importorskip("slicer")
    import slicer

    from SpineAILib.scene import SceneContext, add_volume, load_scene_mrb, save_scene_mrb
    from SpineAILib.scene.overlays import add_heatmap_overlay, set_heatmap_visible

    ctx = SceneContext.headless()
    composite = ctx.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")  # what a slice view has
    reference = VolumeImage(voxels=np.random.default_rng(1).random((4, 10, 12)).astype(np.float32),
                            ijk_to_ras=np.diag([0.5, 0.5, 2.0, 1.0]))
    background = add_volume(ctx, reference, name="Image")
    heat = heatmap_volume(np.random.default_rng(2).random((4, 10, 12)), reference)
    node = add_heatmap_overlay(ctx, heat, background, name="Heat spinal_cord", colormap="Inferno", opacity=0.4)
    assert composite.GetForegroundVolumeID() == node.GetID()
    assert composite.GetBackgroundVolumeID() == background.GetID()
    assert composite.GetForegroundOpacity() == pytest.approx(0.4)
    display = node.GetDisplayNode()
    assert display.GetColorNode().GetNumberOfColors() >= 256 and display.GetApplyThreshold()

    set_heatmap_visible(ctx, node, False)
    assert composite.GetForegroundVolumeID() is None
    set_heatmap_visible(ctx, node, True)
    assert composite.GetForegroundVolumeID() == node.GetID()

    path = save_scene_mrb(ctx, tmp_path / "heat.mrb")
    loaded = SceneContext.headless()
    load_scene_mrb(loaded, path)
    again = loaded.scene.GetFirstNodeByName("Heat spinal_cord")
    assert np.allclose(slicer.util.arrayFromVolume(again), heat.voxels)
    assert again.GetDisplayNode().GetColorNode().GetNumberOfColors() >= 256
