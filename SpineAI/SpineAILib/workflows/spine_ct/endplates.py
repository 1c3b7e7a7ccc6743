"""The levels' labels refined on a fine grid, so each vertebral body ends at its endplates.

The coarse labels (vertebrae.py) are grown through bone on a grid of about 3 mm. There the thin
endplate cortex and the disc between two bodies blur into one band that reads as bone, so two
neighbouring bodies meet in the middle of their disc and each body takes about a disc's height
too many (5-7 mm, a quarter of the body, on held-out whole-spine phantoms): too much to grade a
compression. Here the labels go to a grid of about FINE_MM (the input's own spacing where that is
coarser), keep only bone, and every line along the column (canonical axis 0) through the bodies in
front of the canal is read across each disc: a dark run (the disc) between two bright ones (the
endplates). Each body ends where the density has climbed halfway from the disc's level (its
darkest quarter) to its own endplate's brightest point (the half-maximum edge, so the answer does
not hang on a Hounsfield threshold: osteoporotic and dense bone, thin and thick slices alike). A
line shows a disc only where the dark run is soft tissue and its rise is a fair share of the best
lines' (a line grazing a contrast-filled vessel does not). The edges are median-filtered across the
endplate, since one line's noise should not dent it; the body's rim lines take the planes fitted to
the others, and a boundary with too few lines showing a disc keeps its coarse place. What a label
holds in front of its body outside those lines (a vessel) is dropped, each body is made solid
between its endplates, and pieces nowhere near the canal go. The arch behind the body is left as
it was.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

from SpineAILib.ct_grid import resample_linear, resample_nearest
from SpineAILib.workflows.spine_ct.column import filled_track
from SpineAILib.workflows.spine_ct.filters import box_mean
from SpineAILib.workflows.spine_ct.vertebrae import (BODY_SIDE_MM, CANAL_CLEAR_MM, NEAR_CANAL_MM, bone_mask, canal_offsets_mm,
                                                      grow_labels)

FINE_MM = 1.0  # the refining grid's spacing (never finer than the input's)
GROW_MM = 3.0  # the fine outline may take bone up to this far beyond the coarse one
MARGIN_COARSE = 2  # the fine grid covers the coarse labels and this many coarse voxels around them
SEARCH_MM = 15.0  # a body's endplate lies within this distance of the coarse boundary (mid-disc, +-3 mm; a biconcave
# fracture's centre sinks up to about 8 mm further) ...
SEARCH_SHARE = 0.45  # ... and within this share of the shorter neighbouring level (never past a body's middle)
DISC_MIN_HU = -20.0  # ... which is soft tissue (a disc reads about 50-120 HU), not fat (about -100)
DISC_LEVEL_PERCENTILE = 25  # the disc's level on a line: this percentile of the densities between its endplates
IN_PLANE_SMOOTH_MM = 1.0  # each line reads the mean of a square this far to either side (noise)
MIN_RISE_HU = 40.0  # an endplate rises at least this much above the disc's darkest point, on both sides ...
RISE_SHARE = 0.35  # ... and at least this share of the rise on the boundary's best lines (its 90th percentile)
SURFACE_HALF_MM = 3.0  # the endplate edges are median-filtered over squares this far to either side
MIN_CLEAR_SHARE = 0.3  # a boundary whose lines show a disc on fewer than this share keeps its coarse place
HULL_MARGIN_MM = 2.0  # a body reaches this far beyond the lines that show its endplates (partial volume at its rim)


@dataclass(frozen=True)
class FineGrid:
    """A box of the canonical grid at about FINE_MM: fine voxel j of axis a is centred on canonical
    (continuous) index origin[a] + j * step[a]."""

    origin: tuple
    step: tuple
    shape: tuple
    spacing: tuple  # mm

    def positions(self):
        return [o + s * np.arange(n) for o, s, n in zip(self.origin, self.step, self.shape)]

    def fine_index(self, axis, canonical_index):
        return (np.asarray(canonical_index, dtype=float) - self.origin[axis]) / self.step[axis]

    def to_ras(self, layout):
        """4x4 IJK->RAS of an array on this grid (canonical order, like the layout's)."""
        m = np.eye(4)
        for a in range(3):
            m[2 - a, 2 - a] = self.step[a]
            m[2 - a, 3] = self.origin[a]
        return layout.canonical_to_ras @ m


@dataclass
class Refined:
    labels: np.ndarray  # (Z, Y, X) on the fine grid: values 1..n as the coarse labels
    grid: FineGrid
    bounded: set  # label values whose two endplates were found
    hu: np.ndarray  # the CT on the fine grid (float32, HU)
    # (upper, lower) label values of two labelled bodies whose boundary kept its coarse place: no clear disc
    # between them on the fine grid (a disc missed nearby, with a dark band inside a body taken for it, looks so)
    unconfirmed: list = field(default_factory=list)


def fine_grid_around(coarse, grid, layout):
    """The FineGrid over the coarse labels' bounding box and MARGIN_COARSE coarse voxels around it (None: no labels)."""
    nonzero = [np.nonzero(coarse.any(axis=tuple(b for b in range(3) if b != a)))[0] for a in range(3)]
    if any(not len(n) for n in nonzero):
        return None
    origin, step, shape, spacing = [], [], [], []
    for a, index in enumerate(nonzero):
        lo = max(0, int(index[0]) - MARGIN_COARSE)
        hi = min(coarse.shape[a], int(index[-1]) + 1 + MARGIN_COARSE)
        first, last = lo * grid.scale[a], min(layout.shape[a], hi * grid.scale[a])  # canonical voxel edges
        s = max(1.0, FINE_MM / layout.spacing[a])
        n = max(1, int(np.floor((last - first) / s)))
        origin.append(first + 0.5 * s - 0.5)
        step.append(s)
        shape.append(n)
        spacing.append(s * layout.spacing[a])
    return FineGrid(tuple(origin), tuple(step), tuple(shape), tuple(spacing))


def refine_levels(view, layout, grid, coarse, column, level_mm, top_disc=True):
    """``Refined``: the coarse labels (values 1..n, top to bottom) on the fine grid with each body cut at its
    endplates, the set of label values whose two endplates were both found (the others keep a coarse
    boundary on one side: their heights are not a body's), and the CT on that grid. ``view``: the canonical HU
    view; ``level_mm``: per label value of a level, its disc-to-disc height (mm, NaN where unknown; a value
    beyond them, the arch of the vertebra above the image, is outlined but has no endplates to cut at);
    ``top_disc``: whether a disc was found above label 1 (else its top is the image's, not an endplate).
    None when there is nothing to refine."""
    fine = fine_grid_around(coarse, grid, layout)
    if fine is None:
        return None
    positions = fine.positions()
    hu = resample_linear(view, positions, antialias_step=fine.step)
    labels = resample_nearest(coarse, [grid.model_index(a, p) for a, p in enumerate(positions)])
    half = [0] + [max(1, int(round(IN_PLANE_SMOOTH_MM / s))) for s in fine.spacing[1:]]
    smooth = box_mean(hu, half)
    canal, depth = _fine_canal(fine, grid, column)
    # the outline at the fine grid's resolution: bone only (the coarse one, up-sampled, is blocky and
    # reaches about a coarse voxel into the soft tissue around), grown back over bone the coarse one missed
    # (inside the body box from the smoothed values, as the lines read them: the trabecular bone's noise and the
    # basivertebral vein's dark channel; the arch and processes behind and beside it from the CT's own values:
    # the lines' smoothing, a 9 mm square on a 3 mm grid, thinned a lamina below bone density and spread thick
    # cortex into the soft tissue beside it. Dice on development phantoms 0.68/0.77 -> 0.69/0.78 thoracic/lumbar,
    # heights unchanged; unsmoothed inside the body too, a real CT's L5 lost 10 mm of its posterior height)
    body = _body_box(fine, canal)
    bone = np.where(body, bone_mask(smooth, fine.spacing, canal, depth),
                    bone_mask(hu, fine.spacing, canal, depth))  # fmt: skip
    labels[~bone] = 0
    labels = grow_labels(labels, bone, max(1, int(round(GROW_MM / min(fine.spacing)))))
    footprints = {}  # label value -> (Y, X) lines where one of its endplates was found
    tops, bottoms = {}, {}  # label value -> (Y, X) fine slice of its upper / lower endplate's edge (NaN: not found)
    unconfirmed = []
    for upper in range(0 if top_disc else 1, max(level_mm, default=0)):  # bodies only (not an arch above the image)
        lower = upper + 1
        known = [level_mm[v] for v in (upper, lower) if np.isfinite(level_mm.get(v, np.nan))]
        height = min(known) if known else np.nan
        search = SEARCH_MM if not np.isfinite(height) else min(SEARCH_MM, SEARCH_SHARE * height)
        found = _cut_at_endplates(labels, smooth, body, upper, lower, max(2, int(round(search / fine.spacing[0]))),
                                  fine.spacing)  # fmt: skip
        if found is None:
            if upper and (labels == upper).any() and (labels == lower).any():
                unconfirmed.append((upper, lower))
            continue
        lines, last_upper, first_lower = found
        bottoms[upper], tops[lower] = last_upper, first_lower
        for value in (upper, lower):
            if value:
                footprints[value] = footprints.get(value, False) | lines
    bounded = {value for value in set(tops) & set(bottoms) if value}
    for value in bounded:
        _fill_between_endplates(labels, value, tops[value], bottoms[value])
    for value, lines in footprints.items():
        _only_body_in_front(labels, body, value, lines, fine.spacing)
    return Refined(_near_canal_only(labels, canal, fine.spacing), fine, bounded, hu, unconfirmed)


def _fine_canal(fine, grid, column):
    """(canal, depth) on the fine grid: per fine slice the canal centre's fine (posterior, left) index and the
    body's depth (mm), interpolated from the coarse column."""
    canal = filled_track(column.track)  # coarse indices per coarse slice
    z_coarse = grid.model_index(0, fine.positions()[0])
    rows = np.arange(canal.shape[0])
    out = np.stack([fine.fine_index(a, grid.canonical_index(a, np.interp(z_coarse, rows, canal[:, a - 1])))
                    for a in (1, 2)], axis=1)  # fmt: skip
    known = np.isfinite(column.depth)
    depth = np.interp(z_coarse, rows[known], column.depth[known]) if known.any() else np.full(len(z_coarse), np.nan)
    return out, depth


def _only_body_in_front(labels, body, value, lines, spacing):
    """Label ``value`` without what lies in front of (or beside the front of) its body's endplates: the body is
    where the lines cross a disc (``lines``), and what the label holds outside their convex hull (widened by
    HULL_MARGIN_MM) in its front half is not body. A vessel in front of the column (contrast-filled, it reads as
    bone) touches the body; its lines run past the disc without a dark run. The arch behind is left alone."""

    lines = _largest_piece(lines)  # the body's: a 'disc' found apart from it (the gap between the iliac arteries
    if lines.sum() < 3:  # under a contrast-filled aorta's bifurcation) would stretch the hull over the vessels
        return
    hull = _hull(lines, spacing)
    front = np.arange(lines.shape[0])[:, None] < np.nonzero(lines)[0].mean()
    outside = ~hull & front
    labels[(labels == value) & body & outside[None]] = 0


def _largest_piece(mask):
    """The largest 8-connected piece of a (Y, X) mask."""
    import cv2

    count, pieces, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    return pieces == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _hull(lines, spacing, margin_mm=HULL_MARGIN_MM):
    """(Y, X) bool: the convex hull of ``lines`` widened by ``margin_mm`` (empty under three lines)."""
    import cv2

    hull = np.zeros(lines.shape, np.uint8)
    points = np.argwhere(lines)[:, ::-1].astype(np.int32)  # (x, y)
    if len(points) < 3:
        return hull > 0
    cv2.fillPoly(hull, [cv2.convexHull(points)], 1)
    if not margin_mm:
        return hull > 0
    ry, rx = (int(round(margin_mm / s)) for s in spacing[1:])
    return cv2.dilate(hull, np.ones((2 * ry + 1, 2 * rx + 1), np.uint8)) > 0


def _near_canal_only(labels, canal, spacing):
    """``labels`` without the pieces of bone that come nowhere near the canal: at the coarse grid's resolution a
    vessel in front of the bodies (a contrast-filled aorta reads as bone) or a rib can touch them, here it is apart."""
    from SpineAILib.morphology import connected_components

    components, sizes = connected_components(labels > 0)
    if not len(sizes):
        return labels
    near = np.hypot(*canal_offsets_mm(labels.shape, canal, spacing)) <= NEAR_CANAL_MM
    keep = np.zeros(len(sizes) + 1, bool)
    keep[np.unique(components[near])] = True
    keep[0] = False
    return np.where(keep[components], labels, 0).astype(labels.dtype)


def _body_box(fine, canal):
    """(Z, Y, X) bool on the fine grid: the body box of vertebrae.py, in front of the canal centre by CANAL_CLEAR_MM
    and within BODY_SIDE_MM of it to either side (behind: the arch, left alone)."""
    yy, xx = canal_offsets_mm(fine.shape, canal, fine.spacing)
    return (-yy >= CANAL_CLEAR_MM) & (np.abs(xx) <= BODY_SIDE_MM)


def _cut_at_endplates(labels, smooth, body, upper, lower, search, spacing):
    """Move the boundary between label ``upper`` (0: none labelled above) and ``lower`` to the endplates, in place.

    Returns (lines, last upper, first lower): the lines (Y, X) where the endplates were found (or taken from
    their neighbours), and on them the upper body's last and the lower body's first fine slice (NaN
    elsewhere); None where the boundary kept its coarse place."""
    nz = labels.shape[0]
    is_lower = (labels == lower) & body
    has_lower = is_lower.any(axis=0)
    if upper:
        has_upper = ((labels == upper) & body).any(axis=0)
        footprint = has_lower & has_upper
    else:
        footprint = has_lower
    if not footprint.any():
        return None
    boundary = np.argmax(is_lower, axis=0)  # first slice of the lower body, per line
    ys, xs = np.nonzero(footprint)
    z0 = boundary[ys, xs]
    offsets = np.arange(-search, search + 1)
    zz = z0[:, None] + offsets[None, :]
    inside = (zz >= 0) & (zz < nz)
    profile = smooth[np.clip(zz, 0, nz - 1), ys[:, None], xs[:, None]]
    profile = np.where(inside, profile, np.nan)
    lines = np.arange(len(ys))
    up_half, down_half = profile[:, :search], profile[:, search:]
    peak_up = np.argmax(np.where(np.isnan(up_half), -np.inf, up_half), axis=1)
    peak_down = search + np.argmax(np.where(np.isnan(down_half), -np.inf, down_half), axis=1)
    k = np.arange(2 * search + 1)[None, :]
    between = (k > peak_up[:, None]) & (k < peak_down[:, None])
    valley = np.argmin(np.where(between & inside, profile, np.inf), axis=1)
    # the disc's level: its darkest quarter, not its darkest point (gas in a degenerate disc reads -900 HU and
    # would put the half-way level inside the disc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # lines with no slice between their peaks: NaN, not clear
        low = np.nanpercentile(np.where(between & inside, profile, np.nan), DISC_LEVEL_PERCENTILE, axis=1)
    top, bottom = profile[lines, peak_up], profile[lines, peak_down]
    # a disc is soft tissue: a dark run of fat (a line grazing a vessel's wall, fat between two structures) is none
    discish = np.isfinite(top) & np.isfinite(bottom) & np.isfinite(low) & (np.nan_to_num(low, nan=-np.inf) >= DISC_MIN_HU)
    rise = np.where(discish, np.minimum(top, bottom) - low, 0.0)
    # the endplates stand well above the disc on the lines through the body; on a line through a vessel or soft
    # tissue beside it the 'rise' is noise. Lines whose rise is a fair share of the best lines' outline the body;
    # inside that outline a weaker rise is enough (a fractured endplate's centre has lost its cortex)
    strong = rise >= max(MIN_RISE_HU, RISE_SHARE * np.percentile(rise, 90))
    if strong.mean() < MIN_CLEAR_SHARE:
        return None
    outline = np.zeros(footprint.shape, bool)
    outline[ys[strong], xs[strong]] = True
    outline = _largest_piece(outline)  # the body's; strong lines elsewhere (a vessel's wall) would stretch its hull
    clear = strong | ((rise >= MIN_RISE_HU) & _hull(outline, spacing)[ys, xs])
    # the upper body's last slice: the lowest k above the valley still at or over half the rise; the lower's first
    up_ok = (k <= valley[:, None]) & (k >= peak_up[:, None]) & (profile >= ((low + top) / 2)[:, None])
    down_ok = (k >= valley[:, None]) & (k <= peak_down[:, None]) & (profile >= ((low + bottom) / 2)[:, None])
    last_upper = np.max(np.where(up_ok, k, -1), axis=1).astype(float)
    first_lower = np.min(np.where(down_ok, k, 10**6), axis=1).astype(float)
    edges_up = np.full(footprint.shape, np.nan)
    edges_down = np.full(footprint.shape, np.nan)
    edges_up[ys[clear], xs[clear]] = (z0 + last_upper - search)[clear]
    edges_down[ys[clear], xs[clear]] = (z0 + first_lower - search)[clear]
    half = [max(1, int(round(SURFACE_HALF_MM / s))) for s in spacing[1:]]
    edges_up, edges_down = _nan_median(edges_up, half), _nan_median(edges_down, half)
    known = footprint & np.isfinite(edges_up) & np.isfinite(edges_down) & (edges_down > edges_up)
    if known.sum() < 3:
        return None
    # the body's rim (partial volume, the annulus bulging past it) shows no clear disc: its lines take the
    # endplate planes fitted to the others', out to the outline of the strong lines
    rim = footprint & _hull(outline, spacing) & ~known
    edges_up, edges_down = _plane_filled(edges_up, known, rim), _plane_filled(edges_down, known, rim)
    known |= rim & (edges_down > edges_up)
    ys, xs = np.nonzero(known)
    z = np.arange(nz)[:, None]
    column = labels[:, ys, xs]  # (Z, lines)
    bony = (column == lower) | ((column == upper) if upper else False)
    above = z <= np.floor(edges_up[ys, xs])[None, :]
    below = z >= np.ceil(edges_down[ys, xs])[None, :]
    near = np.abs(z - boundary[ys, xs][None, :]) <= search
    new = np.where(above, upper, np.where(below, lower, 0)).astype(labels.dtype)
    column = np.where(bony & near, new, column)
    labels[:, ys, xs] = column
    return known, np.where(known, np.floor(edges_up), np.nan), np.where(known, np.ceil(edges_down), np.nan)


def _fill_between_endplates(labels, value, top, bottom):
    """Label ``value`` made solid between its two endplates (``top``/``bottom``: fine slices per line, NaN where
    not found) across the body's cross-section, where nothing else is labelled: a body is bone from endplate
    to endplate, but its darker middle (an osteoporotic body, the basivertebral vein behind) does not always
    pass for bone. The cross-section: what the label covers in the middle half of the body's height, holes
    filled, within the convex hull of the lines with both endplates. Lines there without both endplates of
    their own take the planes fitted to the others'."""
    import cv2

    both = np.isfinite(top) & np.isfinite(bottom) & (bottom > top)
    if both.sum() < 3:
        return
    upper, lower = np.median(top[both]), np.median(bottom[both])
    quarter = (lower - upper) / 4.0
    middle = labels[int(np.ceil(upper + quarter)) : int(np.floor(lower - quarter)) + 1] == value
    if not middle.size:
        return
    section = np.pad(middle.any(axis=0).astype(np.uint8), 1)
    cv2.floodFill(section, None, (0, 0), 2)
    section = (section[1:-1, 1:-1] != 2) & _hull(both, None, margin_mm=0.0)
    top = np.ceil(_plane_filled(top, both, section & ~both))
    bottom = np.floor(_plane_filled(bottom, both, section & ~both))
    ys, xs = np.nonzero(section)
    z = np.arange(labels.shape[0])[:, None]
    column = labels[:, ys, xs]
    inside = (z >= top[ys, xs][None, :]) & (z <= bottom[ys, xs][None, :]) & (column == 0)
    labels[:, ys, xs] = np.where(inside, value, column).astype(labels.dtype)


def _plane_filled(edges, known, targets):
    """``edges`` (Y, X) with the ``targets`` lines set from the plane fitted to the ``known`` ones (least squares)."""
    ys, xs = np.nonzero(known)
    out = edges.copy()
    if len(ys) < 3 or not targets.any():
        return out
    design = np.stack([np.ones(len(ys)), ys, xs], axis=1)
    a, b, c = np.linalg.lstsq(design, edges[ys, xs], rcond=None)[0]
    ty, tx = np.nonzero(targets)
    out[ty, tx] = a + b * ty + c * tx
    return out


def _nan_median(values, half):
    """Median over a (2 half[0] + 1) x (2 half[1] + 1) square of the finite values (NaN where there are none)."""
    ny, nx = values.shape
    padded = np.pad(values, ((half[0], half[0]), (half[1], half[1])), constant_values=np.nan)
    stack = np.stack([padded[dy : dy + ny, dx : dx + nx] for dy in range(2 * half[0] + 1) for dx in range(2 * half[1] + 1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN squares: NaN, as wanted
        return np.nanmedian(stack, axis=0)
