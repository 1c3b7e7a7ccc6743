"""The package layout keeps its promises (SpineAI/SpineAILib/README.md): no import cycles,
and each layer imports only the layers below it.

Imports are read from the source (every ``import`` statement, also those inside
functions, which the library uses to keep start-up light), so a cycle hidden in a
function body counts too.
"""

import ast

from conftest import REPO

PACKAGES = {"SpineAILib": REPO / "SpineAI" / "SpineAILib", "SpineAITraining": REPO / "SpineAITraining"}
WORKFLOWS = ("ultrasound", "lumbar", "cervical", "spine_ct")
# Modules every part may build on; they never reach up into workflows, tasks or the faces.
CORE = ("errors", "vocabulary", "images", "io", "scene", "models", "outputs", "render", "terminology",
        "morphology", "colourmaps", "explain", "archive", "runtime", "navigation", "results", "pacs",
        "presentation", "browse", "workspace", "measure", "vertebral_bodies", "measure_vertebrae",
        "ct_grid", "ct_checks")
FACES = ("cli", "web", "desktop", "demo")


def _modules():
    modules = {}
    for top, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _import_graph():
    modules = _modules()

    def known(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(known(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in modules else known(base))
        found.discard(None)
        found.discard(module)
        graph[module] = found
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def _area(module):
    """'SpineAILib.workflows.lumbar.discs' -> 'workflows.lumbar'; 'SpineAILib.io.cine' -> 'io'."""
    parts = module.split(".")
    if parts[0] == "SpineAITraining":
        return "training"
    if len(parts) == 1:
        return "SpineAILib"
    if parts[1] == "workflows" and len(parts) > 2 and parts[2] in WORKFLOWS:
        return f"workflows.{parts[2]}"
    return parts[1]


def _crossings(graph):
    return {(_area(a), _area(b), a, b) for a, targets in graph.items() for b in targets if _area(a) != _area(b)}


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = _import_graph()
    assert len(graph) > 100  # the walk found the packages
    assert _cycles(graph) == []


def test_vocabulary_imports_nothing():
    assert _import_graph()["SpineAILib.vocabulary"] == set()


def test_each_layer_imports_only_below_it():
    wrong = []
    for source, target, a, b in _crossings(_import_graph()):
        if source != "training" and target == "training":
            wrong.append(f"{a} -> {b}: the library never needs the training package")
        if source in CORE and (target.startswith("workflows") or target in ("tasks", "annotation", "dataset", *FACES)):
            wrong.append(f"{a} -> {b}: core modules do not reach up")
        if source.startswith("workflows.") and target.startswith("workflows.") and source != target:
            wrong.append(f"{a} -> {b}: one workflow does not import another")
        if target in FACES and source not in FACES:
            wrong.append(f"{a} -> {b}: nothing below the faces imports a face")
    assert sorted(wrong) == []


def test_workflows_are_laid_out_alike():
    root = PACKAGES["SpineAILib"] / "workflows"
    for name in WORKFLOWS:
        assert (root / name / "workflow.py").is_file(), name
    from SpineAILib.vocabulary import TASKS
    from SpineAILib.workflows.base import Workflow
    from SpineAILib.workflows.registry import WORKFLOWS as REGISTERED

    assert tuple(REGISTERED) == TASKS
    assert all(isinstance(w, Workflow) and w.name and w.title and w.input_kind in ("cine", "volume")
               for w in REGISTERED.values())
