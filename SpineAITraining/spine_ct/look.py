"""A quick look at a whole-spine phantom case: sagittal and coronal sections that follow the
spine (curved, through the vertebral bodies' centres slice by slice) with the vertebra labels
outlined in their colours (SpineAILib.terminology) and named, the ribs outlined in yellow (left)
and cyan (right); and axial slices through chosen bodies. For eyes, not for tests of geometry.
"""

import numpy as np
from SpineAILib.terminology import color, vertebra_name

# HU -> grey: lung, fat, soft tissue, trabecular bone and cortex all apart (piecewise linear)
GREY_HU = (-1000.0, -150.0, 120.0, 1300.0)
GREY_LEVEL = (0.0, 60.0, 140.0, 255.0)
RIB_COLOURS = {100: (255, 230, 0), 200: (0, 230, 255)}


def _grey(hu):
    return np.interp(hu.astype(np.float32), GREY_HU, GREY_LEVEL).astype(np.uint8)


def _outline(labels):
    """True where a label voxel has a neighbour with another value (2-D)."""
    edge = np.zeros(labels.shape, bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge & (labels > 0)


def _panel(hu, vertebrae, ribs):
    """An RGB panel of one slice (rows superior first) with outlines."""
    rgb = np.repeat(_grey(hu)[..., None], 3, axis=2)
    for value in np.unique(vertebrae[vertebrae > 0]):
        edge = _outline(np.where(vertebrae == value, vertebrae, 0))
        rgb[edge] = [int(255 * c) for c in color(vertebra_name(int(value)))]
    for value in np.unique(ribs[ribs > 0]):
        rgb[_outline(np.where(ribs == value, ribs, 0))] = RIB_COLOURS[100 if value < 200 else 200]
    return rgb


def _spine_path(case):
    """(j, i) per slice K through the vertebral bodies' centres (the truth's, interpolated along z),
    so the sections follow a curved or scoliotic spine through the middle of its bodies."""
    n_k = case.ct.voxels.shape[0]
    centres = [e["body_centre_ras"] for e in case.truth["levels"].values()]
    inverse = np.linalg.inv(case.affine)
    ijk = np.array([(inverse @ np.append(c, 1.0))[:3] for c in centres])
    order = np.argsort(ijk[:, 2])
    k = np.arange(n_k)
    j = np.interp(k, ijk[order, 2], ijk[order, 1])
    i = np.interp(k, ijk[order, 2], ijk[order, 0])
    j = np.clip(np.rint(j), 0, case.ct.voxels.shape[1] - 1).astype(int)
    i = np.clip(np.rint(i), 0, case.ct.voxels.shape[2] - 1).astype(int)
    return j, i


def _sections(case):
    """(sagittal, coronal) (hu, vertebrae, ribs) curved sections through the bodies."""
    arrays = (case.ct.voxels, case.vertebrae.voxels, case.ribs.voxels)
    j, i = _spine_path(case)
    k = np.arange(arrays[0].shape[0])
    sag = tuple(a[k, :, i] for a in arrays)
    cor = tuple(a[k, j, :] for a in arrays)
    return sag, cor


def axial_look(case, path, levels, size=300):
    """Save a PNG of axial slices through the body centres of ``levels`` (names in view), side by side."""
    from PIL import Image

    matrix = case.affine
    tiles = []
    for name in levels:
        entry = case.truth["levels"].get(name)
        if not entry or not entry["in_view"]:
            continue
        k = int(round((entry["body_centre_ras"][2] - matrix[2, 3]) / matrix[2, 2]))
        k = min(max(k, 0), case.ct.voxels.shape[0] - 1)
        rgb = _panel(case.ct.voxels[k], case.vertebrae.voxels[k], case.ribs.voxels[k])
        body = np.argwhere(case.ct.voxels[k] > -500)
        if len(body):  # crop to the body (and a margin), square
            lo, hi = body.min(axis=0), body.max(axis=0) + 1
            half = int(max(hi - lo) * 0.55) + 2
            c = (lo + hi) // 2
            rgb = np.pad(rgb, ((half, half), (half, half), (0, 0)))[c[0]:c[0] + 2 * half, c[1]:c[1] + 2 * half]
        tiles.append(Image.fromarray(rgb).resize((size, size), Image.NEAREST))
    sheet = Image.new("RGB", (max(1, len(tiles)) * (size + 6), size), (40, 40, 40))
    for n, tile in enumerate(tiles):
        sheet.paste(tile, (n * (size + 6), 0))
    sheet.save(path)
    return path


def quick_look(case, path, height=700):
    """Save a PNG: mid-sagittal (anterior to the left, the axial grid's J running backwards) and
    coronal (patient's right on the left) slices, superior up, at the true aspect ratio, vertebra
    names written beside their bodies."""
    from PIL import Image, ImageDraw

    sp_i, sp_j, sp_k = case.ct.spacing
    panels = []
    for (hu, vert, rib), sp_row in zip(_sections(case), (sp_j, sp_i)):
        rgb = _panel(hu[::-1], vert[::-1], rib[::-1])  # K runs upwards: flip so superior is at the top
        scale = height / (rgb.shape[0] * sp_k)
        size = (max(1, int(round(rgb.shape[1] * sp_row * scale))), height)
        image = Image.fromarray(rgb).resize(size, Image.NEAREST)
        draw = ImageDraw.Draw(image)
        for value in np.unique(vert[vert > 0]):
            rows, cols = np.nonzero(vert[::-1] == value)
            y, x = float(rows.mean()) * height / rgb.shape[0], float(cols.max()) * size[0] / rgb.shape[1]
            draw.text((min(x + 4, size[0] - 24), y - 5), vertebra_name(int(value)), fill=(255, 255, 255))
        panels.append(image)
    width = sum(p.size[0] for p in panels) + 8 * (len(panels) - 1)
    sheet = Image.new("RGB", (width, height), (40, 40, 40))
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.size[0] + 8
    sheet.save(path)
    return path
