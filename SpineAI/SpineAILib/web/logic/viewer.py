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
        display = vr.create_display_node(volume_node, vr_preset(volume_node))
    if display is not None:
        display.SetVisibility(bool(visible))
    set_slice_planes_in_3d(slicer_app, not visible if slice_planes is None else slice_planes)


def set_slice_planes_in_3d(slicer_app, visible):
    for view in slicer_app.view_manager.get_slice_views():
        view.set_visible_in_3d(bool(visible))


def fit_3d(slicer_app):
    for view in slicer_app.view_manager.get_threed_views():
        view.reset_view()


def show_volume(slicer_app, volume_node, volume_rendering=None):
    """Background of every slice view, fitted; volume rendering (or slice planes) in 3-D."""
    show_in_slice_views(slicer_app, volume_node)
    if volume_rendering is None:
        volume_rendering = voxel_count(volume_node) <= MAX_VOLUME_RENDERING_VOXELS
    set_volume_rendering(slicer_app, volume_node, volume_rendering)
    fit_3d(slicer_app)
    return volume_rendering


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
