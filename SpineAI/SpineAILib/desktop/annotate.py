"""The Annotate section of the desktop module: Slicer's own Segment Editor and markups on the shared
annotation session (SpineAILib.annotation), which saves every edit, logs who / when and undoes.

The decisions live in the library (annotation.session / keys / scene_view, dataset.actions);
this file only wires the panel's widgets to them. Library modules are imported where they are
used, after the widget made sure the packages they need are installed.
"""

import pathlib
import shutil

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.util import VTKObservationMixin

# A stroke changes the segment's content: SourceRepresentationModified is what fires then
# (vtkSegmentation.h: SegmentModified is not invoked when the segment's content changes).
STROKE_EVENT = slicer.vtkSegmentation.SourceRepresentationModified


def path_or_none(path):
    """A path parameter, or None when unset (the parameter node reads an empty path back as '.')."""
    text = str(path or "").strip()
    return None if text in ("", ".") else pathlib.Path(text)


def scene():
    """The library's view of Slicer's scene."""
    from SpineAILib.scene.context import SceneContext

    return SceneContext.from_slicer()


def keys_help():
    from SpineAILib.annotation.keys import HELP

    return _("Keys: ") + HELP


def case_image_into_scene(session):
    """(node the masks are drawn on, sequence browser or None): the case's image loaded through
    SpineAILib, so the scene and the case share one geometry; shown in the slice views."""
    from SpineAILib.scene.sequences import add_cine
    from SpineAILib.scene.volumes import add_volume

    ctx = scene()
    image = session.image
    name = pathlib.Path(session.case.image["path"]).name.split(".")[0] or "case"
    if session.case.is_cine:
        _sequence, browser, proxy = add_cine(ctx, image, name=name)
        slicer.modules.sequences.setToolBarActiveBrowserNode(browser)
        slicer.util.setSliceViewerLayers(background=proxy, fit=True)
        return proxy, browser
    node = add_volume(ctx, image, name=name)
    slicer.util.setSliceViewerLayers(background=node, fit=True)
    return node, None


def annotation_choices(session):
    """Items of the Annotate section's lists for this case."""
    from SpineAILib.annotation.case import CINE_STRUCTURES, DISC_LEVELS
    from SpineAILib.vocabulary import CERVICAL_CT, CERVICAL_VERTEBRAE, LUMBAR_MRI_VERTEBRAE
    from SpineAILib.workflows.lumbar.severity.submission import CONDITIONS, GRADE_NAMES

    case = session.case
    if case.is_cine:
        structures = list(CINE_STRUCTURES)
    else:
        structures = list(CERVICAL_VERTEBRAE if case.task == CERVICAL_CT else LUMBAR_MRI_VERTEBRAE)
    return {"structures": structures, "levels": list(DISC_LEVELS), "conditions": list(CONDITIONS),
            "grades": [""] + list(GRADE_NAMES)}  # fmt: skip


def status_line(session, frame=None, message=""):
    """The annotation status line both faces show (SpineAILib.annotation.presenter), plus who labelled the frame."""
    from SpineAILib.annotation import presenter

    text = presenter.status_line(session)
    if frame is not None and session.case.is_cine:
        text += " · " + presenter.frame_line(session, frame)
    return f"{message} ({text})" if message else text


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
        self.ui.annotationKeysLabel.text = keys_help()
        self._datasetJob = None  # the running `spineai dataset export/import` (desktop.job.Job)
        self.editorNode = None  # the Segment Editor's parameter node, one per section, removed on close
        self._suggestedDataset = ""  # the dataset folder last suggested for the open case
        self._importedCases = []  # [{"name", "split", "path"}] listed after an import
        self._showControls()

    # --- opening and closing ---

    def onOpenCase(self):
        p = self.widget._parameterNode
        folder = path_or_none(p.caseFolder)
        if folder is None:
            self.ui.annotationStatusLabel.text = _("Choose a case folder first.")
            return
        if not self.widget.ensurePackages("annotation"):
            return
        with slicer.util.tryWithErrorDisplay(_("SpineAI could not open the case."), waitCursor=True):
            self.close()
            imagePath = path_or_none(p.inputPath)
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
        if not self.widget.ensurePackages("annotation"):
            return
        with slicer.util.tryWithErrorDisplay(_("SpineAI could not open the case."), waitCursor=True):
            self.close()
            self.widget._parameterNode.caseFolder = folder
            self._openSession(folder, None, None)

    def _openSession(self, folder, imagePath, task):
        """Open the case, show its image and layers, and suggest where its dataset export goes."""
        from SpineAILib.annotation.scene_view import CaseLayers
        from SpineAILib.annotation.session import AnnotationSession

        self.session = AnnotationSession.open(folder, image_path=imagePath, task=task)
        self.imageNode, self.browser = case_image_into_scene(self.session)
        self.layers = CaseLayers(scene(), self.session.case)
        if self.browser is not None:
            self.addObserver(self.browser, vtk.vtkCommand.ModifiedEvent, self._onBrowserModified)
        self._frame = self._currentFrame()
        self._setUpSegmentEditor()
        self._setUpShortcuts()
        self._fillChoices()
        self._suggestDatasetFolder()
        self._refresh(_("Case {name} opened.").format(name=folder.name))

    def close(self):
        self._syncTimer.stop()
        if self.session is not None and self.segmentationNode is not None:
            self._syncMask()  # the last strokes
        self.removeObservers()
        for shortcut in self._shortcuts:
            shortcut.setEnabled(False)
            shortcut.setParent(None)
        self._shortcuts = []
        for node in (self.segmentationNode, self.boxNode, self.editorNode):
            if node is not None and slicer.mrmlScene.IsNodePresent(node):
                slicer.mrmlScene.RemoveNode(node)
        if self.layers is not None:
            self.layers.remove()
        if self.session is not None:
            self.session.close()
        self.session = self.layers = self.browser = self.imageNode = self.segmentationNode = self.boxNode = None
        self.editorNode = None
        self._showControls()

    def onPrefill(self):
        if self.session is None or self.widget._outDir is None:
            self.ui.annotationStatusLabel.text = _("Open a case and run a task (Apply) first.")
            return
        if not self.widget.ensurePackages("prefill"):
            return
        with slicer.util.tryWithErrorDisplay(_("SpineAI could not prefill the case."), waitCursor=True):
            summary = self.session.prefill(self.widget._outDir)
            self._reloadSegmentation()
            self._refresh(_("Prefilled {set} items; {kept} of your edits kept.").format(set=summary["set"], kept=summary["kept"]))

    # --- dataset export / import (SpineAILib.dataset.actions decides; the CLI runs in a child process) ---

    def _suggestDatasetFolder(self):
        from SpineAILib.dataset import actions

        suggestion = str(actions.default_dataset_folder(self.session.case.folder))
        current = self.ui.datasetFolderLineEdit.currentPath
        if not current or current == self._suggestedDataset:
            self.ui.datasetFolderLineEdit.currentPath = suggestion
        self._suggestedDataset = suggestion

    def onExportDataset(self):
        from SpineAILib.dataset import actions

        folders = [self.session.case.folder] if self.session is not None else []
        if not self.widget.ensurePackages("dataset export"):
            return
        try:
            if self.session is not None:
                self._syncMask()  # the last strokes belong in the export
            plan = actions.export_plan(folders, self.ui.datasetFolderLineEdit.currentPath,
                                                  self.ui.datasetAddCheckBox.checked)
        except Exception as error:  # one-line refusals (no case, a non-empty folder without Add, ...)
            self.ui.datasetStatusLabel.text = _("Export refused: {reason}").format(reason=error)
            return
        self._startDatasetJob(plan, "Exporting", lambda: actions.export_summary(plan).message)

    def onImportDataset(self):
        from SpineAILib.dataset import actions

        if not self.widget.ensurePackages("dataset import"):
            return
        try:
            plan = actions.import_plan(self.ui.datasetFolderLineEdit.currentPath)
        except Exception as error:
            self.ui.datasetStatusLabel.text = _("Import refused: {reason}").format(reason=error)
            return
        self._startDatasetJob(plan, "Importing", lambda: self._listImported(actions.import_summary(plan)))

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
                self.ui.datasetStatusLabel.text = _("Failed: {reason}").format(reason=job.reason())
                return
            try:
                self.ui.datasetStatusLabel.text = summary()
            except Exception as error:
                self.ui.datasetStatusLabel.text = _("Failed: {reason}").format(reason=error)

        if not plan.arguments:  # nothing to run (cases imported before: listed again)
            finished()
            return
        self.ui.datasetStatusLabel.text = doing + "..."
        from SpineAILib.desktop.job import Job

        self._datasetJob = Job(plan.arguments, onProgress=self._onDatasetProgress, onFinished=finished)
        self._showControls()

    def _onDatasetProgress(self, fraction, message):
        self.ui.datasetStatusLabel.text = f"{fraction * 100:.0f}% {message}"

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
        from SpineAILib.annotation.keys import action_for

        action = action_for(key.split("+")[-1], ctrl, False)
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
        slicer.modules.markups.logic().SetActiveListID(self.boxNode)  # in every 5.x; SetActiveList is newer
        slicer.modules.markups.logic().StartPlaceMode(False)

    def onSaveBox(self):
        if self.session is None or self.boxNode is None or self.boxNode.GetNumberOfControlPoints() == 0:
            self.ui.annotationStatusLabel.text = _("Place a box first.")
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
        slicer.modules.markups.logic().SetActiveListID(node)
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
        if self.editorNode is None or not slicer.mrmlScene.IsNodePresent(self.editorNode):  # one per section, not per case
            self.editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", "SpineAI annotation editor")
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(self.editorNode)
        self._reloadSegmentation()

    def _reloadSegmentation(self):
        """The session's mask of the frame on screen into the edited segmentation."""
        if self.session is None:
            return
        if self.segmentationNode is not None:
            self.removeObserver(self.segmentationNode.GetSegmentation(), STROKE_EVENT, self._onSegmentModified)
        self._updating = True
        try:
            from SpineAILib.annotation.scene_view import editable_segmentation

            self.segmentationNode = editable_segmentation(scene(), self.session.case, self._currentFrame(), self.imageNode,
                                                          self.segmentationNode)
        finally:
            self._updating = False
        self.ui.segmentEditorWidget.setSegmentationNode(self.segmentationNode)
        self.ui.segmentEditorWidget.setSourceVolumeNode(self.imageNode)
        # A stroke changes the segment's content: SourceRepresentationModified (SegmentModified is not fired then).
        self.addObserver(self.segmentationNode.GetSegmentation(), STROKE_EVENT, self._onSegmentModified)

    def _onSegmentModified(self, caller=None, event=None):
        if not self._updating:
            self._syncTimer.start()  # read back once the stroke is over

    def _syncMask(self):
        """Segment Editor changes -> the session (which saves them and makes them undoable)."""
        if self.session is None or self.segmentationNode is None:
            return
        from SpineAILib.annotation.scene_view import segmentation_labels

        labels = segmentation_labels(scene(), self.segmentationNode, self.session.case)
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
        choices = annotation_choices(self.session)
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
        self.ui.annotationStatusLabel.text = status_line(self.session, self._currentFrame(), message)
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


    # --- entering and leaving the module (as Slicer's Segment Editor module does) ---

    def enter(self):
        if self.session is not None:
            self.ui.segmentEditorWidget.installKeyboardShortcuts()
            self.ui.segmentEditorWidget.setupViewObservations()

    def exit(self):
        """Leave no effect active and no view observed or shortcut installed behind the module."""
        self._syncTimer.stop()
        if self.session is not None and self.segmentationNode is not None:
            self._syncMask()
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.segmentEditorWidget.uninstallKeyboardShortcuts()
        self.ui.segmentEditorWidget.removeViewObservations()
