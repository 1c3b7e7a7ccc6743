"""Save and load single nodes and whole scenes (.mrb) with Slicer's own storage nodes.

Every write goes to a temporary name in the target folder first and is renamed
into place, so a reader never sees a half-written file (companion files such as a
table's ``.schema.tsv`` are renamed with it). Failures raise a one-line OutputError
(writing) or InputError (reading).
"""

import contextlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path

from SpineAILib.errors import InputError, OutputError

# Compound suffixes first: ".seg.nrrd" must win over ".nrrd".
_SUFFIXES = (".seg.nrrd", ".seq.nrrd", ".mrk.json", ".nii.gz", ".schema.tsv",
             ".nrrd", ".nhdr", ".nii", ".mha", ".tsv", ".csv", ".mrb", ".json")  # fmt: skip

# What each node kind may be saved as: single-file formats only (a detached .nhdr
# header names its data file, which the rename into place would break).
_WRITABLE = {
    "vtkMRMLSegmentationNode": (".seg.nrrd", ".nrrd"),
    "vtkMRMLSequenceNode": (".seq.nrrd", ".nrrd"),
    "vtkMRMLVolumeNode": (".nrrd", ".nii.gz", ".nii", ".mha"),
    "vtkMRMLMarkupsNode": (".mrk.json", ".json"),
    "vtkMRMLTableNode": (".tsv", ".csv"),
}


def suffix_of(path):
    name = Path(path).name.lower()
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(path).suffix.lower()


def stem_of(path):
    name = Path(path).name
    return name[: len(name) - len(suffix_of(path))] or name


def _allowed_suffixes(node):
    for class_name, suffixes in _WRITABLE.items():
        if node.IsA(class_name):
            return suffixes
    return None


def _messages(storage):
    messages = storage.GetUserMessages() if storage is not None else None
    text = messages.GetAllMessagesAsString() if messages is not None else ""
    return " ".join(text.split())


def save_node(node, path):
    """Write ``node`` to ``path`` with the storage node Slicer would use; returns the Path.

    The node keeps that storage node (file name = ``path``), as after "Save" in Slicer.
    """
    path = Path(path).absolute()
    suffix = suffix_of(path)
    allowed = _allowed_suffixes(node)
    what = f"{node.GetClassName()} '{node.GetName()}'"
    if allowed is None:
        raise OutputError(f"{path}: cannot save a {node.GetClassName()} node")
    if suffix not in allowed:
        raise OutputError(f"{path}: a {what} is saved as {' or '.join(allowed)}, not {suffix or 'no suffix'}")
    _ensure_folder(path.parent)

    storage = node.GetStorageNode()
    if storage is None:
        node.AddDefaultStorageNode()
        storage = node.GetStorageNode()
    if storage is None:
        raise OutputError(f"{path}: Slicer has no storage node for {what}")
    if storage.IsA("vtkMRMLVolumeArchetypeStorageNode"):
        storage.SetUseCompression(1)

    # Same folder, same (compound) suffix: the storage node picks the format from the suffix.
    temp_stem = f"{stem_of(path)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temp_path = path.with_name(temp_stem + suffix)
    storage.SetFileName(str(temp_path))
    try:
        ok = storage.WriteData(node)
        written = [p for p in path.parent.iterdir() if p.name.startswith(temp_stem)]
        if not ok or temp_path not in written:
            reason = _messages(storage) or "the storage node reported a failure"
            raise OutputError(f"{path}: could not write {what}: {reason}")
        for temp_file in written:  # the file and its companions (e.g. .schema.tsv)
            os.replace(temp_file, path.with_name(stem_of(path) + temp_file.name[len(temp_stem):]))
    except OSError as error:
        raise OutputError(f"{path}: could not write {what}: {error.strerror or error}") from None
    finally:
        for leftover in path.parent.glob(temp_stem + "*"):
            leftover.unlink(missing_ok=True)
    storage.SetFileName(str(path))
    return path


def _ensure_folder(folder):
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{folder}: cannot create output folder: {error.strerror or error}") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{folder}: permission denied")


# -- loading -------------------------------------------------------------------

_KINDS = ("volume", "labelmap", "segmentation", "sequence", "markups", "table")


def _kind_of(path):
    suffix = suffix_of(path)
    if suffix == ".seg.nrrd":
        return "segmentation"
    if suffix == ".seq.nrrd":
        return "sequence"
    if suffix in (".mrk.json", ".json"):
        return "markups"
    if suffix in (".tsv", ".csv"):
        return "table"
    if suffix in (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha"):
        return "volume"
    raise InputError(f"{path}: unknown file type '{suffix}' (expected .nrrd, .nii.gz, .seg.nrrd, "
                     ".seq.nrrd, .mrk.json or .tsv)")


def load_node(ctx, path, kind=None, name=None):
    """Read one file into a new node of ``ctx.scene`` and return the node.

    ``kind``: 'volume', 'labelmap', 'segmentation', 'sequence', 'markups' or 'table';
    by default from the suffix (a plain .nrrd is read as a scalar volume: pass
    kind='labelmap' for label maps).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    kind = kind or _kind_of(path)
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}, not {kind!r}")
    name = name or stem_of(path)
    loader = {
        "volume": _load_volume, "labelmap": _load_volume, "segmentation": _load_segmentation,
        "sequence": _load_sequence, "markups": _load_markups, "table": _load_table,
    }[kind]  # fmt: skip
    node = loader(ctx, path, name, kind)
    if node is None:
        raise InputError(f"{path}: could not read it as a {kind}")
    return node


def _load_volume(ctx, path, name, kind):
    from vtkmodules.vtkCommonCore import vtkStringArray

    options = 1 if kind == "labelmap" else 0  # vtkSlicerVolumesLogic: bit 0 = label map
    return ctx.volumes_logic.AddArchetypeVolume(str(path), name, options, vtkStringArray())


def _read_with(ctx, path, node_class, storage_class, name):
    import slicer

    node = ctx.scene.AddNewNodeByClass(node_class, ctx.scene.GenerateUniqueName(name))
    storage = getattr(slicer, storage_class)()
    ctx.scene.AddNode(storage)
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        reason = _messages(storage)
        ctx.scene.RemoveNode(node)
        ctx.scene.RemoveNode(storage)
        raise InputError(f"{path}: could not read: {reason or 'unreadable file'}")
    if hasattr(node, "CreateDefaultDisplayNodes"):
        node.CreateDefaultDisplayNodes()
    return node


def _load_segmentation(ctx, path, name, kind):
    return _read_with(ctx, path, "vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode", name)


def _load_sequence(ctx, path, name, kind):
    return _read_with(ctx, path, "vtkMRMLSequenceNode", "vtkMRMLVolumeSequenceStorageNode", name)


def _load_table(ctx, path, name, kind):
    return _read_with(ctx, path, "vtkMRMLTableNode", "vtkMRMLTableStorageNode", name)


_MARKUPS_CLASSES = {
    "Fiducial": ("vtkMRMLMarkupsFiducialNode", "vtkMRMLMarkupsJsonStorageNode"),
    "ROI": ("vtkMRMLMarkupsROINode", "vtkMRMLMarkupsROIJsonStorageNode"),
    "Line": ("vtkMRMLMarkupsLineNode", "vtkMRMLMarkupsJsonStorageNode"),
    "Angle": ("vtkMRMLMarkupsAngleNode", "vtkMRMLMarkupsJsonStorageNode"),
    "Curve": ("vtkMRMLMarkupsCurveNode", "vtkMRMLMarkupsJsonStorageNode"),
    "ClosedCurve": ("vtkMRMLMarkupsClosedCurveNode", "vtkMRMLMarkupsJsonStorageNode"),
    "Plane": ("vtkMRMLMarkupsPlaneNode", "vtkMRMLMarkupsPlaneJsonStorageNode"),
}


def _load_markups(ctx, path, name, kind):
    # The markups type decides node and storage classes; both are created directly
    # (works in a scene where the markups logic has not registered its node classes).
    try:
        markups_type = json.loads(path.read_text())["markups"][0]["type"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        raise InputError(f"{path}: not a Slicer markups JSON file") from None
    if markups_type not in _MARKUPS_CLASSES:
        raise InputError(f"{path}: unsupported markups type '{markups_type}'")
    node_class, storage_class = _MARKUPS_CLASSES[markups_type]
    return _read_with(ctx, path, node_class, storage_class, name)


# -- scenes ----------------------------------------------------------------------


def save_scene_mrb(ctx, path):
    """Write the whole scene as a Slicer bundle (.mrb) atomically; returns the Path.

    Every storable node is written by its storage node into the bundle (a default
    storage node and file name are made for nodes that have none, as in Slicer).
    """
    import slicer

    path = Path(path).absolute()
    if suffix_of(path) != ".mrb":
        raise OutputError(f"{path}: a scene bundle must end in .mrb")
    _ensure_folder(path.parent)
    # Written under its final name inside a hidden folder beside the target (the bundle's
    # top folder is named after the file), then renamed into place.
    work = path.parent / f".{stem_of(path)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temp_path = work / path.name
    messages = slicer.vtkMRMLMessageCollection()
    scene = ctx.scene
    url, root = scene.GetURL(), scene.GetRootDirectory()
    try:
        work.mkdir()
        with _quiet_vtk():  # vtkArchive reports every zipped file on stderr
            ok = scene.WriteToMRB(str(temp_path), None, messages)
        if not ok or not temp_path.is_file():
            reason = " ".join(messages.GetAllMessagesAsString().split()) or "WriteToMRB failed"
            raise OutputError(f"{path}: could not write scene: {reason}")
        os.replace(temp_path, path)
    except OSError as error:
        raise OutputError(f"{path}: could not write scene: {error.strerror or error}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
        scene.SetURL(url)
        scene.SetRootDirectory(root)
    return path


@contextlib.contextmanager
def _quiet_vtk():
    """Silence VTK's console output (only the plain console window; Slicer's error log is left alone)."""
    from vtkmodules.vtkCommonCore import vtkOutputWindow

    window = vtkOutputWindow.GetInstance()
    if window.GetClassName() != "vtkOutputWindow":
        yield
        return
    from vtkmodules.vtkCommonCore import vtkLogger

    mode = window.GetDisplayMode()
    window.SetDisplayModeToNever()
    verbosity = vtkLogger.GetCurrentVerbosityCutoff()  # ITK readers report through vtkLogger
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_OFF)
    try:
        yield
    finally:
        window.SetDisplayMode(mode)
        vtkLogger.SetStderrVerbosity(verbosity)


def load_scene_mrb(ctx, path, clear=False):
    """Add the nodes of a .mrb bundle to ``ctx.scene`` (``clear``: close the scene first).

    Returns the nodes that were added. The bundle is unpacked by ``SpineAILib.archive``
    (members checked first, a private folder removed afterwards), never by Slicer's own
    unzip, and every file its .mrml names must lie inside the bundle; see ``scene/mrml_refs.py``.
    """
    import slicer
    from vtkmodules.vtkCommonCore import vtkCommand

    from SpineAILib.archive import extracted
    from SpineAILib.scene.mrml_refs import check_scene_files, find_mrml

    path = Path(path).absolute()
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    ctx.io_logics()  # storage nodes read through the scene's data IO manager
    before = {node.GetID() for node in ctx.nodes()}
    scene = ctx.scene
    url, root = scene.GetURL(), scene.GetRootDirectory()
    with extracted(path, prefix="spineai-mrb-") as folder:
        mrml = find_mrml(folder, path.name)
        check_scene_files(mrml, folder, path.name)
        messages = slicer.vtkMRMLMessageCollection()
        try:
            scene.SetURL(str(mrml))
            scene.SetRootDirectory(str(mrml.parent))
            if clear:
                scene.Clear(0)
            with _quiet_vtk():  # a damaged member is reported below, in one line
                ok = scene.Import(messages)
        finally:
            scene.SetURL(url)
            scene.SetRootDirectory(root)
        errors = " ".join(messages.GetAllMessagesAsString().split())
        added = [node for node in ctx.nodes() if node.GetID() not in before]
        if not ok or messages.GetNumberOfMessagesOfType(vtkCommand.ErrorEvent):  # a member that did not read
            for node in added:  # all or nothing: no half-loaded scene left behind in a long-lived app
                if scene.IsNodePresent(node):
                    scene.RemoveNode(node)
            failed = re.findall(r"Failed to read node (\S+)", errors)
            reason = f"the file of node {failed[0]} is damaged or unreadable" if failed else _short(errors)
            raise InputError(f"{path}: could not load scene: {reason or 'not a readable scene bundle'}")
    return added


def _short(text, limit=300):
    return text if len(text) <= limit else text[: limit - 3] + "..."
