"""Issue 19: what makes the desktop module load and work in real 3D Slicer, checked without Slicer.

* every parameter-node field that holds a node allows None (#1);
* every ``self.ui.*`` the module and its helpers use exists in SpineAI.ui;
* every ``slicer.*`` name they use is in slicer_api.json (the API of Slicer 5.8.1 they rely on),
  and strokes are observed through SourceRepresentationModified (#5);
* the dependency handler checks versions, pins what Slicer has, installs torch through the
  PyTorch extension only and a matching torchvision next to an installed torch (#3, #6, #7);
* every action that reads files makes sure of its packages first (#4);
* the supported Slicer versions are stated alike in the module, README and metadata; the
  extension has a LICENSE, an Extensions Index entry and the screenshot its metadata names.
"""

import ast
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MODULE = REPO / "SpineAI"
SOURCE = MODULE / "SpineAI.py"
DESKTOP = MODULE / "SpineAILib" / "desktop"
FACE_FILES = [SOURCE, *sorted(DESKTOP.glob("*.py"))]
UI = MODULE / "Resources" / "UI" / "SpineAI.ui"
API = json.loads((Path(__file__).parent / "slicer_api.json").read_text())


def _tree(path):
    return ast.parse(path.read_text(encoding="utf-8"))


def _class(tree, name):
    return next(c for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and c.name == name)


def _function(cls, name):
    return next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == name)


# -- 1: the parameter node ---------------------------------------------------------------------


def test_every_node_parameter_allows_none():
    cls = _class(_tree(SOURCE), "SpineAIParameterNode")
    nodes = {}
    for item in cls.body:
        if isinstance(item, ast.AnnAssign) and "vtkMRML" in ast.unparse(item.annotation):
            nodes[item.target.id] = ast.unparse(item.annotation)
    assert nodes, "no node parameter found"
    for name, annotation in nodes.items():
        assert re.search(r"\bNone\b|Optional\[", annotation), f"{name}: {annotation} does not allow None"


# -- widget names and the Slicer API ------------------------------------------------------------


def test_every_ui_name_exists_in_the_ui_file():
    widgets = {w.get("name") for w in ET.parse(UI).getroot().iter("widget")}
    for path in FACE_FILES:
        used = {
            node.attr
            for node in ast.walk(_tree(path))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
        }
        missing = sorted(used - widgets)
        assert not missing, f"{path.name} uses self.ui.{missing}, which SpineAI.ui does not have"


def _slicer_names(tree):
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, n = [], node
            while isinstance(n, ast.Attribute):
                chain.append(n.attr)
                n = n.value
            if isinstance(n, ast.Name) and n.id == "slicer":
                used.add("slicer." + ".".join(reversed(chain)))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "slicer":
            used |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "getattr" and ast.unparse(node.args[0]) == "slicer":
            used.add("slicer." + node.args[1].value)
    return {u for u in used if not any(v.startswith(u + ".") for v in used)}


def test_every_slicer_name_is_in_the_checked_in_api_list():
    listed = set(API["names"])
    assert API["slicer_version"].startswith("5.8")
    for path in FACE_FILES:
        unknown = sorted(_slicer_names(_tree(path)) - listed)
        assert not unknown, f"{path.name} uses {unknown}: not in slicer_api.json (check them in Slicer {API['slicer_version']})"


def test_segment_editor_calls_are_in_the_api_list():
    allowed = set(API["widget_methods"]["segmentEditorWidget"])
    for path in FACE_FILES:
        calls = {node.func.attr for node in ast.walk(_tree(path)) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Attribute) and ast.unparse(node.func.value).endswith("segmentEditorWidget")}
        assert calls <= allowed, f"{path.name}: {sorted(calls - allowed)}"


def test_strokes_are_observed_through_the_source_representation():
    """#5: SegmentModified is not fired when a segment's content changes; the stroke timer must
    hang on SourceRepresentationModified."""
    for path in FACE_FILES:
        assert "vtkSegmentation.SegmentModified" not in path.read_text(), path.name
    annotate = (DESKTOP / "annotate.py").read_text()
    assert "STROKE_EVENT = slicer.vtkSegmentation.SourceRepresentationModified" in annotate
    assert annotate.count("STROKE_EVENT, self._onSegmentModified") == 2  # observed, and removed on reload


def test_segment_editor_is_reused_and_cleaned_up_on_exit():
    annotate = _class(_tree(DESKTOP / "annotate.py"), "SpineAIAnnotation")
    setup = ast.unparse(_function(annotate, "_setUpSegmentEditor"))
    assert "self.editorNode is None" in setup  # one editor node, not one per Open case
    leave = ast.unparse(_function(annotate, "exit"))
    for call in ("setActiveEffect(None)", "uninstallKeyboardShortcuts()", "removeViewObservations()"):
        assert call in leave, call
    widget = _class(_tree(SOURCE), "SpineAIWidget")
    assert "self.annotation.exit()" in ast.unparse(_function(widget, "exit"))
    assert "self.editorNode" in ast.unparse(_function(annotate, "close"))


def test_export_node_gets_a_fresh_properties_dict():
    calls = [node for node in ast.walk(_tree(SOURCE)) if isinstance(node, ast.Call) and ast.unparse(node.func) == "slicer.util.exportNode"]
    assert calls and all(any(k.arg == "properties" for k in call.keywords) for call in calls)


def test_user_facing_text_is_translatable():
    module = ast.unparse(_function(_class(_tree(SOURCE), "SpineAI"), "__init__"))
    for field in ("title", "helpText", "acknowledgementText"):
        assert re.search(rf"self\.parent\.{field} = _\(", module), field


# -- 4: packages before every action ------------------------------------------------------------


def test_every_action_makes_sure_of_its_packages_first():
    widget = _class(_tree(SOURCE), "SpineAIWidget")
    apply = ast.unparse(_function(widget, "onApplyButton"))
    assert "self.ensurePackages(" in apply and "RUN" in apply
    annotate = _class(_tree(DESKTOP / "annotate.py"), "SpineAIAnnotation")
    for handler in ("onOpenCase", "onOpenImportedCase", "onPrefill", "onExportDataset", "onImportDataset"):
        body = _function(annotate, handler)
        calls = [ast.unparse(n) for n in ast.walk(body) if isinstance(n, ast.Call)]
        assert any(c.startswith("self.widget.ensurePackages(") for c in calls), handler
    test = ast.unparse(_class(_tree(SOURCE), "SpineAITest"))
    assert "dependencies.ensure(dependencies.RUN" in test


# -- 3, 6, 7: the dependency handler ------------------------------------------------------------

SLICER_58 = {"numpy": "1.26.4", "pydicom": "2.4.4", "pillow": "10.3.0", "scipy": "1.13.1", "requests": "2.32.3"}


def test_versions_are_checked_not_names():
    from SpineAILib.desktop.dependencies import check

    found = {p.need.module: p.installed for p in check(("pydicom", "nibabel", "nrrd"), {**SLICER_58, "nibabel": "3.2.1"})}
    assert found == {"nibabel": "3.2.1", "nrrd": None}  # Slicer's pydicom 2.4.4 is enough; an old nibabel is not


def test_slicer_packages_are_pinned_and_torch_comes_from_the_extension():
    from SpineAILib.desktop.dependencies import RUN, TRAIN, check, plan

    versions = {**SLICER_58}
    run = plan(check(RUN, versions), versions, python=(3, 9))  # issue 20: a run needs onnxruntime, never torch
    assert not run.torch_from_extension and not {re.split(r"[<>=]", r)[0] for r in run.requirements} & {"torch", "monai"}
    assert any(r.startswith("onnxruntime") for r in run.requirements)
    RUN = TRAIN  # training / fine-tuning: torch from the PyTorch extension, monai against it
    steps = plan(check(RUN, versions), versions, python=(3, 9))
    assert steps.torch_from_extension and not steps.refusals
    names = {re.split(r"[<>=]", r)[0] for r in steps.requirements}
    assert not names & {"numpy", "pydicom", "pillow", "torch", "torchvision"}, names
    assert {"monai", "opencv-python-headless", "nibabel", "pynrrd"} <= names
    assert "numpy==1.26.4" in steps.constraints and "pydicom==2.4.4" in steps.constraints and "scipy==1.13.1" in steps.constraints
    arguments = steps.pip_arguments("/tmp/c.txt")
    assert arguments[-2:] == ["-c", "/tmp/c.txt"]
    # After the PyTorch extension installed a CUDA torch: monai is resolved against it, it is never replaced.
    versions.update({"torch": "2.5.1+cu121", "torchvision": "0.20.1+cu121"})
    steps = plan(check(RUN, versions), versions, python=(3, 9))
    assert not steps.torch_from_extension and "torch==2.5.1+cu121" in steps.constraints


def test_torchvision_is_installed_next_to_an_installed_torch():
    """#7: torch there, torchvision not: the matching torchvision from the same wheel index."""
    from SpineAILib.desktop.dependencies import check, plan

    versions = {**SLICER_58, "torch": "2.5.1+cu121"}
    steps = plan(check(("torch", "torchvision"), versions), versions, python=(3, 12))
    assert steps.requirements == ["torchvision==0.20.*"] and not steps.torch_from_extension
    assert steps.index == "https://download.pytorch.org/whl/cu121"
    assert "torch==2.5.1+cu121" in steps.constraints


def test_without_the_pytorch_extension_torch_is_refused_with_one_line():
    from SpineAILib.desktop.dependencies import check, plan

    steps = plan(check(("torch",), SLICER_58), SLICER_58, python=(3, 12), pytorch_extension=False)
    assert len(steps.refusals) == 1 and "PyTorch extension" in steps.refusals[0] and "\n" not in steps.refusals[0]


def test_old_slicer_packages_are_refused_not_upgraded():
    from SpineAILib.desktop.dependencies import check, plan

    versions = {**SLICER_58, "numpy": "1.19.1"}
    steps = plan(check(("numpy",), versions), versions, python=(3, 9))
    assert steps.requirements == [] and "Slicer 5.8 or later" in steps.refusals[0]


@pytest.mark.parametrize("version, python, ok", [((5, 6), (3, 9), False), ((5, 8), (3, 9), True),
                                                   ((5, 10), (3, 12), True), ((5, 8), (3, 8), False)])
def test_slicer_version_check(version, python, ok):
    from SpineAILib.desktop.dependencies import slicer_version_problem

    problem = slicer_version_problem(*version, python=python)
    assert (problem is None) == ok
    assert problem is None or "\n" not in problem


# -- 2: Python 3.9 ------------------------------------------------------------------------------


def test_library_annotations_do_not_need_python_310():
    """#2: `X | None` in an annotation is evaluated on Python 3.9 (Slicer 5.8) unless the file
    has `from __future__ import annotations`."""
    offenders = []
    for path in (MODULE / "SpineAILib").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "from __future__ import annotations" in text:
            continue
        for node in ast.walk(ast.parse(text)):
            annotations = []
            if isinstance(node, ast.AnnAssign):
                annotations.append(node.annotation)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                annotations += [a.annotation for a in node.args.args + node.args.kwonlyargs if a.annotation]
                annotations += [node.returns] if node.returns else []
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for a in annotations for n in ast.walk(a)):
                offenders.append(f"{path.relative_to(MODULE)}:{node.lineno}")
    assert not offenders, offenders


# -- the child process: one protocol -----------------------------------------------------------


def test_the_module_starts_children_only_through_runtime_child():
    for path in FACE_FILES:
        text = path.read_text()
        assert "subprocess" not in text, path.name
        if path.name != "job.py":
            assert "launchConsoleProcess" not in text, path.name
        assert "%\\]" not in text and "error:\" in" not in text, f"{path.name} parses CLI lines itself"
    job = (DESKTOP / "job.py").read_text()
    assert "child.start(" in job and "child.run(" in job and "child.parse_progress(" in job
    actions = (MODULE / "SpineAILib" / "dataset" / "actions.py").read_text()
    assert "child.run(" in actions and "subprocess" not in actions


def test_the_module_file_is_down_to_its_five_parts():
    tree = _tree(SOURCE)
    classes = [c.name for c in tree.body if isinstance(c, ast.ClassDef)]
    assert classes == ["SpineAI", "SpineAIParameterNode", "SpineAIWidget", "SpineAILogic", "SpineAITest"]
    logic = _class(tree, "SpineAILogic")
    def passes_through(f):  # imports, then `return library_function(...)`: nothing of its own
        body = [n for n in f.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        return all(isinstance(n, ast.ImportFrom) for n in body[:-1]) and isinstance(body[-1], ast.Return) and \
            any(isinstance(n, ast.ImportFrom) for n in body) and "SceneContext" not in ast.unparse(f)

    passthrough = [f.name for f in logic.body if isinstance(f, ast.FunctionDef) and passes_through(f)]
    assert not passthrough, f"pass-through wrappers left: {passthrough}"


def test_self_test_builds_the_widget_and_runs_an_inference():
    test = _class(_tree(SOURCE), "SpineAITest")
    run = ast.unparse(_function(test, "runTest"))
    assert "self.test_widget_apply_on_a_phantom_cine()" in run and "self.test_parameter_node_accepts_none()" in run
    body = ast.unparse(_function(test, "test_widget_apply_on_a_phantom_cine"))
    assert "self._widget()" in body and "widget.onApplyButton()" in body and "p_csf" in body
    assert "SpineAIWidget(parent)" in ast.unparse(_function(test, "_widget"))


# -- versions stated alike; extension files ------------------------------------------------------


def test_supported_versions_are_stated_alike():
    from SpineAILib.desktop.dependencies import MINIMUM_SLICER, SLICER_PYTHON

    assert MINIMUM_SLICER == (5, 8) and SLICER_PYTHON == {(5, 8): (3, 9), (5, 10): (3, 12)}
    readme = (REPO / "README.md").read_text()
    assert "3D Slicer 5.8" in readme and "5.10" in readme and "Python 3.9" in readme
    assert "Slicer 5.8 or later" in SOURCE.read_text()
    assert "Slicer 5.8 or later" in (REPO / "CMakeLists.txt").read_text()
    assert "Slicer 5.8 or later" in (REPO / "ExtensionsIndex" / "SpineAI.json").read_text()


def test_extension_index_entry_license_and_screenshot():
    entry = json.loads((REPO / "ExtensionsIndex" / "SpineAI.json").read_text())
    assert entry["category"] == "Spine" and entry["scm_url"].startswith("https://github.com/")
    assert entry["build_dependencies"] == ["PyTorch"]
    assert (REPO / "LICENSE").read_text().startswith("                                 Apache License")
    cmake = (REPO / "CMakeLists.txt").read_text()
    for url in re.search(r'EXTENSION_SCREENSHOTURLS "([^"]+)"', cmake).group(1).split():
        relative = url.split("/main/", 1)[1]
        assert (REPO / relative).is_file(), relative
    icon = re.search(r'EXTENSION_ICONURL "([^"]+)"', cmake).group(1).split("/main/", 1)[1]
    assert (REPO / icon).is_file()
