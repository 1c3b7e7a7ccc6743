"""The ribs' anchor: which levels of the column carry a rib, and the last one that does (T12).

Radiologists check a count from the sacrum against the last rib-bearing vertebra. A rib here
is thin, dense bone outside the column that starts beside it (its head, at the body's side
near the canal) and runs far out to the side; measured on the canonical coarse grid
([inferior, posterior, left], ~3 mm):

1. bone (RIB_HU) outside the column's own core (CORE_MM to either side of the canal), minus
   whatever survives a one-voxel opening (thick bone: vertebral bodies, sacrum, ilium, and
   the enhanced kidneys): ribs are one or two voxels thick;
2. its 3-D pieces that reach REACH_MM to the side (or the edge of the image, on a field
   reconstructed tight around the spine) and are as dense as cortical bone (MIN_MEAN_HU);
3. their heads: the parts within HEAD_BAND_MM outside the core, beside the canal, each taken
   as one head; its level is the level (between disc planes) of the head's centre.

The last rib: the lowest level with a rib whose level above also carries one (or, at the top
of the image, with ribs on both sides) and whose two levels below carry none (L1 and L2 in view, so the ribs really end there; L1 as tall as a lumbar
vertebra, not a cervical one: the mandible or a clavicle beside the neck is no rib cage), above the sacrum
when it is found. Anything else (no clear end of the rib cage) gives no anchor, with the reason.
"""

from dataclasses import dataclass, field

import numpy as np

from SpineAILib.workflows.spine_ct.column import filled_track
from SpineAILib.workflows.spine_ct.naming import MAX_LEVEL_MM

RIB_HU = 150.0
CORE_MM = 18.0  # the body and pedicles lie within this of the canal centre, left to right
HEAD_BAND_MM = 6.0  # a rib's head: its part within this band outside the core ...
HEAD_FRONT_MM = (-15.0, 25.0)  # ... between this far behind and in front of the canal centre
REACH_MM = 65.0  # a rib runs out this far to the side; a lumbar transverse process ends nearer (~50 mm)
MIN_MEAN_HU = 200.0  # ribs are cortical bone (250-350 HU at 3 mm); an enhanced kidney reads 150-200
MIN_HEAD_VOXELS = 3
FREE_BELOW = 2  # levels without ribs that must follow the last rib-bearing one ...
LUMBAR_MIN_MM = 24.0  # ... the first of them as tall as a lumbar vertebra (L1 with its disc: 30-40 mm; cervical 15-18)


@dataclass
class LastRib:
    found: bool
    level: object  # level index (top to bottom) of the last rib-bearing vertebra, or None
    reason: str
    sides: list = field(default_factory=list)  # "left" / "right": the sides whose rib was found at that level
    bearing: dict = field(default_factory=dict)  # level -> sides with a rib head found (every level looked at)


def rib_heads(hu, spacing, column, levels):
    """{level: sorted sides} of the rib heads found beside the column; ``levels``: the level map
    (vertebrae.level_map: how many disc planes lie above each voxel)."""
    from SpineAILib.morphology import connected_components, opening

    if not np.isfinite(column.track[:, 0]).any():
        return {}
    _, ny, nx = hu.shape
    canal = filled_track(column.track)
    lateral = (np.arange(nx)[None, :] - canal[:, 1:2]) * spacing[2]  # (Z, X) mm, + = left
    front = (canal[:, 0:1] - np.arange(ny)[None, :]) * spacing[1]  # (Z, Y) mm, + = anterior
    side_mm = np.broadcast_to(np.abs(lateral)[:, None, :], hu.shape)
    bone = hu > RIB_HU
    thick = opening(bone, 1.0, (1.0, 1.0, 1.0))  # a 3x3x3 box: sizes given in voxels
    thin = bone & ~thick & (side_mm > CORE_MM)
    pieces, sizes = connected_components(thin)
    n = len(sizes)
    if not n:
        return {}
    flat = pieces.ravel()
    reach = np.zeros(n + 1)
    np.maximum.at(reach, flat, side_mm.ravel())
    long_ = reach >= REACH_MM
    edge = np.zeros(hu.shape, bool)
    edge[:, [0, -1], :] = True
    edge[:, :, [0, -1]] = True
    long_[np.unique(pieces[edge])] = True  # cut by the image's edge: it may reach further
    mean_hu = np.bincount(flat, weights=hu.ravel(), minlength=n + 1) / np.maximum(np.bincount(flat, minlength=n + 1), 1)
    rib = long_ & (mean_hu >= MIN_MEAN_HU)
    rib[0] = False
    ahead = np.broadcast_to(front[:, :, None], hu.shape)
    head = (rib[pieces] & (side_mm < CORE_MM + HEAD_BAND_MM) & (ahead > HEAD_FRONT_MM[0])
            & (ahead < HEAD_FRONT_MM[1]))  # fmt: skip
    heads, head_sizes = connected_components(head)
    out = {}
    for h in range(1, len(head_sizes) + 1):
        if head_sizes[h - 1] < MIN_HEAD_VOXELS:
            break  # ranked by size
        k, j, i = (int(round(c)) for c in np.argwhere(heads == h).mean(axis=0))
        side = "left" if lateral[k, i] > 0 else "right"
        out.setdefault(int(levels[k, j, i]), set()).add(side)
    return {level: sorted(sides) for level, sides in out.items()}


def _rib_cage_above(bearing, level, top_in_view_mm):
    """Is ``level`` the end of a rib cage: ribs on the level above it too, or, at the top of the image
    (nothing above it in view), ribs on both its sides and no more of it in view than one vertebra
    (more: discs were missed there, and the piece may hold many vertebrae)?"""
    if level > 0:
        return level - 1 in bearing
    return len(bearing[level]) == 2 and top_in_view_mm is not None and top_in_view_mm <= MAX_LEVEL_MM


def find_last_rib(bearing, heights_mm, s1_level=None, top_in_view_mm=None):
    """The last rib-bearing level from ``bearing`` ({level: sides}); ``heights_mm``: each level's height,
    disc to disc (NaN where not measured), top to bottom; ``top_in_view_mm``: how much of the level above
    the first disc is in view; with the sacrum found (``s1_level``), only levels
    above it are looked at (the iliac bones beside the lowest lumbar levels and the sacrum are not ribs)."""
    top = len(heights_mm) if s1_level is None else s1_level
    candidates = [level for level in range(top) if level in bearing and _rib_cage_above(bearing, level, top_in_view_mm)
                  and all(level + d < top and level + d not in bearing for d in range(1, FREE_BELOW + 1))
                  and heights_mm[level + 1] >= LUMBAR_MIN_MM]  # fmt: skip
    if len(candidates) == 1:
        level = candidates[0]
        return LastRib(True, level, "the last vertebra with a rib: ribs on the level above it, none on the two below",
                       bearing[level], bearing)  # fmt: skip
    if len(candidates) > 1:
        return LastRib(False, None, "the ribs end more than once along the column (a rib missed, or bone taken for one): "
                       "the last rib is not used", bearing=bearing)  # fmt: skip
    if not bearing:
        return LastRib(False, None, "no rib found beside the column", bearing=bearing)
    return LastRib(False, None, "the end of the rib cage is not in view (ribs on two levels, then two without, is looked "
                   "for)", bearing=bearing)  # fmt: skip
