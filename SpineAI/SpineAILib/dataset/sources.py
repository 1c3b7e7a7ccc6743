"""Read what an annotator or a run produced into SourceCase objects, one per source.

A source is
* a run folder (what ``spineai run`` writes): ``report.json`` names the task and the
  image (``input.path``); the results are its files (``frames.tsv`` and the mask/box
  sequences of ``scene.mrb`` for a cine; ``vertebrae.seg.nrrd``, ``discs.mrk.json``,
  ``levels.mrk.json``, ``severity.tsv``, ``fractures.tsv`` for a volume);
* a Slicer scene (``.mrb``): the image and whatever annotation nodes it holds;
* an annotation case folder (SpineAILib.annotation: ``annotation.json`` naming the image,
  the edited annotations beside it), read through ``annotation.case.load_case``; frames
  never labelled there are left out of the labels table (unknown is not negative).
Nothing from a header, report or file name is kept except the UIDs (pseudonymised later).
"""

import csv
import json
from pathlib import Path

import numpy as np

from SpineAILib.dataset.cases import CineAnnotation, SourceCase, VolumeAnnotation, labels_on_grid
from SpineAILib.errors import InputError
from SpineAILib.vocabulary import (
    CERVICAL_VERTEBRAE,
    FRACTURE_CALL,
    NO_FRACTURE_CALL,
    NOT_ASSESSED,
    NOT_IN_VIEW,
    ULTRASOUND_LABELS,
    ULTRASOUND_STRUCTURES,
)

ANNOTATION_FILE = "annotation.json"
REPORT_FILE = "report.json"
DATASET_LINK = "dataset_case.json"  # written by import: the case's key in its dataset


def read_source(path, task):
    """One source path -> SourceCase for ``task``; InputError (one line) when it is none of the kinds."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file() and path.name.lower().endswith(".mrb"):
        return read_scene(path, task)
    if path.is_dir() and (path / ANNOTATION_FILE).is_file():
        return read_annotation_folder(path, task)
    if path.is_dir() and (path / REPORT_FILE).is_file():
        return read_case_folder(path, task, json_file=REPORT_FILE)
    raise InputError(f"{path}: not a run folder (report.json), an annotation case folder ({ANNOTATION_FILE}) or a .mrb scene")


# -- run folders and annotation case folders ------------------------------------------------


def dataset_link(folder):
    """A case imported from a dataset carries its key there (dataset_case.json), so a re-export replaces it."""
    path = Path(folder) / DATASET_LINK
    return _read_json(path) if path.is_file() else {}


def read_annotation_folder(folder, task):
    """An annotation case folder (SpineAILib.annotation), read through its own ``load_case``."""
    from SpineAILib.annotation.case import load_case

    case = load_case(folder)
    if case.task != task:
        raise InputError(f"{folder}: is annotated for {case.task}, not {task}")
    path = Path(case.image.get("path") or "")
    if not path.exists():
        raise InputError(f"{folder}: its image {path} is gone; the export needs the image the annotations were made on")
    image = load_task_image(task, path, series=case.image.get("series"))
    annotation = _cine_from_case(case, image, folder) if case.is_cine else _volume_from_case(case, image, folder)
    meta = getattr(image, "metadata", {}) or {}
    link = dataset_link(folder)
    return SourceCase(task, str(folder), annotation, series_uid=meta.get("SeriesInstanceUID"),
                      study_uid=meta.get("StudyInstanceUID"), dataset_key=link.get("key"),
                      dataset_fingerprint=link.get("key_fingerprint"))  # fmt: skip


def _cine_from_case(case, cine, folder):
    from SpineAILib.annotation.case import CINE_STRUCTURES
    from SpineAILib.images import Cine

    if not isinstance(cine, Cine) or cine.n_frames != case.n_frames or list(cine.frame_shape) != list(case.image["frame_shape"]):
        raise InputError(f"{folder}: its image no longer matches the annotation (frames or frame size differ)")
    n = cine.n_frames
    labelled = np.array([f"labels/{f}" in case.sources for f in range(n)], bool)
    labels = np.asarray(case.labels, np.int64).clip(0, 1).astype(np.uint8)
    masks, mask_frames = {}, np.zeros(n, bool)
    if case.masks:
        for structure, value in CINE_STRUCTURES.items():
            masks[structure] = np.zeros((n, *cine.frame_shape), bool)
        for frame, mask in case.masks.items():
            mask_frames[frame] = True
            for structure, value in CINE_STRUCTURES.items():
                masks[structure][frame] = mask[0] == value
    boxes = {}
    for (frame, label), box in case.boxes.items():
        if frame is not None and label in ULTRASOUND_STRUCTURES:
            boxes.setdefault(label, np.full((n, 4), np.nan, np.float32))[frame] = (box[0], box[1], box[3], box[4])
    return CineAnnotation(cine=cine, labels=labels, masks=masks, mask_frames=mask_frames if case.masks else None,
                          boxes=boxes, labelled=labelled)  # fmt: skip


def _volume_from_case(case, image, folder):
    from SpineAILib.images import VolumeImage

    if not isinstance(image, VolumeImage) or tuple(image.voxels.shape) != tuple(case.grid_shape):
        raise InputError(f"{folder}: its image no longer matches the annotation (the volume's size differs)")
    annotation = VolumeAnnotation(image=image)
    if case.mask is not None and case.mask.any():
        annotation.labels = VolumeImage(voxels=np.asarray(case.mask), ijk_to_ras=image.ijk_to_ras, is_labelmap=True)
    annotation.points = [(level, tuple(float(v) for v in ras)) for level, ras in case.points.items()]
    annotation.severity = [{"level": level, "condition": condition, "grade": grade}
                           for (level, condition), grade in sorted(case.severity.items())]  # fmt: skip
    if case.fractures:
        annotation.fractures = {k: int(case.fractures.get(k, 0)) for k in CERVICAL_VERTEBRAE}
        annotation.fractures["patient_overall"] = int(any(annotation.fractures.values()))
    for (frame, label), _ in sorted(case.boxes.items(), key=lambda kv: str(kv[0])):
        center, size, axes = case.box_geometry(frame, label)
        annotation.rois.append({"label": label, "center": [float(v) for v in center], "size": [float(v) for v in size],
                                "axes": np.asarray(axes, float).tolist()})  # fmt: skip
    if annotation.labels is None and not annotation.points and annotation.fractures is None and not annotation.severity:
        raise InputError(f"{folder}: nothing is annotated in this case yet")
    return annotation


def _read_json(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not readable JSON ({error})") from None


def _image_path(folder, document, json_file):
    """The image a case folder is about: ``image`` / ``input.path`` in its JSON, relative to the folder."""
    entry = document.get("image") or (document.get("input") or {}).get("path")
    if isinstance(entry, dict):
        entry = entry.get("path")
    if not entry:
        raise InputError(f"{folder / json_file}: does not name its image (input.path)")
    path = Path(entry)
    if not path.is_absolute():
        path = folder / path
    if not path.exists():
        raise InputError(f"{folder}: its image {path} is gone; the export needs the image the results were made on")
    return path


def load_task_image(task, path, series=None):
    """The image as the task's run read it (lumbar-mri picks the sagittal series of a study folder)."""
    from SpineAILib.workflows.registry import get_workflow

    return get_workflow(task).load_input(path, series=series)


def read_case_folder(folder, task, json_file=REPORT_FILE):
    document = _read_json(folder / json_file)
    found = document.get("task")
    if found and found != task:
        raise InputError(f"{folder}: holds {found} results, not {task}")
    image_path = _image_path(folder, document, json_file)
    series = document.get("series") or (document.get("input") or {}).get("series")
    image = load_task_image(task, image_path, series=series)
    dataset = dataset_link(folder)
    if task == "lp-ultrasound":
        annotation = _cine_folder(folder, image)
    else:
        annotation = _volume_folder(folder, image, task)
    meta = getattr(image, "metadata", {}) or {}
    return SourceCase(task, str(folder), annotation, series_uid=meta.get("SeriesInstanceUID"),
                      study_uid=meta.get("StudyInstanceUID"), dataset_key=dataset.get("key"),
                      dataset_fingerprint=dataset.get("key_fingerprint"))  # fmt: skip


def read_tsv(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t"))
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None


def _flag(value, where):
    text = str(value).strip().lower()
    if text in ("1", "1.0", "true", "yes"):
        return 1
    if text in ("0", "0.0", "false", "no", ""):
        return 0
    raise InputError(f"{where}: expected 0 or 1, got {value!r}")


def frame_labels_from_rows(rows, n_frames, where):
    if len(rows) != n_frames:
        raise InputError(f"{where}: {len(rows)} rows for a cine of {n_frames} frames")
    missing = [c for c in ULTRASOUND_LABELS if rows and c not in rows[0]]
    if missing:
        raise InputError(f"{where}: no {', '.join(missing)} column")
    labels = np.array([[_flag(r[c], f"{where} frame {i}") for c in ULTRASOUND_LABELS] for i, r in enumerate(rows)], np.uint8)
    labels[labels[:, 0] == 1, 1:] = 0  # a bad-quality frame shows neither cord nor CSF
    return labels


def _cine_folder(folder, cine):
    from SpineAILib.images import Cine

    if not isinstance(cine, Cine):
        raise InputError(f"{folder}: lp-ultrasound needs a cine, but the image is a volume")
    table = folder / "frames.tsv"
    if not table.is_file():
        raise InputError(f"{folder}: no frames.tsv (the per-frame labels)")
    labels = frame_labels_from_rows(read_tsv(table), cine.n_frames, table.name)
    annotation = CineAnnotation(cine=cine, labels=labels)
    scene = folder / "scene.mrb"
    if scene.is_file():  # masks and boxes live in the scene's sequences, with the cine
        from SpineAILib.scene.context import SceneContext
        from SpineAILib.scene.storage import load_scene_mrb

        ctx = SceneContext.headless()
        load_scene_mrb(ctx, scene)
        found = _cine_from_scene(ctx, scene, need_labels=False)
        if found.cine.frame_shape == cine.frame_shape and found.cine.n_frames == cine.n_frames:
            annotation.masks, annotation.mask_frames, annotation.boxes = found.masks, found.mask_frames, found.boxes
    return annotation


def _volume_folder(folder, image, task):
    from SpineAILib.images import VolumeImage
    from SpineAILib.io import load

    if not isinstance(image, VolumeImage):
        raise InputError(f"{folder}: {task} needs a volume, but the image is a cine")
    annotation = VolumeAnnotation(image=image)
    segmentation = folder / "vertebrae.seg.nrrd"
    if segmentation.is_file():
        labels = load(segmentation)
        annotation.labels = labels_on_grid(labels, image)
    markups = [p for p in sorted(folder.glob("*.mrk.json"))]
    if markups:
        from SpineAILib.scene.context import SceneContext

        ctx = SceneContext.headless()
        for path in markups:
            for node in _load_markups_entries(ctx, path):
                _take_markups(node, annotation)
    severity = folder / "severity.tsv"
    if severity.is_file():
        annotation.severity = _severity_rows(read_tsv(severity))
    fractures = folder / "fractures.tsv"
    if fractures.is_file():
        annotation.fractures = _fracture_calls(read_tsv(fractures), fractures.name)
    if annotation.labels is None and not annotation.points and annotation.fractures is None and not annotation.severity:
        raise InputError(f"{folder}: no annotation in it (vertebrae.seg.nrrd, discs.mrk.json, severity.tsv or fractures.tsv)")
    return annotation


def _load_markups_entries(ctx, path):
    """Every markups node of a .mrk.json (a file may hold several entries, e.g. levels.mrk.json)."""
    from SpineAILib.scene.storage import load_node

    document = _read_json(path)
    entries = document.get("markups") or []
    if len(entries) <= 1:
        return [load_node(ctx, path)]
    import tempfile

    nodes = []
    with tempfile.TemporaryDirectory(prefix="spineai-markups-") as tmp:
        for i, entry in enumerate(entries):  # Slicer's reader takes the first entry: one file per entry
            part = Path(tmp) / f"entry{i}.mrk.json"
            part.write_text(json.dumps({"@schema": document.get("@schema"), "markups": [entry]}), encoding="utf-8")
            nodes.append(load_node(ctx, part))
    return nodes


def _take_markups(node, annotation):
    from SpineAILib.scene.markups import points_from_node, roi_geometry

    if node.IsA("vtkMRMLMarkupsROINode"):
        geometry = roi_geometry(node)
        label = node.GetNthControlPointLabel(0) if node.GetNumberOfControlPoints() else ""
        annotation.rois.append({"label": label or node.GetName(), "center": [float(v) for v in geometry["center"]],
                                "size": [float(v) for v in geometry["size"]],
                                "axes": np.asarray(geometry["axes"], float).tolist()})  # fmt: skip
    elif node.IsA("vtkMRMLMarkupsFiducialNode"):
        annotation.points.extend((label, tuple(float(v) for v in ras)) for label, ras in points_from_node(node))


def _severity_rows(rows):
    out = []
    for r in rows:
        grade = str(r.get("grade", "")).strip()
        if grade in ("Normal/Mild", "Moderate", "Severe") and r.get("level") and r.get("condition"):
            out.append({"level": r["level"].strip(), "condition": r["condition"].strip(), "grade": grade})
    return out


# What the cervical-ct workflow writes in its call column: a call, or why there is none.
_CALL_WORDS = {FRACTURE_CALL: 1, NO_FRACTURE_CALL: 0}
_NO_CALL_WORDS = (NOT_IN_VIEW, NOT_ASSESSED)
_CALL_COLUMNS = ("call", "fracture", "fractured")  # a run's table, older tables, an annotation case's
_FRACTURE_ROWS = (*CERVICAL_VERTEBRAE, "patient_overall")


def _fracture_calls(rows, where):
    """{C1..C7, patient_overall: 1, 0 or None} from a table with a vertebra column and a call column.

    A row the run made no call on ("not in view", "not assessed", empty) is None: no label, neither a
    fracture nor a healthy vertebra (an empty cell in fractures.csv). So a run that found no cervical
    vertebra exports its image with no fracture label, ready to be annotated. Any other value, a name
    that is not C1..C7 or patient_overall, or a vertebra named twice is refused with one line."""
    column = next((c for c in _CALL_COLUMNS if rows and c in rows[0]), None)
    if column is None or "vertebra" not in rows[0]:
        raise InputError(f"{where}: no fracture calls (vertebra and call columns)")
    out = {}
    for r in rows:
        name = str(r.get("vertebra") or "").strip()
        if name not in _FRACTURE_ROWS:
            raise InputError(f"{where}: a row names vertebra {name[:40]!r}, not one of {', '.join(_FRACTURE_ROWS)}")
        if name in out:
            raise InputError(f"{where}: vertebra {name} has two rows")
        value = r.get(column)
        text = str(value if value is not None else "").strip().lower()
        if text in ("", *_NO_CALL_WORDS):
            out[name] = None
        else:
            out[name] = _CALL_WORDS[text] if text in _CALL_WORDS else _flag(str(value)[:40], f"{where} {name}")
    if out.get("patient_overall") is None:  # unknown is not negative: 0 only when all seven were called 0
        calls = [out.get(k) for k in CERVICAL_VERTEBRAE]
        out["patient_overall"] = 1 if 1 in calls else (0 if all(c == 0 for c in calls) else None)
    return out


# -- scenes ----------------------------------------------------------------------------------


def read_scene(path, task):
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.storage import load_scene_mrb

    ctx = SceneContext.headless()
    load_scene_mrb(ctx, path)
    if task == "lp-ultrasound":
        annotation = _cine_from_scene(ctx, path, need_labels=True)
    else:
        annotation = _volume_from_scene(ctx, path, task)
    return SourceCase(task, str(path), annotation)


def _cine_browser(ctx):
    from SpineAILib.scene.overlays import OVERLAY_KIND_ATTRIBUTE

    for browser in ctx.nodes("vtkMRMLSequenceBrowserNode"):
        master = browser.GetMasterSequenceNode()
        if master is None or master.GetAttribute(OVERLAY_KIND_ATTRIBUTE) or master.GetNumberOfDataNodes() == 0:
            continue
        if master.GetNthDataNode(0).IsA("vtkMRMLScalarVolumeNode"):
            return browser
    return None


def _cine_from_scene(ctx, path, need_labels):
    from SpineAILib.scene.cine_overlays import (
        OVERLAY_KIND_ATTRIBUTE,
        STRUCTURE_ATTRIBUTE,
        boxes_from_sequence,
        masks_from_sequence,
    )  # fmt: skip
    from SpineAILib.scene.overlays import synchronized_sequences
    from SpineAILib.scene.sequences import cine_from_sequence
    from SpineAILib.scene.tables import table_to_columns

    browser = _cine_browser(ctx)
    if browser is None:
        raise InputError(f"{path}: no cine (image sequence with a browser) in this scene")
    cine = cine_from_sequence(browser.GetMasterSequenceNode())
    labels = None
    for table in ctx.nodes("vtkMRMLTableNode"):
        columns = table_to_columns(table)
        if all(c in columns for c in ULTRASOUND_LABELS):
            rows = [{c: columns[c][i] for c in ULTRASOUND_LABELS} for i in range(len(columns[ULTRASOUND_LABELS[0]]))]
            labels = frame_labels_from_rows(rows, cine.n_frames, f"{path.name} table '{table.GetName()}'")
            break
    if labels is None:
        if need_labels:
            raise InputError(f"{path}: no frame labels (a table with bad_quality, spinal_cord and csf columns)")
        labels = np.zeros((cine.n_frames, 3), np.uint8)
    annotation = CineAnnotation(cine=cine, labels=labels)
    for sequence in synchronized_sequences(browser):
        kind = sequence.GetAttribute(OVERLAY_KIND_ATTRIBUTE)
        if kind == "masks":
            masks = masks_from_sequence(browser, sequence)
            annotation.masks = {k: v for k, v in masks.items() if k in ULTRASOUND_STRUCTURES}
        elif kind == "box":
            structure = sequence.GetAttribute(STRUCTURE_ATTRIBUTE)
            if structure in ULTRASOUND_STRUCTURES:
                annotation.boxes[structure] = boxes_from_sequence(browser, sequence)
    return annotation


def _volume_from_scene(ctx, path, task):
    from SpineAILib.results import is_heatmap_layer
    from SpineAILib.scene.segmentations import labelmap_from_segmentation
    from SpineAILib.scene.tables import table_to_columns
    from SpineAILib.scene.volumes import volume_image_from_node

    volumes = [n for n in ctx.nodes("vtkMRMLScalarVolumeNode")
               if not n.IsA("vtkMRMLLabelMapVolumeNode") and not is_heatmap_layer(ctx, n)]  # fmt: skip
    segmentations = ctx.nodes("vtkMRMLSegmentationNode")
    reference = None
    if segmentations:
        reference = segmentations[0].GetNodeReference("referenceImageGeometryRef")
    node = reference if reference is not None and reference in volumes else (volumes[0] if volumes else None)
    if node is None:
        raise InputError(f"{path}: no image volume in this scene")
    image = volume_image_from_node(node)
    annotation = VolumeAnnotation(image=image)
    if segmentations:
        annotation.labels = labelmap_from_segmentation(ctx, segmentations[0], node)
    for markups in ctx.nodes("vtkMRMLMarkupsNode"):
        _take_markups(markups, annotation)
    for table in ctx.nodes("vtkMRMLTableNode"):
        columns = table_to_columns(table)
        n = len(next(iter(columns.values()), []))
        rows = [{k: v[i] for k, v in columns.items()} for i in range(n)]
        if "grade" in columns and "condition" in columns:
            annotation.severity = _severity_rows(rows)
        elif "vertebra" in columns and any(c in columns for c in _CALL_COLUMNS):
            annotation.fractures = _fracture_calls([{k: str(v) for k, v in r.items()} for r in rows], f"{path.name} table")
    if annotation.labels is None and not annotation.points and annotation.fractures is None and not annotation.severity:
        raise InputError(f"{path}: no annotation in this scene (segmentation, disc points, severity or fracture table)")
    return annotation
