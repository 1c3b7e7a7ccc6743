"""The model catalogue SpineAI/Resources/Models.json: which bundles ship, and which one each task uses.

Resources are found relative to this file (SpineAI/SpineAILib/models -> SpineAI/Resources),
which holds in a source checkout, an editable install and inside Slicer, where the
module's Resources folder sits beside SpineAILib.
"""

import json
from pathlib import Path

from SpineAILib.errors import BundleError, InputError
from SpineAILib.models.schema import TASKS, is_task

CATALOGUE_FORMAT_VERSION = 1
MODULE_DIR = Path(__file__).resolve().parents[2]  # SpineAI/
RESOURCES_DIR = MODULE_DIR / "Resources"
CATALOGUE_PATH = RESOURCES_DIR / "Models.json"
# Bigger bundles may live in the repository's top-level Resources/Models (not part of the Slicer module).
REPO_MODELS_DIR = MODULE_DIR.parent / "Resources" / "Models"


def _fail(where, field, problem):
    raise BundleError(f"{where}: field '{field}' {problem}")


def validate_catalogue(data, where="Models.json"):
    """Raise BundleError naming the first bad field; return ``data`` when valid."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: must hold a JSON object")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        _fail(where, "format_version", f"must be a positive integer (got {version!r})")
    if version > CATALOGUE_FORMAT_VERSION:
        raise BundleError(f"{where}: catalogue format_version {version} is newer than this SpineAI reads; update SpineAI")

    models = data.get("models")
    if not isinstance(models, list):
        _fail(where, "models", "must be a list")
    ids = set()
    for i, entry in enumerate(models):
        field = f"models[{i}]"
        if not isinstance(entry, dict):
            _fail(where, field, "must be an object")
        for key in ("bundle_id", "task", "version", "path", "description"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                _fail(where, f"{field}.{key}", "must be a non-empty string")
        if not is_task(entry["task"]):
            _fail(where, f"{field}.task", f"must be one of {', '.join(TASKS)} or TASK/sub-model")
        path = Path(entry["path"])
        if path.is_absolute() or ".." in path.parts:
            _fail(where, f"{field}.path", "must be relative to SpineAI/Resources or Resources/Models")
        if not isinstance(entry.get("metrics", []), list):
            _fail(where, f"{field}.metrics", "must be a list")
        if entry["bundle_id"] in ids:
            _fail(where, f"{field}.bundle_id", f"repeats {entry['bundle_id']!r}")
        ids.add(entry["bundle_id"])

    tasks = data.get("tasks")
    if not isinstance(tasks, dict):
        _fail(where, "tasks", "must be an object keyed by task")
    for task in TASKS:
        if not isinstance(tasks.get(task), dict):
            _fail(where, f"tasks.{task}", "is missing")
        if not isinstance(tasks[task].get("description"), str):
            _fail(where, f"tasks.{task}.description", "must be a string")
        default = tasks[task].get("default_bundle", "missing")
        if default == "missing":
            _fail(where, f"tasks.{task}.default_bundle", "is missing (null when no bundle is installed)")
        if default is not None and not any(m["bundle_id"] == default and m["task"] == task for m in models):
            _fail(where, f"tasks.{task}.default_bundle", f"names {default!r}, which no models entry for {task} has")
    return data


def load_catalogue(path=None):
    path = Path(path) if path else CATALOGUE_PATH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"model catalogue {path} is missing (reinstall SpineAI)") from None
    except json.JSONDecodeError as error:
        raise BundleError(f"{path} is not valid JSON (line {error.lineno} column {error.colno}: {error.msg})") from None
    return validate_catalogue(data, str(path))


def _location(relative):
    """The bundle folder for a catalogue path, or None when it is not on disk."""
    for base in (RESOURCES_DIR, REPO_MODELS_DIR):
        if (base / relative).is_dir():
            return base / relative
    return None


def list_models(task=None, catalogue=None):
    """Catalogue entries (for ``task`` when given), each with 'location': the folder on disk or None."""
    entries = []
    for entry in load_catalogue(catalogue)["models"]:
        if task is None or entry["task"] == task:
            location = _location(entry["path"])
            entries.append(dict(entry, location=str(location) if location else None))
    return entries


def _check_task(task):
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")


def default_bundle_path(task, catalogue=None):
    """The bundle folder the catalogue names for ``task`` (its default, else its first entry), or None."""
    _check_task(task)
    data = load_catalogue(catalogue)
    default = data["tasks"][task]["default_bundle"]
    candidates = [m for m in data["models"] if m["task"] == task]
    chosen = next((m for m in candidates if m["bundle_id"] == default), candidates[0] if candidates else None)
    if chosen is None:
        return None
    location = _location(chosen["path"])
    if location is None:
        raise BundleError(
            f"the catalogue lists bundle {chosen['bundle_id']} for {task} at {chosen['path']}, "
            "but that folder is missing (reinstall SpineAI or pass --model BUNDLE)"
        )
    return location


def sub_model_path(task, folder_name=None, catalogue=None):
    """The installed bundle for a sub-model ``task`` ('lumbar-mri/severity', 'lp-ultrasound/localiser'):
    the catalogue's first entry for it that is on disk, else ``folder_name`` under the models
    folders when it holds a bundle, else None (the workflow then runs without that part)."""
    try:
        for entry in list_models(task, catalogue):
            if entry["location"]:
                return Path(entry["location"])
    except BundleError:
        pass
    for base in (RESOURCES_DIR / "Models", REPO_MODELS_DIR):
        if folder_name and (base / folder_name / "metadata.json").is_file():
            return base / folder_name
    return None


def resolve_bundle(task, model=None, catalogue=None):
    """The bundle folder to use for ``task``: ``model`` (a folder or a catalogue bundle_id) or the default."""
    _check_task(task)
    if model:
        path = Path(model).expanduser()
        if path.exists():
            return path
        for entry in load_catalogue(catalogue)["models"]:
            if entry["bundle_id"] == str(model):
                location = _location(entry["path"])
                if location is None:
                    raise BundleError(f"catalogue bundle {model} should be at {entry['path']}, but that folder is missing")
                return location
        raise BundleError(f"model bundle {model} does not exist (neither a folder nor a bundle id in the catalogue)")
    found = default_bundle_path(task, catalogue)
    if found is None:
        shown = "SpineAI/Resources/Models.json" if catalogue is None else str(catalogue)
        raise BundleError(
            f"no model bundle installed for {task} (the catalogue {shown} lists none; "
            f"train one with `spineai-train {task} ...` or pass --model BUNDLE)"
        )
    return found


__all__ = [
    "CATALOGUE_PATH",
    "default_bundle_path",
    "list_models",
    "load_catalogue",
    "resolve_bundle",
    "sub_model_path",
    "validate_catalogue",
]
