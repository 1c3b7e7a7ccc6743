"""The Annotate section: browser keys and strokes -> ``AnnotationSession`` calls.

Everything that decides anything is in ``SpineAILib.annotation`` (what the panel says is
``annotation.presenter``, shared with the desktop module); this module only
* opens / closes the case of the image on screen and prefills it from a run folder,
* turns a key (``annotation.keys``) or a stroke on a slice view into a session call: a stroke
  arrives as the view's tag and pointer positions as fractions of the view's width and
  height; ``view_fractions_to_ras`` makes RAS of them through the slice node's XY->RAS
  matrix (the render window is the view's size; y grows upwards in VTK),
* redraws the case's layers (``annotation.scene_view.CaseLayers``) and updates the panel.

Runs on the server's asyncio loop, like every MRML call of the app.
"""

from pathlib import Path

import numpy as np

from SpineAILib.annotation import keys, presenter
from SpineAILib.annotation.case import DISC_LEVELS
from SpineAILib.annotation.scene_view import CaseLayers
from SpineAILib.annotation.session import AnnotationSession
from SpineAILib.errors import InputError
from SpineAILib.vocabulary import CERVICAL_CT, LUMBAR_MRI
from SpineAILib.web.logic.base_logic import BaseLogic, log_unexpected, one_line
from SpineAILib.web.ui.annotate_ui import AnnotateState

CLICK_FRACTION = 0.01  # a stroke shorter than this (of the view's size) is a click
FRACTURE_CHOICES = {"": None, "no": False, "yes": True}
DEFAULT_STRUCTURE = {"lp-ultrasound": "csf", "lumbar-mri": "L1", "cervical-ct": "C1"}


def view_fractions_to_ras(slice_node, fractions):
    """RAS of pointer positions given as (x, y) fractions of a slice view (y down, as in the page)."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    width, height, _ = slice_node.GetDimensions()
    matrix = vtkMatrix4x4()
    matrix.DeepCopy(slice_node.GetXYToRAS())
    m = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    xy = np.array([[float(fx) * width, (1.0 - float(fy)) * height, 0.0, 1.0] for fx, fy in fractions])
    return (m @ xy.T).T[:, :3]


POINT_SNAP_MM = 10.0  # a click this near another level's point moves that point, not the selected level's


def nearest_disc_level(placed, selected, ras):
    """(level, note) a disc-point click at ``ras`` places or moves: the selected level unless the click
    lands on another level's point (then that one, nearest first). The note tells the annotator."""
    ras = np.asarray(ras, float)
    distances = {lv: float(np.linalg.norm(np.asarray(p, float) - ras)) for lv, p in placed.items()}
    near = sorted((d, lv) for lv, d in distances.items() if d <= POINT_SNAP_MM)
    if near and near[0][1] != selected and (selected not in distances or distances[selected] > near[0][0]):
        return near[0][1], f" (the nearest point to the click; {selected} stays where it was)"
    if selected in distances and distances[selected] > 2 * POINT_SNAP_MM:
        return selected, f": moved {distances[selected]:.0f} mm (Ctrl+Z takes it back)"
    return selected, ""


def slice_normal(slice_node):
    matrix = slice_node.GetSliceToRAS()
    normal = np.array([matrix.GetElement(r, 2) for r in range(3)])
    return normal / (np.linalg.norm(normal) or 1.0)


class AnnotateLogic(BaseLogic[AnnotateState]):
    """``views``, ``cine``, ``loader``, ``workflow``: the logics of what is shown, the cine player,
    Load (the input; a case folder brings its image) and Workflows (the task chosen)."""

    def __init__(self, server, views, cine, loader, workflow, out_dir):
        super().__init__(server, AnnotateState)
        self.views, self.cine, self.loader, self.workflow = views, cine, loader, workflow
        self.out_dir = Path(out_dir)
        self.session = None
        self.layers = None
        self._corner = None  # the first corner of a two-click box (RAS)
        self.bind_changes({self.name.annot_tool: self._on_tool})
        cine.frame_changed.connect(self.on_frame)
        loader.input_replacing.connect(self.close)
        loader.clearing.connect(self.close)
        loader.input_loaded.connect(self._on_input_loaded)
        loader.case_opener = self.open_case_or_raise

    def set_ui(self, ui):
        ui.open_clicked.connect(self.open_case)
        ui.close_clicked.connect(self.close)
        ui.undo_clicked.connect(self.undo)
        ui.redo_clicked.connect(self.redo)
        ui.prefill_clicked.connect(self.prefill)
        ui.toggle_clicked.connect(self.toggle)
        ui.copy_previous_clicked.connect(self.copy_previous)
        ui.threshold_clicked.connect(self.threshold)
        ui.islands_clicked.connect(self.islands)
        ui.delete_box_clicked.connect(self.delete_box)
        ui.severity_chosen.connect(self.set_severity)
        ui.fracture_chosen.connect(self.set_fracture)
        ui.key_pressed.connect(self.on_key)
        ui.stroke_drawn.connect(self.on_stroke)

    def case_folders(self):
        """[the open case's folder] (empty when none is open)."""
        return [self.session.case.folder] if self.session is not None else []

    # -- opening and closing --------------------------------------------------------------

    def _on_input_loaded(self, path, input_kind, modality):
        """A case folder beside the app's run folders, named after the image."""
        if path and not self.session:
            stem = Path(str(path).rstrip("/")).name.split(".")[0] or "case"
            self.data.annot_folder = str(self.out_dir / "cases" / stem)

    def open_case(self, folder):
        """Open (or start) the case in ``folder`` for the image on screen; a case folder given
        while nothing is loaded brings its own image."""
        folder = (folder or "").strip()
        if not folder:
            return self._say("type a case folder first", error=True)
        try:
            self.close()
            shown = self.loader.input
            if shown is None:
                if not (Path(folder).expanduser() / "annotation.json").is_file():
                    return self._say("load the image to annotate first (Load), then open a case", error=True)
                with self.state:  # an existing case brings its image: load it, then come back here
                    self.loader.data.load_message = self.loader.open_case_folder(Path(folder).expanduser())
                    self.views.refresh_lists()
                return
            self.session = AnnotationSession.open(folder, image_path=shown.path, task=self._task_for_image(),
                                                  series=shown.series, image=shown.image)
            self.layers = CaseLayers(self.views.scene_ctx, self.session.case)
            self.layers.show(self.views.current_frame())
            self.layers.attach_to_slice_views()
            case = self.session.case
            self.typed.update(annot_open=True, annot_folder=str(case.folder), annot_kind=case.kind,
                              annot_task=case.task, annot_structures=presenter.structures(case), annot_tool="none")
            if self.data.annot_structure not in self.data.annot_structures:
                self.data.annot_structure = DEFAULT_STRUCTURE[case.task]
            if case.is_cine:
                self.typed.update(annot_low=0.0, annot_high=60.0)  # CSF is dark on ultrasound
            else:
                low, high = self._default_range()
                self.typed.update(annot_low=low, annot_high=high)
            self._refresh(presenter.opened_message(case))
        except Exception as error:
            self._fail(error)

    def open_case_or_raise(self, folder):
        """Open the case in ``folder`` on the input just loaded; InputError with the reason when it does not."""
        self.open_case(folder)
        if self.session is None:
            raise InputError(self.data.annot_message or f"{folder}: the case did not open")

    def close(self):
        if self.layers is not None:
            self.layers.remove()
        if self.session is not None:
            self.session.close()
        self.session, self.layers, self._corner = None, None, None
        self.typed.update(annot_open=False, annot_tool="none", annot_status="", annot_frame_info="", annot_pending="",
                          annot_can_undo=False, annot_can_redo=False)

    def prefill(self, run_folder):
        if not self._check_open():
            return
        run_folder = (run_folder or self.loader.data.results_path or "").strip()
        if not run_folder:
            return self._say("type the output folder of a run to prefill from", error=True)
        try:
            summary = self.session.prefill(Path(run_folder).expanduser())
            self._refresh(presenter.prefill_message(summary, run_folder))
        except Exception as error:
            self._fail(error)

    def _task_for_image(self):
        if self.views.cine is not None:
            return "lp-ultrasound"
        task = self.workflow.data.task
        return task if task in (LUMBAR_MRI, CERVICAL_CT) else LUMBAR_MRI

    def _default_range(self):
        low, high = np.percentile(self.session.image.voxels, [75, 99.5])
        return float(round(low, 1)), float(round(high, 1))

    # -- keys and strokes ------------------------------------------------------------------

    def on_key(self, key, ctrl=False, shift=False):
        action = keys.action_for(key, ctrl, shift)
        if action is None:
            return
        name, argument = action
        if name == "frame":
            return self.cine.step_frame(argument)
        if not self.session:
            return
        if name == "toggle":
            self.toggle(argument)
        elif name == "copy_previous":
            self.copy_previous()
        elif name == "undo":
            self.undo()
        elif name == "redo":
            self.redo()

    def on_stroke(self, view_tag, fractions, tool=None):
        """A drag (or click) on slice view ``view_tag`` with ``tool``: paint, erase, box corner or point."""
        if not self._check_open() or not fractions:
            return
        tool = tool or self.data.annot_tool
        if tool != "box":
            self._corner = None
        try:
            view = self.views.slice_view(view_tag)
            if view is None or tool == "none":
                return
            slice_node = view.get_view_node()
            points = view_fractions_to_ras(slice_node, fractions)
            frame = self.views.current_frame()
            structure = self.data.annot_structure
            if tool in ("brush", "erase"):
                edit = self.session.paint(points, structure, float(self.data.annot_radius), frame=frame,
                                          erase=tool == "erase", normal=slice_normal(slice_node))
                self._refresh(f"{'erased' if tool == 'erase' else 'painted'} {structure}" if edit else "nothing changed")
            elif tool == "box":
                self._box_stroke(points, fractions, structure, frame)
            elif tool == "point":
                level, note = nearest_disc_level(self.session.case.points, self.data.annot_level, points[-1])
                self.session.set_point(level, points[-1])
                following = [lv for lv in DISC_LEVELS if lv not in set(self.session.case.points)]
                if following:
                    self.data.annot_level = following[0]
                self._refresh(f"placed {level}{note}")
        except Exception as error:
            self._fail(error)

    def _box_stroke(self, points, fractions, label, frame):
        span = np.abs(np.asarray(fractions[-1], float) - np.asarray(fractions[0], float)).max()
        if span > CLICK_FRACTION:  # dragged from one corner to the other
            first, second = points[0], points[-1]
        elif self._corner is None:  # first of two clicks
            self._corner = points[-1]
            self.push(annot_pending="box: click the opposite corner")
            return
        else:
            first, second = self._corner, points[-1]
        self._corner = None
        self.push(annot_pending="")
        self.session.set_box(first, second, label, frame=frame)
        self._refresh(f"box around {label}")

    def _on_tool(self, annot_tool):
        # Strokes carry their own tool and may arrive before this change: keep a box's first corner.
        if annot_tool != "box":
            self._corner = None
            self.data.annot_pending = ""

    # -- panel buttons ------------------------------------------------------------------------

    def toggle(self, label):
        self._call(lambda: self.session.toggle_label(self.views.current_frame(), label), f"toggled {label}")

    def copy_previous(self):
        self._call(lambda: self.session.copy_previous_labels(self.views.current_frame()),
                   "copied the previous frame's labels")

    def undo(self):
        self._call(self.session.undo if self.session else None, "undone", result_text=presenter.undo_message)

    def redo(self):
        self._call(self.session.redo if self.session else None, "redone", result_text=presenter.redo_message)

    def threshold(self, low, high):
        structure = self.data.annot_structure
        self._call(lambda: self.session.threshold(structure, float(low), float(high), frame=self.views.current_frame()),
                   f"threshold {structure} {float(low):g}..{float(high):g}")

    def islands(self, min_voxels, keep_largest=False):
        structure = self.data.annot_structure
        self._call(lambda: self.session.remove_islands(structure, int(float(min_voxels or 0)), bool(keep_largest),
                                                       frame=self.views.current_frame()),
                   f"removed small islands of {structure}")

    def delete_box(self):
        label = self.data.annot_structure
        self._call(lambda: self.session.delete_box(label, frame=self.views.current_frame()), f"deleted the {label} box")

    def set_severity(self, level, condition, grade):
        self._call(lambda: self.session.set_severity(level, condition, grade or None),
                   f"{level} {condition}: {grade or 'cleared'}")

    def set_fracture(self, vertebra, choice):
        self._call(lambda: self.session.set_fracture(vertebra, FRACTURE_CHOICES.get(choice or "")),
                   f"{vertebra}: {choice or 'cleared'}")

    # -- frames and redrawing ---------------------------------------------------------------------

    def on_frame(self, frame):
        """The cine moved to ``frame``: show its mask, boxes and labels."""
        if self.session is None or not self.session.case.is_cine:
            return
        self._corner = None
        self.layers.show(frame)
        self._update_panel()

    def _call(self, fn, message, result_text=None):
        if not self._check_open() or fn is None:
            return
        try:
            result = fn()
            self._refresh(result_text(result) if result_text else (message if result is not None else "nothing changed"))
        except Exception as error:
            self._fail(error)

    def _refresh(self, message=""):
        """Redraw the case's layers for the frame on screen and update the panel."""
        if self.session is None:
            return
        self.layers.show(self.views.current_frame())
        self.views.render_slice_views()
        self._update_panel(message)

    def _update_panel(self, message=None):
        shown = presenter.panel(self.session, self.views.current_frame())
        values = {"annot_status": shown.status, "annot_can_undo": shown.can_undo, "annot_can_redo": shown.can_redo,
                  "annot_frame_info": shown.frame_info}
        if self.session.case.is_cine:
            values["annot_labels"] = shown.labels
        else:
            values.update(annot_severity=shown.severity, annot_fractures=shown.fractures,
                          annot_structures=shown.structures)
        if message is not None:
            values.update(annot_message=message, annot_error=False)
        self.push(**values)

    def _check_open(self):
        if self.session is None:
            self._say("open a case first (Annotate → Open case)", error=True)
            return False
        return True

    def _say(self, message, error=False):
        self.push(annot_message=message, annot_error=bool(error))

    def _fail(self, error):
        log_unexpected(error, "annotation")
        self._say(one_line(error), error=True)
