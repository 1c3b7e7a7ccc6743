"""The arch of the vertebra above the image: its lamina behind the top body's canal, when the image's top cuts that body.

Laminae overlap like roof tiles: the lower edge of a vertebra's lamina (and its inferior articular
processes and spinous process) lies behind the upper part of the next body down. So when the image's
top cuts a body, the bone closing its canal behind in the top slices may belong to the vertebra
above, whose body is out of view. Grown from the top body's seeds alone, that bone joins it (on the
real abdominal CT the reference gives the top three slices' arch to T11, whose body is above the image).

The midline behind the canal tells them apart. Between two vertebrae the ring of bone round the canal
is open behind (the interlaminar space, under the ligamentum flavum), and a vertebra's own lamina
begins beside the upper half of its body. Per coarse slice from the top: is there bone in the midline
within LAMINA_REACH_MM behind the canal centre? A closed run at the top, then an open gap, then a
closed run that begins above the first disc (at the canal): the top run is the lamina of the vertebra
above. Anything else (no gap, or a gap under the first disc: the next vertebra's interlaminar space)
finds nothing, and the top body keeps all the bone, as before.
"""

from dataclasses import dataclass

import numpy as np

from SpineAILib.workflows.spine_ct.column import filled_track
from SpineAILib.workflows.spine_ct.vertebrae import BONE_HU

LAMINA_REACH_MM = 18.0  # the canal's back wall and the lamina lie within this distance behind the canal centre
MIDLINE_MM = 3.0  # the midline strip: this far to either side of the canal centre
MIN_GAP_MM = 3.0  # the open gap between the two laminae
MIN_OWN_MM = 6.0  # the top body's own lamina: at least this long a closed run


@dataclass
class ArchAbove:
    seeds: np.ndarray  # (Z, Y, X) bool on the coarse grid: the top run's midline bone
    zone: np.ndarray  # (Z, Y, X) bool: where it may grow (its run's slices and the gap's first, behind the canal centre)


def _midline_behind(canal_centre, spacing):
    """(posterior, left) slices of a slice's midline strip behind the canal centre, LAMINA_REACH_MM deep."""
    reach = int(round(LAMINA_REACH_MM / spacing[1]))
    half = max(1, int(round(MIDLINE_MM / spacing[2])))
    y, x = (int(round(v)) for v in canal_centre)
    return slice(max(0, y + 1), y + reach + 1), slice(max(0, x - half), x + half + 1)


def midline_closed(hu, spacing, canal, slices):
    """Per slice in ``slices``: is there bone in the midline strip behind the canal centre (within LAMINA_REACH_MM)?"""
    out = np.zeros(len(slices), bool)
    for i, k in enumerate(slices):
        strip = hu[(k, *_midline_behind(canal[k], spacing))]
        out[i] = strip.size > 0 and bool((strip > BONE_HU).any())
    return out


def _runs(flags):
    """[(start, end)] of the True runs of a 1-D bool array (end inclusive)."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.diff(padded)
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1))


def find_arch_above(hu, spacing, column, levels, top_level=0):
    """``ArchAbove`` or None (see the module docstring). ``levels``: vertebrae.level_map of the grid;
    ``top_level``: the top labelled level (1 when the piece above the first disc is too thin to label:
    then the arch above is that vertebra's, and the run must begin below the first disc)."""
    known = np.nonzero(np.isfinite(column.track[:, 0]))[0]
    if not len(known) or known[0] != 0 or len(column.discs) <= top_level:
        return None  # (the column must reach the image's top: what lies above a track that starts lower is unknown)
    canal = filled_track(column.track)
    bottom = int(np.ceil(column.discs[top_level] + MIN_OWN_MM / spacing[0]))  # the own lamina may go on under the disc
    slices = np.arange(0, min(bottom + 1, hu.shape[0]))
    runs = _runs(midline_closed(hu, spacing, canal, slices))
    if len(runs) < 2 or runs[0][0] != 0:
        return None
    (a0, a1), (b0, b1) = runs[0], runs[1]
    if (b0 - a1 - 1) * spacing[0] < MIN_GAP_MM - 1e-6:
        return None
    start = int(slices[b0])
    y, x = (int(round(v)) for v in canal[start])
    if levels[start, min(max(y, 0), hu.shape[1] - 1), min(max(x, 0), hu.shape[2] - 1)] != top_level:
        return None  # the next lamina begins under the top level's disc: the gap is the next vertebra's
    if (b1 - b0 + 1) * spacing[0] < MIN_OWN_MM - 1e-6:
        return None
    first, last = int(slices[a0]), int(slices[a1])
    seeds = np.zeros(hu.shape, bool)
    zone = np.zeros(hu.shape, bool)
    yy = np.arange(hu.shape[1])[:, None]
    for k in range(first, last + 2):
        zone[k] = yy >= int(round(canal[k, 0]))  # behind the canal centre: the body is the top vertebra's
        if k <= last:
            seeds[(k, *_midline_behind(canal[k], spacing))] = True
    seeds &= hu > BONE_HU
    return ArchAbove(seeds, zone)
