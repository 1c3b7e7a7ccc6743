"""SpineAI, the 3D Slicer module: a thin face over SpineAILib.

The widget binds Resources/UI/SpineAI.ui to a typed parameter node and, on Apply,
runs the same command line users run (``spineai run TASK INPUT --out DIR``) in a
background PythonSlicer process, so Slicer stays responsive and a crash or a
Cancel cannot take the scene with it. The result files are then loaded through
SpineAILib.scene. Nothing heavy (torch, monai, SpineAILib) is imported when Slicer
starts: only when the module is used.
"""

import logging
import os
import pathlib
import queue
import re
import shutil
import sys
import threading
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

TASKS = ("lp-ultrasound", "lumbar-mri", "cervical-ct")
DEVICES = ("auto", "cpu", "cuda")
TIMELINE_WIDTH = 400  # px of the ultrasound timeline picture in the panel
CALL_COLOURS = {"bad_quality": "#d62728", "spinal_cord": "#2ca02c", "csf": "#1f77b4"}  # as the timeline's

# import name -> pip requirement. torch and torchvision come from the PyTorch extension
# when it is installed, because it picks the wheel matching the user's CUDA driver.
PYTHON_REQUIREMENTS = {
    "monai": "monai>=1.4",
    "safetensors": "safetensors",
    "pydicom": "pydicom>=3",
    "pylibjpeg": "pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg",
    "nibabel": "nibabel",
    "nrrd": "pynrrd",
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "psutil": "psutil",
}
TORCH_REQUIREMENT = ">=2.1"

# Runs SpineAILib's CLI inside PythonSlicer without relying on a console script
# being installed in Slicer's Python: argv after -c reaches main() as sys.argv[1:].
CLI_BOOTSTRAP = "import sys; from SpineAILib.cli import main; sys.argv[0] = 'spineai'; sys.exit(main())"


#
# SpineAI
#


class SpineAI(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SpineAI"
        self.parent.categories = ["Spine"]
        self.parent.dependencies = []
        self.parent.contributors = ["SpineAI contributors"]
        self.parent.helpText = """
Spine imaging AI: per-frame quality, spinal cord and CSF labels for infant lumbar-puncture
ultrasound cines; disc-level degenerative grading for lumbar MRI; vertebra segmentation
and fracture detection for cervical CT. Choose an input volume or sequence (or a file or
DICOM folder), a task and optionally a model bundle, then press Apply. The same analysis
runs headless with <code>spineai run TASK INPUT --out DIR</code>.
"""
        self.parent.acknowledgementText = """
Built on <a href="https://monai.io">MONAI</a> and PyTorch, following the patterns of the
SlicerMONAIAuto3DSeg and SlicerTotalSegmentator extensions. Model results are for research
use and are not a medical device.
"""


#
# Parameter node
#


@parameterNodeWrapper
class SpineAIParameterNode:
    inputNode: Union[vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode]
    inputPath: pathlib.Path  # a file or DICOM folder; when set it wins over inputNode
    task: Annotated[str, Choice(TASKS)] = "lp-ultrasound"
    device: Annotated[str, Choice(DEVICES)] = "auto"
    modelPath: pathlib.Path  # empty: the catalogue's default bundle for the task
    outputFolder: pathlib.Path  # empty: a new folder under Slicer's temporary folder
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
        self._review = None  # SpineAILib.workflows.ultrasound.review.CineReview of an ultrasound run
        self._reviewBrowser = None  # the sequence browser of the reviewed cine
        self._reviewFrame = None
        self._timeline = None  # the timeline QPixmap, scaled, without the frame line
        self._heatNode = None  # the heat-map layer the Heat map box shows
        self.annotation = None  # SpineAIAnnotation: the Annotate section

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
        self.annotation = SpineAIAnnotation(self)
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

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)
        self._showReview(None, [])
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
        self.ui.applyButton.enabled = hasInput and self._job is None
        self.ui.applyButton.toolTip = "Run the selected task" if hasInput else "Select an input volume, sequence or file"

    def _setRunning(self, running):
        self.ui.progressBar.visible = running
        self.ui.cancelButton.enabled = running
        if running:
            self.ui.progressBar.setRange(0, 0)  # busy until the CLI reports a percentage
        self._checkCanApply()

    def _status(self, text):
        self.ui.statusLabel.text = text
        logging.info(f"SpineAI: {text}")

    def onApplyButton(self):
        if not self.logic.ensurePythonRequirements(askConfirmation=True):
            self._status("SpineAI needs its Python packages; nothing was run.")
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("SpineAI could not start.", waitCursor=True):
            inputPath, series = _pathOrNone(p.inputPath), None
            if inputPath is None and p.task == "lumbar-mri":
                # A series loaded from Slicer's DICOM database brings its whole study: every series grades what it shows.
                inputPath, series = self.logic.dicomStudyOf(p.inputNode) or (None, None)
            inputPath = inputPath or self.logic.exportInput(p.inputNode, p.task)
            self._outDir = self.logic.newOutputFolder(p.task, _pathOrNone(p.outputFolder))
            self._job = self.logic.run(
                p.task, inputPath, self._outDir, p.device, _pathOrNone(p.modelPath),
                wait=False, onLine=self._onLine, onFinished=self._onFinished, series=series,
            )
            self._status(f"Running {p.task} on {inputPath.name}...")
            self._setRunning(True)

    def onCancelButton(self):
        if self._job:
            self._job.cancel()
            self._status("Cancelling...")

    def _onLine(self, line):
        found = re.search(r"(\d{1,3}(?:\.\d+)?)\s*%", line)
        if found:
            self.ui.progressBar.setRange(0, 100)
            self.ui.progressBar.value = min(100, int(float(found.group(1))))
        if line.strip():
            self.ui.statusLabel.text = line.strip()[:200]

    def _onFinished(self, job):
        self._job = None
        self._setRunning(False)
        if job.cancelled:
            self._status("Cancelled.")
            return
        if job.returncode != 0:
            self._status(f"Failed: {job.reason()}")
            slicer.util.errorDisplay(f"SpineAI failed:\n{job.reason()}", detailedText="\n".join(job.lines[-200:]))
            return
        with slicer.util.tryWithErrorDisplay("SpineAI could not load its results.", waitCursor=True):
            nodes = self.logic.load_results(self._outDir)
            tables = [n for n in nodes if hasattr(n, "IsA") and n.IsA("vtkMRMLTableNode")]
            if tables:
                self.ui.resultsTableView.setMRMLTableNode(tables[0])
            self._showReview(self._outDir, nodes)
            summary = self.logic.reportSummary(self._outDir)
            self._status(f"Done in {job.seconds:.0f} s: {summary + ' — ' if summary else ''}"
                         f"{len(nodes)} result(s) loaded from {self._outDir}")

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
# Annotate section
#


class SpineAIAnnotation(VTKObservationMixin):
    """The Annotate section: Slicer's own Segment Editor and markups on the shared annotation
    session (SpineAILib.annotation), which saves every edit, logs who / when and undoes.

    Masks: the Segment Editor edits a segmentation holding the mask of the frame on screen (or
    of the volume); each change is read back into the session half a second after the last
    stroke. Points: place mode into the case's point list. Boxes: an ROI drawn with Slicer's
    tools, saved with Save box. Frame labels: buttons and keys (SpineAILib.annotation.keys).
    """

    KEYS = ("Left", "Right", "1", "2", "3", "Q", "W", "E", "C", "Ctrl+Z", "Ctrl+Y")
    SYNC_DELAY_MS = 500

    def __init__(self, widget):
        VTKObservationMixin.__init__(self)
        self.widget = widget
        self.ui = widget.ui
        self.logic = widget.logic
        self.session = None
        self.layers = None
        self.browser = None  # the case cine's sequence browser
        self.imageNode = None  # the frame proxy or volume the masks are drawn on
        self.segmentationNode = None
        self.boxNode = None  # the ROI being drawn, until Save box
        self._frame = None
        self._updating = False
        self._syncTimer = qt.QTimer()
        self._syncTimer.setSingleShot(True)
        self._syncTimer.setInterval(self.SYNC_DELAY_MS)
        self._syncTimer.connect("timeout()", self._syncMask)
        self._shortcuts = []
        self.ui.openCaseButton.connect("clicked(bool)", self.onOpenCase)
        self.ui.closeCaseButton.connect("clicked(bool)", self.close)
        self.ui.prefillButton.connect("clicked(bool)", self.onPrefill)
        self.ui.undoButton.connect("clicked(bool)", lambda: self._edit(self.session.undo, "undo"))
        self.ui.redoButton.connect("clicked(bool)", lambda: self._edit(self.session.redo, "redo"))
        self.ui.badQualityButton.connect("clicked(bool)", lambda: self.onToggle("bad_quality"))
        self.ui.spinalCordButton.connect("clicked(bool)", lambda: self.onToggle("spinal_cord"))
        self.ui.csfButton.connect("clicked(bool)", lambda: self.onToggle("csf"))
        self.ui.copyPreviousButton.connect("clicked(bool)", self.onCopyPrevious)
        self.ui.placeBoxButton.connect("clicked(bool)", self.onPlaceBox)
        self.ui.saveBoxButton.connect("clicked(bool)", self.onSaveBox)
        self.ui.deleteBoxButton.connect("clicked(bool)", self.onDeleteBox)
        self.ui.placePointButton.connect("clicked(bool)", self.onPlacePoint)
        self.ui.gradeComboBox.connect("activated(int)", self.onGrade)
        self.ui.fractureComboBox.connect("activated(int)", self.onFracture)
        self.ui.exportDatasetButton.connect("clicked(bool)", self.onExportDataset)
        self.ui.importDatasetButton.connect("clicked(bool)", self.onImportDataset)
        self.ui.importedCasesListWidget.connect("itemDoubleClicked(QListWidgetItem*)", self.onOpenImportedCase)
        self.ui.annotationKeysLabel.text = self.logic.annotation_keys_help()
        self._datasetJob = None  # the running `spineai dataset export/import`
        self._suggestedDataset = ""  # the dataset folder last suggested for the open case
        self._importedCases = []  # [{"name", "split", "path"}] listed after an import
        self._showControls()

    # --- opening and closing ---

    def onOpenCase(self):
        p = self.widget._parameterNode
        folder = _pathOrNone(p.caseFolder)
        if folder is None:
            self.ui.annotationStatusLabel.text = "Choose a case folder first."
            return
        with slicer.util.tryWithErrorDisplay("SpineAI could not open the case.", waitCursor=True):
            self.close()
            imagePath = _pathOrNone(p.inputPath)
            if imagePath is None and p.inputNode is not None and not (folder / "annotation.json").is_file():
                # A node: its file beside the case folder, so the case can be reopened later.
                imagePath = self.logic.exportInput(p.inputNode, p.task)
                kept = folder.parent / (folder.name + "-" + imagePath.name)
                folder.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(imagePath, kept)
                imagePath = kept
            self._openSession(folder, imagePath, p.task)

    def onOpenImportedCase(self, item=None):
        """A case of the last import (double-click): it brings its own image and task."""
        row = self.ui.importedCasesListWidget.currentRow
        if not 0 <= row < len(self._importedCases):
            return
        folder = pathlib.Path(self._importedCases[row]["path"])
        with slicer.util.tryWithErrorDisplay("SpineAI could not open the case.", waitCursor=True):
            self.close()
            self.widget._parameterNode.caseFolder = folder
            self._openSession(folder, None, None)

    def _openSession(self, folder, imagePath, task):
        """Open the case, show its image and layers, and suggest where its dataset export goes."""
        self.session = self.logic.open_case(folder, imagePath, task)
        self.imageNode, self.browser = self.logic.case_image_into_scene(self.session)
        self.layers = self.logic.case_layers(self.session)
        if self.browser is not None:
            self.addObserver(self.browser, vtk.vtkCommand.ModifiedEvent, self._onBrowserModified)
        self._frame = self._currentFrame()
        self._setUpSegmentEditor()
        self._setUpShortcuts()
        self._fillChoices()
        self._suggestDatasetFolder()
        self._refresh(f"Case {folder.name} opened.")

    def close(self):
        self._syncTimer.stop()
        if self.session is not None and self.segmentationNode is not None:
            self._syncMask()  # the last strokes
        self.removeObservers()
        for shortcut in self._shortcuts:
            shortcut.setEnabled(False)
            shortcut.setParent(None)
        self._shortcuts = []
        for node in (self.segmentationNode, self.boxNode):
            if node is not None and slicer.mrmlScene.IsNodePresent(node):
                slicer.mrmlScene.RemoveNode(node)
        if self.layers is not None:
            self.layers.remove()
        if self.session is not None:
            self.session.close()
        self.session = self.layers = self.browser = self.imageNode = self.segmentationNode = self.boxNode = None
        self._showControls()

    def onPrefill(self):
        if self.session is None or self.widget._outDir is None:
            self.ui.annotationStatusLabel.text = "Open a case and run a task (Apply) first."
            return
        with slicer.util.tryWithErrorDisplay("SpineAI could not prefill the case.", waitCursor=True):
            summary = self.session.prefill(self.widget._outDir)
            self._reloadSegmentation()
            self._refresh(f"Prefilled {summary['set']} items; {summary['kept']} of your edits kept.")

    # --- dataset export / import (SpineAILib.dataset.actions decides; the CLI runs in a child process) ---

    def _suggestDatasetFolder(self):
        suggestion = str(self.logic.default_dataset_folder(self.session.case.folder))
        current = self.ui.datasetFolderLineEdit.currentPath
        if not current or current == self._suggestedDataset:
            self.ui.datasetFolderLineEdit.currentPath = suggestion
        self._suggestedDataset = suggestion

    def onExportDataset(self):
        folders = [self.session.case.folder] if self.session is not None else []
        try:
            if self.session is not None:
                self._syncMask()  # the last strokes belong in the export
            plan = self.logic.dataset_export_plan(folders, self.ui.datasetFolderLineEdit.currentPath,
                                                  self.ui.datasetAddCheckBox.checked)
        except Exception as error:  # one-line refusals (no case, a non-empty folder without Add, ...)
            self.ui.datasetStatusLabel.text = f"Export refused: {error}"
            return
        self._startDatasetJob(plan, "Exporting", lambda: self.logic.dataset_export_summary(plan).message)

    def onImportDataset(self):
        try:
            plan = self.logic.dataset_import_plan(self.ui.datasetFolderLineEdit.currentPath)
        except Exception as error:
            self.ui.datasetStatusLabel.text = f"Import refused: {error}"
            return
        self._startDatasetJob(plan, "Importing", lambda: self._listImported(self.logic.dataset_import_summary(plan)))

    def _listImported(self, result):
        self._importedCases = list(result.cases)
        self.ui.importedCasesListWidget.clear()
        for case in self._importedCases:
            self.ui.importedCasesListWidget.addItem(f"{case['name']} · {case['split']}" if case["split"] else case["name"])
        return result.message

    def _startDatasetJob(self, plan, doing, summary):
        """Run the plan's `spineai dataset ...` (if any) in the background; ``summary()`` gives the result line."""
        def finished(job=None):
            self._datasetJob = None
            self._showControls()
            if job is not None and job.returncode != 0:
                self.ui.datasetStatusLabel.text = f"Failed: {self.logic.dataset_error(job.lines) or job.reason()}"
                return
            try:
                self.ui.datasetStatusLabel.text = summary()
            except Exception as error:
                self.ui.datasetStatusLabel.text = f"Failed: {error}"

        if not plan.arguments:  # nothing to run (cases imported before: listed again)
            finished()
            return
        self.ui.datasetStatusLabel.text = f"{doing}..."
        self._datasetJob = self.logic.dataset_job(plan.arguments, onLine=self._onDatasetLine, onFinished=finished)
        self._showControls()

    def _onDatasetLine(self, line):
        progress = self.logic.dataset_progress(line)
        if progress is not None:
            self.ui.datasetStatusLabel.text = f"{progress[0] * 100:.0f}% {progress[1]}"

    # --- edits ---

    def _edit(self, call, what):
        if self.session is None:
            return
        with slicer.util.tryWithErrorDisplay(f"SpineAI: {what} failed.", waitCursor=False):
            self._syncMask()
            call()
            self._reloadSegmentation()
            self._refresh(what)

    def onToggle(self, label):
        if self.session is not None and self.session.case.is_cine:
            self._edit(lambda: self.session.toggle_label(self._currentFrame(), label), f"toggled {label}")

    def onCopyPrevious(self):
        if self.session is not None and self.session.case.is_cine:
            self._edit(lambda: self.session.copy_previous_labels(self._currentFrame()), "copied the previous frame")

    def onKey(self, key):
        """A shortcut (Qt key text, e.g. "Ctrl+Z"): the shared keymap decides what it means."""
        ctrl = key.startswith("Ctrl+")
        action = self.logic.annotation_key(key.split("+")[-1], ctrl, False)
        if action is None or self.session is None:
            return
        name, argument = action
        if name == "frame" and self.browser is not None:
            self.browser.SetPlaybackActive(False)
            frame = self.browser.GetSelectedItemNumber() + argument
            if 0 <= frame < self.browser.GetNumberOfItems():
                self.browser.SetSelectedItemNumber(frame)
        elif name == "toggle":
            self.onToggle(argument)
        elif name == "copy_previous":
            self.onCopyPrevious()
        elif name == "undo":
            self._edit(self.session.undo, "undo")
        elif name == "redo":
            self._edit(self.session.redo, "redo")

    def onPlaceBox(self):
        if self.session is None:
            return
        if self.boxNode is None or not slicer.mrmlScene.IsNodePresent(self.boxNode):
            self.boxNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "Annotation box (unsaved)")
        self.boxNode.RemoveAllControlPoints()
        slicer.modules.markups.logic().SetActiveList(self.boxNode)
        slicer.modules.markups.logic().StartPlaceMode(False)

    def onSaveBox(self):
        if self.session is None or self.boxNode is None or self.boxNode.GetNumberOfControlPoints() == 0:
            self.ui.annotationStatusLabel.text = "Place a box first."
            return
        bounds = [0.0] * 6
        self.boxNode.GetRASBounds(bounds)
        label = self.ui.structureComboBox.currentText
        self._edit(lambda: self.session.set_box(bounds[0::2], bounds[1::2], label, frame=self._currentFrame()),
                   f"box around {label}")
        slicer.mrmlScene.RemoveNode(self.boxNode)
        self.boxNode = None

    def onDeleteBox(self):
        label = self.ui.structureComboBox.currentText
        self._edit(lambda: self.session.delete_box(label, frame=self._currentFrame()), f"deleted the {label} box")

    def onPlacePoint(self):
        if self.session is None or self.session.case.is_cine:
            return
        node = self.layers.show_points() or self._emptyPointList()
        node.SetLocked(False)
        self.addObserver(node, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self._onPointPlaced)
        self.addObserver(node, slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent, self._onPointsMoved)
        slicer.modules.markups.logic().SetActiveList(node)
        slicer.modules.markups.logic().StartPlaceMode(False)

    def _emptyPointList(self):
        self.layers.points_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Disc levels (annotation)")
        return self.layers.points_node

    def _onPointPlaced(self, caller, event):
        if self._updating:
            return
        n = caller.GetNumberOfControlPoints()
        if n == 0:
            return
        position = [0.0, 0.0, 0.0]
        caller.GetNthControlPointPosition(n - 1, position)
        level = self.ui.levelComboBox.currentText
        self._edit(lambda: self.session.set_point(level, position), f"placed {level}")

    def _onPointsMoved(self, caller, event):
        if self._updating:
            return
        moved = []
        for i in range(caller.GetNumberOfControlPoints()):
            label, position = caller.GetNthControlPointLabel(i), [0.0, 0.0, 0.0]
            caller.GetNthControlPointPosition(i, position)
            saved = self.session.case.points.get(label)
            if saved is not None and max(abs(a - b) for a, b in zip(saved, position)) > 1e-3:
                moved.append((label, position))
        for label, position in moved:
            self._edit(lambda label=label, position=position: self.session.set_point(label, position), f"moved {label}")

    def onGrade(self, index):
        if self.session is not None and not self.session.case.is_cine:
            grade = self.ui.gradeComboBox.currentText or None
            level, condition = self.ui.levelComboBox.currentText, self.ui.conditionComboBox.currentText
            self._edit(lambda: self.session.set_severity(level, condition, grade), f"{level} {condition}")

    def onFracture(self, index):
        if self.session is not None and not self.session.case.is_cine:
            choice = {"yes": True, "no": False}.get(self.ui.fractureComboBox.currentText)
            vertebra = self.ui.structureComboBox.currentText
            self._edit(lambda: self.session.set_fracture(vertebra, choice), f"{vertebra} fracture")

    # --- the Segment Editor ---

    def _setUpSegmentEditor(self):
        editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", "SpineAI annotation editor")
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(editorNode)
        self._reloadSegmentation()

    def _reloadSegmentation(self):
        """The session's mask of the frame on screen into the edited segmentation."""
        if self.session is None:
            return
        if self.segmentationNode is not None:
            self.removeObserver(self.segmentationNode.GetSegmentation(), slicer.vtkSegmentation.SegmentModified, self._onSegmentModified)
        self._updating = True
        try:
            self.segmentationNode = self.logic.editable_segmentation(self.session, self._currentFrame(), self.imageNode,
                                                                     self.segmentationNode)
        finally:
            self._updating = False
        self.ui.segmentEditorWidget.setSegmentationNode(self.segmentationNode)
        setSource = getattr(self.ui.segmentEditorWidget, "setSourceVolumeNode", None) or self.ui.segmentEditorWidget.setMasterVolumeNode
        setSource(self.imageNode)
        self.addObserver(self.segmentationNode.GetSegmentation(), slicer.vtkSegmentation.SegmentModified, self._onSegmentModified)

    def _onSegmentModified(self, caller=None, event=None):
        if not self._updating:
            self._syncTimer.start()  # read back once the stroke is over

    def _syncMask(self):
        """Segment Editor changes -> the session (which saves them and makes them undoable)."""
        if self.session is None or self.segmentationNode is None:
            return
        labels = self.logic.segmentation_labels(self.segmentationNode, self.session)
        if self.session.set_mask(labels, frame=self._frame) is not None:
            self._refresh("mask saved")

    # --- frames and the panel ---

    def _currentFrame(self):
        return self.browser.GetSelectedItemNumber() if self.browser is not None else None

    def _onBrowserModified(self, caller=None, event=None):
        frame = self._currentFrame()
        if frame == self._frame:
            return
        self._syncTimer.stop()
        self._syncMask()  # the previous frame's strokes belong to the previous frame
        self._frame = frame
        self._reloadSegmentation()
        self._refresh()

    def _setUpShortcuts(self):
        for key in self.KEYS:
            shortcut = qt.QShortcut(qt.QKeySequence(key), slicer.util.mainWindow())
            shortcut.connect("activated()", lambda key=key: self.onKey(key))
            self._shortcuts.append(shortcut)

    def _fillChoices(self):
        choices = self.logic.annotation_choices(self.session)
        for combo, items in ((self.ui.structureComboBox, choices["structures"]), (self.ui.levelComboBox, choices["levels"]),
                             (self.ui.conditionComboBox, choices["conditions"]), (self.ui.gradeComboBox, choices["grades"]),
                             (self.ui.fractureComboBox, ["", "no", "yes"])):
            combo.clear()
            combo.addItems(items)

    def _refresh(self, message=""):
        if self.session is None:
            return
        self._updating = True
        try:
            self.layers.show(self._currentFrame())
        finally:
            self._updating = False
        case = self.session.case
        if case.is_cine:
            labels = case.frame_labels(self._currentFrame() or 0)
            self.ui.badQualityButton.checked = bool(labels["bad_quality"])
            self.ui.spinalCordButton.checked = bool(labels["spinal_cord"])
            self.ui.csfButton.checked = bool(labels["csf"])
        self.ui.annotationStatusLabel.text = self.logic.annotation_status(self.session, self._currentFrame(), message)
        self.ui.undoButton.enabled = self.session.can_undo
        self.ui.redoButton.enabled = self.session.can_redo
        self._showControls()

    def _showControls(self):
        case = self.session.case if self.session is not None else None
        isOpen, isCine = case is not None, case is not None and case.is_cine
        for w in (self.ui.closeCaseButton, self.ui.prefillButton, self.ui.segmentEditorWidget,
                  self.ui.structureComboBox, self.ui.placeBoxButton, self.ui.saveBoxButton, self.ui.deleteBoxButton):
            w.enabled = isOpen
        if not isOpen:
            self.ui.undoButton.enabled = self.ui.redoButton.enabled = False
        for w in (self.ui.badQualityButton, self.ui.spinalCordButton, self.ui.csfButton, self.ui.copyPreviousButton):
            w.visible = isCine
        for w in (self.ui.levelLabel, self.ui.levelComboBox, self.ui.placePointButton, self.ui.gradeLabel,
                  self.ui.conditionComboBox, self.ui.gradeComboBox):
            w.visible = isOpen and case.task == "lumbar-mri"
        for w in (self.ui.fractureLabel, self.ui.fractureComboBox):
            w.visible = isOpen and case.task == "cervical-ct"
        idle = self._datasetJob is None
        self.ui.exportDatasetButton.enabled = isOpen and idle
        self.ui.importDatasetButton.enabled = idle


#
# Background process
#


class SpineAIJob:
    """One CLI run in a background process.

    A reader thread collects its output lines; a Qt timer hands them to the GUI on
    the main thread (Qt widgets must not be touched from other threads).
    """

    POLL_MS = 200

    def __init__(self, command, environment, onLine=None, onFinished=None):
        self.lines = []
        self.cancelled = False
        self.returncode = None
        self.onLine = onLine
        self.onFinished = onFinished
        self._started = time.time()
        self._ended = None
        self._queue = queue.Queue()
        logging.debug(f"SpineAI: launching {command}")
        self.proc = slicer.util.launchConsoleProcess(command, updateEnvironment=environment)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_MS)
        self._timer.connect("timeout()", self._poll)
        self._timer.start()

    @property
    def seconds(self):
        return (self._ended or time.time()) - self._started

    def _read(self):
        while True:
            try:
                line = self.proc.stdout.readline()
            except UnicodeDecodeError:  # a non-UTF-8 locale; drop the line, keep reading
                continue
            if not line:
                break
            self._queue.put(line.rstrip())
        self._queue.put(None)  # end of output

    def _poll(self):
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is None:
                self._timer.stop()
                self.returncode = self.proc.wait()
                self._ended = time.time()
                if self.onFinished:
                    self.onFinished(self)
                return
            self.lines.append(line)
            if self.onLine:
                self.onLine(line)

    def cancel(self):
        """Kill the launcher and its children (killing the launcher alone leaves Python running)."""
        self.cancelled = True
        try:
            import psutil

            for child in psutil.Process(self.proc.pid).children(recursive=True):
                child.kill()
        except Exception:  # psutil missing or the process already gone
            pass
        self.proc.kill()

    def reason(self):
        """The one-line reason the CLI printed (its last 'error:' line, else its last line)."""
        errors = [line for line in self.lines if "error:" in line]
        text = errors[-1] if errors else next((line for line in reversed(self.lines) if line.strip()), "")
        return text or f"exit code {self.returncode}"


#
# SpineAILogic
#


class SpineAILogic(ScriptedLoadableModuleLogic):
    """Facade over the `spineai` command line, usable from Python without the GUI."""

    def getParameterNode(self):
        return SpineAIParameterNode(super().getParameterNode())

    # --- Python packages ---

    @staticmethod
    def missingPythonPackages():
        """Import names not installed in Slicer's Python (found by spec, not imported: torch is slow)."""
        import importlib.util

        names = ["torch", "torchvision", *PYTHON_REQUIREMENTS]
        return [name for name in names if importlib.util.find_spec(name) is None]

    def ensurePythonRequirements(self, askConfirmation=True):
        """Install what is missing (torch through the PyTorch extension when present); True when all is there."""
        missing = self.missingPythonPackages()
        if not missing:
            return True
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            "SpineAI needs these Python packages, which are not installed yet:\n"
            f"{', '.join(missing)}\n\nDownload and install them now? This can take several minutes.",
            "SpineAI: install Python packages",
        ):
            return False
        with slicer.util.tryWithErrorDisplay("SpineAI could not install its Python packages.", waitCursor=True):
            if "torch" in missing or "torchvision" in missing:
                self._installTorch()
            requirements = " ".join(PYTHON_REQUIREMENTS[name] for name in missing if name in PYTHON_REQUIREMENTS)
            if requirements:
                slicer.util.pip_install(requirements)
        still = self.missingPythonPackages()
        if still:
            slicer.util.errorDisplay(f"SpineAI could not install: {', '.join(still)}. The Python console has the details.")
        return not still

    @staticmethod
    def _installTorch():
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            # Without the PyTorch extension pip picks its default wheel (CUDA on Linux, CPU elsewhere).
            slicer.util.pip_install(f"torch{TORCH_REQUIREMENT} torchvision")
            return
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            if torchLogic.installTorch(askConfirmation=True, torchVersionRequirement=TORCH_REQUIREMENT) is None:
                raise RuntimeError("PyTorch was not installed; SpineAI needs it.")

    # --- running the command line ---

    @staticmethod
    def moduleDir():
        return pathlib.Path(__file__).resolve().parent

    @staticmethod
    def pythonSlicer():
        name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
        found = shutil.which("PythonSlicer")
        candidates = [found] if found else []
        candidates += [os.path.join(os.path.dirname(sys.executable), name), os.path.join(slicer.app.slicerHome, "bin", name)]
        for candidate in candidates:
            if candidate and os.path.isfile(candidate):
                return candidate
        raise RuntimeError("PythonSlicer was not found next to Slicer; SpineAI cannot start its worker process")

    def command(self, *arguments):
        """The argv that runs `spineai ARGUMENTS...` in PythonSlicer."""
        return [self.pythonSlicer(), "-c", CLI_BOOTSTRAP, *[str(a) for a in arguments]]

    def environment(self):
        """SpineAILib lives beside this file; PythonSlicer does not have it on its path by itself."""
        existing = slicer.util.startupEnvironment().get("PYTHONPATH", "")
        return {
            "PYTHONPATH": os.pathsep.join(p for p in (str(self.moduleDir()), existing) if p),
            "PYTHONUNBUFFERED": "1",  # progress lines arrive as they are printed
        }

    def run(self, task, input_path, out_dir, device="auto", model=None, wait=True, onLine=None, onFinished=None, series=None):
        """Run `spineai run TASK INPUT --out OUT_DIR [--model M] [--series S] --device D`.

        wait=True blocks and returns the output lines (RuntimeError with the CLI's one-line
        reason on failure); wait=False returns a running SpineAIJob.
        """
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
        arguments = ["run", task, input_path, "--out", out_dir, "--device", device or "auto"]
        if model:
            arguments += ["--model", model]
        if series:
            arguments += ["--series", series]
        return self._launch(arguments, wait, onLine, onFinished)

    def info(self, input_path):
        """`spineai info INPUT`: what SpineAI reads from a file or folder (output lines)."""
        return self._launch(["info", input_path], True, None, None)

    def _launch(self, arguments, wait, onLine, onFinished):
        command = self.command(*arguments)
        if not wait:
            return SpineAIJob(command, self.environment(), onLine, onFinished)
        proc = slicer.util.launchConsoleProcess(command, updateEnvironment=self.environment())
        output, _ = proc.communicate()
        lines = (output or "").splitlines()
        if proc.returncode != 0:
            errors = [line for line in lines if "error:" in line] or lines or [f"exit code {proc.returncode}"]
            raise RuntimeError(f"spineai {arguments[0]} failed: {errors[-1]}")
        return lines

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
            raise ValueError("Select an input volume or sequence (or an input file).")
        if node.IsA("vtkMRMLScalarVolumeNode") and task == "lp-ultrasound":
            browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForProxyNode(node)
            if browser:
                node = browser.GetSequenceNode(node) or node
        folder = pathlib.Path(slicer.util.tempDirectory("SpineAI-input"))
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", node.GetName()) or "input"
        path = folder / (name + (".seq.nrrd" if node.IsA("vtkMRMLSequenceNode") else ".nrrd"))
        # exportNode leaves the node's own storage (its Save-dialog file name) untouched.
        saved = slicer.util.exportNode(node, str(path)) if hasattr(slicer.util, "exportNode") else slicer.util.saveNode(node, str(path))
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
    def reportSummary(out_dir):
        """The run's message and warnings in one line (report.json)."""
        from SpineAILib.results import report_summary

        return report_summary(out_dir)

    @staticmethod
    def cine_review(out_dir):
        """(CineReview, browser of its cine in the scene) for an ultrasound run, else (None, None)."""
        from SpineAILib.workflows.ultrasound.review import CineReview, review_browser
        from SpineAILib.scene.context import SceneContext

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

    # --- annotation (SpineAILib.annotation) ---

    @staticmethod
    def open_case(folder, image_path, task):
        """The annotation session of ``folder`` (a new case needs the image and the task)."""
        from SpineAILib.annotation.session import AnnotationSession

        return AnnotationSession.open(folder, image_path=image_path, task=task)

    @staticmethod
    def case_image_into_scene(session):
        """(node the masks are drawn on, sequence browser or None): the case's image loaded through
        SpineAILib, so the scene and the case share one geometry; shown in the slice views."""
        from SpineAILib.scene.context import SceneContext
        from SpineAILib.scene.sequences import add_cine
        from SpineAILib.scene.volumes import add_volume

        ctx = SceneContext.from_slicer()
        image = session.image
        name = pathlib.Path(session.case.image["path"]).name.split(".")[0] or "case"
        if session.case.is_cine:
            _, browser, proxy = add_cine(ctx, image, name=name)
            slicer.modules.sequences.setToolBarActiveBrowserNode(browser)
            slicer.util.setSliceViewerLayers(background=proxy, fit=True)
            return proxy, browser
        node = add_volume(ctx, image, name=name)
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        return node, None

    @staticmethod
    def case_layers(session):
        from SpineAILib.annotation.scene_view import CaseLayers
        from SpineAILib.scene.context import SceneContext

        return CaseLayers(SceneContext.from_slicer(), session.case)

    @staticmethod
    def editable_segmentation(session, frame, reference_node, node=None):
        """The Segment Editor's segmentation for ``frame`` (or the volume), refilled when ``node`` is given."""
        from SpineAILib.annotation.scene_view import editable_segmentation
        from SpineAILib.scene.context import SceneContext

        return editable_segmentation(SceneContext.from_slicer(), session.case, frame, reference_node, node)

    @staticmethod
    def segmentation_labels(node, session):
        from SpineAILib.annotation.scene_view import segmentation_labels
        from SpineAILib.scene.context import SceneContext

        return segmentation_labels(SceneContext.from_slicer(), node, session.case)

    @staticmethod
    def annotation_key(key, ctrl=False, shift=False):
        from SpineAILib.annotation.keys import action_for

        return action_for(key, ctrl, shift)

    @staticmethod
    def annotation_keys_help():
        from SpineAILib.annotation.keys import HELP

        return "Keys: " + HELP

    @staticmethod
    def annotation_choices(session):
        """Items of the Annotate section's lists for this case."""
        from SpineAILib.annotation.case import CINE_STRUCTURES, DISC_LEVELS
        from SpineAILib.vocabulary import CERVICAL_VERTEBRAE as CERVICAL
        from SpineAILib.workflows.lumbar.severity.submission import CONDITIONS, GRADE_NAMES

        case = session.case
        if case.is_cine:
            structures = list(CINE_STRUCTURES)
        else:
            structures = list(CERVICAL) if case.task == "cervical-ct" else ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
        return {"structures": structures, "levels": list(DISC_LEVELS), "conditions": list(CONDITIONS),
                "grades": [""] + list(GRADE_NAMES)}

    @staticmethod
    def annotation_status(session, frame=None, message=""):
        """'saved 10:02:03 · 14 edits · last: alice 10:02:01 paint' (+ who labelled the frame)."""
        status = session.status()
        text = f"saved {status['saved'][11:19]} · {status['edits']} edits"
        last = status["last_edit"]
        if last:
            text += f" · last: {last['user']} {last['time'][11:19]} {last['action']}"
        if frame is not None and session.case.is_cine:
            who = session.last_edit(f"labels/{frame}")
            text += f" · frame {frame + 1}: " + (f"{who['user']} {who['time'][11:19]}" if who else
                                                 session.case.sources.get(f"labels/{frame}", "not labelled"))
        return f"{message} ({text})" if message else text

    # --- dataset export / import (SpineAILib.dataset.actions) ---

    @staticmethod
    def default_dataset_folder(case_folder):
        """Where a case's export goes by default (beside it, or back to the dataset it was imported from)."""
        from SpineAILib.dataset.actions import default_dataset_folder

        return default_dataset_folder(case_folder)

    @staticmethod
    def dataset_export_plan(case_folders, out_dir, add=False):
        """The checks that answer at once and the `spineai dataset export` arguments (task from the case)."""
        from SpineAILib.dataset.actions import export_plan

        return export_plan(case_folders, out_dir, add)

    @staticmethod
    def dataset_export_summary(plan):
        from SpineAILib.dataset.actions import export_summary

        return export_summary(plan)

    @staticmethod
    def dataset_import_plan(dataset_dir):
        from SpineAILib.dataset.actions import import_plan

        return import_plan(dataset_dir)

    @staticmethod
    def dataset_import_summary(plan):
        from SpineAILib.dataset.actions import import_summary

        return import_summary(plan)

    @staticmethod
    def dataset_progress(line):
        from SpineAILib.dataset.actions import parse_progress

        return parse_progress(line)

    @staticmethod
    def dataset_error(lines):
        from SpineAILib.dataset.actions import error_reason

        return error_reason(lines)

    def dataset_job(self, arguments, onLine=None, onFinished=None):
        """`spineai ARGUMENTS` (a dataset export or import) in a background PythonSlicer process."""
        return self._launch(arguments, False, onLine, onFinished)

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
    """Runs inside Slicer (Developer mode > Reload and Test, or ctest in an extension build)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_phantom_volume_info()
        self.test_output_folders_and_commands()
        self.test_load_results()
        self.test_cine_review()
        self.test_annotation_case()

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

    def test_output_folders_and_commands(self):
        logic = SpineAILogic()
        first = logic.newOutputFolder("lumbar-mri")
        first.mkdir(parents=True)
        second = logic.newOutputFolder("lumbar-mri")
        self.assertNotEqual(first, second)
        command = logic.command("run", "lumbar-mri", "in", "--out", second)
        self.assertEqual(command[1], "-c")
        self.assertEqual(command[-4:], ["lumbar-mri", "in", "--out", str(second)])
        self.assertIn(str(logic.moduleDir()), logic.environment()["PYTHONPATH"])
        with self.assertRaises(ValueError):
            logic.run("knee-mri", "in", second)

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
        logic = SpineAILogic()
        node = self._phantom()
        image = logic.exportInput(node, "lumbar-mri")
        folder = pathlib.Path(slicer.util.tempDirectory("SpineAI-case")) / "case"
        session = logic.open_case(folder, image, "lumbar-mri")
        volume, browser = logic.case_image_into_scene(session)
        self.assertIsNone(browser)
        session.paint([session.case.ijk_to_ras[:3, 3]], "L4", 3.0)  # at the first voxel
        session.set_point("L4/L5", (0.0, 0.0, 0.0))
        segmentation = logic.editable_segmentation(session, None, volume)
        labels = logic.segmentation_labels(segmentation, session)
        self.assertEqual(int((labels == 23).sum()), int((session.case.mask == 23).sum()))
        session.close()
        again = logic.open_case(folder, image, "lumbar-mri")
        self.assertEqual(again.case.points["L4/L5"], (0.0, 0.0, 0.0))
        self.assertTrue((again.case.mask == 23).any())
        again.close()
        self.delayDisplay("Test passed")
