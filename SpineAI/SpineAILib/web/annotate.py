"""The web app's Annotate panel: browser keys and strokes -> ``AnnotationSession`` calls.

Everything that decides anything is in ``SpineAILib.annotation``; this module only
* opens / closes the case of the image on screen and prefills it from a run folder,
* turns a key (``annotation.keys``) or a stroke on a slice view into a session call: a stroke
  arrives as the view's tag and pointer positions as fractions of the view's width and
  height; ``view_fractions_to_ras`` makes RAS of them through the slice node's XY->RAS
  matrix (the render window is the view's size; y grows upwards in VTK),
* redraws the case's layers (``annotation.scene_view.CaseLayers``) and updates the panel.

Runs on the server's asyncio loop, like every MRML call of the app.
"""

import logging
from pathlib import Path

import numpy as np

from SpineAILib.annotation import keys
from SpineAILib.annotation.case import CINE_STRUCTURES, DISC_LEVELS
from SpineAILib.annotation.scene_view import CaseLayers
from SpineAILib.annotation.session import AnnotationSession
from SpineAILib.errors import SpineAIError
from SpineAILib.workflows.lumbar.severity.submission import CONDITIONS, GRADE_NAMES
from SpineAILib.vocabulary import CERVICAL_VERTEBRAE, CERVICAL_CT, LUMBAR_MRI_VERTEBRAE, ULTRASOUND_LABELS
from SpineAILib.web import viewer

log = logging.getLogger(__name__)

KEY_TRIGGER = "spineai_annot_key"
STROKE_TRIGGER = "spineai_annot_stroke"
TOOLS = ("none", "brush", "erase", "box", "point")
CLICK_FRACTION = 0.01  # a stroke shorter than this (of the view's size) is a click
FRACTURE_CHOICES = {"": None, "no": False, "yes": True}

DEFAULT_STATE = {
    "annot_open": False,
    "annot_folder": "",
    "annot_run": "",
    "annot_kind": "",
    "annot_task": "",
    "annot_tool": "none",
    "annot_structure": "csf",
    "annot_structures": list(CINE_STRUCTURES),
    "annot_radius": 2.0,
    "annot_labels": {name: 0 for name in ULTRASOUND_LABELS},
    "annot_frame_info": "",
    "annot_status": "",
    "annot_message": "",
    "annot_error": False,
    "annot_can_undo": False,
    "annot_can_redo": False,
    "annot_low": 0.0,
    "annot_high": 60.0,
    "annot_min_island": 20,
    "annot_level": DISC_LEVELS[0],
    "annot_levels": list(DISC_LEVELS),
    "annot_conditions": list(CONDITIONS),
    "annot_condition_titles": {"spinal_canal_stenosis": "canal", "left_neural_foraminal_narrowing": "L foram.",
                               "right_neural_foraminal_narrowing": "R foram.", "left_subarticular_stenosis": "L subart.",
                               "right_subarticular_stenosis": "R subart."},
    "annot_grades": [{"title": "·", "value": ""}] + [{"title": {"Normal/Mild": "N/M", "Moderate": "Mod", "Severe": "Sev"}[g],
                                                       "value": g} for g in GRADE_NAMES],
    "annot_severity": {},
    "annot_fractures": {},
    "annot_vertebrae": list(CERVICAL_VERTEBRAE),
    "annot_pending": "",
    "annot_help": keys.HELP,
}


def view_fractions_to_ras(slice_node, fractions):
    """RAS of pointer positions given as (x, y) fractions of a slice view (y down, as in the page)."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    width, height, _ = slice_node.GetDimensions()
    matrix = vtkMatrix4x4()
    matrix.DeepCopy(slice_node.GetXYToRAS())
    m = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    xy = np.array([[float(fx) * width, (1.0 - float(fy)) * height, 0.0, 1.0] for fx, fy in fractions])
    return (m @ xy.T).T[:, :3]


def slice_normal(slice_node):
    matrix = slice_node.GetSliceToRAS()
    normal = np.array([matrix.GetElement(r, 2) for r in range(3)])
    return normal / (np.linalg.norm(normal) or 1.0)


class WebAnnotator:
    """The Annotate panel's actions (bound by ``annotate_panel``) on one app."""

    def __init__(self, app):
        self.app = app
        self.session = None
        self.layers = None
        self._corner = None  # the first corner of a two-click box (RAS)
        app.state.update(DEFAULT_STATE)
        app.server.trigger(KEY_TRIGGER)(self.on_key)
        app.server.trigger(STROKE_TRIGGER)(self.on_stroke)
        app.state.change("annot_tool")(self._on_tool)

    @property
    def state(self):
        return self.app.state

    # -- opening and closing --------------------------------------------------------------

    def suggest_folder(self, input_path):
        """A case folder beside the app's run folders, named after the image."""
        if input_path and not self.session:
            stem = Path(str(input_path).rstrip("/")).name.split(".")[0] or "case"
            self.state.annot_folder = str(Path(self.app.out_dir) / "cases" / stem)

    def open_case(self, folder):
        """Open (or start) the case in ``folder`` for the image on screen; a case folder given
        while nothing is loaded brings its own image."""
        folder = (folder or "").strip()
        if not folder:
            return self._say("type a case folder first", error=True)
        try:
            self.close()
            if self.app._input_path is None:
                if not (Path(folder).expanduser() / "annotation.json").is_file():
                    return self._say("load the image to annotate first (Load), then open a case", error=True)
                with self.state:  # an existing case brings its image: load it, then come back here
                    self.state.load_message = self.app._open_case_folder(Path(folder).expanduser())
                    self.app._refresh_lists()
                return
            self.session = AnnotationSession.open(folder, image_path=self.app._input_path, task=self._task_for_image(),
                                                  series=self.app._input_series, image=self.app._input_image)
            self.layers = CaseLayers(self.app.scene_ctx, self.session.case)
            self.layers.show(self._frame())
            self.layers.attach_to_slice_views()
            case = self.session.case
            self.state.update({
                "annot_open": True, "annot_folder": str(case.folder), "annot_kind": case.kind, "annot_task": case.task,
                "annot_structures": self._structures(), "annot_tool": "none",
            })
            if self.state.annot_structure not in self.state.annot_structures:
                default = {"lp-ultrasound": "csf", "lumbar-mri": "L1", "cervical-ct": "C1"}[case.task]
                self.state.annot_structure = default
            if case.is_cine:
                self.state.annot_low, self.state.annot_high = 0.0, 60.0  # CSF is dark on ultrasound
            else:
                self.state.annot_low, self.state.annot_high = self._default_range()
            n = len(case.edits)
            self._refresh(f"case {case.folder.name} opened ({n} edit{'s' if n != 1 else ''} so far)")
        except Exception as error:
            self._fail(error)

    def close(self):
        if self.layers is not None:
            self.layers.remove()
        if self.session is not None:
            self.session.close()
        self.session, self.layers, self._corner = None, None, None
        self.state.update({"annot_open": False, "annot_tool": "none", "annot_status": "", "annot_frame_info": "",
                           "annot_pending": ""})

    def prefill(self, run_folder):
        if not self._check_open():
            return
        run_folder = (run_folder or self.state.results_path or "").strip()
        if not run_folder:
            return self._say("type the output folder of a run to prefill from", error=True)
        try:
            summary = self.session.prefill(Path(run_folder).expanduser())
            kept = f", {summary['kept']} of your edits kept" if summary["kept"] else ""
            warn = f" ({'; '.join(summary['warnings'])})" if summary["warnings"] else ""
            self._refresh(f"prefilled {summary['set']} items from {Path(run_folder).name}{kept}{warn}")
        except Exception as error:
            self._fail(error)

    def _task_for_image(self):
        if self.app._cine is not None:
            return "lp-ultrasound"
        task = self.state.task
        return task if task in ("lumbar-mri", "cervical-ct") else "lumbar-mri"

    def _structures(self):
        case = self.session.case
        if case.is_cine:
            return list(CINE_STRUCTURES)
        present = []
        if case.mask is not None:
            from SpineAILib.annotation.case import structure_name

            present = [structure_name(v, "volume") for v in np.unique(case.mask) if v]
        base = list(CERVICAL_VERTEBRAE if case.task == CERVICAL_CT else LUMBAR_MRI_VERTEBRAE)
        return base + [name for name in present if name not in base]

    def _default_range(self):
        voxels = self.session.image.voxels
        low, high = np.percentile(voxels, [75, 99.5])
        return float(round(low, 1)), float(round(high, 1))

    # -- keys and strokes ------------------------------------------------------------------

    def on_key(self, key, ctrl=False, shift=False):
        action = keys.action_for(key, ctrl, shift)
        if action is None:
            return
        name, argument = action
        if name == "frame":
            return self.app.step_frame(argument)
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
        tool = tool or self.state.annot_tool
        if tool != "box":
            self._corner = None
        try:
            view = next((v for v in self.app.slicer_app.view_manager.get_slice_views()
                         if v.get_singleton_tag() == view_tag), None)
            if view is None or tool == "none":
                return
            slice_node = view.get_view_node()
            points = view_fractions_to_ras(slice_node, fractions)
            frame = self._frame()
            structure = self.state.annot_structure
            if tool in ("brush", "erase"):
                edit = self.session.paint(points, structure, float(self.state.annot_radius), frame=frame,
                                          erase=tool == "erase", normal=slice_normal(slice_node))
                self._refresh(f"{'erased' if tool == 'erase' else 'painted'} {structure}" if edit else "nothing changed")
            elif tool == "box":
                self._box_stroke(points, fractions, structure, frame)
            elif tool == "point":
                level = self.state.annot_level
                self.session.set_point(level, points[-1])
                placed = set(self.session.case.points)
                following = [lv for lv in DISC_LEVELS if lv not in placed]
                if following:
                    self.state.annot_level = following[0]
                self._refresh(f"placed {level}")
        except Exception as error:
            self._fail(error)

    def _box_stroke(self, points, fractions, label, frame):
        span = np.abs(np.asarray(fractions[-1], float) - np.asarray(fractions[0], float)).max()
        if span > CLICK_FRACTION:  # dragged from one corner to the other
            first, second = points[0], points[-1]
        elif self._corner is None:  # first of two clicks
            self._corner = points[-1]
            with self.state:
                self.state.annot_pending = "box: click the opposite corner"
            return
        else:
            first, second = self._corner, points[-1]
        self._corner = None
        with self.state:
            self.state.annot_pending = ""
        self.session.set_box(first, second, label, frame=frame)
        self._refresh(f"box around {label}")

    def _on_tool(self, annot_tool, **_):
        # Strokes carry their own tool and may arrive before this change: keep a box's first corner.
        if annot_tool != "box":
            self._corner = None
            self.state.annot_pending = ""

    # -- panel buttons ------------------------------------------------------------------------

    def toggle(self, label):
        self._call(lambda: self.session.toggle_label(self._frame(), label), f"toggled {label}")

    def copy_previous(self):
        self._call(lambda: self.session.copy_previous_labels(self._frame()), "copied the previous frame's labels")

    def undo(self):
        self._call(self.session.undo if self.session else None, "undone", result_text=lambda a: f"undid {a}" if a else "nothing to undo")

    def redo(self):
        self._call(self.session.redo if self.session else None, "redone", result_text=lambda a: f"redid {a}" if a else "nothing to redo")

    def threshold(self, low, high):
        structure = self.state.annot_structure
        self._call(lambda: self.session.threshold(structure, float(low), float(high), frame=self._frame()),
                   f"threshold {structure} {float(low):g}..{float(high):g}")

    def islands(self, min_voxels, keep_largest=False):
        structure = self.state.annot_structure
        self._call(lambda: self.session.remove_islands(structure, int(float(min_voxels or 0)), bool(keep_largest),
                                                       frame=self._frame()),
                   f"removed small islands of {structure}")

    def delete_box(self):
        label = self.state.annot_structure
        self._call(lambda: self.session.delete_box(label, frame=self._frame()), f"deleted the {label} box")

    def set_severity(self, level, condition, grade):
        self._call(lambda: self.session.set_severity(level, condition, grade or None), f"{level} {condition}: {grade or 'cleared'}")

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

    def _frame(self):
        if self.app._cine is None:
            return None
        return int(self.app._cine[0].GetSelectedItemNumber())

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
        self.layers.show(self._frame())
        viewer.render_slice_views(self.app.slicer_app)
        self._update_panel(message)

    def _update_panel(self, message=None):
        session, case = self.session, self.session.case
        status = session.status()
        last = status["last_edit"]
        saved = status["saved"][11:19] if len(status["saved"]) >= 19 else status["saved"]
        text = f"saved {saved} · {status['edits']} edit{'s' if status['edits'] != 1 else ''}"
        if last:
            text += f" · last: {last['user']} {last['time'][11:19]} {last['action']}"
        values = {"annot_status": text, "annot_can_undo": status["can_undo"], "annot_can_redo": status["can_redo"]}
        if case.is_cine:
            frame = self._frame() or 0
            values["annot_labels"] = case.frame_labels(frame)
            item = f"labels/{frame}"
            who = session.last_edit(item)
            source = case.sources.get(item, "")
            by = f"{who['user']} {who['time'][11:19]}" if who and source == "user" else (source or "not labelled")
            values["annot_frame_info"] = f"frame {frame + 1}: {by}"
        else:
            values["annot_severity"] = {f"{lv}|{c}": g for (lv, c), g in case.severity.items()}
            values["annot_fractures"] = {v: {1: "yes", 0: "no"}[f] for v, f in case.fractures.items()}
            values["annot_frame_info"] = "points: " + (", ".join(lv for lv in DISC_LEVELS if lv in case.points) or "none")
            values["annot_structures"] = self._structures()
        if message is not None:
            values.update({"annot_message": message, "annot_error": False})
        with self.state:
            self.state.update(values)

    def _check_open(self):
        if self.session is None:
            self._say("open a case first (Annotate → Open case)", error=True)
            return False
        return True

    def _say(self, message, error=False):
        with self.state:
            self.state.update({"annot_message": message, "annot_error": bool(error)})

    def _fail(self, error):
        if not isinstance(error, SpineAIError):
            log.exception("annotation failed")
        from SpineAILib.web.app import _one_line

        self._say(_one_line(error), error=True)
