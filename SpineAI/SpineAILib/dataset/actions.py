"""What the front ends' Export dataset and Import dataset buttons do (web app and desktop module).

A front end hands over the case folder(s) on screen and the folder fields; everything the
buttons decide is here, so the web app and the desktop module behave alike:

* ``default_dataset_folder(case_folder)``: where an export goes unless the user says
  otherwise, ``<case parent>/dataset``; an import's case folders go to ``<dataset>-cases``.
* ``export_plan(case_folders, out_dir, add)``: the task (the cases' own, one for all), the
  checks that answer at once (no case, no folder, a non-empty folder without "add"), and
  the ``spineai dataset export`` arguments; ``export_summary(plan)`` reads the result back
  into one line: ``exported 1 case to DIR: dataset.json lists 3 cases (train 2, test 1)``.
* ``import_plan(dataset_dir)``: the same for ``spineai dataset import``. Cases imported
  before into the same folder are listed again instead of being written over (they may
  hold edits); ``import_summary(plan)`` lists the case folders.
* ``export_cases`` / ``import_cases``: plan, run, summary in one call.

The export and import run as the ``spineai`` command line in a child process
(``run_cli``): importing a cine builds its ``.seq.nrrd`` through Slicer's MRML, and a
run folder's scene is read through it too; MRML and VTK must stay on the front end's own
thread (web app) or out of the GUI process (desktop), and a crash of one export cannot
take the front end with it. Progress comes back from the CLI's ``[ 42.0%] message``
lines, a failure as its one-line reason.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from SpineAILib.dataset.manifest import MANIFEST, read_manifest
from SpineAILib.errors import InputError, OutputError, SpineAIError
from SpineAILib.runtime import child

ANNOTATION_FILE = "annotation.json"  # an annotation case folder (SpineAILib.annotation)
DATASET_FOLDER = "dataset"
CASES_SUFFIX = "-cases"  # import_dataset's default: DATASET-cases beside the dataset
PROGRESS, ERROR_PREFIX = child.PROGRESS, child.ERROR_PREFIX


@dataclass
class ExportPlan:
    sources: list  # case folders (absolute)
    task: str
    out_dir: Path
    add: bool
    arguments: list  # after `spineai`
    before: bytes = None  # dataset.json before the export (None: no dataset there yet)


@dataclass
class ExportResult:
    message: str
    out_dir: Path
    changed: bool
    manifest: dict = field(default_factory=dict)


@dataclass
class ImportPlan:
    dataset_dir: Path
    out_dir: Path
    manifest: dict
    arguments: list  # after `spineai`; empty when the cases are there already
    existing: bool = False  # the cases were imported into out_dir before: list them, write nothing


@dataclass
class ImportResult:
    message: str
    out_dir: Path
    cases: list  # [{"name": "case-0001", "split": "train", "path": "/.../case-0001"}]

    @property
    def folders(self):
        return [Path(c["path"]) for c in self.cases]


def _folder(text, what):
    text = str(text or "").strip()
    if not text:
        raise InputError(f"choose the {what} first")
    return Path(text).expanduser().absolute()


def _plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def default_dataset_folder(case_folder):
    """Where the case's export goes unless the user says otherwise.

    A case imported from a dataset (``DATASET-cases/case-0001``, whose dataset_case.json
    names its key in DATASET) goes back to that dataset (exported with "add", the edited
    case replaces its old version); any other case to ``<case parent>/dataset``, beside it.
    """
    folder = _folder(case_folder, "case folder")
    link = _link_of(folder)
    parent = folder.parent
    if link and parent.name.endswith(CASES_SUFFIX) and len(parent.name) > len(CASES_SUFFIX):
        origin = parent.with_name(parent.name[: -len(CASES_SUFFIX)])
        try:
            keys = {case.get("key") for case in read_manifest(origin).get("cases", [])}
        except (SpineAIError, OSError):
            keys = set()
        if link.get("key") in keys:
            return origin
    return parent / DATASET_FOLDER


def default_cases_folder(dataset_dir):
    dataset_dir = _folder(dataset_dir, "dataset folder")
    return dataset_dir.with_name(dataset_dir.name + CASES_SUFFIX)


def case_task(case_folder):
    """The task an annotation case folder was annotated for (its annotation.json)."""
    from SpineAILib.annotation.files import read_json

    folder = _folder(case_folder, "case folder")
    if not (folder / ANNOTATION_FILE).is_file():
        raise InputError(f"{folder}: not an annotation case folder (no {ANNOTATION_FILE})")
    document = read_json(folder / ANNOTATION_FILE)
    task = document.get("task") if isinstance(document, dict) else None
    if not task:
        raise InputError(f"{folder / ANNOTATION_FILE}: names no task")
    return task


# -- export ---------------------------------------------------------------------------------


def export_plan(case_folders, out_dir, add=False):
    """Check what can be checked at once and say what to run; one-line errors."""
    sources = [_folder(f, "case folder") for f in case_folders or [] if str(f or "").strip()]
    if not sources:
        raise InputError("no case to export: open a case first")
    tasks = {source: case_task(source) for source in sources}
    if len(set(tasks.values())) > 1:
        listing = ", ".join(f"{s.name} ({t})" for s, t in tasks.items())
        raise InputError(f"the cases are annotated for different tasks ({listing}); export one task at a time")
    task = next(iter(tasks.values()))
    out = _folder(out_dir, "dataset folder to export to")
    if any(out == s or s in out.parents for s in sources):
        raise InputError(f"{out}: is inside the case folder; choose a dataset folder outside it")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    before = None
    if out.is_dir() and any(out.iterdir()):
        if not add:
            raise OutputError(f"{out}: is not empty; choose a new folder, or tick 'add to existing' to add to the dataset in it")
        read_manifest(out)  # a folder of other files is no dataset to add to
        before = (out / MANIFEST).read_bytes()
    arguments = ["dataset", "export", *map(str, sources), "--task", task, "--out", str(out)]
    if add:
        arguments.append("--add")
    return ExportPlan(sources=sources, task=task, out_dir=out, add=bool(add), arguments=arguments, before=before)


def export_summary(plan):
    """The one line a front end shows after the export ran."""
    manifest = read_manifest(plan.out_dir)
    after = (plan.out_dir / MANIFEST).read_bytes()
    n = len(plan.sources)
    if plan.before is not None and after == plan.before:
        return ExportResult(f"no change: {plan.out_dir} already holds {'this case' if n == 1 else f'these {n} cases'} "
                            f"as annotated now", plan.out_dir, False, manifest)  # fmt: skip
    counts = {}
    for case in manifest["cases"]:
        counts[case["split"]] = counts.get(case["split"], 0) + 1
    parts = ", ".join(f"{part} {counts[part]}" for part in sorted(counts))
    message = (f"exported {_plural(n, 'case')} to {plan.out_dir}: dataset.json lists "
               f"{_plural(len(manifest['cases']), 'case')} ({parts})")  # fmt: skip
    return ExportResult(message, plan.out_dir, True, manifest)


def export_cases(case_folders, out_dir, add=False, progress=None, cli=None, env=None):
    """Export the case folders into ``out_dir`` (child process); an ExportResult."""
    plan = export_plan(case_folders, out_dir, add)
    run_cli(plan.arguments, progress=progress, cli=cli, env=env)
    return export_summary(plan)


# -- import ---------------------------------------------------------------------------------


def _link_of(folder):
    """A case folder's dataset_case.json (written by import), or None."""
    try:
        return json.loads((folder / "dataset_case.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def import_plan(dataset_dir, out_dir=None):
    """Check the dataset and the target; cases imported there before are listed, not rewritten."""
    dataset = _folder(dataset_dir, "dataset folder to import")
    if not dataset.is_dir():
        raise InputError(f"{dataset}: no such folder")
    manifest = read_manifest(dataset)
    if not manifest.get("cases"):
        raise InputError(f"{dataset}: the dataset holds no case")
    out = _folder(out_dir, "folder for the cases") if out_dir else default_cases_folder(dataset)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        links = [_link_of(out / case["id"]) for case in manifest["cases"]]
        if all(link and link.get("key") == case["key"] for link, case in zip(links, manifest["cases"])):
            return ImportPlan(dataset, out, manifest, [], existing=True)
        raise OutputError(f"{out}: holds other files than this dataset's cases; move them away or import elsewhere")
    arguments = ["dataset", "import", str(dataset), "--out", str(out)]
    return ImportPlan(dataset, out, manifest, arguments)


def import_summary(plan):
    cases = []
    for case in plan.manifest["cases"]:
        folder = plan.out_dir / case["id"]
        if not (folder / ANNOTATION_FILE).is_file():
            raise InputError(f"{folder}: the import did not write this case")
        cases.append({"name": case["id"], "split": case.get("split") or "", "path": str(folder)})
    listed = _plural(len(cases), "case")
    if plan.existing:
        message = f"{listed} imported before into {plan.out_dir} (your edits there are kept): open one to edit"
    else:
        message = f"imported {listed} into {plan.out_dir}: open one to edit"
    return ImportResult(message, plan.out_dir, cases)


def import_cases(dataset_dir, out_dir=None, progress=None, cli=None, env=None):
    """Import a dataset as case folders (child process); an ImportResult."""
    plan = import_plan(dataset_dir, out_dir)
    if plan.arguments:
        run_cli(plan.arguments, progress=progress, cli=cli, env=env)
    return import_summary(plan)


# -- the child process (runtime.child: the one protocol every front end uses) ------------------


def cli_prefix(python=None):
    """The argv that runs ``spineai`` with this Python."""
    return child.command([], python)


parse_progress = child.parse_progress
error_reason = child.error_reason


def run_cli(arguments, progress=None, cli=None, env=None):
    """Run ``spineai ARGUMENTS`` in a child process; progress lines go to ``progress(fraction, message)``.

    Returns the output lines that are neither progress nor errors; a failure raises
    SpineAIError with the CLI's one-line reason. ``cli`` replaces the ``spineai`` argv prefix.
    """
    return child.run(arguments, progress=progress, env=env, prefix=cli)
