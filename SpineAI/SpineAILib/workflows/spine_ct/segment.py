"""CT in, the column's vertebrae out: column and discs, the anchors (sacrum, last rib), names, labels on the input grid.

Used by the workflow, the benchmark and the evaluation script, so their figures are those
of what users run. No model: see column.py for why Hounsfield units are enough.
"""

import time
from dataclasses import dataclass

import numpy as np

from SpineAILib.ct_grid import Layout, ModelGrid, resample_nearest, to_model_grid
from SpineAILib.images import VolumeImage, check_allocation
from SpineAILib.terminology import VERTEBRAE
from SpineAILib.workflows.spine_ct.anchors import find_sacrum
from SpineAILib.workflows.spine_ct.arch_above import find_arch_above
from SpineAILib.workflows.spine_ct.endplates import refine_levels
from SpineAILib.workflows.spine_ct.column import find_column, hold_track_below, with_last_disc
from SpineAILib.workflows.spine_ct.naming import REFERENCE_LEVELS, S1, implausible_height, name_levels, number_above
from SpineAILib.workflows.spine_ct.ribs import find_last_rib, rib_heads
from SpineAILib.workflows.spine_ct.vertebrae import arch_above_value, label_levels, level_map

GRID_MM = 3.0  # the column, its discs and the labels are found on a grid of about this spacing
UNNAMED_BASE = 100  # label values of unnamed vertebrae: 101, 102, ... top to bottom (no VerSe number)
MIN_PARTIAL_MM = 6.0  # a level cut by the image edge is kept if this much of it is in view ...
MIN_NAMED_PARTIAL_MM = 15.0  # ... and named if this much is (less: the disc below it may be a cut body's edge)
BOUNDARY_UNCONFIRMED = "boundary not confirmed between"  # the warning's start (see _unconfirmed_boundaries)


@dataclass
class SpineSegmentation:
    labelmap: VolumeImage  # on the input grid; VerSe numbers for named vertebrae, UNNAMED_BASE + i otherwise
    vertebrae: list  # dicts: name, label, volume_ml, centre_ras, cut_by_field_of_view (top to bottom)
    naming: dict  # anchor, warnings, notes, sacrum reason, discs found
    names: dict  # label value -> segment name
    timings: dict
    warnings: list
    # (CT, labelmap) to measure the bodies on: the fine grid the outlines were drawn on (about 1 mm: finer
    # input is measured there, in a fraction of the time), or the input's own; None: nothing labelled
    measuring: tuple = None


def level_heights(column, spacing, n_levels):
    """Disc-to-disc height (mm) of each level; NaN for the partial ones above the first and below the last disc."""
    heights = np.full(n_levels, np.nan)
    for level in range(1, n_levels - 1):
        heights[level] = (column.discs[level] - column.discs[level - 1]) * spacing[0]
    return heights


def edges_in_view_mm(column, spacing):
    """(top, bottom): how much of the column lies in view above its first disc and below its last (mm)."""
    known = np.nonzero(np.isfinite(column.track[:, 0]))[0]
    return (column.discs[0] - known[0]) * spacing[0], (known[-1] - column.discs[-1]) * spacing[0]


def _levels_to_label(naming, column, spacing, n_levels):
    """(first, last) level indices (top to bottom) that get a label: every level in view, down to S1
    when S1 is named (the sacrum below S1 is not a vertebra); the piece above the first
    disc only if MIN_PARTIAL_MM of it is in view."""
    first = 1 if column.discs and edges_in_view_mm(column, spacing)[0] < MIN_PARTIAL_MM else 0
    s1 = [level for level, number in naming.verse.items() if number == S1]
    last = s1[0] if s1 else n_levels - 1
    return first, last


def _unname_slivers(naming, column, spacing, n_levels, last):
    """Withhold the name of a level cut by the image's top or bottom with under MIN_NAMED_PARTIAL_MM of it in
    view: its only disc, so close to the edge, may be an artefact of the cut (a thin piece of the next body)."""
    for level, in_view in zip((0, n_levels - 1), edges_in_view_mm(column, spacing)):
        if level in naming.verse and level <= last and in_view < MIN_NAMED_PARTIAL_MM:
            name = naming.names[level]
            del naming.verse[level]
            naming.names[level] = None
            naming.warnings.append(f"the piece taken for {name} at the edge of the image is not named: only "
                                   f"{in_view:.0f} mm of it is in view (under {MIN_NAMED_PARTIAL_MM:.0f} mm)")


def _unname_tall_edge(naming, column, spacing, heights):
    """Withhold the name of the piece above the first disc when more of it is in view than one vertebra with
    its disc can be (naming.STEP_RATIO over the levels named below it, or MAX_LEVEL_MM): the discs above the
    first one found were missed, so the piece holds several vertebrae (a held-out phantom had T10-L1 in
    one piece named L1)."""
    if 0 not in naming.verse:
        return
    in_view = edges_in_view_mm(column, spacing)[0]
    below = [h for h in heights[1:1 + REFERENCE_LEVELS] if np.isfinite(h)]
    problem = implausible_height(in_view, below, 2.0 * spacing[0])
    if problem.startswith("much shorter"):  # a piece cut by the image is shorter than a vertebra: that is no reason
        return
    if problem:
        name = naming.names[0]
        del naming.verse[0]
        naming.names[0] = None
        naming.warnings.append(f"the piece taken for {name} at the top of the image is not named: {in_view:.0f} mm of it "
                               f"is in view, {problem}")


def names_or_index(naming, level):
    return naming.names.get(level) or f"level {level + 1}"


def segment_spine(image, layout=None):
    timings = {}
    t0 = time.perf_counter()
    layout = layout or Layout.of(image.voxels.shape, image.ijk_to_ras)
    grid = ModelGrid.of(layout, GRID_MM)
    hu = to_model_grid(layout.view(image.voxels), grid)
    spacing = grid.spacing
    timings["resample_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    column = find_column(hu, spacing)
    timings["column_s"] = round(time.perf_counter() - t0, 3)
    warnings = []
    empty = VolumeImage(np.zeros(image.voxels.shape, np.uint8), image.ijk_to_ras.copy(), modality=image.modality,
                        description="Vertebrae", source=image.source, is_labelmap=True)  # fmt: skip
    if not column.present.any() or not column.discs:
        reason = "no spinal column found" if not column.present.any() else "no intervertebral disc found along the column"
        return SpineSegmentation(empty, [], {"anchor": None, "reason": reason, "discs": 0}, {}, timings, [reason])

    t0 = time.perf_counter()
    sacrum = find_sacrum(hu, spacing, column)
    if sacrum.off_chain is not None:  # L5/S1 is a disc the chain passed over: the column's discs end there
        column = with_last_disc(column, sacrum.off_chain)
    if sacrum.found:  # the canal narrows towards the sacrum and its track strays (iliac bones): from L4/L5 down
        column = hold_track_below(column, column.discs[max(0, sacrum.disc - 1)])  # S1 lies under L5
    n_levels = len(column.discs) + 1
    levels = level_map(hu.shape, spacing, column)
    bearing = rib_heads(hu, spacing, column, levels)
    heights = level_heights(column, spacing, n_levels)
    top_in_view = edges_in_view_mm(column, spacing)[0]
    last_rib = find_last_rib(bearing, heights, sacrum.disc + 1 if sacrum.found else None, top_in_view)
    naming = name_levels(n_levels, sacrum, heights, spacing[0], last_rib)
    first, last = _levels_to_label(naming, column, spacing, n_levels)
    _unname_slivers(naming, column, spacing, n_levels, last)
    _unname_tall_edge(naming, column, spacing, heights)
    # the top labelled level's name vouches that it is one vertebra (unnamed, it may hold several: a lamina
    # in view below the gap would then be its own, not the top body's)
    arch = find_arch_above(hu, spacing, column, levels, first) if first in naming.verse else None
    coarse = label_levels(hu, spacing, column, levels, first, last, sacrum.disc if sacrum.found else None, arch)
    arch_value = arch_above_value(first, last)  # the arch of the vertebra above the image, if found
    timings["anchors_labels_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    level_mm = {offset: heights[level] for offset, level in enumerate(range(first, last + 1), start=1)}
    refined = refine_levels(layout.view(image.voxels), layout, grid, coarse, column, level_mm, top_disc=first > 0)
    timings["endplates_s"] = round(time.perf_counter() - t0, 3)

    # label values: VerSe numbers for named levels, UNNAMED_BASE + running number (top to bottom) otherwise
    verse = {offset: naming.verse.get(level) for offset, level in enumerate(range(first, last + 1), start=1)}
    order = list(verse)  # coarse values, top to bottom
    if (coarse == arch_value).any():  # only its arch in view: named as the level above the top one
        order.insert(0, arch_value)
        verse[arch_value] = number_above(verse[1])
    values, names = {}, {}
    for position, offset in enumerate(order, start=1):
        if verse[offset]:
            values[offset] = verse[offset]
            names[verse[offset]] = VERTEBRAE[verse[offset]]
        else:
            values[offset] = UNNAMED_BASE + position
            names[values[offset]] = f"vertebra {position}"
    lut = np.zeros(256, np.uint8)
    for offset, value in values.items():
        lut[offset] = value

    t0 = time.perf_counter()
    check_allocation(image.voxels.shape, np.uint8, what="the vertebra label map")
    out = np.zeros(image.voxels.shape, np.uint8)
    if refined is None:
        positions = [grid.model_index(a, np.arange(n)) for a, n in enumerate(layout.shape)]
        layout.view(out)[...] = lut[resample_nearest(coarse, positions)]
    else:
        positions = [refined.grid.fine_index(a, np.arange(n)) for a, n in enumerate(layout.shape)]
        layout.view(out)[...] = lut[resample_nearest(refined.labels, positions)]
    labelmap = VolumeImage(out, image.ijk_to_ras.copy(), modality=image.modality, description="Vertebrae",
                           source=image.source, is_labelmap=True)  # fmt: skip
    measuring = (image, labelmap)
    if refined is not None:  # on the fine grid: canonical [Z, Y, X] is a (K, J, I) array of its own
        to_ras = refined.grid.to_ras(layout)
        measuring = (VolumeImage(refined.hu, to_ras, modality=image.modality, source=image.source),
                     VolumeImage(lut[refined.labels], to_ras.copy(), is_labelmap=True))  # fmt: skip
    timings["upsample_s"] = round(time.perf_counter() - t0, 3)

    vertebrae = _describe(labelmap, names, coarse, values, order, layout, grid)
    offsets = {value: offset for offset, value in values.items()}
    for v in vertebrae:  # heights are a body's only between its own two endplates
        v["endplates_found"] = refined is not None and offsets[v["label"]] in refined.bounded
        v["arch_only"] = offsets[v["label"]] == arch_value
    warnings.extend(naming.warnings)
    if refined is not None:
        warnings.extend(_unconfirmed_boundaries(refined.unconfirmed, values, names))
    summary = {"anchor": naming.anchor, "reason": naming.reason, "sacrum": sacrum.reason, "last_rib": last_rib.reason, "discs": len(column.discs),
               "rib_levels": {names_or_index(naming, level): sides for level, sides in sorted(bearing.items())},
               "transitional_suspected": bool(sacrum.transitional), "notes": naming.notes,
               "levels_not_named": sum(1 for level in range(first, last + 1) if level not in naming.verse)}  # fmt: skip
    return SpineSegmentation(labelmap, vertebrae, summary, names, timings, warnings, measuring)


def _unconfirmed_boundaries(unconfirmed, values, names):
    """A warning per boundary between two named bodies that no clear disc confirmed on the fine grid: there the
    outlines meet where the ~3 mm search put the disc, which may lie inside a body (a dark band taken for the
    disc, the true one missed nearby): a point near it may carry the neighbour's name."""
    out = []
    for upper, lower in unconfirmed:  # label values of the coarse labels: every one has its value
        a, b = values[upper], values[lower]
        if a > UNNAMED_BASE or b > UNNAMED_BASE:
            continue
        out.append(f"{BOUNDARY_UNCONFIRMED} {names[a]} and {names[b]}: no clear disc between their endplates on the "
                   "fine grid, so their outlines meet where the coarse search put the disc, which may lie inside one "
                   "of them (a point near it may then carry the other's name); their heights are withheld")
    return out


def _describe(labelmap, names, coarse, values, order, layout, grid):
    """Per labelled vertebra (``order``: coarse values top to bottom): name, label, volume (input grid), centre (RAS, from the
    coarse grid), and whether it reaches the edge of the image (cut by the field of view)."""
    counts = np.bincount(labelmap.voxels.ravel(), minlength=256)
    voxel_ml = float(np.prod(labelmap.spacing)) / 1000.0
    edge = set()
    for axis in range(3):
        for index in (0, -1):
            edge.update(int(v) for v in np.unique(np.take(coarse, index, axis=axis)) if v)
    out = []
    for offset in order:
        value = values[offset]
        if not counts[value]:
            continue
        c = np.argwhere(coarse == offset).mean(axis=0)
        centre = layout.ras([grid.canonical_index(a, c[a]) for a in range(3)])
        out.append({"name": names[value], "label": int(value), "volume_ml": round(int(counts[value]) * voxel_ml, 2),
                    "centre_ras": [round(float(v), 2) for v in centre], "cut_by_field_of_view": offset in edge})  # fmt: skip
    return out
