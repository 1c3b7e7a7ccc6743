"""What a model run proposes for a case: its results read back as annotation items.

``read_run(run_folder, case)`` returns ``(proposals, warnings)``; each proposal is
``(item, store, key, value)`` as ``AnnotationSession.prefill`` applies them (only where
the user has not edited). What is read, by task (the files ``spineai run`` writes):

* lp-ultrasound: ``frames.tsv`` calls -> frame labels; the cord/CSF mask and box
  sequences in ``scene.mrb`` (when the run had a localiser) -> frame masks and boxes;
* lumbar-mri: ``vertebrae.seg.nrrd`` -> vertebra masks; ``discs.mrk.json`` -> disc points;
  ``severity.tsv`` -> the grades of assessed rows;
* cervical-ct: ``vertebrae.seg.nrrd``; ``fractures.tsv`` -> fractured when p >= 0.5.

A run of another task, or on an image of another size, is refused with the reason.
"""

import json
from pathlib import Path

import numpy as np

from SpineAILib.annotation import files
from SpineAILib.annotation.case import CINE_STRUCTURES, DISC_LEVELS, PATIENT
from SpineAILib.annotation.case import _vertebra_value as vertebra_value
from SpineAILib.errors import InputError
from SpineAILib.vocabulary import SEVERITY_CONDITIONS as CONDITIONS
from SpineAILib.vocabulary import SEVERITY_GRADE_NAMES as GRADE_NAMES
from SpineAILib.vocabulary import ULTRASOUND_LABELS

FRACTURE_THRESHOLD = 0.5


def read_run(run_folder, case):
    folder = Path(run_folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (give the output folder of a spineai run)")
    task = _run_task(folder)
    if task and task != case.task:
        raise InputError(f"{folder}: a {task} run cannot prefill a {case.task} case")
    proposals, warnings = [], []
    if case.is_cine:
        _frames(folder, case, proposals, warnings)
        _cine_overlays(folder, case, proposals, warnings)
    else:
        _vertebrae(folder, case, proposals, warnings)
        _discs(folder, proposals)
        _severity(folder, proposals)
        _fractures(folder, proposals)
    if not proposals and not warnings:
        warnings.append(f"{folder.name}: no results this case can use")
    return proposals, warnings


def _run_task(folder):
    try:
        return json.loads((folder / "report.json").read_text(encoding="utf-8")).get("task")
    except (OSError, ValueError, AttributeError):
        return None


def _frames(folder, case, proposals, warnings):
    path = folder / "frames.tsv"
    if not path.is_file():
        return
    rows = files.read_tsv(path)
    if len(rows) != case.n_frames:
        warnings.append(f"{path.name}: {len(rows)} frames, the cine has {case.n_frames}; frame labels not used")
        return
    for row in rows:
        try:
            frame = int(row["frame"])
            values = np.array([int(float(row[name])) for name in ULTRASOUND_LABELS], np.int8)
        except (KeyError, ValueError):
            raise InputError(f"{path}: not an lp-ultrasound frame table (row {row})") from None
        if 0 <= frame < case.n_frames:
            proposals.append((f"labels/{frame}", "labels", frame, values))


def _cine_overlays(folder, case, proposals, warnings):
    """Masks and boxes from the run's scene.mrb (they exist only there, as sequences)."""
    path = folder / "scene.mrb"
    if not path.is_file():
        return
    try:
        masks, boxes = _read_overlays(path, case)
    except Exception as error:  # the labels are still worth having without masks
        warnings.append(f"{path.name}: masks and boxes not read ({type(error).__name__}: {' '.join(str(error).split())[:120]})")
        return
    for frame, labels in masks.items():
        proposals.append((f"mask/{frame}", "mask", frame, labels))
    for (frame, structure), box in boxes.items():
        proposals.append((f"box/{frame}/{structure}", "box", (frame, structure), box))


def _read_overlays(path, case):
    from SpineAILib.scene.cine_overlays import STRUCTURE_ATTRIBUTE, boxes_from_sequence, masks_from_sequence
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.overlays import OVERLAY_KIND_ATTRIBUTE
    from SpineAILib.scene.storage import load_scene_mrb

    ctx = SceneContext.headless()
    load_scene_mrb(ctx, path)
    masks, boxes = {}, {}
    for browser in ctx.nodes("vtkMRMLSequenceBrowserNode"):
        cine = browser.GetMasterSequenceNode()
        if cine is None or cine.GetNumberOfDataNodes() != case.n_frames:
            continue
        for sequence in ctx.nodes("vtkMRMLSequenceNode"):
            kind = sequence.GetAttribute(OVERLAY_KIND_ATTRIBUTE)
            if not browser.IsSynchronizedSequenceNodeID(sequence.GetID(), True) or kind not in ("masks", "box"):
                continue
            if kind == "masks":
                for structure, stack in masks_from_sequence(browser, sequence).items():
                    if structure not in CINE_STRUCTURES:
                        continue
                    if stack.shape[1:] != case.grid_shape[1:]:
                        raise InputError(f"masks are {stack.shape[1:]}, the frames {case.grid_shape[1:]}")
                    for frame in np.flatnonzero(stack.any(axis=(1, 2))):
                        labels = masks.setdefault(int(frame), np.zeros(case.grid_shape, np.uint8))
                        labels[0][stack[frame]] = CINE_STRUCTURES[structure]
            else:
                structure = sequence.GetAttribute(STRUCTURE_ATTRIBUTE)
                if structure not in CINE_STRUCTURES:
                    continue
                for frame, (x0, y0, x1, y1) in enumerate(boxes_from_sequence(browser, sequence)):
                    if np.all(np.isfinite([x0, y0, x1, y1])):
                        boxes[(frame, structure)] = (int(round(x0)), int(round(y0)), 0, int(round(x1)), int(round(y1)), 1)
    return masks, boxes


def _vertebrae(folder, case, proposals, warnings):
    path = folder / "vertebrae.seg.nrrd"
    if not path.is_file():
        return
    try:
        labels = files.read_seg_nrrd(path, case.ijk_to_ras, case.grid_shape, vertebra_value)
    except InputError as error:
        warnings.append(f"vertebra masks not used: {error}")
        return
    if labels.any():
        proposals.append(("mask", "mask", None, labels))


def _discs(folder, proposals):
    path = folder / "discs.mrk.json"
    if path.is_file():
        for entry in files.read_markups(path):
            for label, ras, _ in entry["points"]:
                if label in DISC_LEVELS:
                    proposals.append((f"point/{label}", "point", label, tuple(round(v, 4) for v in ras)))


def _severity(folder, proposals):
    path = folder / "severity.tsv"
    if not path.is_file():
        return
    for row in files.read_tsv(path):
        level, condition, grade = row.get("level"), row.get("condition"), (row.get("grade") or "").strip()
        assessed = str(row.get("assessed", "1")).strip() in ("1", "1.0", "True", "true")
        if assessed and level in DISC_LEVELS and condition in CONDITIONS and grade in GRADE_NAMES:
            proposals.append((f"severity/{level}/{condition}", "severity", (level, condition), grade))


def _fractures(folder, proposals):
    path = folder / "fractures.tsv"
    if not path.is_file():
        return
    for row in files.read_tsv(path):
        name = (row.get("vertebra") or row.get("target") or "").strip()
        text = next((row[c] for c in ("fractured", "probability", "p_fracture", "p_fractured") if row.get(c) not in (None, "")), None)
        if not name or name == PATIENT or text is None or vertebra_value(name, 0) is None:
            continue
        try:
            p = float(text)
        except ValueError:
            continue
        proposals.append((f"fracture/{name}", "fracture", name, int(p >= FRACTURE_THRESHOLD)))
