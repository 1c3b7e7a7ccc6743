"""SpineAI, the 3D Slicer module: a thin face over SpineAILib.

The widget binds Resources/UI/SpineAI.ui to a typed parameter node and, on Apply,
runs the same command line users run (``spineai run TASK INPUT --out DIR``) in a
background PythonSlicer process (SpineAILib.runtime.child, through
SpineAILib.desktop.job), so Slicer stays responsive and a crash or a Cancel cannot take
the scene with it. The result files are then loaded through SpineAILib.scene.

Supported: 3D Slicer 5.8 (Python 3.9) and 5.10 (Python 3.12); older versions get one line
saying so. Nothing heavy (torch, monai, numpy users) is imported when Slicer starts: only
SpineAILib.vocabulary (the shared task and device names, which imports nothing). Packages
are checked by version and installed, after one confirmation, before each action that
needs them (SpineAILib.desktop.dependencies).

Helpers beside this file, in SpineAILib/desktop/: ``annotate`` (the Annotate section),
``job`` (the background process), ``dependencies`` (the dependency handler).
"""

import logging
import os
import pathlib
import re
import shutil
import time
from typing import Annotated, Union

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from SpineAILib.vocabulary import DEVICES, TASKS

try:
    from slicer.i18n import tr as _
except ImportError:  # Slicer older than 5.4: the version check below says what to do
    def _(text):
        return text

TIMELINE_WIDTH = 400  # px of the ultrasound timeline picture in the panel
CALL_COLOURS = {"bad_quality": "#d62728", "spinal_cord": "#2ca02c", "csf": "#1f77b4"}  # as the timeline's


def registerSampleData():
    """The real sample images shipped in Resources/SampleData (SpineAILib.samples.real) as Sample Data
    entries, category SpineAI (Slicer's SampleData convention; file:// URIs, nothing downloaded)."""
    import SampleData

    from SpineAILib.samples.real import REAL_SAMPLES

    icon = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "SpineAI.png")
    for sample in REAL_SAMPLES:
        if sample.path.is_file():  # the DICOM series is a folder: load it through the DICOM module
            SampleData.SampleDataLogic.registerCustomSampleDataSource(
                category="SpineAI", sampleName=sample.name, uris=sample.path.as_uri(), fileNames=sample.path.name,
                nodeNames=sample.name, thumbnailFileName=icon)


def _versionProblem():
    """One line when this Slicer is older than SpineAI supports (5.8), else None."""
    from SpineAILib.desktop.dependencies import slicer_version_problem

    return slicer_version_problem(slicer.app.majorVersion, slicer.app.minorVersion)


#
# SpineAI
#


class SpineAI(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SpineAI")
        self.parent.categories = [_("Spine")]
        self.parent.dependencies = []
        self.parent.contributors = ["SpineAI contributors"]
        self.parent.helpText = _("""
Spine imaging AI: per-frame quality, spinal cord and CSF labels for infant lumbar-puncture
ultrasound cines; disc-level degenerative grading for lumbar MRI; vertebra segmentation
and fracture detection for cervical CT. Choose an input volume or sequence (or a file or
DICOM folder), a task and optionally a model bundle, then press Apply. The same analysis
runs headless with <code>spineai run TASK INPUT --out DIR</code>. Needs 3D Slicer 5.8 or later.
""")
        # Sample Data entries once the application is up (Slicer's SampleData convention).
        slicer.app.connect("startupCompleted()", registerSampleData)
        self.parent.acknowledgementText = _("""
Built on <a href="https://monai.io">MONAI</a> and PyTorch, following the patterns of the
SlicerMONAIAuto3DSeg and SlicerTotalSegmentator extensions. Model results are for research
use and are not a medical device.
""")


#
# Parameter node
#


@parameterNodeWrapper
class SpineAIParameterNode:
    # Every node field allows None: the wrapper writes None when it creates the node, and the
    # node combo box offers "None" (noneEnabled); without it creating the node raises TypeError.
    inputNode: Union[vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode, None]
    inputPath: pathlib.Path  # a file or DICOM folder; when set it wins over inputNode
    task: Annotated[str, Choice(TASKS)] = TASKS[0]
    device: Annotated[str, Choice(DEVICES)] = DEVICES[0]
    modelPath: pathlib.Path  # empty: the catalogue's default bundle for the task
    outputFolder: pathlib.Path  # empty: a new folder under Slicer's temporary folder
    dicomOutputs: bool = False  # also write DICOM SEG / SR / secondary captures (DICOM inputs only)
    caseFolder: pathlib.Path  # the annotation case's working folder (Annotate section)


def _pathOrNone(path):
    """Path parameters read back '.' when never set; treat that as unset."""
    text = str(path or "").strip()
    return None if text in ("", ".") else pathlib.Path(text)


#
# SpineAIWidget
#


class SpineAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._outDir = None
        self._unsupported = None  # why this Slicer cannot run SpineAI, or None
        self._review = None  # SpineAILib.workflows.ultrasound.review.CineReview of an ultrasound run
        self._reviewBrowser = None  # the sequence browser of the reviewed cine
        self._reviewFrame = None
        self._timeline = None  # the timeline QPixmap, scaled, without the frame line
        self._heatNode = None  # the heat-map layer the Heat map box shows
        self.annotation = None  # SpineAILib.desktop.annotate.SpineAIAnnotation: the Annotate section

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SpineAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SpineAILogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.resultsTableView.connect("clicked(QModelIndex)", self.onResultRowClicked)
        self.ui.bestFrameButton.connect("clicked(bool)", self.onBestFrameButton)
        self.ui.heatmapCheckBox.connect("toggled(bool)", self.onHeatmapToggled)
        self._setRunning(False)
        self._showReview(None, [])
        self._addResultsView()
        from SpineAILib.desktop.annotate import SpineAIAnnotation

        self.annotation = SpineAIAnnotation(self)
        self._unsupported = _versionProblem()
        if self._unsupported:
            self._status(self._unsupported)
        self.initializeParameterNode()

    def cleanup(self):
        if self._job:
            self._job.cancel()
        if self.annotation:
            if self.annotation._datasetJob:
                self.annotation._datasetJob.cancel()
            self.annotation.close()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()
        if self.annotation:
            self.annotation.enter()

    def exit(self):
        if self.annotation:
            self.annotation.exit()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)
        self._showReview(None, [])
        self._showResults(None)
        if self.annotation:
            self.annotation.close()

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputNode:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.inputNode = firstVolume

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None):
        p = self._parameterNode
        hasInput = bool(p and (p.inputNode or _pathOrNone(p.inputPath)))
        self.ui.applyButton.enabled = hasInput and self._job is None and not self._unsupported
        self.ui.applyButton.toolTip = (self._unsupported or _("Run the selected task")) if hasInput else \
            _("Select an input volume, sequence or file")

    def _setRunning(self, running):
        self.ui.progressBar.visible = running
        self.ui.cancelButton.enabled = running
        if running:
            self.ui.progressBar.setRange(0, 0)  # busy until the CLI reports a percentage
        self._checkCanApply()

    def _status(self, text):
        self.ui.statusLabel.text = text
        logging.info(f"SpineAI: {text}")

    def ensurePackages(self, what, modules=None):
        """Before an action: this Slicer is supported and the packages the action needs are
        installed (asked once, installed to fit this Slicer). False, with one line, when not."""
        from SpineAILib.desktop import dependencies

        if self._unsupported:
            slicer.util.errorDisplay(self._unsupported)
            return False
        if not dependencies.ensure(modules or dependencies.FILES, ask=True, what=what):
            self._status(_("SpineAI needs its Python packages for {what}; nothing was done.").format(what=what))
            return False
        return True

    def onApplyButton(self):
        from SpineAILib.desktop.dependencies import DICOM_OUTPUTS, RUN, dicom_outputs_problem

        p = self._parameterNode
        if p.dicomOutputs and dicom_outputs_problem():
            slicer.util.errorDisplay(dicom_outputs_problem())
            return
        if not self.ensurePackages(_("a {task} run").format(task=p.task), DICOM_OUTPUTS if p.dicomOutputs else RUN):
            return
        with slicer.util.tryWithErrorDisplay(_("SpineAI could not start."), waitCursor=True):
            inputPath, series = _pathOrNone(p.inputPath), None
            if inputPath is None and p.task == "lumbar-mri":
                # A series loaded from Slicer's DICOM database brings its whole study: every series grades what it shows.
                inputPath, series = self.logic.dicomStudyOf(p.inputNode) or (None, None)
            inputPath = inputPath or self.logic.exportInput(p.inputNode, p.task)
            self._outDir = self.logic.newOutputFolder(p.task, _pathOrNone(p.outputFolder))
            self._job = self.logic.run(
                p.task, inputPath, self._outDir, p.device, _pathOrNone(p.modelPath),
                wait=False, onLine=self._onLine, onProgress=self._onProgress, onFinished=self._onFinished, series=series,
                dicom=p.dicomOutputs,
            )
            self._status(_("Running {task} on {name}...").format(task=p.task, name=inputPath.name))
            self._setRunning(True)

    def onCancelButton(self):
        if self._job:
            self._job.cancel()
            self._status(_("Cancelling..."))

    def _onProgress(self, fraction, message):
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.value = min(100, int(fraction * 100))

    def _onLine(self, line):
        if line.strip():
            self.ui.statusLabel.text = line.strip()[:200]

    def _onFinished(self, job):
        self._job = None
        self._setRunning(False)
        if job.cancelled:
            self._status(_("Cancelled."))
            return
        if job.returncode != 0:
            self._status(_("Failed: {reason}").format(reason=job.reason()))
            slicer.util.errorDisplay(_("SpineAI failed: {reason}").format(reason=job.reason()),
                                     detailedText="\n".join(job.lines[-200:]))
            return
        with slicer.util.tryWithErrorDisplay(_("SpineAI could not load its results."), waitCursor=True):
            from SpineAILib.results import report_summary

            nodes = self.logic.load_results(self._outDir)
            tables = [n for n in nodes if hasattr(n, "IsA") and n.IsA("vtkMRMLTableNode")]
            if tables:
                self.ui.resultsTableView.setMRMLTableNode(tables[0])
            self._showReview(self._outDir, nodes)
            self._showResults(self._outDir)
            summary = report_summary(self._outDir)
            self._status(f"Done in {job.seconds:.0f} s: {summary + ' — ' if summary else ''}"
                         f"{len(nodes)} result(s) loaded from {self._outDir}")

    # --- the results as a reader sees them (SpineAILib.presentation, the same as the web app's) ---

    def _addResultsView(self):
        """A rich-text box above the results table: every warning in full, the grade grid, fractures with
        their thresholds, the heat map's legend, measurements."""
        self.resultsView = qt.QTextBrowser()
        self.resultsView.objectName = "resultsView"
        self.resultsView.setMinimumHeight(180)
        self.resultsView.setVisible(False)
        # a vertebra's name in the vertebral-body table links to its centre (presentation.centre_link)
        self.resultsView.setOpenLinks(False)
        self.resultsView.connect("anchorClicked(QUrl)", self.onResultLinkClicked)
        table = self.ui.resultsTableView
        layout = table.parentWidget().layout() if table.parentWidget() else None
        index = layout.indexOf(table) if layout is not None else -1
        if index >= 0 and hasattr(layout, "insertWidget"):
            layout.insertWidget(index, self.resultsView)
        else:
            self.layout.addWidget(self.resultsView)

    def _showResults(self, outDir):
        if not hasattr(self, "resultsView"):
            return
        if not outDir:
            self.resultsView.clear()
            self.resultsView.setVisible(False)
            return
        from SpineAILib.presentation import present, to_html

        self.resultsView.setHtml(to_html(present(outDir)))
        self.resultsView.setVisible(True)

    def onResultLinkClicked(self, url):
        """A vertebra's name in the results box: centre the slice views on it (SpineAILib.presentation)."""
        from SpineAILib.presentation import centre_from_link

        centre = centre_from_link(url.toString())
        if centre is not None:
            slicer.modules.markups.logic().JumpSlicesToLocation(*centre, True)

    # --- ultrasound review and heat map (decisions in SpineAILib.workflows.ultrasound.review / results) ---

    def _showReview(self, outDir, nodes):
        """Calls line, timeline and Best frame for an ultrasound run; the Heat map box for any run with one."""
        if self._reviewBrowser is not None:
            self.removeObserver(self._reviewBrowser, vtk.vtkCommand.ModifiedEvent, self._onBrowserModified)
        self._review, self._reviewBrowser = self.logic.cine_review(outDir) if outDir else (None, None)
        self._heatNode = self.logic.heatmap_layer(nodes) if nodes else None
        self._reviewFrame, self._timeline = None, None
        reviewing = self._review is not None
        for widget in (self.ui.callsLabel, self.ui.timelineLabel, self.ui.bestFrameButton):
            widget.visible = reviewing
        self.ui.heatmapCheckBox.visible = self._heatNode is not None
        self.ui.heatmapCheckBox.checked = False
        if not reviewing:
            return
        if self._review.timeline is not None:
            self._timeline = qt.QPixmap(str(self._review.timeline)).scaledToWidth(TIMELINE_WIDTH, qt.Qt.SmoothTransformation)
        self.addObserver(self._reviewBrowser, vtk.vtkCommand.ModifiedEvent, self._onBrowserModified)
        self._onBrowserModified()

    def _onBrowserModified(self, caller=None, event=None):
        """The cine moved (playing, stepping, Best frame): show the calls of the frame on screen."""
        if self._review is None or self._reviewBrowser is None:
            return
        frame = self._reviewBrowser.GetSelectedItemNumber()
        if frame == self._reviewFrame:
            return
        self._reviewFrame = frame
        parts = [
            f"<span style='color:{CALL_COLOURS.get(p['label'], 'black')}'><b>{p['text']}</b></span>" if p["called"] else p["text"]
            for p in self._review.parts(frame)
        ]
        self.ui.callsLabel.text = f"{self._review.frame_text(frame)} — " + " · ".join(parts)
        if self._timeline is not None:
            picture = qt.QPixmap(self._timeline)
            fraction = self._review.cursor_fraction(frame)
            if fraction is not None:
                x = int(round(fraction * picture.width()))
                painter = qt.QPainter(picture)
                pen = qt.QPen(qt.QColor("#e040fb"))
                pen.setWidth(2)
                painter.setPen(pen)
                painter.drawLine(x, 0, x, picture.height())
                painter.end()
            self.ui.timelineLabel.setPixmap(picture)

    def onBestFrameButton(self):
        if self._review is None or self._reviewBrowser is None:
            return
        frame, message = self._review.next_best(self._reviewBrowser.GetSelectedItemNumber())
        if frame is not None:
            self._reviewBrowser.SetPlaybackActive(False)
            self._reviewBrowser.SetSelectedItemNumber(frame)
        self._status(message)

    def onHeatmapToggled(self, checked):
        if self._heatNode is not None:
            self.logic.set_heatmap_visible(self._heatNode, checked)


    def onResultRowClicked(self, index):
        """Centre the views on the level / vertebra / frame the clicked row names (shared logic)."""
        table = self.ui.resultsTableView.mrmlTableNode()
        if table is None:
            return
        row = {table.GetColumnName(c): table.GetCellText(index.row(), c) for c in range(table.GetNumberOfColumns())}
        target = self.logic.locate_row(row)
        if target is None:
            return
        kind, where = target
        if kind == "ras":
            slicer.modules.markups.logic().JumpSlicesToLocation(*where, True)
        elif kind == "frame":
            for browser in slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode"):
                if 0 <= where < browser.GetNumberOfItems():
                    browser.SetSelectedItemNumber(where)


#
# SpineAILogic
#


class SpineAILogic(ScriptedLoadableModuleLogic):
    """The module's work in the scene, usable from Python without the GUI; runs go through
    the `spineai` command line in a child process (SpineAILib.runtime.child)."""

    def getParameterNode(self):
        return SpineAIParameterNode(super().getParameterNode())

    # --- running the command line ---

    def run(self, task, input_path, out_dir, device="auto", model=None, wait=True, onLine=None, onFinished=None,
            series=None, onProgress=None, dicom=False):
        """Run `spineai run TASK INPUT --out OUT_DIR [--model M] [--series S] --device D [--dicom]`.

        wait=True blocks and returns the output lines (SpineAIError with the CLI's one-line
        reason on failure); wait=False returns a running SpineAILib.desktop.job.Job.
        """
        from SpineAILib.runtime.child import run_arguments

        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
        arguments = run_arguments(task, input_path, out_dir, model=model, device=device or "auto", series=series,
                                  dicom=dicom)
        return self._launch(arguments, wait, onLine, onFinished, onProgress)

    def info(self, input_path):
        """`spineai info INPUT`: what SpineAI reads from a file or folder (output lines)."""
        return self._launch(["info", input_path], True)

    @staticmethod
    def _launch(arguments, wait, onLine=None, onFinished=None, onProgress=None):
        from SpineAILib.desktop import job

        if wait:
            return job.run(arguments)
        return job.Job(arguments, onLine=onLine, onProgress=onProgress, onFinished=onFinished)

    # --- scene <-> files ---

    @staticmethod
    def newOutputFolder(task, parent=None):
        """A fresh folder for one run (the CLI refuses to overwrite an existing one)."""
        parent = pathlib.Path(parent) if parent else pathlib.Path(slicer.app.temporaryPath) / "SpineAI"
        folder = parent / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
        suffix = 1
        while folder.exists():
            suffix += 1
            folder = parent / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
        parent.mkdir(parents=True, exist_ok=True)
        return folder

    @staticmethod
    def dicomStudyOf(node):
        """(folder, SeriesInstanceUID) when ``node`` was loaded from Slicer's DICOM database: a temporary
        folder linking every file of the node's study, one subfolder per series; else None."""
        uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split() if node is not None else []
        database = getattr(slicer, "dicomDatabase", None)
        if not uids or database is None or not database.fileForInstance(uids[0]):
            return None
        studyUID = database.instanceValue(uids[0], "0020,000D")
        seriesUID = database.instanceValue(uids[0], "0020,000E")
        folder = pathlib.Path(slicer.util.tempDirectory("SpineAI-study"))
        for otherSeries in database.seriesForStudy(studyUID):
            target = folder / re.sub(r"[^A-Za-z0-9._-]+", "_", otherSeries)
            target.mkdir(parents=True, exist_ok=True)
            for n, source in enumerate(database.filesForSeries(otherSeries)):
                link = target / f"{n:05d}.dcm"
                try:
                    os.symlink(source, link)  # the database's own files, not copies
                except OSError:
                    shutil.copy2(source, link)
        return folder, seriesUID

    @staticmethod
    def exportInput(node, task):
        """Write the input node to a temporary file the CLI can read; returns its path.

        An ultrasound frame shown by a sequence browser stands for its whole cine, so
        the sequence is exported rather than the one frame on screen.
        """
        if node is None:
            raise ValueError(_("Select an input volume or sequence (or an input file)."))
        if node.IsA("vtkMRMLScalarVolumeNode") and task == "lp-ultrasound":
            browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForProxyNode(node)
            if browser:
                node = browser.GetSequenceNode(node) or node
        folder = pathlib.Path(slicer.util.tempDirectory("SpineAI-input"))
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", node.GetName()) or "input"
        path = folder / (name + (".seq.nrrd" if node.IsA("vtkMRMLSequenceNode") else ".nrrd"))
        # exportNode leaves the node's own storage (its Save-dialog file name) untouched; a fresh
        # properties dict each call (its default is one shared, mutable dict).
        saved = slicer.util.exportNode(node, str(path), properties={})
        if saved is False or not path.exists():
            raise RuntimeError(f"Could not write {node.GetName()} to {path}")
        return path

    @staticmethod
    def locate_row(row):
        """('ras', (r, a, s)) or ('frame', n) for a result row, or None (SpineAILib.navigation)."""
        from SpineAILib.navigation import locate_row
        from SpineAILib.scene.context import SceneContext

        return locate_row(SceneContext.from_slicer(), row)

    @staticmethod
    def load_results(out_dir):
        """Load the run's segmentations, markups, tables and heat maps (hidden) into the scene; returns the nodes."""
        from SpineAILib.results import load_results
        from SpineAILib.scene.context import SceneContext

        return load_results(SceneContext.from_slicer(), out_dir)

    @staticmethod
    def cine_review(out_dir):
        """(CineReview, browser of its cine in the scene) for an ultrasound run, else (None, None)."""
        from SpineAILib.scene.context import SceneContext
        from SpineAILib.workflows.ultrasound.review import CineReview, review_browser

        review = CineReview.from_folder(out_dir)
        browser = review_browser(SceneContext.from_slicer(), review)
        return (review, browser) if browser is not None else (None, None)

    @staticmethod
    def heatmap_layer(nodes):
        """The heat-map layer among the loaded result nodes (the last one), or None."""
        from SpineAILib.results import heatmap_layers
        from SpineAILib.scene.context import SceneContext

        layers = heatmap_layers(SceneContext.from_slicer(), nodes)
        return layers[-1] if layers else None

    @staticmethod
    def set_heatmap_visible(node, visible):
        """The Heat map toggle: ``node`` as the slice views' coloured foreground layer, or none."""
        from SpineAILib.scene.context import SceneContext
        from SpineAILib.scene.overlays import set_heatmap_visible

        return set_heatmap_visible(SceneContext.from_slicer(), node, bool(visible))


#
# SpineAITest
#

class SpineAITest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Developer mode > Reload and Test, or ctest in an extension build).

    Builds the module's widget as Slicer does, runs a small lp-ultrasound inference on a
    phantom cine through Apply (the PythonSlicer child process, the bundled model) and checks
    the nodes that appear; then the logic on its own, the annotation case and a Segment Editor
    stroke reaching the case folder without a frame change.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_slicer_is_supported_and_packages_are_there()
        self.test_parameter_node_accepts_none()
        self.test_widget_apply_on_a_phantom_cine()
        self.setUp()
        self.test_phantom_volume_info()
        self.test_output_folders()
        self.test_load_results()
        self.test_cine_review()
        self.test_annotation_case()
        self.test_segment_editor_stroke_is_saved()

    def test_slicer_is_supported_and_packages_are_there(self):
        from SpineAILib.desktop import dependencies

        self.assertIsNone(_versionProblem())
        # Installs what is missing, fitted to this Slicer (no dialog: a test answers for itself).
        self.assertTrue(dependencies.ensure(dependencies.RUN, ask=False, what="the self-test"))
        self.assertEqual(dependencies.check(dependencies.RUN), [])

    def test_parameter_node_accepts_none(self):
        """Issue 19 #1: creating the parameter node and choosing "None" must not raise."""
        node = SpineAILogic().getParameterNode()
        node.inputNode = None
        self.assertIsNone(node.inputNode)
        self.assertEqual(node.task, TASKS[0])

    def _phantomCine(self):
        from SpineAILib.samples.cine_phantom import make_cine_phantom
        from SpineAILib.scene.context import SceneContext
        from SpineAILib.scene.sequences import add_cine

        cine = make_cine_phantom(n_frames=6, rows=96, cols=120)
        _sequence, browser, proxy = add_cine(SceneContext.from_slicer(), cine, name="PhantomCine")
        return proxy, browser

    def _widget(self):
        parent = slicer.qMRMLWidget()
        parent.setLayout(qt.QVBoxLayout())
        parent.setMRMLScene(slicer.mrmlScene)
        widget = SpineAIWidget(parent)
        widget.setup()
        return widget

    def test_widget_apply_on_a_phantom_cine(self):
        self.delayDisplay("Apply on a phantom cine through the module's widget")
        widget = self._widget()
        proxy, browser = self._phantomCine()
        p = widget._parameterNode
        p.task, p.device, p.inputNode = "lp-ultrasound", "cpu", proxy
        self.assertTrue(widget.ui.applyButton.enabled)
        tables = len(slicer.util.getNodesByClass("vtkMRMLTableNode"))
        widget.onApplyButton()
        self.assertIsNotNone(widget._job, widget.ui.statusLabel.text)
        deadline = time.time() + 600
        while widget._job is not None and time.time() < deadline:
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertIsNone(widget._job, "the run did not finish in 10 minutes")
        self.assertTrue(widget.ui.statusLabel.text.startswith("Done"), widget.ui.statusLabel.text)
        newTables = slicer.util.getNodesByClass("vtkMRMLTableNode")[tables:]
        self.assertTrue(newTables, "no result table")
        frames = next(t for t in newTables if t.GetTable().GetColumnByName("p_csf") is not None)
        self.assertEqual(frames.GetNumberOfRows(), 6)
        self.assertIsNotNone(widget.ui.resultsTableView.mrmlTableNode())
        self.assertTrue(widget.ui.callsLabel.visible)  # the ultrasound review is on
        self.assertIsNotNone(widget._reviewBrowser)
        # the results as the web app shows them (SpineAILib.presentation): calls with their thresholds
        self.assertIn("spinal cord", widget.resultsView.toPlainText())
        self.assertIn("highest p", widget.resultsView.toPlainText())
        widget.exit()
        widget.cleanup()
        self.delayDisplay("Test passed")

    def _phantom(self):
        """A 32x48x64 CT-like phantom: a bright cylinder ('vertebral body') in soft tissue."""
        import numpy as np

        k, j, i = np.mgrid[0:32, 0:48, 0:64]
        voxels = np.where((j - 24) ** 2 + (i - 32) ** 2 < 100, 700, 40).astype(np.int16)
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "SpineAIPhantom")
        slicer.util.updateVolumeFromArray(node, voxels)
        node.SetSpacing(0.8, 0.8, 2.0)
        return node

    def test_phantom_volume_info(self):
        self.delayDisplay("spineai info on a phantom volume")
        logic = SpineAILogic()
        node = self._phantom()
        path = logic.exportInput(node, "cervical-ct")
        self.assertTrue(path.exists())
        output = "\n".join(logic.info(path))
        self.assertIn("64", output)  # the I dimension of the phantom
        self.delayDisplay("Test passed")

    def test_output_folders(self):
        from SpineAILib.errors import SpineAIError

        logic = SpineAILogic()
        first = logic.newOutputFolder("lumbar-mri")
        first.mkdir(parents=True)
        second = logic.newOutputFolder("lumbar-mri")
        self.assertNotEqual(first, second)
        with self.assertRaises(ValueError):
            logic.run("knee-mri", "in", second)
        with self.assertRaises(SpineAIError):  # the CLI's one-line reason comes back
            logic.run("lumbar-mri", second / "missing.nii.gz", second)

    def test_load_results(self):
        folder = pathlib.Path(slicer.util.tempDirectory("SpineAI-results"))
        (folder / "levels.tsv").write_text("level\tgrade\nL4/L5\tModerate\n")
        nodes = SpineAILogic().load_results(folder)
        self.assertEqual(len(nodes), 1)
        self.assertTrue(nodes[0].IsA("vtkMRMLTableNode"))
        self.delayDisplay("Test passed")

    def test_cine_review(self):
        """An ultrasound run's frames.tsv drives the calls line and Best frame of a 3-frame cine."""
        import numpy as np

        folder = pathlib.Path(slicer.util.tempDirectory("SpineAI-review"))
        (folder / "frames.tsv").write_text(
            "frame\ttime_ms\tp_bad_quality\tp_spinal_cord\tp_csf\tbad_quality\tspinal_cord\tcsf\n"
            "0\t0\t0.9\t0.1\t0.1\t1\t0\t0\n1\t50\t0.1\t0.9\t0.97\t0\t1\t1\n2\t100\t0.1\t0.8\t0.2\t0\t1\t0\n"
        )
        (folder / "report.json").write_text('{"results": {"best_frames": [{"frame": 1}]}}')
        sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "US")
        frame = slicer.vtkMRMLScalarVolumeNode()
        for i in range(3):
            slicer.util.updateVolumeFromArray(frame, np.full((1, 4, 5), i, np.uint8))
            sequence.SetDataNodeAtValue(frame, str(i * 50))
        browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "US browser")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        review, found = SpineAILogic().cine_review(folder)
        self.assertEqual(found.GetID(), browser.GetID())
        self.assertTrue(review.calls_line(1).startswith("frame 2 / 3 · 50.0 ms — bad quality: no (p 0.10)"))
        self.assertEqual(review.next_best(0)[0], 1)
        self.delayDisplay("Test passed")

    def test_annotation_case(self):
        """A case on a phantom volume: a painted vertebra and a point survive reopening."""
        from SpineAILib.annotation.scene_view import editable_segmentation, segmentation_labels
        from SpineAILib.annotation.session import AnnotationSession
        from SpineAILib.desktop.annotate import case_image_into_scene, scene

        logic = SpineAILogic()
        image = logic.exportInput(self._phantom(), "lumbar-mri")
        folder = pathlib.Path(slicer.util.tempDirectory("SpineAI-case")) / "case"
        session = AnnotationSession.open(folder, image_path=image, task="lumbar-mri")
        volume, browser = case_image_into_scene(session)
        self.assertIsNone(browser)
        session.paint([session.case.ijk_to_ras[:3, 3]], "L4", 3.0)  # at the first voxel
        session.set_point("L4/L5", (0.0, 0.0, 0.0))
        segmentation = editable_segmentation(scene(), session.case, None, volume)
        labels = segmentation_labels(scene(), segmentation, session.case)
        self.assertEqual(int((labels == 23).sum()), int((session.case.mask == 23).sum()))
        session.close()
        again = AnnotationSession.open(folder, image_path=image, task="lumbar-mri")
        self.assertEqual(again.case.points["L4/L5"], (0.0, 0.0, 0.0))
        self.assertTrue((again.case.mask == 23).any())
        again.close()
        self.delayDisplay("Test passed")

    def test_segment_editor_stroke_is_saved(self):
        """Issue 19 #5: a change of a segment's content reaches the case folder half a second
        later, without a frame change, close or export (SourceRepresentationModified)."""
        import json

        widget = self._widget()
        node = self._phantom()
        folder = pathlib.Path(slicer.util.tempDirectory("SpineAI-stroke")) / "case"
        p = widget._parameterNode
        p.task, p.inputNode, p.caseFolder = "lumbar-mri", node, folder
        widget.annotation.onOpenCase()
        annotation = widget.annotation
        self.assertIsNotNone(annotation.session, widget.ui.annotationStatusLabel.text)
        edits = json.loads((folder / "annotation.json").read_text()).get("edits", 0)
        segmentation = annotation.segmentationNode
        segmentId = segmentation.GetSegmentation().GetNthSegmentID(0)
        labelmap = slicer.util.arrayFromVolume(node) * 0
        labelmap[10:14, 20:28, 28:36] = 1
        slicer.util.updateSegmentBinaryLabelmapFromArray(labelmap, segmentation, segmentId, node)
        deadline = time.time() + 5
        while time.time() < deadline and annotation.session.status()["edits"] == edits:
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertGreater(annotation.session.status()["edits"], edits, "the stroke was not saved")
        widget.exit()
        widget.cleanup()
        self.delayDisplay("Test passed")
