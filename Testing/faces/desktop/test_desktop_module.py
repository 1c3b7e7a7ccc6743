"""Static checks of the Slicer desktop module, which cannot run here (no desktop Slicer).

SpineAI.py must compile and import nothing heavy at module level; every widget it
uses and every parameter it binds must exist in SpineAI.ui with a widget type the
parameter node wrapper can connect; CMake must ship every script and resource.
"""

import ast
import json
import py_compile
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MODULE = REPO / "SpineAI"
SOURCE = MODULE / "SpineAI.py"
ANNOTATE = MODULE / "SpineAILib" / "desktop" / "annotate.py"  # the Annotate section, beside the module file
UI = MODULE / "Resources" / "UI" / "SpineAI.ui"

# Widget classes the parameter node wrapper connects to each parameter type.
CONNECTORS = {"str": {"QComboBox", "QLineEdit"}, "Path": {"ctkPathLineEdit", "ctkDirectoryButton"}, "node": {"qMRMLNodeComboBox"},
              "bool": {"QCheckBox"}}


@pytest.fixture(scope="module")
def tree():
    return ast.parse(SOURCE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def annotate_tree():
    return ast.parse(ANNOTATE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def ui_widgets():
    root = ET.parse(UI).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def test_module_compiles():
    py_compile.compile(str(SOURCE), doraise=True)


def test_no_heavy_imports_at_module_level(tree):
    """Slicer imports every module at startup: SpineAILib, torch and monai load only when used."""
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names] + [
        n.module for n in top if isinstance(n, ast.ImportFrom)
    ]
    # SpineAILib.vocabulary (the shared task / device names) imports nothing; the rest of SpineAILib waits.
    heavy = [n for n in names if n.split(".")[0] in ("SpineAILib", "SpineAITraining", "torch", "monai", "numpy")
             and n != "SpineAILib.vocabulary"]
    assert not heavy, f"module-level imports of {heavy}"
    for required in ("slicer", "qt", "vtk"):
        assert required in names


def test_classes_follow_the_scripted_module_pattern(tree):
    classes = {c.name: [getattr(b, "id", None) for b in c.bases] for c in tree.body if isinstance(c, ast.ClassDef)}
    assert classes["SpineAI"] == ["ScriptedLoadableModule"]
    assert classes["SpineAIWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert classes["SpineAILogic"] == ["ScriptedLoadableModuleLogic"]
    assert classes["SpineAITest"] == ["ScriptedLoadableModuleTest"]
    logic = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "SpineAILogic")
    methods = {f.name: [a.arg for a in f.args.args] for f in logic.body if isinstance(f, ast.FunctionDef)}
    assert methods["run"][:6] == ["self", "task", "input_path", "out_dir", "device", "model"]
    assert methods["load_results"] == ["out_dir"]
    # The ultrasound review and the heat-map toggle go through SpineAILib (cine_review, results, overlays).
    assert methods["cine_review"] == ["out_dir"]
    assert methods["heatmap_layer"] == ["nodes"]
    assert methods["set_heatmap_visible"] == ["node", "visible"]
    # Annotation goes through SpineAILib.annotation (session, layers, Segment Editor round trip, keys),
    # called from the Annotate section (SpineAILib/desktop/annotate.py) without pass-through wrappers.
    annotate = ANNOTATE.read_text()
    for call in ("AnnotationSession.open(folder, image_path=imagePath, task=task)", "CaseLayers(scene(), self.session.case)",
                 "editable_segmentation(scene(), self.session.case, self._currentFrame(), self.imageNode",
                 "segmentation_labels(scene(), self.segmentationNode, self.session.case)", "action_for(",
                 "status_line(self.session", "annotation_choices(self.session)", "case_image_into_scene(self.session)"):
        assert call in annotate, call


def test_every_ui_reference_exists_in_the_ui(tree, annotate_tree, ui_widgets):
    used = {
        node.attr
        for node in [*ast.walk(tree), *ast.walk(annotate_tree)]
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ui"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }
    assert {"applyButton", "cancelButton", "progressBar", "statusLabel", "resultsTableView"} <= used
    assert {"callsLabel", "timelineLabel", "bestFrameButton", "heatmapCheckBox"} <= used
    assert {"openCaseButton", "prefillButton", "undoButton", "redoButton", "annotationStatusLabel", "badQualityButton",
            "spinalCordButton", "csfButton", "copyPreviousButton", "segmentEditorWidget", "placeBoxButton",
            "saveBoxButton", "placePointButton", "gradeComboBox", "fractureComboBox"} <= used
    missing = sorted(used - set(ui_widgets))
    assert not missing, f"SpineAI.py uses self.ui.{missing} but SpineAI.ui has no such widget"


def test_review_widgets_are_wired(tree, ui_widgets):
    """Best frame and Heat map are connected to handlers; the review widgets have the right types."""
    kinds = {"callsLabel": "QLabel", "timelineLabel": "QLabel", "bestFrameButton": "QPushButton",
             "heatmapCheckBox": "QCheckBox"}
    for name, cls in kinds.items():
        assert ui_widgets[name].get("class") == cls, name
    connects = {
        (node.func.value.attr, node.args[0].value, ast.unparse(node.args[1]))
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect"
        and isinstance(node.func.value, ast.Attribute) and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
    }
    assert ("bestFrameButton", "clicked(bool)", "self.onBestFrameButton") in connects
    assert ("heatmapCheckBox", "toggled(bool)", "self.onHeatmapToggled") in connects
    widget = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "SpineAIWidget")
    handlers = {f.name for f in widget.body if isinstance(f, ast.FunctionDef)}
    assert {"onBestFrameButton", "onHeatmapToggled", "_showReview", "_onBrowserModified"} <= handlers


def _parameters(tree):
    """SpineAIParameterNode's fields -> 'str' | 'Path' | 'node'."""
    cls = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "SpineAIParameterNode")
    kinds = {}
    for item in cls.body:
        if isinstance(item, ast.AnnAssign):
            text = ast.unparse(item.annotation)
            kinds[item.target.id] = ("Path" if "Path" in text else "node" if "vtkMRML" in text
                                     else "bool" if text == "bool" else "str")
    return kinds


def test_parameters_and_widgets_are_bound_both_ways(tree, ui_widgets):
    bound = {}
    for name, widget in ui_widgets.items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget
    parameters = _parameters(tree)
    assert set(parameters) == {"inputNode", "inputPath", "task", "device", "modelPath", "outputFolder", "dicomOutputs",
                               "caseFolder"}
    assert set(bound) == set(parameters)
    for name, kind in parameters.items():
        assert bound[name].get("class") in CONNECTORS[kind], f"{name} ({kind}) bound to a {bound[name].get('class')}"


def test_ui_is_a_complete_designer_file(ui_widgets):
    root = ET.parse(UI).getroot()
    assert root.tag == "ui" and root.find("class").text == "SpineAI"
    assert root.find("widget").get("class") == "qMRMLWidget"
    declared = {c.find("class").text for c in root.iter("customwidget")}
    custom = {w.get("class") for w in ui_widgets.values() if not w.get("class").startswith("Q")}
    assert custom <= declared, f"undeclared custom widgets {custom - declared}"
    sections = {w.find("property/string").text for w in ui_widgets.values() if w.get("class") == "ctkCollapsibleButton"}
    assert {"Inputs", "Outputs", "Annotate"} <= sections
    # MRML widgets only work once they are handed the scene.
    receivers = {c.find("receiver").text for c in root.iter("connection") if c.find("slot").text.startswith("setMRMLScene")}
    assert {n for n, w in ui_widgets.items() if w.get("class").startswith("qMRML") and n != "SpineAI"} <= receivers


def test_task_and_device_choices_match_the_library(tree):
    from SpineAILib import vocabulary
    from SpineAILib.models.device import DEVICE_CHOICES
    from SpineAILib.models.schema import TASKS
    from SpineAILib.runtime.child import command

    # The module takes them from SpineAILib.vocabulary, the library's one home for them.
    imported = {(n.module, a.name) for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {("SpineAILib.vocabulary", "TASKS"), ("SpineAILib.vocabulary", "DEVICES")} <= imported
    assert vocabulary.TASKS == TASKS
    assert vocabulary.DEVICES == DEVICE_CHOICES
    assert command(["run"], python="PythonSlicer")[:3] == ["PythonSlicer", "-m", "SpineAILib.cli"]  # the worker's argv


def test_cmake_ships_every_script_and_resource():
    text = (MODULE / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    assert re.search(r"file\(GLOB_RECURSE MODULE_LIB_SCRIPTS[^)]*\$\{MODULE_NAME\}Lib/\*\.py", text), "SpineAILib/**/*.py"
    listed = {m.replace("${MODULE_NAME}", "SpineAI") for m in re.findall(r"^\s*(Resources/\S+)\s*$", text, re.M)}
    assert "${CMAKE_CURRENT_SOURCE_DIR}/Resources/Models/*" in text, "the bundled models must be globbed"
    listed |= {str(p.relative_to(MODULE)) for p in (MODULE / "Resources" / "Models").rglob("*") if p.is_file()}
    assert "${CMAKE_CURRENT_SOURCE_DIR}/Resources/SampleData/*" in text, "the real sample images must be globbed"
    listed |= {str(p.relative_to(MODULE)) for p in (MODULE / "Resources" / "SampleData").rglob("*") if p.is_file()}
    shipped = {str(p.relative_to(MODULE)) for p in (MODULE / "Resources").rglob("*") if p.is_file()}
    assert listed == shipped, f"listed but absent: {listed - shipped}; present but not listed: {shipped - listed}"

    top = (REPO / "CMakeLists.txt").read_text()
    for needed in (
        "cmake_minimum_required(VERSION 3.16", "project(SpineAI)", "EXTENSION_HOMEPAGE", 'EXTENSION_CATEGORY "Spine"',
        "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS",
        "EXTENSION_DEPENDS", "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(SpineAI)",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})",
    ):
        assert needed in top, needed


def test_icons():
    from PIL import Image

    module_icon = MODULE / "Resources" / "Icons" / "SpineAI.png"
    with Image.open(module_icon) as image:
        assert image.size == (128, 128) and image.format == "PNG"
    assert (REPO / "Resources" / "SpineAI.png").read_bytes() == module_icon.read_bytes()


def test_models_catalogue_is_valid():
    from SpineAILib.models.catalogue import CATALOGUE_PATH, validate_catalogue

    assert CATALOGUE_PATH == MODULE / "Resources" / "Models.json"
    data = validate_catalogue(json.loads(CATALOGUE_PATH.read_text()), "Models.json")
    assert data["format_version"] == 1
    assert set(data["tasks"]) == {"lp-ultrasound", "lumbar-mri", "cervical-ct", "spine-ct"}
    assert data["tasks"]["spine-ct"]["default_bundle"] is None  # rule-based: no bundle


def test_annotate_section_is_wired(tree, annotate_tree, ui_widgets):
    """The Annotate section: Slicer's Segment Editor for masks, buttons and keys bound to handlers of
    SpineAIAnnotation, which only calls the logic facade (SpineAILib.annotation does the work)."""
    assert ui_widgets["segmentEditorWidget"].get("class") == "qMRMLSegmentEditorWidget"
    for name in ("badQualityButton", "spinalCordButton", "csfButton"):
        checkable = [p for p in ui_widgets[name].findall("property") if p.get("name") == "checkable"]
        assert checkable and checkable[0].find("bool").text == "true", name
    annotation = next(c for c in annotate_tree.body if isinstance(c, ast.ClassDef) and c.name == "SpineAIAnnotation")
    connects = {
        (node.func.value.attr, node.args[0].value)
        for node in ast.walk(annotation)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect"
        and isinstance(node.func.value, ast.Attribute) and node.args and isinstance(node.args[0], ast.Constant)
    }
    for button in ("openCaseButton", "closeCaseButton", "prefillButton", "undoButton", "redoButton", "badQualityButton",
                   "spinalCordButton", "csfButton", "copyPreviousButton", "placeBoxButton", "saveBoxButton",
                   "deleteBoxButton", "placePointButton"):
        assert (button, "clicked(bool)") in connects, button
    assert ("gradeComboBox", "activated(int)") in connects and ("fractureComboBox", "activated(int)") in connects
    # Every shortcut key means something in the shared keymap.
    from SpineAILib.annotation.keys import action_for

    keys = next(ast.literal_eval(n.value) for n in annotation.body if isinstance(n, ast.Assign) and n.targets[0].id == "KEYS")
    for key in keys:
        assert action_for(key.split("+")[-1], key.startswith("Ctrl+")) is not None, key
    library = {alias.name for node in ast.walk(annotation) if isinstance(node, ast.ImportFrom)
               and node.module.startswith("SpineAILib.annotation") for alias in node.names}
    assert {"AnnotationSession", "CaseLayers", "editable_segmentation", "segmentation_labels", "action_for"} <= library
    widget = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "SpineAIWidget")
    assert "SpineAIAnnotation(self)" in ast.unparse(widget)


def test_dataset_buttons_are_wired(tree, annotate_tree, ui_widgets):
    """Export / Import dataset in the Annotate section: widgets of the right kinds, connected to handlers
    of SpineAIAnnotation that go through the logic facade, which calls SpineAILib.dataset.actions only
    (names that exist there), and run the CLI through the module's own background job."""
    kinds = {"datasetFolderLineEdit": "ctkPathLineEdit", "datasetAddCheckBox": "QCheckBox",
             "exportDatasetButton": "QPushButton", "importDatasetButton": "QPushButton",
             "datasetStatusLabel": "QLabel", "importedCasesListWidget": "QListWidget"}
    for name, cls in kinds.items():
        assert ui_widgets[name].get("class") == cls, name
    annotate = next(w for w in ui_widgets.values() if w.get("name") == "annotateCollapsibleButton")
    assert set(kinds) <= {w.get("name") for w in annotate.iter("widget")}, "the dataset widgets belong to Annotate"
    annotation = next(c for c in annotate_tree.body if isinstance(c, ast.ClassDef) and c.name == "SpineAIAnnotation")
    connects = {
        (node.func.value.attr, node.args[0].value, ast.unparse(node.args[1]))
        for node in ast.walk(annotation)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect"
        and isinstance(node.func.value, ast.Attribute) and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
    }
    assert ("exportDatasetButton", "clicked(bool)", "self.onExportDataset") in connects
    assert ("importDatasetButton", "clicked(bool)", "self.onImportDataset") in connects
    assert ("importedCasesListWidget", "itemDoubleClicked(QListWidgetItem*)", "self.onOpenImportedCase") in connects
    handlers = {f.name for f in annotation.body if isinstance(f, ast.FunctionDef)}
    assert {"onExportDataset", "onImportDataset", "onOpenImportedCase", "_startDatasetJob", "_suggestDatasetFolder"} <= handlers
    # SpineAILib.dataset.actions decides (names that exist there); desktop.job.Job runs the CLI (runtime.child).
    used = {node.func.attr for node in ast.walk(annotation) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and ast.unparse(node.func.value) == "actions"}
    assert {"default_dataset_folder", "export_plan", "export_summary", "import_plan", "import_summary"} <= used
    from SpineAILib.dataset import actions

    missing = sorted(name for name in used if not hasattr(actions, name))
    assert not missing, f"annotate.py calls {missing} of SpineAILib.dataset.actions, which has no such names"
    assert "Job(plan.arguments, onProgress=self._onDatasetProgress, onFinished=finished)" in ast.unparse(annotation)


def test_lumbar_mri_from_the_dicom_database_passes_its_whole_study(tree):
    """Apply on a series loaded from Slicer's DICOM database gives the CLI the study's folder and
    that series (--series), so sagittal T1 and axial T2 grade what they show."""
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SpineAILogic")
    methods = {f.name: f for f in logic.body if isinstance(f, ast.FunctionDef)}
    study = ast.unparse(methods["dicomStudyOf"])
    for call in ("fileForInstance", "seriesForStudy", "filesForSeries", "instanceValue", "'0020,000D'", "'0020,000E'"):
        assert call in study, call
    run = methods["run"]
    assert "series" in [a.arg for a in run.args.args]
    assert "series=series" in ast.unparse(run)  # runtime.child.run_arguments adds --series
    from SpineAILib.runtime.child import run_arguments

    assert run_arguments("lumbar-mri", "in", "out", series="1.2.3")[-2:] == ["--series", "1.2.3"]
    apply = ast.unparse(next(f for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SpineAIWidget"
                             for f in n.body if isinstance(f, ast.FunctionDef) and f.name == "onApplyButton"))  # fmt: skip
    assert "dicomStudyOf" in apply and "series=series" in apply


def test_dicom_outputs_are_refused_in_a_slicer_whose_pydicom_is_too_old():
    """Slicer 5.8/5.10 ship pydicom 2.4.4, which SpineAI never replaces: the DICOM outputs box says
    why it cannot work there (one line) instead of upgrading Slicer's pydicom."""
    from SpineAILib.desktop.dependencies import DICOM_OUTPUTS, RUN, dicom_outputs_problem

    for pydicom, python in (("2.4.4", (3, 9)), ("2.4.4", (3, 12)), ("3.0.2", (3, 9))):
        reason = dicom_outputs_problem(pydicom, python)
        assert reason and "\n" not in reason and "spineai run --dicom" in reason
    assert dicom_outputs_problem("3.0.2", (3, 12)) is None
    assert "highdicom" in DICOM_OUTPUTS and "highdicom" not in RUN
