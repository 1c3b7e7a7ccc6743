"""SpineAI in the browser: trame-slicer views plus a side panel.

``serve()`` is what ``spineai web`` calls; ``python -m SpineAILib.web.app INPUT
--port P`` does the same. The app only binds the panel's state to calls into
``SpineAILib.io`` (reading), ``SpineAILib.scene`` (MRML nodes), ``SpineAILib.tasks``
(workflows) and ``viewer`` (what the views show).

Threads: MRML and VTK are touched only on the server's asyncio loop; file reading
and workflows run in worker threads and hand their results back to the loop.
"""

import argparse
import asyncio
import bisect
import dataclasses
import functools
import ipaddress
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from trame.app import TrameApp
from trame.ui.vuetify3 import VAppLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_slicer import module as trame_slicer_module
from trame_slicer.app.ui import create_vertical_slice_view_gutter_ui, create_vertical_view_gutter_ui
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories

from SpineAILib import io as spine_io
from SpineAILib import navigation, results
from SpineAILib.workflows.ultrasound import review as cine_review
from SpineAILib.io import volumes as io_volumes
from SpineAILib.errors import AmbiguousInputError, InputError, SpineAIError
from SpineAILib.images import Cine
from SpineAILib.scene import overlays, segmentations, sequences, storage, volumes
from SpineAILib.scene.context import SceneContext
from SpineAILib.web import annotate, annotate_panel, dataset_panel, panel, viewer

log = logging.getLogger(__name__)

# Files the scene layer reads as finished Slicer nodes (not as pixel data).
from SpineAILib.vocabulary import TASKS as TASK_NAMES
CINE_MIN_TICK_S = 0.04  # play at most ~25 frames/s: each frame is a server render + JPEG


def _one_line(error):
    """A user-facing one-line reason for any exception."""
    if isinstance(error, SpineAIError):
        return str(error)
    text = " ".join(str(error).split()) or "no details"
    return f"{type(error).__name__}: {text}"


def _series_items(path):
    """Select items for the series of a DICOM folder: '2) T2 sag — MR sagittal, 15 slices'."""
    items = []
    for item in spine_io.describe(path)["items"]:
        if item.get("problem"):
            continue
        detail = f"{item.get('modality') or '?'} {item.get('orientation') or ''}".strip()
        title = f"{item['index']}) {item.get('description') or 'no description'} — {detail}, {item.get('slices')} slices"
        items.append({"title": title, "value": item["index"]})
    return items


def _stem(path):
    name = Path(path).name
    for suffix in sorted(spine_io.VOLUME_SUFFIXES + (".mrk.json", ".tsv"), key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return Path(name).stem or name


def _view_marker(server, view_id, view):
    # A hidden marker per view so tests and scripts can find a view's <img> by name
    # (Red = axial, Yellow = sagittal, Green = coronal, ThreeD).
    html.Div(classes=f"spineai-view spineai-view-{view.get_singleton_tag()}", style="display: none")


def _slice_view_ui(server, view_id, view):
    create_vertical_slice_view_gutter_ui(server, view_id, view)
    _view_marker(server, view_id, view)
    annotate_panel.view_overlay(view.get_singleton_tag())  # catches brush strokes and box clicks


def _threed_view_ui(server, view_id, view):
    create_vertical_view_gutter_ui(server, view_id, view)
    _view_marker(server, view_id, view)


class SpineAIWebApp(TrameApp):
    def __init__(self, server=None, out_dir=None):
        super().__init__(server)
        self.server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        self.scene_ctx = SceneContext.from_trame_app(self.slicer_app)
        self.out_dir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="spineai-web-"))
        self._input_path = None  # file the shown image came from: what Run works on
        self._input_series = None  # the series of a multi-series DICOM folder that was loaded
        self._input_image = None  # the Cine / VolumeImage read from _input_path (annotation reuses it)
        self._series_path = None  # the folder the series picker lists
        self._volume = None  # volume node shown in the views (not a cine)
        self._cine = None  # (browser, sequence, frame times in ms) of the shown cine
        self._play_task = None
        self._segmentation_shown = False  # 3-D then shows surfaces without slice planes
        self._review = None  # CineReview of the ultrasound run shown over the cine
        self._heat_node = None  # the heat-map layer the "Heat map" toggle shows

        register_rca_factories(
            self.slicer_app.view_manager,
            self.server,
            slice_view_ui_f=_slice_view_ui,
            three_d_view_ui_f=_threed_view_ui,
        )
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout_dict(viewer.layouts())

        self._tasks, self._tasks_error = self._import_tasks()
        self.state.update(panel.DEFAULT_STATE)
        self.state.update(
            {
                "trame__title": "SpineAI",
                "kind_icons": panel.KIND_ICONS,
                "layout_ids": list(viewer.layouts()),
                "layout_id": viewer.QUAD,
                "task_items": self._task_items(),
                "workflows_available": self._tasks is not None,
                "task_status": "" if self._tasks is not None else self._tasks_error,
                "task_error": self._tasks is None,
            }
        )
        self.layout_manager.set_layout(viewer.QUAD)
        self.state.change("layout_id")(self._on_layout_id)
        self.state.change("volume_rendering")(self._on_volume_rendering)
        self.state.change("cine_frame")(self._on_cine_frame)
        self.state.change("heatmap_visible")(self._on_heatmap_visible)
        self.annotator = annotate.WebAnnotator(self)
        self.dataset = dataset_panel.WebDataset(self)  # Export / Import dataset, below Annotate
        self._build_ui()

    # -- UI -------------------------------------------------------------------

    def _build_ui(self):
        with VAppLayout(self.server, full_height=True) as self.ui:
            self.ui.root.theme = "dark"
            with v3.VNavigationDrawer(location="right", width=380, permanent=True):
                panel.build_panel(self, annotate=self._build_annotate)
            with v3.VMain(), html.Div(classes="d-flex flex-row", style="height: 100vh"):
                self.layout_manager.initialize_layout_grid(self.ui)

    def _build_annotate(self):
        annotate_panel.build(self.annotator, panel._heading)
        dataset_panel.build(self.dataset, panel._heading)

    @staticmethod
    def _import_tasks():
        try:
            from SpineAILib import tasks

            tasks.run_task_isolated  # noqa: B018 (fail here, not at Run, when it is missing)
            return tasks, ""
        except (ImportError, AttributeError) as error:
            return None, f"workflows are not available in this installation ({_one_line(error)})"

    def _task_items(self):
        if self._tasks is not None:
            from SpineAILib.workflows.registry import WORKFLOWS

            return [{"title": f"{name} — {w.title}", "value": name} for name, w in WORKFLOWS.items()]
        return [{"title": name, "value": name} for name in TASK_NAMES]

    # -- state helpers ----------------------------------------------------------

    def _set(self, **values):
        """Set state values and push them to the browser now."""
        with self.state:
            self.state.update(values)

    def _refresh_lists(self):
        scene = self.scene_ctx.scene
        tables = []
        for node in self.scene_ctx.nodes("vtkMRMLTableNode"):
            if node.GetHideFromEditors():
                continue
            columns, rows = viewer.table_content(node)
            tables.append({"id": node.GetID(), "name": node.GetName(), "columns": columns, "rows": rows})
        self.state.update({"items": viewer.scene_items(scene), "tables": tables})

    # -- loading --------------------------------------------------------------

    async def load(self, path, load_as="auto", series=None):
        """Load button: read in a worker thread, add to the scene and show on the loop."""
        path = (path or "").strip()
        if not path:
            self._set(load_message="type the path of a file or DICOM folder first", load_error=True)
            return
        if path != self._series_path:  # a series number belongs to the folder it was listed for
            series = None
        self._set(busy=True, load_message=f"loading {path} …", load_error=False)
        try:
            loop = asyncio.get_running_loop()
            payload = await loop.run_in_executor(None, self._read, path, load_as, series)
            message = self._insert(path, payload)
            if payload[0] != "case":  # a case brings its own image and series
                self._input_series = series
            self._set(load_message=message, load_error=False, series_items=[], load_series=None)
        except AmbiguousInputError:
            # Several series: list them and let the user choose (the CLI's --series).
            items = await asyncio.get_running_loop().run_in_executor(None, _series_items, path)
            self._series_path = path
            self._set(series_items=items, load_series=None, load_error=True,
                      load_message=f"{len(items)} series in this folder: choose one below, then Load")
        except Exception as error:  # the app keeps serving whatever the input
            self._report_load_error(error)
        finally:
            with self.state:
                self.state.busy = False
                self._refresh_lists()

    def load_now(self, path, load_as="auto"):
        """Synchronous load (command-line INPUT at startup); errors go to the panel, not out."""
        try:
            message = self._insert(path, self._read(path, load_as))
            self.state.update({"load_message": message, "load_error": False, "load_path": str(path)})
        except Exception as error:
            self._report_load_error(error, push=False)
            print(f"spineai web: {self.state.load_message}", file=sys.stderr)
        self._refresh_lists()

    def _report_load_error(self, error, push=True):
        if not isinstance(error, SpineAIError):
            log.exception("loading failed")
        values = {"load_message": _one_line(error), "load_error": True}
        self._set(**values) if push else self.state.update(values)

    @staticmethod
    def _read(path, load_as, series=None):
        """Worker-thread part: no MRML here. Node files are read later by the scene layer."""
        path = spine_io.check_readable(Path(path).expanduser())
        if path.is_dir() and (path / "report.json").is_file():
            return ("results", path)
        if path.is_dir() and (path / "annotation.json").is_file():
            return ("case", path)
        if path.is_file() and path.name.lower().endswith(results.NODE_FILE_SUFFIXES):
            return ("node-file", path)
        if path.is_file() and path.name.lower().endswith(".mrb"):
            return ("scene", path)
        image = spine_io.load(path, series=series)
        if load_as == "segmentation" and isinstance(image, Cine):
            raise InputError(f"{path.name}: a 2-D cine cannot be loaded as a segmentation")
        if load_as == "segmentation" and not image.is_labelmap:
            if not path.is_file():
                raise InputError(f"{path.name}: only a NIfTI/NRRD label file can be loaded as a segmentation")
            image = io_volumes.load_volume_file(path, labelmap=True)  # refuses non-integer values
        elif load_as == "image" and getattr(image, "is_labelmap", False):  # a Cine has no label maps
            image = dataclasses.replace(image, is_labelmap=False)
        return ("image", image)

    def _insert(self, path, payload):
        """Loop part: nodes into the scene and onto the views. Returns the panel message."""
        kind, value = payload
        if kind == "results":
            return self._load_results_folder(value)
        if kind == "case":
            return self._open_case_folder(value)
        if kind == "scene":
            nodes = storage.load_scene_mrb(self.scene_ctx, value)
            images = [n for n in nodes if n.IsA("vtkMRMLScalarVolumeNode") and not n.IsA("vtkMRMLLabelMapVolumeNode")]
            for node in images[:1] + [n for n in nodes if n.IsA("vtkMRMLSegmentationNode")]:
                self._show_node(node)  # background volume first, then segmentations over it
            return f"loaded scene {value.name}: {len(nodes)} nodes"
        if kind == "node-file":
            node = storage.load_node(self.scene_ctx, value)
            self._show_node(node)
            return f"loaded {node.GetName()}"
        image = value
        name = _stem(path)
        if not getattr(image, "is_labelmap", False):
            self.annotator.close()  # a case belongs to the image it was opened on
        self._forget_results_views()  # results of another input do not belong over this one
        if isinstance(image, Cine):
            sequence, browser, proxy = sequences.add_cine(self.scene_ctx, image, name=name)
            self._show_cine(browser, sequence, proxy)
            self._input_path, self._input_image = str(path), image
            self.annotator.suggest_folder(path)
            self._suggest_task("cine", image.modality)
            rows, cols = image.frame_shape
            return f"loaded cine {sequence.GetName()}: {image.n_frames} frames {cols}×{rows}"
        if image.is_labelmap:
            reference = viewer.background_volume(self.slicer_app, self.scene_ctx.scene)
            node = segmentations.add_segmentation_from_labelmap(
                self.scene_ctx, image, reference_node=reference, name=name
            )
            self._show_node(node)
            return f"loaded segmentation {node.GetName()}: {node.GetSegmentation().GetNumberOfSegments()} segments"
        node = volumes.add_volume(self.scene_ctx, image, name=name)
        self._show_node(node)
        self._input_path, self._input_image = str(path), image
        self.annotator.suggest_folder(path)
        self._suggest_task("volume", image.modality)
        dims = "×".join(str(d) for d in image.dimensions)
        return f"loaded {node.GetName()}: {dims} {image.modality or ''}".rstrip()

    def _open_case_folder(self, folder):
        """A case folder typed in Load: its image, then the case itself (Annotate panel)."""
        from SpineAILib.annotation.case import load_case

        case = load_case(folder)
        series = case.image.get("series")
        self._insert(case.image["path"], self._read(case.image["path"], "image", series))
        self._input_series = series
        if not case.is_cine and case.task in TASK_NAMES:
            self.state.task = case.task
        self.annotator.open_case(str(folder))
        if not self.state.annot_open:
            raise InputError(self.state.annot_message or f"{folder}: the case did not open")
        return f"opened case {Path(folder).name} ({case.task})"

    def _suggest_task(self, input_kind, modality):
        """Preselect the only workflow that takes this kind of input and modality, if one does."""
        if self._tasks is None:
            return
        from SpineAILib.workflows.registry import WORKFLOWS

        fitting = [n for n, w in WORKFLOWS.items() if w.input_kind == input_kind and modality in w.modalities]
        if len(fitting) == 1 or (fitting and self.state.task not in fitting):
            self.state.task = fitting[0]

    def _show_node(self, node):
        """Put a freshly loaded (or clicked) node on the views, by kind."""
        if node.IsA("vtkMRMLSegmentationNode"):
            viewer.show_segmentation(node)
            # Surfaces alone in 3-D: a volume rendering or a slice plane would hide them.
            self._segmentation_shown = True
            self.state.volume_rendering = False
            if self._volume is not None:
                viewer.set_volume_rendering(self.slicer_app, self._volume, False, slice_planes=False)
            viewer.fit_3d(self.slicer_app)
        elif node.IsA("vtkMRMLSequenceBrowserNode"):
            sequence = node.GetMasterSequenceNode()
            self._show_cine(node, sequence, node.GetProxyNode(sequence))
        elif node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode"):
            self._stop_cine()
            self._cine, self._volume, self._segmentation_shown = None, node, False
            self.state.cine_visible = False
            if self.state.layout_id != viewer.QUAD:
                self.state.layout_id = viewer.QUAD
                self.layout_manager.set_layout(viewer.QUAD)
            # Volume rendering unless the volume is too big for software rendering.
            self.state.volume_rendering = viewer.show_volume(self.slicer_app, node)
        elif node.IsA("vtkMRMLDisplayableNode"):
            node.CreateDefaultDisplayNodes()
            display = node.GetDisplayNode()
            if display is not None:
                display.SetVisibility(True)

    def _show_cine(self, browser, sequence, proxy):
        self._stop_cine()
        self._cine = (browser, sequence, viewer.sequence_times_ms(sequence))
        layout_id = viewer.show_cine_frame(self.slicer_app, proxy)
        self.layout_manager.set_layout(layout_id)
        # The view must be in the layout (and sized) before it can be fitted.
        viewer.fit_slice_views(self.slicer_app)
        frame = browser.GetSelectedItemNumber()
        self.state.update(
            {
                "layout_id": layout_id,
                "cine_visible": True,
                "cine_name": sequence.GetName(),
                "cine_last": max(0, sequence.GetNumberOfDataNodes() - 1),
                "cine_frame": frame,
                "cine_time_ms": self._cine[2][frame] if self._cine[2] else 0.0,
            }
        )
        self._update_review(frame)
        self._apply_heatmap()  # showing the cine reset the views' foreground layer

    # -- results --------------------------------------------------------------

    async def load_results(self, folder):
        folder = (folder or "").strip()
        if not folder:
            return
        self._set(busy=True, load_message=f"loading results from {folder} …", load_error=False)
        await asyncio.sleep(0)  # let the message reach the browser before the loop is busy
        try:
            self._set(load_message=self._load_results_folder(Path(folder).expanduser()), load_error=False)
        except Exception as error:
            self._report_load_error(error)
        finally:
            with self.state:
                self.state.busy = False
                self._refresh_lists()

    def _load_results_folder(self, folder):
        folder = spine_io.check_readable(folder)
        if self._volume is None and self._cine is None:
            # Segmentations are drawn over black unless a background is set first.
            source = results.report_input_path(folder)
            if source:
                self._insert(source, self._read(source, "image"))
        nodes = results.load_results(self.scene_ctx, folder)
        layers = results.heatmap_layers(self.scene_ctx, nodes)
        layer_ids = {layer.GetID() for layer in layers}
        for node in nodes:
            if node.GetID() not in layer_ids:  # a heat map waits for its toggle
                self._show_node(node)
        if layers:
            self._heat_node = layers[-1]
            self.state.heatmap_available = True
            self._apply_heatmap()
        self._set_review(cine_review.CineReview.from_folder(folder))
        return f"loaded {len(nodes)} results from {folder.name}: {', '.join(n.GetName() for n in nodes)}"

    # -- ultrasound review and heat maps ------------------------------------------

    def _forget_results_views(self):
        self._review, self._heat_node = None, None
        self.state.update({"review_visible": False, "heatmap_available": False, "heatmap_visible": False})

    def _set_review(self, review):
        """Show the per-frame calls, timeline and Best frame for a run on the cine shown now."""
        if review is None or self._cine is None or not review.matches(len(self._cine[2])):
            self._review = None
            self.state.review_visible = False
            return
        self._review = review
        self.state.update({"review_visible": True, "review_timeline": review.timeline_data_url(),
                           "review_message": review.overview()})
        self._update_review(self._cine[0].GetSelectedItemNumber())

    def _update_review(self, frame):
        if self._review is None:
            return
        cursor = self._review.cursor_fraction(frame)
        self.state.update({"review_frame_text": self._review.frame_text(frame),
                           "review_parts": self._review.parts(frame),
                           "review_cursor": -1 if cursor is None else cursor})

    def best_frame(self):
        """Best frame button: the next of the run's best frames (the shared review decides)."""
        if self._review is None or self._cine is None:
            return
        index, message = self._review.next_best(self._cine[0].GetSelectedItemNumber())
        if index is not None:
            self._jump_to_frame(index)
        self._set(review_message=message)

    def seek_timeline(self, x):
        """A click on the timeline at ``x`` (0..1 of its width): the frame at that time."""
        if self._review is None or self._cine is None:
            return
        index = self._review.frame_at_fraction(float(x))
        if index is not None:
            self._jump_to_frame(index)

    def _jump_to_frame(self, frame):
        frame = min(max(int(frame), 0), len(self._cine[2]) - 1)
        self._stop_cine()
        self._go_to_frame(frame)
        with self.state:
            self.state.update({"cine_frame": frame, "cine_time_ms": self._cine[2][frame]})
            self._update_review(frame)

    def _apply_heatmap(self):
        if self._heat_node is None or not self.scene_ctx.scene.IsNodePresent(self._heat_node):
            return
        overlays.set_heatmap_visible(self.scene_ctx, self._heat_node, bool(self.state.heatmap_visible))
        viewer.render_slice_views(self.slicer_app)

    def _on_heatmap_visible(self, heatmap_visible, **_):
        self._apply_heatmap()

    # -- workflows --------------------------------------------------------------

    async def run(self, task, device="auto", load_path="", series=None):
        """Run button: run_task in a worker thread, progress back through the loop."""
        if self._tasks is None:
            self._set(task_status=self._tasks_error, task_error=True)
            return
        input_path = self._input_path or (load_path or "").strip()
        if not input_path:
            self._set(task_status="load an image first (or type its path in Load)", task_error=True)
            return
        out = self.out_dir / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
        self._set(task_running=True, task_progress=0, task_error=False, task_status=f"running {task} …")
        loop = asyncio.get_running_loop()

        def progress(fraction=None, message=""):
            loop.call_soon_threadsafe(self._on_progress, fraction, message)

        try:
            if self._input_path is not None:
                series = self._input_series  # the series that was loaded, not the picker's current value
            # A child process: the run's model, scene and offscreen rendering stay out of the server.
            run = functools.partial(
                self._tasks.run_task_isolated, task, input_path, out, device=device, series=series, progress=progress
            )
            await loop.run_in_executor(None, run)
        except Exception as error:
            if not isinstance(error, SpineAIError):
                log.exception("workflow %s failed", task)
            self._set(task_running=False, task_status=_one_line(error), task_error=True)
            return
        self._set(task_progress=100, task_status=f"{task} done; loading results from {out}")
        try:
            message = self._load_results_folder(out)
            summary = results.report_summary(out)
            status = {"task_status": f"{task} done: {summary + ' — ' if summary else ''}{message}", "results_path": str(out)}
        except Exception as error:
            status = {"task_status": f"{task} done, but its results did not load: {_one_line(error)}", "task_error": True}
        # The lists first, the status last: "done" on screen means everything is shown.
        with self.state:
            self.state.task_running = False
            self._refresh_lists()
        self._set(**status)

    def _on_progress(self, fraction, message):
        values = {}
        if isinstance(fraction, (int, float)):
            values["task_progress"] = max(0.0, min(100.0, fraction * 100 if fraction <= 1 else fraction))
        if message:
            values["task_status"] = " ".join(str(message).split())
        self._set(**values)

    # -- panel actions ----------------------------------------------------------

    def jump_to_row(self, table_id, row_index):
        """A table row was clicked: centre the views on the level / vertebra / frame it names."""
        node = self.scene_ctx.scene.GetNodeByID(table_id)
        if node is None:
            return
        columns, rows = viewer.table_content(node)
        if not 0 <= int(row_index) < len(rows):
            return
        target = navigation.locate_row(self.scene_ctx, dict(zip(columns, rows[int(row_index)])))
        if target is None:
            self._set(load_message="this row names no place in the views", load_error=False)
        elif target[0] == "frame" and self._cine is not None:
            self._jump_to_frame(target[1])
        elif target[0] == "ras":
            viewer.jump_slices_to(self.scene_ctx.scene, target[1])
            self._set(load_message="views centred at R {:.1f} A {:.1f} S {:.1f}".format(*target[1]), load_error=False)

    def show_item(self, node_id):
        node = self.scene_ctx.scene.GetNodeByID(node_id)
        if node is None:
            return
        if node.IsA("vtkMRMLSegmentationNode") or node.IsA("vtkMRMLMarkupsNode"):
            display = node.GetDisplayNode()
            if display is not None:  # clicking a segmentation or markups toggles it
                display.SetVisibility(not display.GetVisibility())
            self._refresh_lists()
            return
        if node.IsA("vtkMRMLScalarVolumeNode") and node.IsA("vtkMRMLLabelMapVolumeNode"):
            return
        self._show_node(node)

    def clear(self):
        self._stop_cine()
        self.annotator.close()
        self._volume = self._cine = self._input_path = self._input_image = None
        self._segmentation_shown = False
        self._forget_results_views()
        self.scene_ctx.clear()
        self.state.update(
            {
                "cine_visible": False,
                "load_message": "scene cleared",
                "load_error": False,
                "volume_rendering": True,
                "layout_id": viewer.QUAD,
            }
        )
        self.layout_manager.set_layout(viewer.QUAD)
        self._refresh_lists()

    def _on_layout_id(self, layout_id, **_):
        if layout_id:
            self.layout_manager.set_layout(layout_id)

    def _on_volume_rendering(self, volume_rendering, **_):
        if self._volume is not None and self.scene_ctx.scene.IsNodePresent(self._volume):
            planes = False if self._segmentation_shown else None
            viewer.set_volume_rendering(self.slicer_app, self._volume, volume_rendering, slice_planes=planes)
            viewer.fit_3d(self.slicer_app)

    # -- cine -------------------------------------------------------------------

    def toggle_play(self):
        if self._cine is None:
            return
        if self.state.cine_playing:
            self._stop_cine()
        else:
            self.state.cine_playing = True
            self._cine[0].SetPlaybackActive(True)
            self._play_task = asyncio.ensure_future(self._play())

    def _stop_cine(self):
        if self._play_task is not None:
            self._play_task.cancel()
            self._play_task = None
        if self._cine is not None:
            self._cine[0].SetPlaybackActive(False)
        self.state.cine_playing = False

    async def _play(self):
        """Step the browser in real time from the frame times, dropping frames when rendering lags."""
        browser, _, times = self._cine
        n = len(times)
        if n < 2:
            self._set(cine_playing=False)
            return
        step_s = max(CINE_MIN_TICK_S, (times[-1] - times[0]) / (n - 1) / 1000.0)
        t_start = time.monotonic() - (times[browser.GetSelectedItemNumber()] - times[0]) / 1000.0
        duration_s = (times[-1] - times[0]) / 1000.0 + step_s
        while True:
            elapsed_ms = ((time.monotonic() - t_start) % duration_s) * 1000.0 + times[0]
            frame = max(0, bisect.bisect_right(times, elapsed_ms) - 1)
            if frame != browser.GetSelectedItemNumber():
                self._go_to_frame(frame)
                with self.state:
                    self.state.update({"cine_frame": frame, "cine_time_ms": times[frame]})
                    self._update_review(frame)
            await asyncio.sleep(step_s)

    def _go_to_frame(self, frame):
        browser = self._cine[0]
        if 0 <= frame < browser.GetNumberOfItems() and frame != browser.GetSelectedItemNumber():
            sequences.set_frame(self.scene_ctx, browser, frame)
            self.annotator.on_frame(frame)

    def step_frame(self, delta):
        """Left / right keys: the previous / next frame of the cine (stops playback)."""
        if self._cine is None:
            return
        frame = self._cine[0].GetSelectedItemNumber() + int(delta)
        if 0 <= frame < len(self._cine[2]):
            self._jump_to_frame(frame)

    def _on_cine_frame(self, cine_frame, **_):
        if self._cine is None:
            return
        frame = int(cine_frame or 0)
        self._go_to_frame(frame)
        times = self._cine[2]
        if 0 <= frame < len(times) and self.state.cine_time_ms != times[frame]:
            self.state.cine_time_ms = times[frame]
        self._update_review(frame)


# -- entry points -----------------------------------------------------------------


def _is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_warning(host, port):
    """The warning printed when the app listens beyond this machine, else None."""
    if _is_loopback(host):
        return None
    return (
        f"WARNING: serving on {host}:{port}: the SpineAI web app is reachable from the network "
        "with NO authentication; anyone who can reach this port can open files on this machine "
        "and run workflows as this user."
    )


def serve(input_path=None, host="127.0.0.1", port=8080, open_browser=False, out_dir=None):
    """Start the web app (blocks until stopped). ``input_path`` is loaded at startup.

    Listens on 127.0.0.1 unless ``host`` says otherwise; there is no authentication,
    so any other host gets a warning on stderr. ``out_dir``: where Run writes each
    run's folder (default: a new temporary folder).
    """
    warning = host_warning(host, port)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if not os.environ.get("DISPLAY"):
        # No X server: go straight to EGL offscreen instead of failing over from X.
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    # trame parses sys.argv on start; give it no arguments so the caller's own
    # command line (e.g. `spineai web INPUT --host ...`) is not read a second time.
    os.environ["TRAME_ARGS"] = ""
    app = SpineAIWebApp(out_dir=out_dir)
    if input_path:
        app.load_now(input_path)

    def announce(**_):
        print(f"SpineAI web app listening on http://{host}:{app.server.port}/", flush=True)

    app.server.controller.on_server_ready.add(announce)
    try:
        # timeout=0: keep serving when no browser is connected (wslink would stop after 300 s).
        app.server.start(host=host, port=port, open_browser=open_browser, timeout=0, show_connection_info=False)
    except OSError as error:  # port taken, address not on this machine, ...
        raise SpineAIError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="spineai web", description="SpineAI web app: 3D Slicer views and the workflows in a browser"
    )
    parser.add_argument("input", nargs="?", help="file or DICOM folder to load at startup")
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--out", dest="out_dir", help="folder for workflow results (default: a temporary folder)")
    parser.add_argument("--open", dest="open_browser", action="store_true", help="open a browser tab")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        serve(args.input, host=args.host, port=args.port, open_browser=args.open_browser, out_dir=args.out_dir)
    except SpineAIError as error:
        print(f"spineai web: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
