"""Where a result row points: a table row -> a place in the views.

A severity row names a disc level, a fracture row a vertebra, an ultrasound row a
frame. The web app and the desktop module both ask ``locate_row`` and then jump
their views, so a click on a row does the same thing everywhere.
"""

import re

import numpy as np

LEVEL_COLUMNS = ("level", "disc_level", "disc")
VERTEBRA_COLUMNS = ("vertebra", "target", "label", "name")
FRAME_COLUMNS = ("frame",)
_LEVEL = re.compile(r"^\s*([CTL]\d{1,2})\s*[/_-]\s*([CTLS]\d{1,2})\s*$", re.IGNORECASE)


def normalise_level(text):
    """'l4_l5', 'L4-L5', 'L4/L5' -> 'L4/L5'; None when ``text`` names no disc level."""
    match = _LEVEL.match(str(text))
    return f"{match.group(1).upper()}/{match.group(2).upper()}" if match else None


def locate_row(ctx, row):
    """('ras', (r, a, s)) or ('frame', index) for a table row (dict column -> text), or None."""
    lowered = {str(k).strip().lower(): v for k, v in row.items()}
    for column in FRAME_COLUMNS:
        if column in lowered:
            try:
                return ("frame", int(float(lowered[column])))
            except (TypeError, ValueError):
                pass
    for column in LEVEL_COLUMNS:
        level = normalise_level(lowered.get(column, ""))
        if level:
            position = control_point_position(ctx, level)
            if position is not None:
                return ("ras", position)
    for column in VERTEBRA_COLUMNS:
        name = str(lowered.get(column, "")).strip()
        if name:
            position = control_point_position(ctx, name) or segment_centre(ctx, name)
            if position is not None:
                return ("ras", position)
    return None


def control_point_position(ctx, label):
    """RAS of the first markups control point labelled ``label`` (case-insensitive)."""
    from SpineAILib.scene.markups import points_from_node

    wanted = label.strip().lower()
    for node in ctx.nodes("vtkMRMLMarkupsNode"):
        if node.IsA("vtkMRMLMarkupsROINode"):
            if (node.GetName() or "").strip().lower() == wanted or _roi_label(node) == wanted:
                centre = [0.0, 0.0, 0.0]
                node.GetCenter(centre)
                return tuple(centre)
            continue
        for point_label, position in points_from_node(node):
            if point_label.strip().lower() == wanted:
                return position
    return None


def _roi_label(node):
    return (node.GetNthControlPointLabel(0) if node.GetNumberOfControlPoints() else "").strip().lower()


def segment_centre(ctx, name):
    """Centroid (RAS) of the segment called ``name`` in any segmentation.

    Computed from the segment's own voxels in its binary labelmap: segments of one
    segmentation share a labelmap layer, so the layer's bounds would be the same for all.
    """
    wanted = name.strip().lower()
    for node in ctx.nodes("vtkMRMLSegmentationNode"):
        segmentation = node.GetSegmentation()
        for i in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(i)
            if (segment.GetName() or "").strip().lower() == wanted:
                centre = _labelmap_centroid(segment)
                if centre is not None:
                    return centre
    return None


def _labelmap_centroid(segment):
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    image = segment.GetRepresentation("Binary labelmap")
    if image is None or image.GetPointData().GetScalars() is None:
        return None
    extent = image.GetExtent()
    dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    if min(dims) <= 0:
        return None
    voxels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])
    k, j, i = np.nonzero(voxels == segment.GetLabelValue())
    if k.size == 0:
        return None
    ijk = np.array([i.mean() + extent[0], j.mean() + extent[2], k.mean() + extent[4], 1.0])
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    m = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    return tuple(float(v) for v in (m @ ijk)[:3])
