"""What the views show (a volume, a cine, segmentations, markups), the layout, and the lists
of the Loaded section and the tables.

Everything here runs on the server's asyncio loop (MRML and VTK are touched nowhere else).
"""

from dataclasses import dataclass

from undo_stack import Signal

from SpineAILib.web.logic import viewer
from SpineAILib.web.logic.base_logic import BaseLogic
from SpineAILib.web.ui.views_ui import ViewsState


@dataclass
class ShownCine:
    """The cine on screen: its sequence browser, its sequence and each frame's time in ms."""

    browser: object
    sequence: object
    times_ms: list

    @property
    def frame(self):
        return int(self.browser.GetSelectedItemNumber())

    @property
    def n_frames(self):
        return len(self.times_ms)


class ViewsLogic(BaseLogic[ViewsState]):
    showing_changes = Signal()  # a volume or a cine is about to replace what is shown (stop playback)
    cine_shown = Signal()  # a cine is on screen now (``self.cine``)
    cine_hidden = Signal()

    def __init__(self, server, slicer_app, scene_ctx, layout_manager):
        super().__init__(server, ViewsState)
        self.slicer_app = slicer_app
        self.scene_ctx = scene_ctx
        self.layout_manager = layout_manager
        self.volume = None  # volume node shown in the views (not a cine)
        self.cine = None  # ShownCine
        self.segmentation_shown = False  # 3-D then shows surfaces without slice planes
        layout_manager.register_layout_dict(viewer.layouts())
        self.typed.update(layout_ids=list(viewer.layouts()), layout_id=viewer.QUAD)
        layout_manager.set_layout(viewer.QUAD)
        self.bind_changes({self.name.layout_id: self._on_layout_id,
                           self.name.volume_rendering: self._on_volume_rendering})

    def set_ui(self, ui):
        ui.item_clicked.connect(self.toggle_item)

    @property
    def scene(self):
        return self.scene_ctx.scene

    def current_frame(self):
        """The cine frame on screen (0-based), or None when no cine is shown."""
        return self.cine.frame if self.cine is not None else None

    def refresh_lists(self):
        tables = []
        for node in self.scene_ctx.nodes("vtkMRMLTableNode"):
            if node.GetHideFromEditors():
                continue
            columns, rows = viewer.table_content(node)
            tables.append({"id": node.GetID(), "name": node.GetName(), "columns": columns, "rows": rows})
        self.typed.update(items=viewer.scene_items(self.scene), tables=tables)

    def show_node(self, node):
        """Put a freshly loaded (or clicked) node on the views, by kind."""
        if node.IsA("vtkMRMLSegmentationNode"):
            viewer.show_segmentation(node)
            # Surfaces alone in 3-D: a volume rendering or a slice plane would hide them.
            self.segmentation_shown = True
            self.data.volume_rendering = False
            if self.volume is not None:
                viewer.set_volume_rendering(self.slicer_app, self.volume, False, slice_planes=False)
            viewer.fit_3d(self.slicer_app)
        elif node.IsA("vtkMRMLSequenceBrowserNode"):
            sequence = node.GetMasterSequenceNode()
            self.show_cine(node, sequence, node.GetProxyNode(sequence))
        elif node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode"):
            self.showing_changes()
            self.cine, self.volume, self.segmentation_shown = None, node, False
            self.data.cine_visible = False
            self.cine_hidden()
            if self.data.layout_id != viewer.QUAD:
                self.data.layout_id = viewer.QUAD
                self.layout_manager.set_layout(viewer.QUAD)
            # Volume rendering unless the volume is too big for software rendering.
            self.data.volume_rendering = viewer.show_volume(self.slicer_app, node)
        elif node.IsA("vtkMRMLDisplayableNode"):
            node.CreateDefaultDisplayNodes()
            display = node.GetDisplayNode()
            if display is not None:
                display.SetVisibility(True)

    def show_cine(self, browser, sequence, proxy):
        self.showing_changes()
        self.cine = ShownCine(browser, sequence, viewer.sequence_times_ms(sequence))
        layout_id = viewer.show_cine_frame(self.slicer_app, proxy)
        self.layout_manager.set_layout(layout_id)
        # The view must be in the layout (and sized) before it can be fitted.
        viewer.fit_slice_views(self.slicer_app)
        self.typed.update(layout_id=layout_id, cine_visible=True)
        self.cine_shown()

    def toggle_item(self, node_id):
        """A click in the Loaded list: a segmentation or markups is toggled, a volume or cine shown."""
        node = self.scene.GetNodeByID(node_id)
        if node is None:
            return
        if node.IsA("vtkMRMLSegmentationNode") or node.IsA("vtkMRMLMarkupsNode"):
            display = node.GetDisplayNode()
            if display is not None:
                display.SetVisibility(not display.GetVisibility())
            self.refresh_lists()
            return
        if node.IsA("vtkMRMLScalarVolumeNode") and node.IsA("vtkMRMLLabelMapVolumeNode"):
            return
        self.show_node(node)

    def clear(self):
        """An empty scene and the four views."""
        self.showing_changes()
        self.volume = self.cine = None
        self.segmentation_shown = False
        self.scene_ctx.clear()
        self.typed.update(cine_visible=False, volume_rendering=True, layout_id=viewer.QUAD)
        self.cine_hidden()
        self.layout_manager.set_layout(viewer.QUAD)
        self.refresh_lists()

    def row_target(self, table_id, row_index):
        """(table columns, the row's cells) of a clicked table row, or None."""
        node = self.scene.GetNodeByID(table_id)
        if node is None:
            return None
        columns, rows = viewer.table_content(node)
        if not 0 <= int(row_index) < len(rows):
            return None
        return dict(zip(columns, rows[int(row_index)]))

    def centre_slices_on(self, ras):
        viewer.jump_slices_to(self.scene, ras)

    def render_slice_views(self):
        viewer.render_slice_views(self.slicer_app)

    def slice_view(self, tag):
        return next((v for v in self.slicer_app.view_manager.get_slice_views() if v.get_singleton_tag() == tag), None)

    def background_volume(self):
        return viewer.background_volume(self.slicer_app, self.scene)

    def _on_layout_id(self, layout_id):
        if layout_id:
            self.layout_manager.set_layout(layout_id)

    def _on_volume_rendering(self, volume_rendering):
        if self.volume is not None and self.scene.IsNodePresent(self.volume):
            planes = False if self.segmentation_shown else None
            viewer.set_volume_rendering(self.slicer_app, self.volume, volume_rendering, slice_planes=planes)
            viewer.fit_3d(self.slicer_app)
