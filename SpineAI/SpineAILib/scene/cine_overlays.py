"""Per-frame overlays that play with a cine: masks, boxes and heat maps as synchronised sequences.

A cine in the scene is a sequence of one-slice frames with a browser and a proxy
volume (``sequences.add_cine``). Its overlays are more sequences in the same
browser, one item per frame at the same index values, so Slicer's sequence
browser swaps them together while the cine plays, and the whole set saves into a
.mrb and replays there:

* masks: a sequence of segmentation nodes (``add_mask_sequence``); every frame holds
  the same segments (IDs = structure names, e.g. ``spinal_cord`` and ``csf``, with
  terminology and colours, empty where nothing was found), so the proxy
  segmentation keeps one display setting per structure.
* boxes: one markups ROI sequence per structure (``add_box_sequences``); a frame
  without a box holds an ROI with no control point, which Slicer does not draw
  (so the proxy ROI disappears on that frame, also where a viewer fills missing
  items from defaults).
* heat maps: a sequence of float frames shown as the slice views' foreground layer
  over the cine (``add_heatmap_sequence``; ``attach_heatmap_sequence`` joins one read
  back from a ``heatmap.seq.nrrd`` file to its cine).

Pixel boxes are x0, y0, x1, y1 with x1 = last column + 1 (as ``us_localise``
returns them); in RAS the ROI covers the pixels' full extent.
"""

import numpy as np

from SpineAILib import terminology
from SpineAILib.scene.overlays import OVERLAY_KIND_ATTRIBUTE
from SpineAILib.scene.sequences import INDEX_NAME, INDEX_UNIT
from SpineAILib.scene.volumes import numpy_matrix, vtk_matrix

OVERLAY_OF_ATTRIBUTE = "SpineAI.OverlayOf"  # on an overlay sequence: the name of the cine sequence
STRUCTURE_ATTRIBUTE = "SpineAI.Structure"  # on a box sequence: the structure it locates
_BINARY = "Binary labelmap"


# -- geometry ------------------------------------------------------------------------


def _cine_sequence(browser):
    sequence = browser.GetMasterSequenceNode()
    if sequence is None or sequence.GetNumberOfDataNodes() == 0:
        raise ValueError(f"{browser.GetName()}: the browser has no cine sequence with frames")
    return sequence


def frame_geometry(browser):
    """(IJK->RAS 4x4, (rows, cols), [index values]) of the browser's cine frames."""
    import slicer
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    sequence = _cine_sequence(browser)
    first = sequence.GetNthDataNode(0)
    matrix = vtkMatrix4x4()
    first.GetIJKToRASMatrix(matrix)
    rows, cols = slicer.util.arrayFromVolume(first).shape[1:3]
    values = [sequence.GetNthIndexValue(i) for i in range(sequence.GetNumberOfDataNodes())]
    return numpy_matrix(matrix), (int(rows), int(cols)), values


def _new_sequence(ctx, name, kind, cine_sequence):
    import slicer

    sequence = ctx.scene.AddNewNodeByClass("vtkMRMLSequenceNode", ctx.scene.GenerateUniqueName(name))
    sequence.SetIndexName(cine_sequence.GetIndexName() or INDEX_NAME)
    sequence.SetIndexUnit(cine_sequence.GetIndexUnit() or INDEX_UNIT)
    sequence.SetIndexType(cine_sequence.GetIndexType() if cine_sequence.GetIndexType() is not None
                          else slicer.vtkMRMLSequenceNode.NumericIndex)
    sequence.SetAttribute(OVERLAY_OF_ATTRIBUTE, cine_sequence.GetName() or "")
    sequence.SetAttribute(OVERLAY_KIND_ATTRIBUTE, kind)
    return sequence


def _check_frames(array, n_frames, what):
    if array.shape[0] != n_frames:
        raise ValueError(f"{what}: {array.shape[0]} frames given, the cine has {n_frames}")


def _attach(ctx, browser, sequence):
    import slicer

    browser.AddSynchronizedSequenceNode(sequence)
    # A frame without an item shows an empty node, never the previous frame's overlay.
    browser.SetMissingItemMode(sequence, slicer.vtkMRMLSequenceBrowserNode.MissingItemSetToDefault)
    # Overlays are results: the browser must not write edits of the proxy back into them.
    browser.SetSaveChanges(sequence, False)
    ctx.sequences_logic.UpdateProxyNodesFromSequences(browser)
    return browser.GetProxyNode(sequence)


# -- masks -----------------------------------------------------------------------------


def _oriented_image(mask, ijk_to_ras):
    import slicer
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR

    rows, cols = mask.shape
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(cols, rows, 1)
    image.AllocateScalars(VTK_UNSIGNED_CHAR, 1)
    vtk_to_numpy(image.GetPointData().GetScalars())[:] = np.ascontiguousarray(mask, dtype=np.uint8).ravel()
    image.SetImageToWorldMatrix(vtk_matrix(ijk_to_ras))
    return image


def _frame_segmentation(structure_masks, ijk_to_ras):
    """A segmentation node (outside the scene) with one segment per (name, 2-D mask)."""
    import slicer

    node = slicer.vtkMRMLSegmentationNode()
    segmentation = node.GetSegmentation()
    segmentation.SetSourceRepresentationName(_BINARY)
    # The frame's grid as the reference geometry: saved files keep the whole frame, so a
    # frame where nothing was found is an empty frame, not an empty (unreadable) image.
    geometry = _oriented_image(np.zeros_like(structure_masks[0][1], dtype=np.uint8), ijk_to_ras)
    segmentation.SetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
        slicer.vtkSegmentationConverter.SerializeImageGeometry(geometry),
    )
    for name, mask in structure_masks:
        segment = slicer.vtkSegment()
        info = terminology.label_info(name)
        segment.SetName(name)
        segment.SetColor(*info["color"])
        if info["terminology"]:
            segment.SetTerminology(info["terminology"])
        segment.AddRepresentation(_BINARY, _oriented_image(mask, ijk_to_ras))
        segmentation.AddSegment(segment, name)
    return node


def add_mask_sequence(ctx, browser, masks, name=None, fill_opacity=0.35):
    """Add per-frame masks as a segmentation sequence synchronised with the cine of ``browser``.

    ``masks``: {structure name: (N, rows, cols) bool} at the frames' size, N = the cine's
    frame count (e.g. {'spinal_cord': result['cord_masks'], 'csf': result['csf_masks']}).
    Returns (sequence node, proxy segmentation node).
    """
    cine_sequence = _cine_sequence(browser)
    ijk_to_ras, shape, values = frame_geometry(browser)
    arrays = {str(k): np.asarray(v, bool) for k, v in masks.items()}
    if not arrays:
        raise ValueError("no masks given")
    for structure, array in arrays.items():
        _check_frames(array, len(values), f"masks of {structure}")
        if array.shape[1:] != shape:
            raise ValueError(f"masks of {structure} are {array.shape[1:]}, the cine's frames are {shape}")
    sequence = _new_sequence(ctx, name or f"{browser.GetName()} masks".replace(" browser", ""), "masks", cine_sequence)
    was_modifying = sequence.StartModify()
    for i, value in enumerate(values):
        frame = _frame_segmentation([(s, a[i]) for s, a in arrays.items()], ijk_to_ras)
        sequence.SetDataNodeAtValue(frame, value)
    sequence.EndModify(was_modifying)
    proxy = _attach(ctx, browser, sequence)
    if proxy.GetDisplayNode() is None:
        proxy.CreateDefaultDisplayNodes()
    display = proxy.GetDisplayNode()
    display.SetVisibility2DFill(True)
    display.SetVisibility2DOutline(True)
    display.SetOpacity2DFill(float(fill_opacity))
    return sequence, proxy


def segment_masks(segmentation_node, shape, ijk_to_ras=None):
    """{segment ID: (rows, cols) bool} of a one-slice segmentation drawn on a frame grid of ``shape``."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    segmentation = segmentation_node.GetSegmentation()
    out = {}
    for i in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(i)
        segment = segmentation.GetSegment(segment_id)
        image = segment.GetRepresentation(_BINARY)
        mask = np.zeros(shape, bool)
        extent = image.GetExtent() if image is not None else (0, -1, 0, -1, 0, -1)
        if image is not None and image.GetPointData().GetScalars() is not None and extent[1] >= extent[0]:
            x0, x1, y0, y1, z0, z1 = extent
            voxels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(z1 - z0 + 1, y1 - y0 + 1, x1 - x0 + 1)
            offset = np.zeros(2, int)
            if ijk_to_ras is not None:  # where the segment's index 0 lies on the frame grid
                matrix = vtkMatrix4x4()
                image.GetImageToWorldMatrix(matrix)
                relative = np.linalg.inv(ijk_to_ras) @ numpy_matrix(matrix)
                offset = np.round(relative[:2, 3]).astype(int)  # (i, j) = (col, row)
            label = segment.GetLabelValue() if hasattr(segment, "GetLabelValue") else 1
            layer = voxels[0] == label if voxels.max(initial=0) > 1 else voxels[0] > 0
            r0, c0 = y0 + offset[1], x0 + offset[0]
            rows = slice(max(r0, 0), min(r0 + layer.shape[0], shape[0]))
            cols = slice(max(c0, 0), min(c0 + layer.shape[1], shape[1]))
            mask[rows, cols] = layer[rows.start - r0 : rows.stop - r0, cols.start - c0 : cols.stop - c0]
        out[segment_id] = mask
    return out


def masks_from_sequence(browser, sequence):
    """{structure: (N, rows, cols) bool} back from a mask sequence of ``browser``'s cine (for checks)."""
    ijk_to_ras, shape, values = frame_geometry(browser)
    per_frame = []
    for value in values:
        index = sequence.GetItemNumberFromIndexValue(value)
        node = sequence.GetNthDataNode(index) if index >= 0 else None
        per_frame.append(segment_masks(node, shape, ijk_to_ras) if node is not None else {})
    names = list(dict.fromkeys(k for frame in per_frame for k in frame))  # first-seen order
    return {k: np.stack([frame.get(k, np.zeros(shape, bool)) for frame in per_frame]) for k in names}


# -- boxes ------------------------------------------------------------------------------


def box_to_ras(box, ijk_to_ras):
    """(center RAS, size mm) of pixel box x0, y0, x1, y1 on a frame with ``ijk_to_ras``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    corners = np.array([[x0 - 0.5, y0 - 0.5, 0, 1], [x1 - 0.5, y1 - 0.5, 0, 1]])  # outer pixel edges
    ras = (ijk_to_ras @ corners.T).T[:, :3]
    center = ras.mean(axis=0)
    size = np.abs(ras[1] - ras[0])
    size[2] = max(float(np.linalg.norm(ijk_to_ras[:3, 2])), 1e-3)  # one slice thick
    return center, size


def ras_to_box(center, size, ijk_to_ras):
    """Inverse of ``box_to_ras`` for boxes on the frame plane: pixel x0, y0, x1, y1."""
    center, size = np.asarray(center, float), np.asarray(size, float)
    half = size / 2.0
    inverse = np.linalg.inv(ijk_to_ras)
    corners = [inverse @ np.append(center + sign * half, 1.0) for sign in (-1.0, 1.0)]
    ij = np.array([c[:2] for c in corners])
    low, high = ij.min(axis=0) + 0.5, ij.max(axis=0) + 0.5
    return np.array([low[0], low[1], high[0], high[1]], np.float32)


def add_box_sequences(ctx, browser, boxes, name=None):
    """Add per-frame boxes as one markups ROI sequence per structure, synchronised with the cine.

    ``boxes``: {structure: (N, 4) x0, y0, x1, y1 pixels, NaN rows = none}. Frames without a
    box hold an ROI without control point (drawn as nothing). Returns {structure: (sequence, proxy ROI)}.
    """
    cine_sequence = _cine_sequence(browser)
    ijk_to_ras, _, values = frame_geometry(browser)
    base = name or f"{browser.GetName()}".replace(" browser", "")
    made = {}
    for structure, array in boxes.items():
        array = np.asarray(array, np.float32).reshape(-1, 4)
        _check_frames(array, len(values), f"boxes of {structure}")
        sequence = _new_sequence(ctx, f"{base} {structure} box", "box", cine_sequence)
        sequence.SetAttribute(STRUCTURE_ATTRIBUTE, str(structure))
        _add_selection_node(sequence)
        # ROIs in the scene (markups look up their units there), refilled per frame.
        roi = ctx.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "SpineAI temporary box")
        empty = ctx.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "SpineAI temporary empty box")
        empty.RemoveAllControlPoints()
        try:
            was_modifying = sequence.StartModify()
            for i, value in enumerate(values):
                if not np.all(np.isfinite(array[i])):
                    sequence.SetDataNodeAtValue(empty, value)
                    continue
                center, size = box_to_ras(array[i], ijk_to_ras)
                roi.SetCenter(*[float(v) for v in center])
                roi.SetSize(*[float(v) for v in size])
                if roi.GetNumberOfControlPoints():
                    roi.SetNthControlPointLabel(0, str(structure))
                sequence.SetDataNodeAtValue(roi, value)
            sequence.EndModify(was_modifying)
        finally:
            for node in (roi, empty):
                for k in range(node.GetNumberOfDisplayNodes()):
                    if node.GetNthDisplayNode(k) is not None:
                        ctx.scene.RemoveNode(node.GetNthDisplayNode(k))
                ctx.scene.RemoveNode(node)
        proxy = _attach(ctx, browser, sequence)
        proxy.SetLocked(True)
        if proxy.GetDisplayNode() is None:
            proxy.CreateDefaultDisplayNodes()
        display = proxy.GetDisplayNode()
        if display is not None:
            rgb = terminology.label_info(str(structure))["color"]
            display.SetSelectedColor(*rgb)
            display.SetColor(*rgb)
            if hasattr(display, "SetFillOpacity"):
                display.SetFillOpacity(0.0)  # outline only: the box must not hide the image
        made[structure] = (sequence, proxy)
    return made


def _add_selection_node(sequence):
    """Markups look up their length unit through the scene's selection node; the sequence's own
    scene has none, and writing the ROIs would warn once per frame without it."""
    import slicer

    inner = sequence.GetSequenceScene()
    if inner is not None and inner.GetFirstNodeByClass("vtkMRMLSelectionNode") is None:
        selection = slicer.vtkMRMLSelectionNode()
        selection.SetSingletonTag("Singleton")
        inner.AddNode(selection)


def boxes_from_sequence(browser, sequence):
    """(N, 4) pixel boxes back from an ROI sequence of ``browser``'s cine (NaN where none)."""
    ijk_to_ras, _, values = frame_geometry(browser)
    out = np.full((len(values), 4), np.nan, np.float32)
    for i, value in enumerate(values):
        index = sequence.GetItemNumberFromIndexValue(value)
        if index < 0:
            continue
        node = sequence.GetNthDataNode(index)
        if node.GetNumberOfControlPoints() == 0:
            continue  # the "no box" item
        center = [0.0, 0.0, 0.0]
        node.GetCenter(center)
        out[i] = ras_to_box(center, node.GetSize(), ijk_to_ras)
    return out


# -- heat maps ---------------------------------------------------------------------------


def grid_ijk_to_ras(frame_ijk_to_ras, frame_shape, grid_shape):
    """IJK->RAS of a (rows, cols) grid that covers the same field of view as frames of
    ``frame_shape`` (a coarser heat-map grid): grid pixel (i, j) lies at frame pixel
    ((i + 0.5) * fx - 0.5, (j + 0.5) * fy - 0.5), f = frame size / grid size."""
    fy = frame_shape[0] / grid_shape[0]
    fx = frame_shape[1] / grid_shape[1]
    grid_to_frame = np.array([[fx, 0, 0, 0.5 * fx - 0.5], [0, fy, 0, 0.5 * fy - 0.5], [0, 0, 1, 0], [0, 0, 0, 1]])
    return np.asarray(frame_ijk_to_ras, np.float64) @ grid_to_frame


def add_heatmap_sequence(ctx, browser, heats, name=None, colormap="ColdToHotRainbow", opacity=0.5, threshold=0.2,
                         show=True, own_grid=False):
    """Add per-frame heat maps (N, h, w) in 0..1 as a float frame sequence synchronised with the cine,
    shown as the slice views' foreground over the cine's proxy when ``show``. Maps of another size
    are resized to the frames, or with ``own_grid`` kept at their size on a grid covering the same
    field of view (``grid_ijk_to_ras``: a 96-px heat map of a 4K cine stays small; the slice views
    resample it). Returns (sequence node, proxy volume node)."""
    import cv2
    import slicer

    from SpineAILib.scene.overlays import HEATMAP_ATTRIBUTE, show_foreground, style_heatmap_display

    cine_sequence = _cine_sequence(browser)
    ijk_to_ras, (rows, cols), values = frame_geometry(browser)
    heats = np.asarray(heats, np.float32)
    if heats.ndim == 2:
        heats = heats[None]
    _check_frames(heats, len(values), "heat maps")
    if own_grid:
        ijk_to_ras = grid_ijk_to_ras(ijk_to_ras, (rows, cols), heats.shape[1:3])
        rows, cols = heats.shape[1:3]
    sequence = _new_sequence(ctx, name or f"{browser.GetName()} heat map".replace(" browser", ""), "heatmap", cine_sequence)
    frame = slicer.vtkMRMLScalarVolumeNode()
    frame.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras))
    was_modifying = sequence.StartModify()
    for i, value in enumerate(values):
        heat = heats[i]
        if heat.shape != (rows, cols):
            heat = cv2.resize(heat, (cols, rows), interpolation=cv2.INTER_LINEAR)
        heat = np.clip(np.nan_to_num(heat), 0.0, 1.0).astype(np.float32)
        slicer.util.updateVolumeFromArray(frame, np.ascontiguousarray(heat[None]))
        sequence.SetDataNodeAtValue(frame, value)
    sequence.EndModify(was_modifying)
    proxy = _attach(ctx, browser, sequence)
    style_heatmap_display(ctx, proxy, colormap, threshold)
    cine_proxy = browser.GetProxyNode(cine_sequence)
    if cine_proxy is not None:
        proxy.SetAttribute(HEATMAP_ATTRIBUTE, cine_proxy.GetID())
    if show:
        show_foreground(ctx, proxy, cine_proxy, opacity)
    return sequence, proxy


def _index_values(sequence):
    return [sequence.GetNthIndexValue(i) for i in range(sequence.GetNumberOfDataNodes())]


def cine_browser_for(ctx, n_items, index_values=None):
    """The sequence browser whose cine has ``n_items`` frames, preferring one whose index
    values equal ``index_values``; None when no cine has that many frames."""
    candidates = []
    for browser in ctx.nodes("vtkMRMLSequenceBrowserNode"):
        master = browser.GetMasterSequenceNode()
        if master is None or master.GetNumberOfDataNodes() != n_items:
            continue
        if master.GetAttribute(OVERLAY_KIND_ATTRIBUTE):
            continue  # an overlay's own browser, not a cine
        if index_values is not None and _index_values(master) == list(index_values):
            return browser
        candidates.append(browser)
    return candidates[0] if candidates else None


def attach_heatmap_sequence(ctx, sequence, browser=None, colormap="ColdToHotRainbow", threshold=0.2):
    """A heat-map sequence read from a file (``heatmap.seq.nrrd``) joined to the browser of the
    cine it was made from, so it plays with it. The cine is ``browser`` or the one with as many
    frames (``cine_browser_for``); where its index values differ (a cine indexed in seconds) the
    heat map takes the cine's values item by item. Returns the proxy heat-map volume, not shown
    (``overlays.set_heatmap_visible`` is the toggle), or None when no cine in the scene fits."""
    from SpineAILib.scene.overlays import HEATMAP_ATTRIBUTE, style_heatmap_display

    values = _index_values(sequence)
    browser = browser or cine_browser_for(ctx, len(values), values)
    if browser is None:
        return None
    cine_sequence = _cine_sequence(browser)
    cine_values = _index_values(cine_sequence)
    if len(cine_values) != len(values):
        raise ValueError(f"{sequence.GetName()}: {len(values)} heat maps, the cine has {len(cine_values)} frames")
    if values != cine_values:
        sequence.SetIndexName(cine_sequence.GetIndexName())
        sequence.SetIndexUnit(cine_sequence.GetIndexUnit())
        # Through values no item holds, so a new value never collides with an old one.
        parked = [f"{1e12 + i:.0f}" for i in range(len(values))]
        for steps in ((values, parked), (parked, cine_values)):
            for old, new in zip(*steps):
                if not sequence.UpdateIndexValue(old, new):
                    raise ValueError(f"{sequence.GetName()}: could not re-index item {old} to {new}")
    sequence.SetAttribute(OVERLAY_OF_ATTRIBUTE, cine_sequence.GetName() or "")
    sequence.SetAttribute(OVERLAY_KIND_ATTRIBUTE, "heatmap")
    proxy = _attach(ctx, browser, sequence)
    style_heatmap_display(ctx, proxy, colormap, threshold)
    cine_proxy = browser.GetProxyNode(cine_sequence)
    if cine_proxy is not None:
        proxy.SetAttribute(HEATMAP_ATTRIBUTE, cine_proxy.GetID())
    return proxy


# -- all at once ----------------------------------------------------------------------------


def add_localisation_overlays(ctx, browser, result, name=None, boxes=True):
    """Masks (and boxes) of a ``us_localise.localise`` result as sequences of ``browser``'s cine.

    Returns {"masks": (sequence, proxy segmentation), "boxes": {structure: (sequence, proxy ROI)}}.
    """
    masks = {"spinal_cord": result["cord_masks"], "csf": result["csf_masks"]}
    base = name or browser.GetName().replace(" browser", "")
    made = {"masks": add_mask_sequence(ctx, browser, masks, name=f"{base} cord and CSF")}
    if boxes:
        made["boxes"] = add_box_sequences(ctx, browser, result["boxes"], name=base)
    return made
