"""What the views show (a volume, a cine, segmentations, markups), the layout, and the lists
of the Loaded section and the tables.

Everything here runs on the server's asyncio loop (MRML and VTK are touched nowhere else).
"""

import asyncio
import json
from dataclasses import dataclass

from undo_stack import Signal

from SpineAILib import measure
from SpineAILib.web.logic import viewer
from SpineAILib.web.logic.base_logic import BaseLogic, log_unexpected
from SpineAILib.web.ui.views_ui import ViewsState

# Mouse tools of the views: (markups class, name, defined points it needs) of those that place markups.
PLACING = {"ruler": ("vtkMRMLMarkupsLineNode", "Ruler", 2), "angle": ("vtkMRMLMarkupsAngleNode", "Angle", 3),
           "cobb": ("vtkMRMLMarkupsLineNode", "Cobb", 2)}
HINTS = {"wl": "drag on a slice: left-right = window, up-down = level; double-click: auto",
         "crosshair": "click a point: every view goes there",
         "ruler": "click two points", "angle": "click three points (the middle one is the vertex)",
         "cobb": "on a coronal or sagittal view: two clicks along the upper endplate, two along the lower"}


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
                           self.name.volume_rendering: self._on_volume_rendering,
                           self.name.mouse_tool: self._on_mouse_tool})
        self._placing = None  # markups node the views are placing now
        self._cobb_first = None  # the finished upper line of a Cobb angle being drawn
        self._display_observed = None  # (display node, observer id) of the shown volume
        self._pending_3d = None  # volume node whose 3-D view waits for the slice views' frames
        self._info_pending = False
        self._observe_slice_views()
        viewer.set_window_level_drag(self.scene, True)
        self.typed.update(measure_hint=HINTS["wl"])

    def set_ui(self, ui):
        ui.item_clicked.connect(self.toggle_item)
        ui.preset_clicked.connect(self.set_window_level)
        ui.clear_measurements_clicked.connect(self.clear_measurements)

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
        viewer.lock_level_boxes(self.scene)
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
            viewer.set_3d_render_blocked(self.slicer_app, True)  # until _show_3d (see hold_3d)
            try:
                self.showing_changes()
                self.cine, self.volume, self.segmentation_shown = None, node, False
                self.data.cine_visible = False
                self.cine_hidden()
                if self.data.layout_id != viewer.QUAD:
                    self.data.layout_id = viewer.QUAD
                    self.layout_manager.set_layout(viewer.QUAD)
                # Volume rendering unless the volume is too big for software rendering.
                self.data.volume_rendering = viewer.wants_volume_rendering(node)
                viewer.show_in_slice_views(self.slicer_app, node)
                self._observe_display(node)
            finally:
                self._pending_3d = node
                self._later(self._show_3d, delay_s=0.3)
        elif node.IsA("vtkMRMLDisplayableNode"):
            node.CreateDefaultDisplayNodes()
            if viewer.lock_level_boxes(self.scene) and node.IsA("vtkMRMLMarkupsROINode"):
                return  # a level box: locked and hidden until shown from the Loaded list
            display = node.GetDisplayNode()
            if display is not None:
                display.SetVisibility(True)
        self.update_view_info()

    def hold_3d(self):
        """No 3-D frames until ``_show_3d`` on a later turn: a volume is about to be shown (called
        before it is even added to the scene, which asks the 3-D view for a frame).

        The slice views' frames go first, the 3-D view's after them: in software OpenGL a volume
        rendering's first frame takes about a second, and while it renders no other view's frame
        goes out."""
        viewer.set_3d_render_blocked(self.slicer_app, True)
        self._later(self._show_3d, delay_s=0.3)

    def _show_3d(self):
        """The 3-D view of the volume ``show_node`` put in the slice views: set up and drawn."""
        node, self._pending_3d = self._pending_3d, None
        try:
            if node is not None:
                # The views were laid out and sized on the turn the volume was shown: draw the slice
                # views again once that has settled, or the first may stay black until the next render.
                viewer.render_slice_views(self.slicer_app)
                if node is self.volume and self.scene.IsNodePresent(node):
                    planes = False if self.segmentation_shown else None
                    viewer.show_volume_in_3d(self.slicer_app, node, self.data.volume_rendering, slice_planes=planes)
        finally:
            viewer.set_3d_render_blocked(self.slicer_app, False)  # and so the 3-D view is drawn

    def show_cine(self, browser, sequence, proxy):
        self.showing_changes()
        self.cine = ShownCine(browser, sequence, viewer.sequence_times_ms(sequence))
        layout_id = viewer.show_cine_frame(self.slicer_app, proxy)
        self.layout_manager.set_layout(layout_id)
        # The view must be in the layout (and sized) before it can be fitted.
        viewer.fit_slice_views(self.slicer_app)
        self.typed.update(layout_id=layout_id, cine_visible=True)
        self._observe_display(proxy)
        self.cine_shown()
        self.update_view_info()

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
        self._stop_placing()
        self._observe_display(None)
        self.volume = self.cine = None
        self.segmentation_shown = False
        self.scene_ctx.clear()
        viewer.hide_crosshair(self.scene)
        viewer.set_window_level_drag(self.scene, self.data.mouse_tool == "wl")
        self.typed.update(measurements=[], view_info={}, wl_text="", mouse_tool="wl", measure_hint=HINTS["wl"],
                          measure_progress="")
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

    # -- window / level -----------------------------------------------------------------------

    def set_window_level(self, preset):
        """A preset ('bone', 'soft', 'lung', 'brain'), 'auto' or (window, level) on the shown image."""
        volume = self.background_volume()
        if volume is None:
            return
        viewer.set_window_level(volume, preset)
        self.update_view_info()

    def _observe_display(self, volume_node):
        if self._display_observed is not None:
            node, tag = self._display_observed
            node.RemoveObserver(tag)
            self._display_observed = None
        display = viewer.display_node(volume_node) if volume_node is not None else None
        if display is not None:
            self._display_observed = (display, display.AddObserver("ModifiedEvent", self._schedule_view_info))

    # -- what each view says about itself ---------------------------------------------------

    def _observe_slice_views(self):
        for view in self.slicer_app.view_manager.get_slice_views():
            view.get_view_node().AddObserver("ModifiedEvent", self._schedule_view_info)
            view.interactor().AddObserver("LeftButtonPressEvent", lambda *_, v=view: self._on_left_press(v), 10.0)

    def _schedule_view_info(self, *_):
        if not self._info_pending:  # one update for a burst of events (a drag, a scroll)
            self._info_pending = True
            self._later(self.update_view_info)

    def update_view_info(self):
        """Name, orientation letters, W/L and slice of each slice view, for the text over it."""
        self._info_pending = False
        info = {view.get_singleton_tag(): viewer.slice_view_info(view, self.scene)
                for view in self.slicer_app.view_manager.get_slice_views()}
        volume = self.background_volume()
        self.push(view_info=info, wl_text=viewer.window_level_text(volume) if volume is not None else "")

    def _later(self, fn, delay_s=0.0):
        """``fn`` on a later turn of the server's loop (now when no loop runs: scripts, tests)."""
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            loop = None
        if loop is None or not loop.is_running():
            fn()
            return

        def run():
            try:
                fn()
            except Exception as error:  # noqa: BLE001 (a callback must not kill the loop)
                log_unexpected(error, "view update")

        loop.call_later(delay_s, run) if delay_s else loop.call_soon(run)

    # -- mouse tools: window/level, crosshair, ruler, angle, Cobb angle -------------------------

    def _on_mouse_tool(self, tool):
        try:
            self._set_mouse_tool(tool)
        except Exception as error:  # noqa: BLE001 (a change callback must not fail silently)
            log_unexpected(error, f"mouse tool {tool}")

    def _set_mouse_tool(self, tool):
        self._stop_placing()
        self._cobb_first = None
        viewer.set_window_level_drag(self.scene, tool == "wl")
        if tool in PLACING:
            self._start_placing(tool)
        self.push(measure_hint=HINTS.get(tool, ""), measure_progress="")

    def _on_left_press(self, view):
        tool = self.data.mouse_tool
        if view.get_view_node() is None:
            return
        if tool == "crosshair":
            ras = viewer.event_ras(view)
            viewer.set_crosshair(self.scene, ras)
            viewer.render_all_views(self.slicer_app)
            self.push(measure_progress=f"Crosshair: {measure.ras_text(ras)}")
        elif tool in PLACING and self._placing is not None and self.scene.IsNodePresent(self._placing):
            # Each click is a control point of the markups being drawn (Slicer draws it and its label).
            node = self._placing
            node.AddControlPoint(*viewer.event_ras(view))
            self.push(measure_progress=self._progress_text(node))
            self._on_point_defined(node)
            view.schedule_render()

    def _progress_text(self, node):
        """'Angle 1: 2 of 3 points' of the markups being drawn (a Cobb angle counts its two lines' four)."""
        tool = node.GetAttribute(viewer.MEASURE_ATTRIBUTE)
        needed, done = PLACING[tool][2], node.GetNumberOfDefinedControlPoints()
        name = node.GetName()
        if tool == "cobb":
            needed *= 2
            if self._cobb_first is not None and node is not self._cobb_first:
                done += self._cobb_first.GetNumberOfDefinedControlPoints()
                name = self._cobb_first.GetName()
        return f"{name}: {done} of {needed} points"

    def _start_placing(self, tool, name=None):
        class_name, default_name, _ = PLACING[tool]
        if name is None:
            n = 1 + sum(1 for node in self._measure_nodes() if node.GetAttribute(viewer.MEASURE_ATTRIBUTE) == tool
                        and (tool != "cobb" or node.GetAttribute("SpineAI.CobbPart") == "a"))
            name = f"{default_name} {n}"
        node = viewer.start_placing(self.slicer_app, class_name, name, tool)
        node.SetName(name)
        if tool == "cobb":
            node.SetAttribute("SpineAI.CobbPart", "b" if self._cobb_first is not None else "a")
            length = node.GetMeasurement("length")
            if length is not None:  # the label shows the Cobb angle, not each line's length
                length.SetEnabled(False)
        node.AddObserver(node.PointModifiedEvent, lambda *_: self._later(self.refresh_measurements))
        self._placing = node

    def _on_point_defined(self, node):
        tool = node.GetAttribute(viewer.MEASURE_ATTRIBUTE)
        if node is not self._placing or node.GetNumberOfDefinedControlPoints() < PLACING[tool][2]:
            return
        self._placing = None
        if tool == "cobb" and self._cobb_first is None:
            self._cobb_first = node
            self.push(measure_hint="Cobb: now two clicks along the lower endplate")
            name = node.GetName()
        else:
            if tool == "cobb":
                normal, across = self._view_plane_of([*viewer.control_points(self._cobb_first),
                                                      *viewer.control_points(node)])
                if normal is not None:  # the view it was drawn in, kept for when the slice moves on
                    node.SetAttribute("SpineAI.CobbPlane", json.dumps([list(map(float, normal)), list(across)]))
                node.SetAttribute("SpineAI.CobbOf", self._cobb_first.GetID())
                self._cobb_first.SetAttribute("SpineAI.CobbWith", node.GetID())
                self._cobb_first = None
            name = None
            self.push(measure_hint=HINTS[tool])
        # Slicer leaves place mode after this event: place the next one on a later turn.
        self._later(lambda: self._continue_placing(tool, name))
        self._later(self.refresh_measurements)

    def _continue_placing(self, tool, name):
        if self.data.mouse_tool == tool and self._placing is None:
            self._start_placing(tool, name)

    def _stop_placing(self):
        node, self._placing = self._placing, None
        if node is not None and self.scene.IsNodePresent(node) and node.GetNumberOfDefinedControlPoints() < 2:
            self.scene.RemoveNode(node)
        if self._cobb_first is not None and self.scene.IsNodePresent(self._cobb_first):
            self.scene.RemoveNode(self._cobb_first)  # half a Cobb angle is not a measurement
        self._cobb_first = None
        self.slicer_app.markups_logic.disable_place_mode()
        viewer.set_window_level_drag(self.scene, self.data.mouse_tool == "wl")

    def _measure_nodes(self):
        return [n for n in self.scene_ctx.nodes("vtkMRMLMarkupsNode") if n.GetAttribute(viewer.MEASURE_ATTRIBUTE)]

    def refresh_measurements(self):
        """The panel's list of rulers, angles and Cobb angles (and each Cobb angle's label in the views)."""
        rows = []
        for node in self._measure_nodes():
            kind, points = node.GetAttribute(viewer.MEASURE_ATTRIBUTE), viewer.control_points(node)
            try:
                if kind == "ruler" and len(points) == 2:
                    text = f"{measure.distance(*points):.1f} mm"
                elif kind == "angle" and len(points) == 3:
                    text = f"{measure.angle(*points):.1f}°"
                elif kind == "cobb" and node.GetAttribute("SpineAI.CobbOf"):
                    first = self.scene.GetNodeByID(node.GetAttribute("SpineAI.CobbOf"))
                    if first is None:
                        continue
                    lines = (viewer.control_points(first), points)
                    if len(lines[0]) != 2 or len(lines[1]) != 2:
                        continue
                    plane = node.GetAttribute("SpineAI.CobbPlane")
                    normal, across = json.loads(plane) if plane else (None, None)
                    text = f"{measure.cobb_angle(*lines, normal=normal, across=across):.1f}°"
                    label = f"{first.GetName()}: {text}"
                    if node.GetName() != label:
                        node.SetName(label)  # what the view shows beside the lower line
                    rows.append({"id": node.GetID(), "name": first.GetName(), "text": text, "kind": kind})
                    continue
                else:
                    continue
            except ValueError:
                text = "–"
            rows.append({"id": node.GetID(), "name": node.GetName(), "text": text, "kind": kind})
        self.push(measurements=rows)

    def _view_plane_of(self, points):
        """(normal, horizontal) of the slice view whose plane holds ``points`` (coronal, sagittal
        first); (None, None) when none does."""
        import numpy as np

        views = sorted(self.slicer_app.view_manager.get_slice_views(),
                       key=lambda v: v.get_singleton_tag() == "Red")  # axial last
        for view in views:
            to_ras = view.get_view_node().GetSliceToRAS()
            normal = np.array([to_ras.GetElement(r, 2) for r in range(3)])
            origin = np.array([to_ras.GetElement(r, 3) for r in range(3)])
            if all(abs(np.dot(np.asarray(p) - origin, normal)) < 2.0 for p in points):
                return normal, [to_ras.GetElement(r, 0) for r in range(3)]
        return None, None

    def clear_measurements(self):
        self._stop_placing()
        for node in self._measure_nodes():
            self.scene.RemoveNode(node)
        viewer.hide_crosshair(self.scene)
        self.push(measurements=[], measure_progress="")
        if self.data.mouse_tool in PLACING:
            self._start_placing(self.data.mouse_tool)
        viewer.render_all_views(self.slicer_app)
