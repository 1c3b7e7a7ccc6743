"""Labelled points, boxes and lines <-> markups nodes (points: vtkMRMLMarkupsFiducialNode, box: ROI,
line: vtkMRMLMarkupsLineNode, which Slicer shows with its length)."""

import numpy as np

from SpineAILib import terminology


def add_points(ctx, name, points, locked=False, color=None):
    """A point list node with one labelled control point per ``(label, (r, a, s))``.

    ``color``: RGB 0-1 of the list; by default the terminology colour of the
    first label (e.g. a disc level), so a list of disc points looks like its discs.
    """
    node = ctx.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", ctx.scene.GenerateUniqueName(name))
    was_modifying = node.StartModify()
    for label, ras in points:
        node.AddControlPoint([float(v) for v in ras], str(label))
    node.SetLocked(bool(locked))
    node.EndModify(was_modifying)
    display = node.GetDisplayNode()
    if display is not None and (color is not None or points):
        rgb = color if color is not None else terminology.color(points[0][0])
        display.SetSelectedColor(*rgb)  # control points are "selected" by default
        display.SetColor(*rgb)
    return node


def add_line(ctx, name, start_ras, end_ras, locked=True, color=None):
    """A line node from ``start_ras`` to ``end_ras`` (a measured distance: Slicer shows its length)."""
    node = ctx.scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", ctx.scene.GenerateUniqueName(name))
    was_modifying = node.StartModify()
    node.AddControlPoint([float(v) for v in start_ras])
    node.AddControlPoint([float(v) for v in end_ras])
    node.SetLocked(bool(locked))
    node.EndModify(was_modifying)
    display = node.GetDisplayNode()
    if display is not None and color is not None:
        display.SetSelectedColor(*color)
        display.SetColor(*color)
    return node


def add_roi(ctx, name, center_ras, size_mm, label=None, axes=None):
    """A box ROI centred at ``center_ras`` with edge lengths ``size_mm`` (along its axes).

    ``axes``: 3x3, columns are the box's unit x, y, z directions in RAS (default: RAS axes).
    ``label`` goes on the ROI's control point (shown in views, saved in .mrk.json).
    """
    from SpineAILib.scene.volumes import vtk_matrix

    node = ctx.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", ctx.scene.GenerateUniqueName(name))
    was_modifying = node.StartModify()
    if axes is not None:
        matrix = np.eye(4)
        matrix[:3, :3] = np.asarray(axes, dtype=float)
        # Orientation first: SetCenter then moves the box along these axes' origin.
        node.GetObjectToNodeMatrix().DeepCopy(vtk_matrix(matrix))
    node.SetCenter(*[float(v) for v in center_ras])
    node.SetSize(*[float(v) for v in size_mm])
    if label is not None:
        node.SetNthControlPointLabel(0, str(label))
    node.EndModify(was_modifying)
    return node


def points_from_node(node):
    """``[(label, (r, a, s)), ...]`` of a markups node (node coordinates, transforms ignored)."""
    points = []
    for i in range(node.GetNumberOfControlPoints()):
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPosition(i, position)
        points.append((node.GetNthControlPointLabel(i), tuple(float(v) for v in position)))
    return points


def roi_geometry(node):
    """dict(center, size, axes) of an ROI node (axes: 3x3, columns are the box axes in RAS)."""
    from SpineAILib.scene.volumes import numpy_matrix

    center = [0.0, 0.0, 0.0]
    node.GetCenter(center)
    size = tuple(float(v) for v in node.GetSize())
    axes = numpy_matrix(node.GetObjectToNodeMatrix())[:3, :3]
    return {"center": tuple(center), "size": size, "axes": axes}
