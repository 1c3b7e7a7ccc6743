"""Load and Load results: read a file, DICOM folder, scene, node file, case folder or run folder
on the server (in a worker thread), put it in the scene and on the views (on the loop); Clear;
a results table row centres the views on what it names.

The input that Run works on and that a case annotates is ``self.input`` (``LoadedInput``).
"""

import asyncio
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from undo_stack import Signal

from SpineAILib import io as spine_io
from SpineAILib import navigation, pacs, results
from SpineAILib.errors import AmbiguousInputError, InputError
from SpineAILib.images import Cine
from SpineAILib.io import volumes as io_volumes
from SpineAILib.scene import segmentations, sequences, storage, volumes
from SpineAILib.web.logic.base_logic import BaseLogic, log_unexpected, one_line
from SpineAILib.web.ui.load_ui import LoadState
from SpineAILib.workflows.ultrasound.review import CineReview


@dataclass
class LoadedInput:
    """The image on screen as it was read: what Run works on and what a case annotates."""

    path: str
    image: object  # the Cine / VolumeImage read from ``path``
    series: object = None  # the series of a multi-series DICOM folder that was loaded


def series_items(path):
    """Select items for the series of a DICOM folder: '2) T2 sag — MR sagittal, 15 slices'."""
    items = []
    for item in spine_io.describe(path)["items"]:
        if item.get("problem"):
            continue
        detail = f"{item.get('modality') or '?'} {item.get('orientation') or ''}".strip()
        title = f"{item['index']}) {item.get('description') or 'no description'} — {detail}, {item.get('slices')} slices"
        items.append({"title": title, "value": item["index"]})
    return items


def node_name(path):
    name = Path(path).name
    for suffix in sorted(spine_io.VOLUME_SUFFIXES + (".mrk.json", ".tsv"), key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return Path(name).stem or name


STUDY = "study"  # ``series`` for a whole study folder: the image lumbar-mri finds its levels on


def read(path, load_as, series=None):
    """Worker-thread part: no MRML here. Node files are read later by the scene layer."""
    path = spine_io.check_readable(Path(path).expanduser())
    if series == STUDY:  # a whole study: lumbar-mri's choice of series is shown, the folder is the input
        from SpineAILib.workflows.registry import get_workflow

        return ("image", get_workflow("lumbar-mri").load_input(path, None))
    if path.is_dir() and (path / "report.json").is_file():
        return ("results", path)
    if path.is_dir() and (path / "annotation.json").is_file():
        return ("case", path)
    if path.is_file() and path.name.lower().endswith(results.NODE_FILE_SUFFIXES):
        return ("node-file", path)
    if path.is_file() and path.name.lower().endswith(".mrb"):
        return ("scene", path)
    if path.is_file() and pacs.is_dicom_seg(path):  # a DICOM SEG (ours or a PACS's): over the series shown
        return ("dicom-seg", pacs.read_seg(path))
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


class LoadLogic(BaseLogic[LoadState]):
    """``views``, ``cine``, ``review``: the logics that show what is loaded."""

    input_replacing = Signal()  # another image replaces the input: a case open on the old one closes
    input_loaded = Signal(str, str, str)  # path, 'cine' / 'volume', modality of the new input
    case_loaded = Signal(str)  # a volume case folder was loaded: its task
    clearing = Signal()  # Clear: everything shown is about to go

    def __init__(self, server, views, cine, review):
        super().__init__(server, LoadState)
        self.views = views
        self.cine = cine
        self.review = review
        self.input = None  # LoadedInput
        self._series_path = None  # the folder the series picker lists
        self.case_opener = None  # callable(folder): opens a case on the input, raises when it cannot

    def set_ui(self, ui):
        ui.load_clicked.connect(self.load)
        ui.results_clicked.connect(self.load_results)

    # -- Load -------------------------------------------------------------------------------

    async def load(self, path, load_as="auto", series=None):
        """Load button: read in a worker thread, add to the scene and show on the loop."""
        path = (path or "").strip()
        if not path:
            self.push(load_message="type the path of a file or DICOM folder first", load_error=True)
            return
        if path != self._series_path:  # a series number belongs to the folder it was listed for
            series = None
        self.push(busy=True, load_message=f"loading {path} …", load_error=False)
        loop = asyncio.get_running_loop()
        try:
            payload = await loop.run_in_executor(None, read, path, load_as, series)
            message = self.insert(path, payload)
            if payload[0] == "image" and self.input is not None and self.input.image is payload[1]:
                self.input.series = None if series == STUDY else series  # a case brings its own image and series
                if series == STUDY:
                    message = f"{message} — the whole study {Path(path).name} is the input (lumbar-mri reads every series)"
            self.push(load_message=message, load_error=False, series_items=[], load_series=None)
        except AmbiguousInputError:
            # Several series: list them and let the user choose (the CLI's --series).
            items = await loop.run_in_executor(None, series_items, path)
            self._series_path = path
            self.push(series_items=items, load_series=None, load_error=True,
                      load_message=f"{len(items)} series in this folder: choose one below, then Load")
        except Exception as error:  # the app keeps serving whatever the input
            self._report_error(error)
        finally:
            with self.state:
                self.data.busy = False
                self.views.refresh_lists()

    async def load_series(self, folder, series):
        """Load series number ``series`` of a DICOM folder (the file browser's Load)."""
        self._series_path = folder
        self.push(load_path=folder, load_series=series)
        await self.load(folder, "auto", series)

    async def load_study(self, folder):
        """A whole study folder as the input (lumbar-mri grades every series); its level series is shown."""
        self._series_path = folder
        self.push(load_path=folder, load_series=None)
        await self.load(folder, "auto", STUDY)

    async def load_typed(self, path):
        """Load ``path`` as if typed in Load (an imported case: its image, then the case)."""
        self.push(load_path=path)
        await self.load(path)

    def load_now(self, path, load_as="auto"):
        """Synchronous load (command-line INPUT at startup); errors go to the panel, not out."""
        try:
            message = self.insert(path, read(path, load_as))
            self.typed.update(load_message=message, load_error=False, load_path=str(path))
        except Exception as error:
            self._report_error(error, push=False)
            print(f"spineai web: {self.data.load_message}", file=sys.stderr)
        self.views.refresh_lists()

    def _report_error(self, error, push=True):
        log_unexpected(error, "loading")
        values = {"load_message": one_line(error), "load_error": True}
        self.push(**values) if push else self.typed.update(**values)

    def insert(self, path, payload):
        """Loop part: nodes into the scene and onto the views. Returns the panel message."""
        kind, value = payload
        if kind == "results":
            return self.load_results_folder(value)
        if kind == "case":
            return self.open_case_folder(value)
        ctx = self.views.scene_ctx
        if kind == "scene":
            nodes = storage.load_scene_mrb(ctx, value)
            images = [n for n in nodes if n.IsA("vtkMRMLScalarVolumeNode") and not n.IsA("vtkMRMLLabelMapVolumeNode")]
            for node in images[:1] + [n for n in nodes if n.IsA("vtkMRMLSegmentationNode")]:
                self.views.show_node(node)  # background volume first, then segmentations over it
            return f"loaded scene {value.name}: {len(nodes)} nodes"
        if kind == "dicom-seg":
            labels, names = value
            node = segmentations.add_segmentation_from_labelmap(ctx, labels, label_names=names, name=node_name(path),
                                                                reference_node=self.views.background_volume())
            self.views.show_node(node)
            return f"loaded DICOM SEG {node.GetName()}: {', '.join(names.values()) or 'no segments'}"
        if kind == "node-file":
            node = storage.load_node(ctx, value)
            self.views.show_node(node)
            return f"loaded {node.GetName()}"
        image = value
        name = node_name(path)
        if not getattr(image, "is_labelmap", False):
            self.input_replacing()  # a case belongs to the image it was opened on
        self.review.forget()  # results of another input do not belong over this one
        if isinstance(image, Cine):
            sequence, browser, proxy = sequences.add_cine(ctx, image, name=name)
            self.views.show_cine(browser, sequence, proxy)
            self.input = LoadedInput(str(path), image)
            self.input_loaded(str(path), "cine", image.modality or "")
            rows, cols = image.frame_shape
            return f"loaded cine {sequence.GetName()}: {image.n_frames} frames {cols}×{rows}"
        if image.is_labelmap:
            node = segmentations.add_segmentation_from_labelmap(ctx, image, reference_node=self.views.background_volume(),
                                                                name=name)
            self.views.show_node(node)
            return f"loaded segmentation {node.GetName()}: {node.GetSegmentation().GetNumberOfSegments()} segments"
        self.views.hold_3d()  # the slice views' first frames before the 3-D view's (slow) one
        node = volumes.add_volume(ctx, image, name=name)
        self.views.show_node(node)
        self.input = LoadedInput(str(path), image)
        self.input_loaded(str(path), "volume", image.modality or "")
        dims = "×".join(str(d) for d in image.dimensions)
        return f"loaded {node.GetName()}: {dims} {image.modality or ''}".rstrip()

    def open_case_folder(self, folder):
        """A case folder typed in Load: its image, then the case itself (Annotate panel)."""
        from SpineAILib.annotation.case import load_case

        case = load_case(folder)
        series = case.image.get("series")
        self.insert(case.image["path"], read(case.image["path"], "image", series))
        if self.input is not None:
            self.input.series = series
        if not case.is_cine:
            self.case_loaded(case.task)
        if self.case_opener is None:
            raise InputError(f"{folder}: cases cannot be opened here")
        self.case_opener(str(folder))
        return f"opened case {Path(folder).name} ({case.task})"

    # -- Load results -----------------------------------------------------------------------

    async def load_results(self, folder):
        folder = (folder or "").strip()
        if not folder:
            return
        self.push(busy=True, load_message=f"loading results from {folder} …", load_error=False)
        await asyncio.sleep(0)  # let the message reach the browser before the loop is busy
        try:
            self.push(load_message=self.load_results_folder(Path(folder).expanduser()), load_error=False)
        except Exception as error:
            self._report_error(error)
        finally:
            with self.state:
                self.data.busy = False
                self.views.refresh_lists()

    def load_results_folder(self, folder):
        folder = spine_io.check_readable(folder)
        if self.views.volume is None and self.views.cine is None:
            # Segmentations are drawn over black unless a background is set first.
            source = results.report_input_path(folder)
            if source:
                self.insert(source, read(source, "image"))
        nodes = results.load_results(self.views.scene_ctx, folder)
        layers = results.heatmap_layers(self.views.scene_ctx, nodes)
        layer_ids = {layer.GetID() for layer in layers}
        for node in nodes:
            if node.GetID() not in layer_ids:  # a heat map waits for its toggle
                self.views.show_node(node)
        self.review.show_results(CineReview.from_folder(folder), layers, folder)
        self.data.results_path = str(folder)  # Prefill and Load results use this run from now on
        return f"loaded {len(nodes)} results from {folder.name}: {', '.join(n.GetName() for n in nodes)}"

    # -- Clear and table rows ---------------------------------------------------------------

    def clear(self):
        self.clearing()
        self.input = None
        self.review.forget()
        self.views.clear()
        self.typed.update(load_message="scene cleared", load_error=False)

    def jump_to_row(self, table_id, row_index):
        """A table row was clicked: centre the views on the level / vertebra / frame it names."""
        row = self.views.row_target(table_id, row_index)
        if row is None:
            return
        target = navigation.locate_row(self.views.scene_ctx, row)
        if target is None:
            self.push(load_message="this row names no place in the views", load_error=False)
        elif target[0] == "frame" and self.views.cine is not None:
            self.cine.jump_to_frame(target[1])
        elif target[0] == "ras":
            self.centre_views_on(target[1])

    def centre_on_vertebra(self, row_index):
        """A row of the Results' vertebral-body table was clicked: centre the views on that vertebra."""
        name, centre = self.review.vertebra_centre(row_index)
        if centre is None:
            self.push(load_message=f"{name or 'this row'}: no position to centre the views on", load_error=False)
            return
        self.centre_views_on(centre, name)

    def centre_views_on(self, ras, what=""):
        self.views.centre_slices_on(ras)
        self.push(load_message="views centred at R {:.1f} A {:.1f} S {:.1f}".format(*ras) + (f" ({what})" if what else ""),
                  load_error=False)
