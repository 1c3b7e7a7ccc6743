"""Offscreen PNGs of slice and 3-D views: not blank, overlay visible, anatomy the right way up."""

import nibabel as nib
import numpy as np
import pytest
from conftest import require
from PIL import Image

from SpineAILib.images import Cine, VolumeImage
from SpineAILib.render import render_cine_frame, render_views
from SpineAILib.scene import SceneContext, add_cine, add_points, add_segmentation_from_labelmap, add_volume

SPACING = (1.0, 1.0, 2.0)


@pytest.fixture(scope="module")
def phantom():
    """Intensity rising towards Right, Anterior and Superior (weights 1, 2, 3), plus a labelled block."""
    k, j, i = np.meshgrid(np.arange(24), np.arange(40), np.arange(40), indexing="ij")
    voxels = (30 + i + 2 * j + 3 * k).astype(np.int16)  # i -> R, j -> A, k -> S
    ijk_to_ras = np.diag([*SPACING, 1.0])
    ijk_to_ras[:3, 3] = (-20.0, -20.0, -24.0)
    labels = np.zeros(voxels.shape, np.uint8)
    labels[8:16, 12:28, 12:28] = 22  # L3, around the centre
    return (
        VolumeImage(voxels, ijk_to_ras, modality="MR"),
        VolumeImage(labels, ijk_to_ras, is_labelmap=True),
    )


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int32)


def coloured(rgb):
    """Pixels whose channels differ clearly: overlay colour, never grey anatomy."""
    return (rgb.max(axis=2) - rgb.min(axis=2)) > 40


def halves_brighter(rgb, axis):
    """Mean of the non-black pixels: (first half, second half) along ``axis`` (0 rows, 1 columns)."""
    grey = rgb.mean(axis=2)
    shown = grey > 5
    index = np.indices(grey.shape)[axis]
    middle = (index[shown].min() + index[shown].max()) / 2
    return grey[shown & (index < middle)].mean(), grey[shown & (index > middle)].mean()


def test_slice_views_orientation_overlay_and_3d(phantom, tmp_path):
    volume, labels = phantom
    ctx = SceneContext.headless()
    volume_node = add_volume(ctx, volume, name="phantom")
    plain = render_views(ctx, volume_node, tmp_path, views=("axial", "sagittal", "coronal"), prefix="plain")
    assert set(plain) == {"axial", "sagittal", "coronal"}

    segmentation = add_segmentation_from_labelmap(ctx, labels, reference_node=volume_node)
    nodes_before = ctx.scene.GetNumberOfNodes()
    shown = render_views(ctx, volume_node, tmp_path, segmentation_node=segmentation, size=(256, 192))
    assert ctx.scene.GetNumberOfNodes() == nodes_before  # the views took their nodes away again
    assert set(shown) == {"axial", "sagittal", "coronal", "3d"}
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]

    # Other segmentations are left out of a picture that does not ask for them.
    hidden = render_views(ctx, volume_node, tmp_path, views=("axial",), size=(128, 128), prefix="hidden")
    assert not coloured(pixels(hidden["axial"])).any()
    assert segmentation.GetDisplayNode().GetVisibility()  # and shown again afterwards

    for name, path in plain.items():
        rgb = pixels(path)
        assert rgb.shape == (512, 512, 3) and rgb.std() > 10, name
        assert not coloured(rgb).any(), name  # grey volume only
        with_overlay = pixels(shown[name])
        assert with_overlay.shape == (192, 256, 3)
        assert coloured(with_overlay).mean() > 0.02, name  # the L3 block is drawn in colour

    # Radiological conventions: anterior up in axial, superior up in sagittal and coronal,
    # patient right on screen left in axial and coronal.
    axial, sagittal, coronal = (pixels(plain[v]) for v in ("axial", "sagittal", "coronal"))
    top, bottom = halves_brighter(axial, 0)
    assert top > bottom  # anterior at the top
    left, right = halves_brighter(axial, 1)
    assert left > right  # patient right on the left
    top, bottom = halves_brighter(sagittal, 0)
    assert top > bottom  # superior at the top
    top, bottom = halves_brighter(coronal, 0)
    assert top > bottom
    left, right = halves_brighter(coronal, 1)
    assert left > right

    view_3d = pixels(shown["3d"])
    assert view_3d.std() > 5 and coloured(view_3d).mean() > 0.01  # the surface, in its colour


def test_overlay_follows_center_ras(phantom, tmp_path):
    volume, labels = phantom
    ctx = SceneContext.headless()
    volume_node = add_volume(ctx, volume)
    segmentation = add_segmentation_from_labelmap(ctx, labels, reference_node=volume_node, closed_surface=False)
    # An axial slice far above the labelled block shows no overlay.
    above = render_views(
        ctx, volume_node, tmp_path, segmentation_node=segmentation, views=("axial",), size=(128, 128),
        center_ras=(0.0, 0.0, 20.0), prefix="above",
    )  # fmt: skip
    assert not coloured(pixels(above["axial"])).any()
    # ... and one through the block's centre shows it, in colour, around the middle of the picture
    kji = np.argwhere(np.asarray(labels.voxels) > 0).mean(axis=0)
    centre = (labels.ijk_to_ras @ [kji[2], kji[1], kji[0], 1.0])[:3]
    through = render_views(
        ctx, volume_node, tmp_path, segmentation_node=segmentation, views=("axial",), size=(128, 128),
        center_ras=tuple(float(c) for c in centre), prefix="through",
    )  # fmt: skip
    drawn = coloured(pixels(through["axial"]))
    assert drawn.mean() > 0.005, drawn.mean()
    rows, cols = np.nonzero(drawn)
    assert abs(rows.mean() - 64) < 40 and abs(cols.mean() - 64) < 40, (rows.mean(), cols.mean())


def test_cine_frame_fills_the_picture_upright(tmp_path):
    frames = np.full((4, 60, 80), 40, np.uint8)
    for i in range(4):
        frames[i, 4:14, 4 + 15 * i : 14 + 15 * i] = 250  # bright box near the top, moving right
    ctx = SceneContext.headless()
    _, browser, _ = add_cine(ctx, Cine(frames, np.arange(4) * 50.0, (0.5, 0.5)))
    first = pixels(render_cine_frame(ctx, browser, 0, tmp_path / "frame0.png"))
    last = pixels(render_cine_frame(ctx, browser, 3, tmp_path / "frame3.png"))
    assert first.shape == (384, 512, 3)  # the frame's aspect (rows 60 x cols 80)
    for rgb in (first, last):
        assert (rgb[[0, -1], :, 0] >= 35).all() and (rgb[:, [0, -1], 0] >= 35).all()  # no black border
        bright = np.argwhere(rgb[..., 0] > 200)
        assert bright[:, 0].mean() < rgb.shape[0] / 4  # the box stays near the top: not upside down
    assert np.argwhere(last[..., 0] > 200)[:, 1].mean() > np.argwhere(first[..., 0] > 200)[:, 1].mean() + 100


def test_colour_cine_frame(tmp_path):
    frames = np.zeros((2, 20, 20, 3), np.uint8)
    frames[..., 0] = 200  # red frames
    ctx = SceneContext.headless()
    _, browser, _ = add_cine(ctx, Cine(frames, [0.0, 40.0]))
    rgb = pixels(render_cine_frame(ctx, browser, 1, tmp_path / "red.png", max_size=64))
    assert rgb.shape == (64, 64, 3)
    assert abs(rgb[..., 0].mean() - 200) < 3 and rgb[..., 1].max() < 10 and rgb[..., 2].max() < 10


@pytest.mark.realdata
def test_real_lumbar_mri_views(shared_data, tmp_path):
    image = nib.load(require(shared_data / "mri_lumbar" / "vb3_01.nii.gz"))
    labels = nib.load(require(shared_data / "mri_lumbar" / "vb3_01_labels.nii.gz"))
    volume = VolumeImage(np.asarray(image.dataobj).transpose(2, 1, 0), image.affine, modality="MR")
    labelmap = VolumeImage(np.asarray(labels.dataobj).transpose(2, 1, 0), labels.affine, is_labelmap=True)
    ctx = SceneContext.headless()
    volume_node = add_volume(ctx, volume, name="vb3_01")
    segmentation = add_segmentation_from_labelmap(ctx, labelmap, reference_node=volume_node)
    centre = volume.ras_of_ijk(np.argwhere(labelmap.voxels == 22).mean(axis=0)[::-1])  # L3 centre
    discs = add_points(ctx, "discs", [("L2/L3", centre)])
    shown = render_views(ctx, volume_node, tmp_path, segmentation_node=segmentation, markups_nodes=[discs])
    for name, path in shown.items():
        rgb = pixels(path)
        assert rgb.std() > 20, name
        assert coloured(rgb).mean() > 0.005, name
    # Sagittal: L1 (first label, red) above L5 (violet) on screen: superior is up.
    sagittal = pixels(shown["sagittal"])
    hue = np.asarray(Image.open(shown["sagittal"]).convert("HSV"))[..., 0] / 255.0
    red = coloured(sagittal) & ((hue < 0.03) | (hue > 0.97))  # L1 (0.90, 0.30, 0.30)
    violet = coloured(sagittal) & (hue > 0.70) & (hue < 0.78)  # L5 (0.62, 0.38, 0.90)
    assert red.sum() > 50 and violet.sum() > 50
    assert np.argwhere(red)[:, 0].mean() < np.argwhere(violet)[:, 0].mean()
