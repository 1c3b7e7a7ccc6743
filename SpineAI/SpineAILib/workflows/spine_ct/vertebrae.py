"""The column's vertebrae as labels: one slab per level between the disc planes, bone in it around the column.

On the canonical coarse grid ([inferior, posterior, left]). Each disc found along the column
(column.py) is a plane through its middle at the tilt it was measured with; a voxel's level is
the number of disc planes above it. A vertebra is the bone in its slab within reach of the
column: cortical density anywhere (arch and processes around and behind the canal), and in
the body box in front of the canal also trabecular density, the shell closed over small gaps
and its darker (osteoporotic) middle filled slice by slice. The sacrum's first segment (S1) is
the slab below the lumbosacral disc, SACRUM_DEPTH_MM deep and SACRUM_SIDE_MM to either side.
"""

import numpy as np

from SpineAILib.workflows.spine_ct.column import BODY_STRIP_MM, filled_track

BONE_HU = 150.0  # cortical bone, and dense trabecular bone
TRABECULAR_HU = 100.0  # inside the body box, an osteoporotic body's middle still counts as bone
FRONT_MARGIN_MM = 8.0  # the body box reaches this far in front of the measured body depth
MAX_FRONT_MM = 60.0
BACK_MM = 65.0  # the spinous process tip, behind the canal centre
SIDE_MM = 45.0  # transverse processes (lumbar ones are the longest)
BODY_SIDE_MM = 30.0
CANAL_CLEAR_MM = 5.0  # the body box stops this far in front of the canal centre (the canal is never body)
SACRUM_DEPTH_MM = 40.0  # S1's segment of the sacrum, below the lumbosacral disc
SACRUM_SIDE_MM = 35.0  # ... and its alae, this far to either side of the canal (the iliac bones lie beyond)
NEAR_CANAL_MM = 25.0  # a piece of bone belongs to the vertebra if it comes this close to the canal centre
MIN_VOXELS = 8
SEED_MARGIN_MM = 6.0  # a level's seeds lie this far from both its disc planes ...
SEED_FRONT_MM, SEED_SIDE_MM = (8.0, 30.0), 12.0  # ... in the middle of the body, in front of the canal
GROW_STEPS = 25  # voxels a level's bone may grow from its seeds (75 mm on a 3 mm grid)


def level_map(shape, spacing, column):
    """(Z, Y, X) int: how many disc planes lie above each voxel (0 above the first disc)."""
    nz, ny, _ = shape
    out = np.zeros((nz, ny), np.int16)
    k = np.arange(nz)[:, None]
    y = np.arange(ny)[None, :]
    mid = 0.5 * sum(BODY_STRIP_MM) / spacing[1]
    canal = filled_track(column.track)
    for disc, tilt in zip(column.discs, column.tilts):
        y_canal = canal[int(round(disc)), 0]
        d = (y_canal - y) - mid  # voxels in front of the strip's middle
        plane = disc + np.tan(tilt) * d * spacing[1] / spacing[0]
        out += (k > plane).astype(np.int16)
    return np.broadcast_to(out[:, :, None], shape)


def bone_mask(hu, spacing, canal, depth):
    """Bone near the column (see the module docstring), slice by slice. ``canal``: (Z, 2) the canal centre's
    (posterior, left) index in each slice of ``hu`` (NaN: none); ``depth``: (Z,) the body's depth (mm, NaN: unknown)."""
    import cv2

    nz, ny, nx = hu.shape
    mask = np.zeros(hu.shape, bool)
    if not np.isfinite(canal[:, 0]).any():
        return mask
    depth_mm = float(np.nanmedian(depth)) if np.isfinite(depth).any() else 35.0
    closing = np.ones((3, 3), np.uint8)
    for k in range(nz):
        y, x = canal[k]
        if not np.isfinite(y):
            continue
        local = depth[k] if np.isfinite(depth[k]) else depth_mm
        front = min(MAX_FRONT_MM, local + FRONT_MARGIN_MM + BODY_STRIP_MM[0])
        y0, y1 = int(max(0, np.floor(y - front / spacing[1]))), int(min(ny, np.ceil(y + BACK_MM / spacing[1]) + 1))
        x0, x1 = int(max(0, np.floor(x - SIDE_MM / spacing[2]))), int(min(nx, np.ceil(x + SIDE_MM / spacing[2]) + 1))
        if y1 <= y0 or x1 <= x0:
            continue
        window = hu[k, y0:y1, x0:x1]
        bone = window > BONE_HU
        ys = np.arange(y0, y1)[:, None]
        xs = np.arange(x0, x1)[None, :]
        body_box = (ys < y - CANAL_CLEAR_MM / spacing[1]) & (np.abs(xs - x) * spacing[2] <= BODY_SIDE_MM)
        bone |= body_box & (window > TRABECULAR_HU)
        shell = cv2.morphologyEx((bone & body_box).astype(np.uint8), cv2.MORPH_CLOSE, closing)
        flood = np.pad(shell, 1)
        cv2.floodFill(flood, None, (0, 0), 1)
        holes = flood[1:-1, 1:-1] == 0
        mask[k, y0:y1, x0:x1] = bone | ((holes | (shell > 0)) & body_box)
    return mask


def canal_offsets_mm(shape, canal, spacing):
    """(posterior, left) offsets in mm of every voxel of a (Z, Y, X) grid from its slice's canal centre
    (``canal``: (Z, 2) indices): negative posterior offsets lie in front of the canal."""
    yy = (np.arange(shape[1])[None, :, None] - canal[:, 0][:, None, None]) * spacing[1]
    xx = (np.arange(shape[2])[None, None, :] - canal[:, 1][:, None, None]) * spacing[2]
    return yy, xx


def arch_above_value(first, last):
    """The coarse label value label_levels gives the arch of the vertebra above the image: one past the
    values 1..n of the levels first..last."""
    return last - first + 2


def label_levels(hu, spacing, column, levels, first, last, sacrum_disc=None, arch_above=None):
    """labels (Z, Y, X) uint8 with values 1..n for the levels first..last (level indices, top to bottom);
    ``levels``: level_map of the grid for ``column``.
    With ``sacrum_disc`` (the lumbosacral disc's index), the level below it is S1: cut SACRUM_DEPTH_MM
    under that disc and SACRUM_SIDE_MM to either side of the canal. With ``arch_above``
    (arch_above.ArchAbove), the arch of the vertebra above the image is value n + 1, grown from its
    seeds within its zone in competition with the top level."""
    from SpineAILib.morphology import connected_components

    canal = filled_track(column.track)
    bone = bone_mask(hu, spacing, canal, column.depth)
    if sacrum_disc is not None:  # S1: its segment of the sacrum, not the iliac bones joined to it
        floor = int(np.ceil(column.discs[sacrum_disc] + SACRUM_DEPTH_MM / spacing[0]))
        bone[floor:] = False
        x = np.arange(hu.shape[2])[None, None, :]
        wide = np.abs(x - canal[:, 1][:, None, None]) * spacing[2] > SACRUM_SIDE_MM
        bone &= ~((levels == sacrum_disc + 1) & wide)
    yy, xx = canal_offsets_mm(hu.shape, canal, spacing)
    near = np.hypot(yy, xx) <= NEAR_CANAL_MM
    # seeds: bone in the middle of each level's slab (SEED_MARGIN_MM clear of both disc planes)
    margin = max(1, int(round(SEED_MARGIN_MM / spacing[0])))
    seeds = np.zeros(hu.shape, np.uint8)
    middle = (-yy >= SEED_FRONT_MM[0]) & (-yy <= SEED_FRONT_MM[1]) & (np.abs(xx) <= SEED_SIDE_MM)  # the body's middle
    s1_level = None if sacrum_disc is None else sacrum_disc + 1
    for value, level in enumerate(range(first, last + 1), start=1):
        inside = levels == level
        # S1 is wedged under L5: its seeds stay deeper, unless its level is too short for that (a disc found in
        # the sacrum below it): a level without seeds is taken by its neighbour's growth (L5 took the sacrum)
        for m in ((2 * margin, margin, 1) if level == s1_level else (margin,)):
            core = inside & _shift_z(inside, m) & _shift_z(inside, -m) & bone & middle
            if core.any():
                break
        seeds[core] = value
    arch_value = arch_above_value(first, last)
    confine = {}
    if arch_above is not None:
        seeds[arch_above.seeds & bone] = arch_value
        confine[arch_value] = arch_above.zone
    # grow them through the bone: a voxel joins the level whose bone reaches it first, so a body ends
    # at its own endplates (the disc between is not bone) wherever the measured disc plane lies
    grown = grow_labels(seeds, bone, GROW_STEPS, confine)
    out = np.zeros(hu.shape, np.uint8)
    for value in range(1, arch_value + 1):
        piece = grown == value
        if not piece.any():
            continue
        components, sizes = connected_components(piece)
        keep = np.zeros(len(sizes) + 1, bool)
        keep[np.unique(components[near & piece])] = True
        keep[0] = False
        keep[1:][sizes < MIN_VOXELS] = False
        out[keep[components]] = value
    return out


def _shift_z(mask, shift):
    """``mask`` moved ``shift`` slices along axis 0; the slices moved in repeat the edge slice (no plane
    lies beyond the image, so a level cut by the image keeps its seeds up to the edge)."""
    out = np.empty_like(mask)
    if shift > 0:
        out[shift:] = mask[:-shift]
        out[:shift] = mask[:1]
    else:
        out[:shift] = mask[-shift:]
        out[shift:] = mask[-1:]
    return out


def grow_labels(seeds, allowed, steps, confine=None):
    """Seeded region growing: each step, unlabelled ``allowed`` voxels touching (6-neighbourhood) a label
    take it (the larger label where two meet). ``confine``: label value -> (Z, Y, X) bool, the only
    voxels that label may take."""
    confine = confine or {}
    out = seeds.copy()
    for _ in range(steps):
        grown = out.copy()
        for axis in range(3):
            for shift in (1, -1):
                moved = np.roll(out, shift, axis=axis)
                edge = [slice(None)] * 3
                edge[axis] = slice(0, 1) if shift == 1 else slice(-1, None)
                moved[tuple(edge)] = 0
                for value, zone in confine.items():
                    moved[(moved == value) & ~zone] = 0
                np.maximum(grown, moved, out=grown)
        fresh = (out == 0) & allowed & (grown > 0)
        if not fresh.any():
            break
        out[fresh] = grown[fresh]
    return out
