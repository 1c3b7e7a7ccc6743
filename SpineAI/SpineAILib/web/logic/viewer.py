"""What the web app's views show: trame-slicer view calls for nodes the scene layer made.

Everything here works on a trame-slicer ``SlicerApp`` (its view manager and
volume rendering) and on MRML nodes; nothing reads files or builds nodes (that is
``SpineAILib.io`` and ``SpineAILib.scene``).
"""

from trame_slicer.core import LayoutManager
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

from SpineAILib.images import plane_of_normal

# Layout ids shown in the panel's layout selector, in order.
QUAD = "Four views"
LAYOUT_OF_PLANE = {"axial": "Axial", "sagittal": "Sagittal", "coronal": "Coronal"}

# Above this many voxels the 3-D view shows slice planes instead of volume
# rendering: software OpenGL (Mesa llvmpipe on a server) re-renders the whole
# volume for every frame.
MAX_VOLUME_RENDERING_VOXELS = 64 * 1024**2

VR_PRESET_OF_MODALITY = {"CT": "CT-Bone", "MR": "MR-Default", "US": "US-Fetal"}
MODALITY_ATTRIBUTE = "SpineAI.Modality"  # set by SpineAILib.scene.volumes.add_volume


def layouts():
    axial = ViewLayoutDefinition.axial_view()
    sagittal = ViewLayoutDefinition.sagittal_view()
    coronal = ViewLayoutDefinition.coronal_view()
    threed = ViewLayoutDefinition.threed_view()
    quad = LayoutManager.default_grid_configuration()["Quad View"]
    return {
        QUAD: quad,
        "Axial": Layout(LayoutDirection.Vertical, [axial]),
        "Sagittal": Layout(LayoutDirection.Vertical, [sagittal]),
        "Coronal": Layout(LayoutDirection.Vertical, [coronal]),
        "3-D": Layout(LayoutDirection.Vertical, [threed]),
    }


def _matrix_column(node, column):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return [matrix.GetElement(row, column) for row in range(3)]


def slice_plane(volume_node):
    """Plane ('axial', 'sagittal', 'coronal' or 'oblique') of a one-slice volume such as a cine frame."""
    image = volume_node.GetImageData()
    dims = image.GetDimensions() if image is not None else (0, 0, 0)
    # The thin axis is the frame's normal; K for frames stored as (1, rows, cols).
    thin = min(range(3), key=lambda axis: dims[axis])
    return plane_of_normal(_matrix_column(volume_node, thin))


def voxel_count(volume_node):
    image = volume_node.GetImageData()
    if image is None:
        return 0
    i, j, k = image.GetDimensions()
    return i * j * k


def show_in_slice_views(slicer_app, volume_node, view_ids=None):
    """Make ``volume_node`` the background of the slice views and fit them to it."""
    for view in slicer_app.view_manager.get_slice_views():
        if view_ids is not None and view.get_singleton_tag() not in view_ids:
            continue
        view.set_background_volume_id(volume_node.GetID() if volume_node else None)
        view.set_foreground_volume_id(None)
        # reset_view = default orientation, rotated to the volume's axes, then fit.
        view.reset_view()


def vr_preset(volume_node):
    modality = volume_node.GetAttribute(MODALITY_ATTRIBUTE) or ""
    if not modality and volume_node.GetImageData() is not None:
        # NIfTI says nothing about modality; air at about -1000 means Hounsfield units.
        modality = "CT" if volume_node.GetImageData().GetScalarRange()[0] < -500 else ""
    return VR_PRESET_OF_MODALITY.get(modality, "MR-Default")


def set_volume_rendering(slicer_app, volume_node, visible, slice_planes=None):
    """Volume rendering of ``volume_node`` on/off; slice planes in 3-D (default: when it is off)."""
    vr = slicer_app.volume_rendering
    display = vr.get_vr_display_node(volume_node)
    if visible and display is None:
        preset = vr_preset(volume_node)
        display = vr.create_display_node(volume_node, preset)
        if preset == "MR-Default":  # the preset's fixed ramp makes an opaque block of an MRI
            fit_mr_opacity(slicer_app, volume_node)
    if display is not None:
        display.SetVisibility(bool(visible))
    set_slice_planes_in_3d(slicer_app, not visible if slice_planes is None else slice_planes)


def set_slice_planes_in_3d(slicer_app, visible):
    for view in slicer_app.view_manager.get_slice_views():
        view.set_visible_in_3d(bool(visible))


def fit_3d(slicer_app):
    for view in slicer_app.view_manager.get_threed_views():
        view.reset_view()


def hide_other_volume_renderings(slicer_app, volume_node):
    """Volume renderings of every volume but ``volume_node`` off: the 3-D view shows the volume
    the slices show, not one loaded before it (still in the scene, listed under Loaded)."""
    vr = slicer_app.volume_rendering
    for other in _nodes(slicer_app.scene, "vtkMRMLScalarVolumeNode"):
        if volume_node is not None and other.GetID() == volume_node.GetID():
            continue
        display = vr.get_vr_display_node(other)
        if display is not None and display.GetVisibility():
            display.SetVisibility(False)


def show_volume(slicer_app, volume_node, volume_rendering=None):
    """Background of every slice view, fitted; volume rendering (or slice planes) in 3-D."""
    show_in_slice_views(slicer_app, volume_node)
    if volume_rendering is None:
        volume_rendering = wants_volume_rendering(volume_node)
    show_volume_in_3d(slicer_app, volume_node, volume_rendering)
    return volume_rendering


def wants_volume_rendering(volume_node):
    """Volume rendering in 3-D unless the volume is too big for software rendering."""
    return voxel_count(volume_node) <= MAX_VOLUME_RENDERING_VOXELS


def show_volume_in_3d(slicer_app, volume_node, volume_rendering, slice_planes=None):
    """The 3-D view's part of ``show_volume``: only ``volume_node`` volume-rendered (or its slice
    planes), fitted. In software OpenGL its first frame costs about a second (the web app's views
    defer it until the slice views have been drawn)."""
    hide_other_volume_renderings(slicer_app, volume_node)
    set_volume_rendering(slicer_app, volume_node, volume_rendering, slice_planes=slice_planes)
    fit_3d(slicer_app)


def set_3d_render_blocked(slicer_app, blocked):
    """Hold back (True) or allow again (False, which schedules a render) the 3-D views' frames."""
    for view in slicer_app.view_manager.get_threed_views():
        if view.is_render_blocked != bool(blocked):
            view.set_render_blocked(bool(blocked))


def show_segmentation(segmentation_node):
    """Segments filled + outlined in 2-D and as closed surfaces in 3-D."""
    segmentation_node.CreateDefaultDisplayNodes()
    display = segmentation_node.GetDisplayNode()
    display.SetVisibility(True)
    display.SetVisibility2DFill(True)
    display.SetVisibility2DOutline(True)
    display.SetVisibility3D(True)
    # Surfaces are what the 3-D view draws; build them now rather than on first render.
    segmentation_node.CreateClosedSurfaceRepresentation()


def show_cine_frame(slicer_app, proxy_node):
    """Layout id of the single 2-D view that matches the frame's plane; shows the frame in it, fitted."""
    plane = slice_plane(proxy_node)
    layout_id = LAYOUT_OF_PLANE.get(plane, "Axial")
    tag = {"Axial": "Red", "Sagittal": "Yellow", "Coronal": "Green"}[layout_id]
    show_in_slice_views(slicer_app, proxy_node, view_ids={tag})
    return layout_id


def fit_slice_views(slicer_app, view_ids=None):
    for view in slicer_app.view_manager.get_slice_views():
        if view_ids is None or view.get_singleton_tag() in view_ids:
            view.fit_view_to_content()
            view.schedule_render()


def render_all_views(slicer_app):
    for view in [*slicer_app.view_manager.get_slice_views(), *slicer_app.view_manager.get_threed_views()]:
        view.schedule_render()


def render_slice_views(slicer_app):
    """Render the slice views again (after their layers changed in the composite nodes)."""
    for view in slicer_app.view_manager.get_slice_views():
        view.schedule_render()


def background_volume(slicer_app, scene):
    """The volume node shown as background in the first slice view that has one."""
    for view in slicer_app.view_manager.get_slice_views():
        node_id = view.get_background_volume_id()
        if node_id:
            return scene.GetNodeByID(node_id)
    return None


# -- what the panel lists ------------------------------------------------------

_KINDS = (
    ("vtkMRMLSequenceBrowserNode", "cine"),
    ("vtkMRMLLabelMapVolumeNode", "label map"),
    ("vtkMRMLScalarVolumeNode", "volume"),  # vector volumes (RGB) are scalar-volume subclasses
    ("vtkMRMLSegmentationNode", "segmentation"),
    ("vtkMRMLMarkupsNode", "markups"),
    ("vtkMRMLTableNode", "table"),
)


def scene_items(scene):
    """[{id, name, kind}] of the data nodes a user loaded (no proxies, no hidden helpers)."""
    from vtkmodules.vtkCommonCore import vtkCollection

    hidden = set()  # a cine is listed once, as its browser: not its proxy, not its sequences
    for browser in _nodes(scene, "vtkMRMLSequenceBrowserNode"):
        proxies = vtkCollection()
        browser.GetAllProxyNodes(proxies)
        hidden.update(proxies.GetItemAsObject(i).GetID() for i in range(proxies.GetNumberOfItems()))
    items = []
    for class_name, kind in _KINDS:
        for node in _nodes(scene, class_name):
            if node.GetID() in hidden or node.GetHideFromEditors():
                continue
            hidden.add(node.GetID())
            name = node.GetName()
            if kind == "cine" and node.GetMasterSequenceNode() is not None:
                name = node.GetMasterSequenceNode().GetName()
            display = node.GetDisplayNode() if kind in ("segmentation", "markups") else None
            visible = bool(display.GetVisibility()) if display is not None else True
            items.append({"id": node.GetID(), "name": name, "kind": kind, "visible": visible})
    return items


def _nodes(scene, class_name):
    collection = scene.GetNodesByClass(class_name)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def table_content(table_node, max_rows=200):
    """(column names, rows as lists of strings), at most ``max_rows`` rows."""
    table = table_node.GetTable()
    columns = [table.GetColumnName(c) or f"column {c + 1}" for c in range(table.GetNumberOfColumns())]
    rows = [
        [table_node.GetCellText(r, c) for c in range(len(columns))]
        for r in range(min(table.GetNumberOfRows(), max_rows))
    ]
    return columns, rows


def sequence_times_ms(sequence_node):
    """Time of each item in ms, from the sequence's index values and unit (s or ms)."""
    unit = (sequence_node.GetIndexUnit() or "").strip().lower()
    scale = 1000.0 if unit in ("s", "sec", "second", "seconds") else 1.0
    times = []
    for i in range(sequence_node.GetNumberOfDataNodes()):
        try:
            times.append(float(sequence_node.GetNthIndexValue(i)) * scale)
        except ValueError:
            times.append(float(i))
    return times


def jump_slices_to(scene, ras):
    """Centre every slice view on ``ras`` (the slices move; the 3-D view is left alone)."""
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        scene.GetNthNodeByClass(i, "vtkMRMLSliceNode").JumpSliceByCentering(*ras)


# -- window / level ------------------------------------------------------------

# (title, window, level) in Hounsfield units; 'auto' (the volume's own range) is the default
# and the only choice that makes sense for MRI and ultrasound.
WL_PRESETS = {
    "bone": ("CT bone", 1000.0, 400.0),
    "soft": ("CT soft tissue", 400.0, 40.0),
    "lung": ("CT lung", 1500.0, -600.0),
    "brain": ("CT brain", 80.0, 40.0),
}


def display_node(volume_node):
    if volume_node is None:
        return None
    display = volume_node.GetDisplayNode()
    if display is None:
        volume_node.CreateDefaultDisplayNodes()
        display = volume_node.GetDisplayNode()
    return display


def window_level(volume_node):
    """(window, level) of a volume's display, or None."""
    display = display_node(volume_node)
    if display is None or not hasattr(display, "GetWindow"):
        return None
    return float(display.GetWindow()), float(display.GetLevel())


def window_level_text(volume_node):
    wl = window_level(volume_node)
    return "" if wl is None else f"W {wl[0]:.0f}  L {wl[1]:.0f}"


def set_window_level(volume_node, preset):
    """``preset``: a key of ``WL_PRESETS``, 'auto', or (window, level)."""
    display = display_node(volume_node)
    if display is None or not hasattr(display, "SetWindowLevel"):
        return
    if preset == "auto":
        display.SetAutoWindowLevel(1)
        return
    window, level = WL_PRESETS[preset][1:] if isinstance(preset, str) else preset
    with _modifying(display):
        display.SetAutoWindowLevel(0)
        display.SetWindowLevel(float(window), float(level))


class _modifying:
    def __init__(self, node):
        self.node = node

    def __enter__(self):
        self.was = self.node.StartModify()

    def __exit__(self, *exc):
        self.node.EndModify(self.was)


# -- mouse modes -----------------------------------------------------------------


def interaction_node(scene):
    return scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")


def set_window_level_drag(scene, enabled):
    """Left-drag in slice views: window / level (Slicer's 'adjust window/level' mouse mode) or nothing."""
    from slicer import vtkMRMLInteractionNode

    node = interaction_node(scene)
    if node is not None:
        node.SetCurrentInteractionMode(vtkMRMLInteractionNode.AdjustWindowLevel if enabled
                                       else vtkMRMLInteractionNode.ViewTransform)


def start_placing(slicer_app, class_name, name, kind):
    """A new, empty markups node of ``class_name``; the views' clicks add its control points."""
    scene = slicer_app.scene
    node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    node.SetAttribute(MEASURE_ATTRIBUTE, kind)
    node.CreateDefaultDisplayNodes()
    return node


MEASURE_ATTRIBUTE = "SpineAI.Measure"  # 'ruler', 'angle', 'cobb' on the markups the views' tools made


def control_points(node):
    points = []
    for i in range(node.GetNumberOfControlPoints()):
        if node.GetNthControlPointPositionStatus(i) != node.PositionDefined:
            continue
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(i, p)
        points.append(p)
    return points


def lock_level_boxes(scene):
    """Level boxes (markups ROIs) are for reading: locked, no handles, hidden until shown from the list."""
    changed = []
    for node in _nodes(scene, "vtkMRMLMarkupsROINode"):
        if node.GetAttribute("SpineAI.BoxesChecked") or not _is_level_box(node):
            continue
        node.SetAttribute("SpineAI.BoxesChecked", "1")
        node.SetLocked(True)
        display = node.GetDisplayNode()
        if display is not None:
            display.SetHandlesInteractive(False)
            display.SetVisibility(False)
        changed.append(node)
    return changed


def _is_level_box(node):
    """A lumbar run's level box ('Level L4/L5', labelled with its level), not an annotator's box."""
    from SpineAILib.terminology import DISC_LEVELS

    if node.GetAttribute("SpineAI.Annotation") or node.GetAttribute(MEASURE_ATTRIBUTE):
        return False
    label = node.GetNthControlPointLabel(0) if node.GetNumberOfControlPoints() else ""
    return node.GetName().startswith("Level") or label in DISC_LEVELS


# -- what each slice view says about itself (name, orientation letters, W/L, slice) -----------


def _column(matrix, column):
    return [matrix.GetElement(row, column) for row in range(3)]


def slice_view_info(view, scene):
    """{name, left, right, top, bottom, wl, slice} of a slice view, as its corners show them."""
    from SpineAILib.measure import orientation_letter, view_letters

    node = view.get_view_node()
    if node is None:
        return {}
    to_ras = node.GetSliceToRAS()
    info = {"name": node.GetOrientation() or node.GetName(), **view_letters(_column(to_ras, 0), _column(to_ras, 1))}
    volume = scene.GetNodeByID(view.get_background_volume_id() or "")
    info["wl"] = window_level_text(volume) if volume is not None else ""
    info["slice"] = ""
    normal = _column(to_ras, 2)
    offset = view.get_slice_value()
    letter = orientation_letter([v if offset >= 0 else -v for v in normal]) if any(normal) else ""
    position = f"{letter} {abs(offset):.1f} mm"
    index = slice_index(volume, _column(to_ras, 3), normal) if volume is not None else None
    info["slice"] = f"slice {index[0] + 1}/{index[1]}  {position}" if index else position
    return info


def slice_index(volume_node, centre_ras, normal):
    """(0-based index, count) of the volume's slice at ``centre_ras`` along the IJK axis nearest
    ``normal``; None when the volume has no image or the view is oblique to it."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    image = volume_node.GetImageData()
    if image is None:
        return None
    ras_to_ijk = vtkMatrix4x4()
    volume_node.GetRASToIJKMatrix(ras_to_ijk)
    ijk = ras_to_ijk.MultiplyPoint([*centre_ras, 1.0])[:3]
    ijk_to_ras = vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    cosines = []
    for axis in range(3):
        column = _column(ijk_to_ras, axis)
        length = sum(v * v for v in column) ** 0.5 or 1.0
        cosines.append(abs(sum(c * n for c, n in zip(column, normal))) / length)
    axis = max(range(3), key=lambda a: cosines[a])
    if cosines[axis] < 0.99:
        return None
    count = image.GetDimensions()[axis]
    return min(max(int(round(ijk[axis])), 0), count - 1), count


# -- crosshair -----------------------------------------------------------------------


def event_ras(view):
    """RAS of the interactor's last event position in a slice view."""
    x, y = view.interactor().GetEventPosition()
    xy_to_ras = view.get_view_node().GetXYToRAS()
    return list(xy_to_ras.MultiplyPoint([float(x), float(y), 0.0, 1.0])[:3])


def set_crosshair(scene, ras):
    """The crosshair at ``ras`` in every view, and every slice view moved to the slice through it
    (each keeps its zoom and pan: Slicer's 'offset jump')."""
    from slicer import vtkMRMLCrosshairNode

    crosshair = scene.GetFirstNodeByClass("vtkMRMLCrosshairNode")
    if crosshair is not None:
        crosshair.SetCrosshairMode(vtkMRMLCrosshairNode.ShowBasic)
        crosshair.SetCrosshairRAS(*ras)
    for node in _nodes(scene, "vtkMRMLSliceNode"):
        node.JumpSliceByOffsetting(*ras)


def hide_crosshair(scene):
    from slicer import vtkMRMLCrosshairNode

    crosshair = scene.GetFirstNodeByClass("vtkMRMLCrosshairNode")
    if crosshair is not None:
        crosshair.SetCrosshairMode(vtkMRMLCrosshairNode.NoCrosshair)


# -- MRI volume rendering ---------------------------------------------------------------


def fit_mr_opacity(slicer_app, volume_node):
    """MRI has no fixed intensity scale: only the brightest voxels (fluid, fat) are opaque,
    so the 3-D view shows the spine's shape rather than a block of background and noise."""
    import numpy as np
    from vtkmodules.util.numpy_support import vtk_to_numpy

    image = volume_node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        return
    values = vtk_to_numpy(image.GetPointData().GetScalars())
    values = values.reshape(-1)[:: max(1, values.size // 2_000_000)].astype(np.float32)
    low, start, full, high = np.percentile(values, [0, 93, 99.5, 100])
    if not high > start:
        return
    prop = slicer_app.volume_rendering.get_volume_node_property(volume_node)
    prop.set_opacity_values([[float(low), 0.0], [float(start), 0.0], [float(max(full, start + 1e-3)), 0.35],
                             [float(max(high, full + 2e-3)), 0.6]])
