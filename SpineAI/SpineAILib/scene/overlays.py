"""Heat maps (Grad-CAM) as coloured foreground volumes over an image in the slice views.

A heat map is a float volume (0..1) on the geometry of the image it explains
(``explain.heatmap_volume``). It is shown as Slicer shows any overlay: the image
is the background layer of the slice views, the heat map the foreground layer with
an opacity, coloured by a colour table, with low values thresholded away so only
the hot parts tint the image. Desktop Slicer's own tables ('ColdToHotRainbow',
'Inferno', ...) are used when the scene has them; a bare scene (command line, web
app) gets an equivalent table built here, which is saved with the scene.
"""

import numpy as np

from SpineAILib.images import VolumeImage
from SpineAILib.scene.volumes import add_volume

HEATMAP_ATTRIBUTE = "SpineAI.HeatMapOf"  # on the heat-map node: ID of the image it explains
OVERLAY_KIND_ATTRIBUTE = "SpineAI.OverlayKind"  # on a cine overlay sequence: "masks", "box" or "heatmap"
# On every heat-map layer (a volume or a heat sequence's proxy): what the "Heat map" toggles find.
HEATMAP_LAYER_ATTRIBUTE = "SpineAI.HeatMap"
DEFAULT_COLORMAP = "ColdToHotRainbow"
# Slicer colour table name -> OpenCV colour map that looks the same (for scenes without it).
_EQUIVALENT = {"ColdToHotRainbow": "jet", "Inferno": "inferno", "Magma": "magma", "Plasma": "plasma",
               "Viridis": "viridis", "Hot": "hot", "Turbo": "turbo", "Jet": "jet"}  # fmt: skip


def heat_color_node(ctx, colormap=DEFAULT_COLORMAP):
    """The colour node named ``colormap`` (Slicer's table if the scene has it, else ours, made once)."""
    import slicer

    scene = ctx.scene
    existing = scene.GetFirstNodeByName(colormap)
    if existing is not None and existing.IsA("vtkMRMLColorNode"):
        return existing
    own_name = f"SpineAI {colormap}"
    existing = scene.GetFirstNodeByName(own_name)
    if existing is not None and existing.IsA("vtkMRMLColorTableNode"):
        return existing
    from SpineAILib.colourmaps import heatmap_to_rgb

    cv_name = _EQUIVALENT.get(colormap, str(colormap).lower())
    rgb = heatmap_to_rgb(np.linspace(0.0, 1.0, 256, dtype=np.float32)[None], cv_name)[0] / 255.0
    table = slicer.vtkMRMLColorTableNode()
    table.SetName(own_name)
    table.SetTypeToUser()
    table.SetNumberOfColors(256)
    for i, (r, g, b) in enumerate(rgb):
        table.SetColor(i, f"{i / 255:.3f}", float(r), float(g), float(b), 1.0)
    table.SetAttribute("Category", "SpineAI")
    scene.AddNode(table)
    return table


def style_heatmap_display(ctx, node, colormap=DEFAULT_COLORMAP, threshold=0.2):
    """Colour table, fixed 0..1 window, values below ``threshold`` transparent."""
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(heat_color_node(ctx, colormap).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevel(1.0, 0.5)
    display.AutoThresholdOff()
    display.SetLowerThreshold(float(threshold))
    display.SetUpperThreshold(1.0e6)
    display.SetApplyThreshold(1 if threshold > 0 else 0)
    display.SetInterpolate(1)
    node.SetAttribute(HEATMAP_LAYER_ATTRIBUTE, "1")
    return display


def synchronized_sequences(browser):
    """The sequences a browser plays along with its master (cine) sequence."""
    from vtkmodules.vtkCommonCore import vtkCollection

    collection = vtkCollection()
    browser.GetSynchronizedSequenceNodes(collection, False)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def heatmap_layers(ctx):
    """The heat-map layers in the scene, oldest first: volumes styled as heat maps and the
    proxies of heat-map sequences (a proxy takes its items' attributes on every frame change,
    so those are found through their browser, by the sequence's kind)."""
    layers = [n for n in ctx.nodes("vtkMRMLScalarVolumeNode") if n.GetAttribute(HEATMAP_LAYER_ATTRIBUTE) == "1"]
    for browser in ctx.nodes("vtkMRMLSequenceBrowserNode"):
        for sequence in synchronized_sequences(browser):
            if sequence.GetAttribute(OVERLAY_KIND_ATTRIBUTE) == "heatmap":
                proxy = browser.GetProxyNode(sequence)
                if proxy is not None and proxy.GetID() not in {n.GetID() for n in layers}:
                    layers.append(proxy)
    return layers


def is_heatmap_layer(ctx, node):
    return node is not None and node.GetID() in {layer.GetID() for layer in heatmap_layers(ctx)}


def heatmap_background(ctx, heat_node):
    """The image a heat-map layer is drawn over: for a heat sequence's proxy, its cine's
    proxy; else the node its HEATMAP_ATTRIBUTE names, or None."""
    for browser in ctx.nodes("vtkMRMLSequenceBrowserNode"):
        master = browser.GetMasterSequenceNode()
        if master is None or master.GetAttribute("SpineAI.OverlayKind"):
            continue
        for sequence in synchronized_sequences(browser):
            proxy = browser.GetProxyNode(sequence)
            if proxy is not None and heat_node is not None and proxy.GetID() == heat_node.GetID():
                return browser.GetProxyNode(master)
    background_id = heat_node.GetAttribute(HEATMAP_ATTRIBUTE) if heat_node is not None else None
    return ctx.scene.GetNodeByID(background_id) if background_id else None


def matching_background(ctx, heat_node):
    """The image a heat-map volume explains: a non-heat scalar volume on the same voxel grid
    (same dimensions and IJK->RAS within 1e-3), or None."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    from SpineAILib.scene.volumes import numpy_matrix

    def geometry(node):
        matrix = vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        image = node.GetImageData()
        return (image.GetDimensions() if image is not None else None), numpy_matrix(matrix)

    dims, matrix = geometry(heat_node)
    for node in ctx.nodes("vtkMRMLScalarVolumeNode"):
        if node is heat_node or node.GetAttribute(HEATMAP_LAYER_ATTRIBUTE) == "1" or node.IsA("vtkMRMLLabelMapVolumeNode"):
            continue
        other_dims, other = geometry(node)
        if other_dims == dims and np.allclose(other, matrix, atol=1e-3):
            return node
    return None


def show_foreground(ctx, foreground_node, background_node=None, opacity=0.5):
    """Make ``foreground_node`` (None: no overlay) the foreground layer of every slice view
    (and ``background_node`` the background when given); returns the number of slice views set.

    Also records the pair in the selection node, so views created afterwards show it.
    """
    fg_id = foreground_node.GetID() if foreground_node is not None else None
    bg_id = background_node.GetID() if background_node is not None else None
    composites = ctx.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    for i in range(composites.GetNumberOfItems()):
        composite = composites.GetItemAsObject(i)
        if bg_id is not None:
            composite.SetBackgroundVolumeID(bg_id)
        composite.SetForegroundVolumeID(fg_id)
        if fg_id is not None:
            composite.SetForegroundOpacity(float(opacity))
    selection = ctx.app_logic.GetSelectionNode() if ctx.app_logic is not None else None
    if selection is not None:
        if bg_id is not None:
            selection.SetActiveVolumeID(bg_id)
        selection.SetSecondaryVolumeID(fg_id)
    return composites.GetNumberOfItems()


def add_heatmap_overlay(ctx, heat_image: VolumeImage, background_node=None, name="Heat map",
                        colormap=DEFAULT_COLORMAP, opacity=0.5, threshold=0.2):
    """Add ``heat_image`` (0..1 float volume, e.g. from ``explain.heatmap_volume``) as a heat-map
    volume node and show it over ``background_node`` in the slice views; returns the node.

    ``colormap``: a Slicer colour table name ('ColdToHotRainbow', 'Inferno', ...) or an
    OpenCV colour map name ('jet', 'turbo'). ``threshold``: heat below it is transparent.
    """
    image = heat_image
    if image.is_labelmap:
        raise ValueError("a heat map must be a scalar (float) volume, not a label map")
    node = add_volume(ctx, image, name=name)
    style_heatmap_display(ctx, node, colormap, threshold)
    if background_node is not None:
        node.SetAttribute(HEATMAP_ATTRIBUTE, background_node.GetID())
    show_foreground(ctx, node, background_node, opacity)
    return node


def set_heatmap_visible(ctx, heat_node, visible=True, background_node=None, opacity=0.5):
    """The heat-map toggle: show ``heat_node`` as the slice views' foreground, or no foreground."""
    if background_node is None and heat_node is not None:
        background_node = heatmap_background(ctx, heat_node)
    return show_foreground(ctx, heat_node if visible else None, background_node, opacity)
