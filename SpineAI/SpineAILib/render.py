"""Offscreen pictures of the scene: slice views with overlays and a 3-D view, as PNG files.

Uses trame-slicer's view classes (the same slice/3-D views the web app shows),
made as ``DirectViewFactory(do_render_offscreen=True)`` makes them but rendering only
when asked; no window, no server. Views get their own singleton tags, so a web app's
views on the same scene are not touched, and every node the views add (slice,
composite, view, camera nodes) is removed again afterwards, so a scene saved later
holds only the data. Segmentations and markups other than the ones asked for are
hidden while rendering and shown again afterwards.

Needs trame-slicer (command line and web app). Inside desktop 3D Slicer use its own
views and screen capture instead. On Linux without a display, rendering goes
through EGL (Mesa) unless VTK_DEFAULT_OPENGL_WINDOW says otherwise.
"""

import contextlib
import os
import sys
import uuid
from pathlib import Path

import numpy as np

from SpineAILib.errors import SpineAIError

if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    # No display: skip VTK's X11 attempt and use EGL (set before the first render window).
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

SLICE_ORIENTATIONS = {"axial": "Axial", "sagittal": "Sagittal", "coronal": "Coronal"}
VIEW_NAMES = (*SLICE_ORIENTATIONS, "3d")
_TAG_PREFIX = "SpineAIRender"


def render_views(
    ctx,
    volume_node,
    out_dir,
    *,
    segmentation_node=None,
    markups_nodes=(),
    views=("axial", "sagittal", "coronal", "3d"),
    size=(512, 512),
    prefix="view",
    center_ras=None,
    fill_opacity=0.5,
):
    """Render ``views`` of ``volume_node`` to ``out_dir/{prefix}_{view}.png``; returns {view: Path}.

    Slice views are centred on the volume (or on ``center_ras``) and fitted to it;
    the segmentation is drawn as fill + outline, markups as they are displayed.
    The 3-D view shows the segmentation's closed surface (made if missing) seen from
    the front (anterior), superior up.
    """
    unknown = [v for v in views if v not in VIEW_NAMES]
    if unknown:
        raise ValueError(f"unknown view(s) {unknown}; choose from {list(VIEW_NAMES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in size)
    _prepare_segmentation(segmentation_node, fill_opacity, need_surface="3d" in views)
    for node in markups_nodes:
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()

    written = {}
    shown = [n for n in (segmentation_node, *markups_nodes) if n is not None]
    with _only_shown(ctx, shown):
        for name in views:  # one view at a time: each one's window and GPU buffers go before the next is made
            with _offscreen_views(ctx, (name,), width, height) as created:
                view = created[name]
                if name == "3d":
                    view.fit_view_to_content()
                else:
                    _show_volume(view, volume_node, center_ras)
                view.render()
                written[name] = write_png(view.render_window(), out_dir / f"{prefix}_{name}.png")
                del view
    return written


def render_cine_frame(ctx, browser_node, index, path, max_size=512):
    """Write frame ``index`` of a cine (its proxy volume, axial view, filling the picture) to ``path``."""
    from SpineAILib.scene.sequences import set_frame

    proxy = set_frame(ctx, browser_node, index)
    cols, rows = proxy.GetImageData().GetDimensions()[:2]
    spacing = proxy.GetSpacing()
    aspect = (cols * spacing[0]) / (rows * spacing[1])
    width, height = (max_size, round(max_size / aspect)) if aspect >= 1 else (round(max_size * aspect), max_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _only_shown(ctx, ()), _offscreen_views(ctx, ("axial",), max(1, width), max(1, height)) as created:
        view = created["axial"]
        _show_volume(view, proxy, None)
        view.render()
        return write_png(view.render_window(), path)


# -- internals -------------------------------------------------------------------


@contextlib.contextmanager
def _only_shown(ctx, nodes):
    """Hide the other segmentations and markups for the duration (their visibility restored after)."""
    keep = {node.GetID() for node in nodes}
    hidden = []
    for class_name in ("vtkMRMLSegmentationNode", "vtkMRMLMarkupsNode"):
        for node in ctx.nodes(class_name):
            if node.GetID() in keep:
                continue
            for i in range(node.GetNumberOfDisplayNodes()):
                display = node.GetNthDisplayNode(i)
                if display is not None and display.GetVisibility():
                    display.SetVisibility(False)
                    hidden.append(display)
    try:
        yield
    finally:
        for display in hidden:
            display.SetVisibility(True)


def _prepare_segmentation(segmentation_node, fill_opacity, need_surface):
    if segmentation_node is None:
        return
    if segmentation_node.GetDisplayNode() is None:
        segmentation_node.CreateDefaultDisplayNodes()
    display = segmentation_node.GetDisplayNode()
    display.SetVisibility(True)
    display.SetVisibility2DFill(True)
    display.SetVisibility2DOutline(True)
    display.SetOpacity2DFill(fill_opacity)
    display.SetOpacity2DOutline(1.0)
    if need_surface:
        segmentation_node.CreateClosedSurfaceRepresentation()
        display.SetPreferredDisplayRepresentationName3D("Closed surface")
        display.SetVisibility3D(True)


def _show_volume(view, volume_node, center_ras):
    # Background first, then fit: the overlay is composited over this layer.
    view.set_background_volume_id(volume_node.GetID())
    view.set_foreground_volume_id(None)
    view.fit_view_to_content()
    slice_node = view.get_view_node()
    center = center_ras if center_ras is not None else _volume_center(volume_node)
    slice_node.JumpSliceByCentering(*[float(v) for v in center])


def _volume_center(volume_node):
    bounds = [0.0] * 6
    volume_node.GetRASBounds(bounds)
    return [(bounds[2 * a] + bounds[2 * a + 1]) / 2.0 for a in range(3)]


@contextlib.contextmanager
def _offscreen_views(ctx, names, width, height):
    """Create the named views for this call, yield {name: view}, then dismantle them."""
    scene, app_logic = ctx.scene, ctx.app_logic
    before = {node.GetID() for node in _all_nodes(scene)}
    suffix = uuid.uuid4().hex[:6]  # unique per call: never reuse a web app's slice nodes
    created = {}
    try:
        for name in names:
            view = _create_view(scene, app_logic, name, f"{_TAG_PREFIX}{name.capitalize()}{suffix}")
            view.render_window().SetSize(width, height)
            view.update_size(width, height)  # resizes the slice node to the window
            created[name] = view
        yield created
    finally:
        for view in created.values():
            _dismantle(view, app_logic)
        for node in _all_nodes(scene):
            if node.GetID() not in before and _is_view_node(node):
                scene.RemoveNode(node)


def _create_view(scene, app_logic, name, tag):
    """A trame-slicer view rendering offscreen, only when asked (what DirectViewFactory
    makes, but without its render-on-every-event strategy: that re-renders dozens of
    times while a view is set up, ~50x slower here)."""
    try:
        from trame_slicer.views import SliceView, ThreeDView, ViewLayoutDefinition
        from trame_slicer.views.render_scheduler import NoScheduleRendering
    except ImportError as error:
        raise SpineAIError(f"offscreen pictures need trame-slicer ({error})") from None

    if name == "3d":
        definition = ViewLayoutDefinition.threed_view(name=tag, label="3D")
        view_class = ThreeDView
    else:
        definition = ViewLayoutDefinition.slice_view(SLICE_ORIENTATIONS[name], label=tag)
        view_class = SliceView
    with _warnings_hidden():  # VTK 9.6 warns that trame-slicer observes WindowResizeEvent
        view = view_class(scene, app_logic, definition.singleton_tag, scheduled_render_strategy=NoScheduleRendering())
    view.render_window().SetOffScreenRendering(1)
    view.set_view_properties(definition.properties)
    return view


@contextlib.contextmanager
def _warnings_hidden(errors_too=False):
    from vtkmodules.vtkCommonCore import vtkLogger

    verbosity = vtkLogger.GetCurrentVerbosityCutoff()
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_OFF if errors_too else vtkLogger.VERBOSITY_ERROR)
    try:
        yield
    finally:
        vtkLogger.SetStderrVerbosity(verbosity)


def _is_view_node(node):
    return any(
        node.IsA(c)
        for c in ("vtkMRMLAbstractViewNode", "vtkMRMLSliceCompositeNode", "vtkMRMLCameraNode",
                  "vtkMRMLModelNode", "vtkMRMLModelDisplayNode", "vtkMRMLTransformNode")
    )  # fmt: skip


def _dismantle(view, app_logic):
    group = getattr(view, "_displayable_manager_group", None)
    if group is not None:
        # Unhooks the displayable managers from the scene (else the camera manager adds
        # a camera when its view node goes); ruler/orientation managers complain on the way.
        with _warnings_hidden(errors_too=True):
            group.SetMRMLDisplayableNode(None)
    logic = getattr(view, "_logic", None)
    if logic is not None:
        collection = app_logic.GetSliceLogics() if logic.IsA("vtkMRMLSliceLogic") else app_logic.GetViewLogics()
        if collection is not None:
            collection.RemoveItem(logic)
        # Detached before its nodes go: an attached slice logic re-creates removed nodes.
        logic.SetMRMLScene(None)
    view.render_window().Finalize()


def _all_nodes(scene):
    collection = scene.GetNodes()
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def grab(render_window):
    """The render window's pixels as (rows, cols, 3) uint8, top row first."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    grabber = vtkWindowToImageFilter()
    grabber.SetInput(render_window)
    grabber.SetInputBufferTypeToRGB()
    grabber.ReadFrontBufferOff()
    grabber.Update()
    image = grabber.GetOutput()
    cols, rows, _ = image.GetDimensions()
    pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(rows, cols, -1)
    return np.ascontiguousarray(pixels[::-1, :, :3])  # VTK images start at the bottom row


def write_png(render_window, path):
    """Save the render window as PNG atomically (temporary name, then rename)."""
    return save_png(grab(render_window), path)


def save_png(pixels, path):
    """Write (rows, cols, 3) uint8 ``pixels`` to ``path`` as PNG, atomically."""
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkIOImage import vtkPNGWriter

    from SpineAILib.errors import OutputError

    path = Path(path)
    rows, cols = pixels.shape[:2]
    image = vtkImageData()
    image.SetDimensions(cols, rows, 1)
    flat = np.ascontiguousarray(pixels[::-1]).reshape(-1, pixels.shape[2])
    image.GetPointData().SetScalars(numpy_to_vtk(flat, deep=True))
    temp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.png")
    writer = vtkPNGWriter()
    writer.SetFileName(str(temp))
    writer.SetInputData(image)
    writer.Write()
    try:
        if writer.GetErrorCode() or not temp.is_file():
            raise OutputError(f"{path}: could not write PNG")
        os.replace(temp, path)
    except OSError as error:
        raise OutputError(f"{path}: could not write PNG: {error.strerror or error}") from None
    finally:
        temp.unlink(missing_ok=True)
    return path
