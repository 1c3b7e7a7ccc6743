"""Editing one case: ``AnnotationSession`` is what every front end calls.

Each call is one edit: it changes the case in memory, marks the items it touched as the
user's, appends who / when / what to the log, saves the files it changed (annotation.json
first, then the data; every file atomically) and records how to undo it. Nothing waits for
a "save" button: a crash or a closed browser tab loses at most the edit being written.

Rules the front ends rely on:
* a prefill from a model run (``prefill``) sets only items that are unset or still the
  model's; an item a user touched is never replaced (prefill.py reads the run);
* marking a frame bad quality clears its cord and CSF labels, and marking cord or CSF
  clears bad quality (a bad-quality frame cannot show either; one edit, undoable);
* one case folder is open in one process at a time (annotation.lock); a lock left by a
  process that died is taken over.
"""

import getpass
import json
import os
import socket
from datetime import datetime
from pathlib import Path

import numpy as np

from SpineAILib.annotation import files
from SpineAILib.annotation.case import CINE_STRUCTURES, DISC_LEVELS, MANIFEST, CaseData, load_case, structure_value
from SpineAILib.annotation.history import Edit, History, Step
from SpineAILib.annotation.labelmap import Region, box_from_corners, brush_mask, islands_mask, threshold_mask
from SpineAILib.errors import InputError, OutputError
from SpineAILib.images import frame_ijk_to_ras
from SpineAILib.vocabulary import SEVERITY_CONDITIONS as CONDITIONS
from SpineAILib.vocabulary import SEVERITY_GRADE_NAMES as GRADE_NAMES
from SpineAILib.vocabulary import TASKS, ULTRASOUND_LABELS

LOCK = "annotation.lock"
MAX_LOG_ITEMS = 5  # item names written per log entry (a prefill touches hundreds)


def default_user():
    """Who is editing: $SPINEAI_USER, else the OS login name."""
    name = os.environ.get("SPINEAI_USER", "").strip()
    if name:
        return name
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


def now():
    """Local time with its UTC offset, to the second (ISO 8601)."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def image_description(image, path, series=None):
    """annotation.json's "image" entry for a loaded Cine or VolumeImage."""
    from SpineAILib.images import Cine

    entry = {"path": str(Path(path).expanduser().absolute()), "series": series, "modality": image.modality or ""}
    if isinstance(image, Cine):
        rows, cols = image.frame_shape
        entry.update(kind="cine", frames=image.n_frames, frame_shape=[rows, cols],
                     pixel_spacing=[float(s) for s in image.pixel_spacing],
                     frame_times_ms=[round(float(t), 4) for t in image.frame_times_ms],
                     ijk_to_ras=frame_ijk_to_ras(image.pixel_spacing).tolist())
    else:
        entry.update(kind="volume", dimensions=[int(d) for d in image.dimensions],
                     ijk_to_ras=np.asarray(image.ijk_to_ras, float).tolist())
    return entry


# -- the lock ------------------------------------------------------------------------------------


def _lock_holder(path):
    """(pid, host) of a live process holding the lock file, or None (absent, unreadable or stale)."""
    try:
        held = json.loads(Path(path).read_text(encoding="utf-8"))
        pid, host = int(held["pid"]), str(held.get("host", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host and host != socket.gethostname():
        return (pid, host)  # another machine: cannot tell whether it is alive; respect it
    if pid == os.getpid():
        return None
    try:
        import psutil

        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
    except Exception:  # no such process (or psutil missing and the pid gone)
        return None
    return (pid, host)


def acquire_lock(folder, user):
    path = Path(folder) / LOCK
    holder = _lock_holder(path)
    if holder is not None:
        raise InputError(f"{folder}: the case is open in another SpineAI (process {holder[0]} on "
                         f"{holder[1] or 'this machine'}); close it there first, or delete {LOCK} if that process is gone")
    files.write_json(path, {"pid": os.getpid(), "host": socket.gethostname(), "user": user, "time": now()})


def release_lock(folder):
    path = Path(folder) / LOCK
    try:
        held = json.loads(path.read_text(encoding="utf-8"))
        if int(held.get("pid", -1)) == os.getpid():
            path.unlink()
    except (OSError, ValueError, TypeError):
        pass


# -- the session ---------------------------------------------------------------------------------


class AnnotationSession:
    """One open case. Create with ``AnnotationSession.open(folder, image_path=..., task=...)``."""

    def __init__(self, case, user=None, image=None, lock=True, history=None):
        self.case = case
        self.user = user or default_user()
        self._image = image
        self.history = history or History()
        self._locked = False
        if lock:
            acquire_lock(case.folder, self.user)
            self._locked = True

    # -- opening and closing ----------------------------------------------------------------

    @classmethod
    def open(cls, folder, image_path=None, task=None, series=None, image=None, user=None, lock=True, history=None):
        """Open the case in ``folder``; a new case needs ``image_path`` and ``task``.

        Reopening restores everything saved. A folder that holds other files but no
        annotation.json, or a case of another image, is refused (nothing is overwritten).
        ``image``: the already loaded Cine / VolumeImage of ``image_path`` (saves reading it).
        """
        folder = Path(folder).expanduser().absolute()
        user = user or default_user()
        if (folder / MANIFEST).is_file():
            case = load_case(folder)
            if image_path is not None and not _same_path(case.image.get("path"), image_path):
                raise InputError(f"{folder}: this case annotates {case.image.get('path')}, not {image_path}; "
                                 "choose another case folder")
            if task and case.task != task:
                raise InputError(f"{folder}: this case is annotated for {case.task}, not {task}")
            return cls(case, user=user, image=image, lock=lock, history=history)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise OutputError(f"{folder}: holds other files and no {MANIFEST}; choose an empty or new case folder")
        if image_path is None or task is None:
            raise InputError(f"{folder}: no case here yet; give the image and the task to start one")
        if task not in TASKS:
            raise InputError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
        if image is None:
            from SpineAILib import io as spine_io

            image = spine_io.load(Path(image_path).expanduser(), series=series)
        description = image_description(image, image_path, series)
        if (description["kind"] == "cine") != (task == "lp-ultrasound"):
            raise InputError(f"{Path(image_path).name}: a {description['kind']} cannot be annotated for {task}")
        case = CaseData(folder=folder, task=task, image=description, created={"user": user, "time": now()})
        if case.is_cine:
            case.labels = np.zeros((case.n_frames, len(ULTRASOUND_LABELS)), np.int8)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"{folder}: cannot create the case folder: {error.strerror or error}") from None
        session = cls(case, user=user, image=image, lock=lock, history=history)
        case.saved = {"user": user, "time": now()}
        case.write()
        return session

    def close(self):
        if self._locked:
            release_lock(self.case.folder)
            self._locked = False

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    @property
    def image(self):
        """The annotated image (read on first use when the case was reopened)."""
        if self._image is None:
            from SpineAILib import io as spine_io

            path = self.case.image.get("path")
            if not path or not Path(path).exists():
                raise InputError(f"the image of this case, {path}, is not there any more")
            self._image = spine_io.load(Path(path), series=self.case.image.get("series"))
        return self._image

    # -- frame labels (cine) ----------------------------------------------------------------

    def _require(self, kind):
        if (kind == "cine") != self.case.is_cine:
            raise InputError(f"this case is a {self.case.kind}; that edit is for a {kind}")

    def _frame(self, frame):
        frame = int(frame)
        if not 0 <= frame < self.case.n_frames:
            raise InputError(f"frame {frame} is outside the cine (0 ... {self.case.n_frames - 1})")
        return frame

    def set_frame_labels(self, frame, action="set labels", **values):
        """Set some of bad_quality / spinal_cord / csf (0/1) on ``frame``."""
        self._require("cine")
        frame = self._frame(frame)
        unknown = set(values) - set(ULTRASOUND_LABELS)
        if unknown:
            raise InputError(f"unknown frame label {sorted(unknown)[0]!r}; labels: {', '.join(ULTRASOUND_LABELS)}")
        before = self.case.labels[frame].copy()
        after = before.copy()
        for name, value in values.items():
            after[ULTRASOUND_LABELS.index(name)] = 1 if value else 0
        # A bad-quality frame cannot show cord or CSF (MISSION.md): keep the three consistent.
        if values.get("bad_quality"):
            after[1:] = 0
        elif any(values.get(n) for n in ("spinal_cord", "csf")):
            after[0] = 0
        detail = ", ".join(f"{n} {'on' if after[i] else 'off'}" for i, n in enumerate(ULTRASOUND_LABELS) if after[i] != before[i])
        return self._commit(action, [Step("labels", frame, before, after)], [f"labels/{frame}"], detail or "confirmed")

    def toggle_label(self, frame, label):
        """Flip one label of ``frame`` (the single-key toggles)."""
        self._require("cine")
        frame = self._frame(frame)
        if label not in ULTRASOUND_LABELS:
            raise InputError(f"unknown frame label {label!r}; labels: {', '.join(ULTRASOUND_LABELS)}")
        current = int(self.case.labels[frame, ULTRASOUND_LABELS.index(label)])
        return self.set_frame_labels(frame, action="toggle", **{label: 1 - current})

    def copy_previous_labels(self, frame):
        """Frame ``frame`` takes the labels of the frame before it."""
        self._require("cine")
        frame = self._frame(frame)
        if frame == 0:
            raise InputError("frame 1 has no previous frame to copy from")
        values = self.case.frame_labels(frame - 1)
        before = self.case.labels[frame].copy()
        after = np.array([values[n] for n in ULTRASOUND_LABELS], np.int8)
        return self._commit("copy previous", [Step("labels", frame, before, after)], [f"labels/{frame}"],
                            f"from frame {frame - 1}")

    # -- masks --------------------------------------------------------------------------------

    def _mask_item(self, frame):
        if self.case.is_cine:
            return f"mask/{self._frame(frame)}"
        return "mask"

    def _mask_key(self, frame):
        return self._frame(frame) if self.case.is_cine else None

    def _mask_edit(self, action, frame, region, new_block, detail):
        key = self._mask_key(frame)
        labels = self.case.mask_of(key)
        before = labels[region.slices].copy()
        if region.empty or np.array_equal(before, new_block):
            return None  # nothing changed: no edit, no log entry
        return self._commit(action, [Step("mask", (key, region), before, np.asarray(new_block, np.uint8))],
                            [self._mask_item(frame)], detail)

    def paint(self, points_ras, structure, radius_mm, frame=None, erase=False, normal=None, sphere=False):
        """Paint (or erase) ``structure`` with a brush along the RAS stroke ``points_ras``.

        Painting overwrites other structures (Slicer's default); erasing removes only
        ``structure``. ``normal``: the view plane's normal (RAS) for the disk brush.
        """
        labels = self.case.mask_of(self._mask_key(frame))
        value = structure_value(structure)
        region, brush = brush_mask(labels.shape, self.case.ijk_to_ras, points_ras, radius_mm, normal, sphere)
        if region.empty:
            return None
        block = labels[region.slices]
        new = block.copy()
        if erase:
            new[brush & (block == value)] = 0
        else:
            new[brush] = value
        n = len(np.atleast_2d(points_ras))
        return self._mask_edit("erase" if erase else "paint", frame, region, new,
                               f"{structure}, {n} point{'s' if n != 1 else ''}, radius {float(radius_mm):g} mm")

    def threshold(self, structure, low, high, frame=None, box=None):
        """``structure`` becomes the voxels with intensity in [low, high] (inside voxel ``box``
        (i0, j0, k0, i1, j1, k1) when given; elsewhere it is left as it was)."""
        key = self._mask_key(frame)
        labels = self.case.mask_of(key)
        value = structure_value(structure)
        intensity = self._intensity(key)
        region = None if box is None else Region(box[2], box[5], box[1], box[4], box[0], box[3])
        region, inside = threshold_mask(intensity, float(low), float(high), region)
        block = labels[region.slices]
        new = block.copy()
        new[(block == value) & ~inside] = 0
        new[inside] = value
        return self._mask_edit("threshold", frame, region, new, f"{structure}, {float(low):g} to {float(high):g}")

    def remove_islands(self, structure, min_voxels=None, keep_largest=False, frame=None):
        """Remove the pieces of ``structure`` smaller than ``min_voxels`` (or all but the largest)."""
        key = self._mask_key(frame)
        labels = self.case.mask_of(key)
        segment = labels == structure_value(structure)
        removed = segment & ~islands_mask(segment, min_voxels, keep_largest)
        region = Region.of_mask(removed)
        new = labels[region.slices].copy()
        new[removed[region.slices]] = 0
        how = "keep the largest" if keep_largest else f"smaller than {int(min_voxels or 0)} voxels"
        return self._mask_edit("islands", frame, region, new, f"{structure}, {how}")

    def set_mask(self, labels, frame=None, action="segment editor"):
        """Replace the whole label map of ``frame`` (or the volume), e.g. after Slicer's Segment Editor."""
        key = self._mask_key(frame)
        current = self.case.mask_of(key)
        labels = np.asarray(labels)
        if labels.shape != current.shape:
            raise InputError(f"mask of shape {labels.shape} does not fit the case's grid {current.shape}")
        region = Region.of_mask(labels != current)
        return self._mask_edit(action, frame, region, labels[region.slices].astype(np.uint8), "whole mask")

    def _intensity(self, key):
        """(K, J, I) intensities the threshold looks at: the frame's grey values or the volume."""
        image = self.image
        if self.case.is_cine:
            return image.grey_frames()[key][np.newaxis]
        return image.voxels

    # -- boxes, points, grades, fractures -------------------------------------------------------

    def set_box(self, ras_a, ras_b, label, frame=None):
        """The box spanned by two RAS points (two clicks) for ``label`` (a structure or a vertebra)."""
        if self.case.is_cine and label not in CINE_STRUCTURES:
            raise InputError(f"a cine box is for {' or '.join(CINE_STRUCTURES)}, not {label!r}")
        if not self.case.is_cine:
            structure_value(label)
        key = (self._mask_key(frame), label)
        box = box_from_corners(self.case.grid_shape, self.case.ijk_to_ras, ras_a, ras_b)
        if box is None:
            raise InputError("the box lies outside the image")
        return self._value_edit("box", "box", key, box, _box_item(key), "voxels " + " ".join(map(str, box)))

    def delete_box(self, label, frame=None):
        key = (self._mask_key(frame), label)
        return self._value_edit("delete box", "box", key, None, _box_item(key), "")

    def set_point(self, level, ras):
        """Place (or move) the disc-level point ``level`` (L1/L2 ... L5/S1) at RAS ``ras``."""
        self._require("volume")
        if level not in DISC_LEVELS:
            raise InputError(f"unknown disc level {level!r}; levels: {', '.join(DISC_LEVELS)}")
        ras = tuple(round(float(v), 4) for v in ras)
        return self._value_edit("point", "point", level, ras, f"point/{level}", "R {:.1f} A {:.1f} S {:.1f}".format(*ras))

    def delete_point(self, level):
        self._require("volume")
        return self._value_edit("delete point", "point", level, None, f"point/{level}", "")

    def set_severity(self, level, condition, grade):
        """Grade ``condition`` at ``level`` (Normal/Mild, Moderate, Severe; None clears it)."""
        self._require("volume")
        if level not in DISC_LEVELS or condition not in CONDITIONS:
            raise InputError(f"unknown level or condition {level!r} {condition!r}")
        if grade is not None and grade not in GRADE_NAMES:
            raise InputError(f"unknown grade {grade!r}; grades: {', '.join(GRADE_NAMES)}")
        return self._value_edit("severity", "severity", (level, condition), grade, f"severity/{level}/{condition}",
                                grade or "cleared")

    def set_fracture(self, vertebra, fractured):
        """Mark ``vertebra`` fractured (True), not fractured (False) or unset (None)."""
        self._require("volume")
        structure_value(vertebra)
        value = None if fractured is None else int(bool(fractured))
        return self._value_edit("fracture", "fracture", vertebra, value, f"fracture/{vertebra}",
                                {None: "cleared", 0: "not fractured", 1: "fractured"}[value])

    def _value_edit(self, action, store, key, value, item, detail):
        before = _get_value(self.case, store, key)
        if before == value and self.case.sources.get(item) == "user":
            return None
        return self._commit(action, [Step(store, key, before, value)], [item], detail)

    # -- prefill from a model run ----------------------------------------------------------------

    def prefill(self, run_folder):
        """Fill the items a model run proposes (see prefill.py) where the user has not edited them.

        Returns {'set': n items set, 'kept': n user items left alone, 'warnings': [...]}.
        One edit: undo takes the whole prefill back.
        """
        from SpineAILib.annotation.prefill import read_run

        proposals, warnings = read_run(run_folder, self.case)
        steps, items, kept = [], [], 0
        for item, store, key, value in proposals:
            if self.case.sources.get(item) == "user":
                kept += 1
                continue
            if store == "mask":
                current = self.case.mask_of(key)
                region = Region.of_mask(current != value)
                if region.empty:
                    continue
                steps.append(Step("mask", (key, region), current[region.slices].copy(), value[region.slices].copy()))
            else:
                before = _get_value(self.case, store, key)
                if _equal(before, value):
                    continue
                steps.append(Step(store, key, before, value))
            items.append(item)
        self.case.prefills.append({"folder": str(Path(run_folder).absolute()), "user": self.user, "time": now(),
                                   "items": len(items), "kept_user_items": kept})
        if steps:
            self._commit("prefill", steps, items, f"from {Path(run_folder).name}", source="model")
        else:
            self._save({"manifest"})
        return {"set": len(items), "kept": kept, "warnings": warnings}

    # -- undo / redo ------------------------------------------------------------------------------

    @property
    def can_undo(self):
        return self.history.can_undo

    @property
    def can_redo(self):
        return self.history.can_redo

    def undo(self):
        """Take the last edit back; returns its action, or None when there is nothing to undo."""
        edit = self.history.take_undo()
        if edit is None:
            return None
        parts = set()
        for step in reversed(edit.steps):
            parts |= self._apply(step, step.before)
        self._log("undo", edit.items, f"{edit.action}: {edit.detail}".rstrip(": "))
        self._save(parts)
        return edit.action

    def redo(self):
        edit = self.history.take_redo()
        if edit is None:
            return None
        parts = set()
        for step in edit.steps:
            parts |= self._apply(step, step.after)
        self._log("redo", edit.items, f"{edit.action}: {edit.detail}".rstrip(": "))
        self._save(parts)
        return edit.action

    # -- who / when ----------------------------------------------------------------------------

    def last_edit(self, item=None):
        """The newest log entry (of ``item`` when given), or None."""
        for entry in reversed(self.case.edits):
            if item is None or item in entry.get("items", [entry.get("item")]):
                return entry
        return None

    def status(self):
        """What the front ends show: last save, last edit, counts, undo / redo availability."""
        last = self.last_edit()
        return {"saved": self.case.saved.get("time", ""), "user": self.user, "edits": edit_count(self.case.edits),
                "last_edit": last, "can_undo": self.can_undo, "can_redo": self.can_redo,
                "folder": str(self.case.folder)}

    # -- internals -----------------------------------------------------------------------------

    def _commit(self, action, steps, items, detail, source="user"):
        """Apply ``steps``, mark ``items`` with ``source``, log, save, remember for undo."""
        steps = list(steps)
        for item in items:
            before = self.case.sources.get(item)
            if before != source:
                steps.append(Step("source", item, before, source))
        edit = Edit(action=action, items=list(items), steps=steps, detail=detail)
        parts = set()
        for step in steps:
            parts |= self._apply(step, step.after)
        self.history.push(edit)
        self._log(action, items, detail)
        self._save(parts)
        return edit

    def _apply(self, step, value):
        """Put ``value`` into the store ``step`` names; returns the file parts to write."""
        case = self.case
        if step.store == "labels":
            case.labels[step.key] = value
            return {"frames"}
        if step.store == "mask":
            key, region = step.key
            if case.is_cine:
                labels = case.masks.get(key)
                if labels is None:
                    labels = case.masks[key] = np.zeros(case.grid_shape, np.uint8)
                labels[region.slices] = value
                if not labels.any():
                    del case.masks[key]
                return {f"mask/{key}"}
            if case.mask is None:
                case.mask = np.zeros(case.grid_shape, np.uint8)
            case.mask[region.slices] = value
            return {"vertebrae"}
        if step.store == "source":
            if value is None:
                case.sources.pop(step.key, None)
            else:
                case.sources[step.key] = value
            return _parts_of_item(step.key)
        store = _VALUE_STORES[step.store]
        target = getattr(case, store)
        if value is None:
            target.pop(step.key, None)
        else:
            target[step.key] = value
        return {_FILE_OF_STORE[step.store]}

    def _log(self, action, items, detail):
        items = list(items)
        entry = {"n": len(self.case.edits) + 1, "user": self.user, "time": now(), "action": action,
                 "items": items[:MAX_LOG_ITEMS], "detail": detail}
        if len(items) > MAX_LOG_ITEMS:
            entry["more_items"] = len(items) - MAX_LOG_ITEMS
        self.case.edits.append(entry)

    def _save(self, parts):
        self.case.saved = {"user": self.user, "time": now()}
        try:
            self.case.write(set(parts) | {"manifest"})
        except OSError as error:
            raise OutputError(f"{self.case.folder}: could not save the annotation: {error.strerror or error}") from None


def edit_count(edits):
    """How many edits are in effect: an undo takes one back, a redo puts it back (the log keeps
    both as entries, but neither is an edit of its own)."""
    actions = [entry.get("action") for entry in edits]
    # edits - undos + redos, and the log holds edits + undos + redos entries
    return max(len(actions) - 2 * actions.count("undo"), 0)


_VALUE_STORES = {"box": "boxes", "point": "points", "severity": "severity", "fracture": "fractures"}
_FILE_OF_STORE = {"box": "boxes", "point": "discs", "severity": "severity", "fracture": "fractures"}


def _get_value(case, store, key):
    if store == "labels":
        return case.labels[key].copy()
    return getattr(case, _VALUE_STORES[store]).get(key)


def _equal(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and np.array_equal(a, b)
    return a == b


def _box_item(key):
    frame, label = key
    return f"box/{label}" if frame is None else f"box/{frame}/{label}"


def _parts_of_item(item):
    """The files whose content shows an item's source (tables have a source column)."""
    head = item.split("/", 1)[0]
    return {"labels": {"frames"}, "severity": {"severity"}, "fracture": {"fractures"}}.get(head, set())


def _same_path(a, b):
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (TypeError, OSError):
        return False
