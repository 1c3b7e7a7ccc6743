"""One case's annotations in memory (``CaseData``) and in its folder (``load_case``, ``CaseData.write``).

No slicer, no GUI: the exporter, the trainer and tests read a case through ``load_case``;
``AnnotationSession`` (session.py) edits one. The folder format is in the package docstring.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SpineAILib import terminology
from SpineAILib.annotation import FORMAT, FORMAT_VERSION, files
from SpineAILib.annotation.labelmap import box_to_ras, ras_to_box
from SpineAILib.errors import InputError
from SpineAILib.vocabulary import CERVICAL_VERTEBRAE, ULTRASOUND_LABELS, ULTRASOUND_STRUCTURES
from SpineAILib.vocabulary import SEVERITY_CONDITIONS as CONDITIONS
from SpineAILib.vocabulary import SEVERITY_GRADE_NAMES as GRADE_NAMES

MANIFEST = "annotation.json"
FRAMES = "frames.tsv"
MASKS_DIR = "masks"
VERTEBRAE = "vertebrae.seg.nrrd"
DISCS = "discs.mrk.json"
SEVERITY = "severity.tsv"
FRACTURES = "fractures.tsv"
BOXES = "boxes.mrk.json"

CINE_STRUCTURES = {name: value for value, name in enumerate(ULTRASOUND_STRUCTURES, start=1)}  # label values of a frame's mask
PATIENT = "patient_overall"
DISC_LEVELS = tuple(terminology.DISC_LEVELS)
SOURCES = ("model", "user")


def mask_file(frame):
    return f"{MASKS_DIR}/frame_{int(frame):04d}.seg.nrrd"


def structure_value(name):
    """Label value of a structure on this kind of mask: cord/CSF on frames, VerSe number for vertebrae."""
    if name in CINE_STRUCTURES:
        return CINE_STRUCTURES[name]
    try:
        return terminology.vertebra_number(name)
    except (KeyError, ValueError):
        raise InputError(f"unknown structure {name!r}: use spinal_cord, csf or a vertebra (C1 ... L5, S1)") from None


def structure_name(value, kind):
    if kind == "cine":
        return {v: k for k, v in CINE_STRUCTURES.items()}.get(int(value), f"Label {value}")
    try:
        return terminology.vertebra_name(int(value))
    except KeyError:
        return f"Label {value}"


@dataclass
class CaseData:
    """Everything annotated on one image; see the package docstring for the meaning of each part."""

    folder: Path
    task: str
    image: dict  # path, series, kind, geometry (annotation.json "image")
    created: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)  # item -> "model" | "user"
    prefills: list = field(default_factory=list)
    edits: list = field(default_factory=list)
    saved: dict = field(default_factory=dict)
    # cine
    labels: np.ndarray = None  # (N, 3) int8: bad_quality, spinal_cord, csf
    masks: dict = field(default_factory=dict)  # frame -> (1, rows, cols) uint8
    # volume
    mask: np.ndarray = None  # (K, J, I) uint8 vertebra numbers
    points: dict = field(default_factory=dict)  # level -> (r, a, s)
    severity: dict = field(default_factory=dict)  # (level, condition) -> grade name
    fractures: dict = field(default_factory=dict)  # vertebra -> 0 / 1
    # both: (frame or None, label) -> voxel box (i0, j0, k0, i1, j1, k1), ends exclusive
    boxes: dict = field(default_factory=dict)

    # -- geometry ------------------------------------------------------------------------

    @property
    def kind(self):
        return self.image["kind"]

    @property
    def is_cine(self):
        return self.kind == "cine"

    @property
    def n_frames(self):
        return int(self.image.get("frames", 0)) if self.is_cine else 0

    @property
    def ijk_to_ras(self):
        """IJK->RAS of the grid masks and boxes live on (one frame for a cine)."""
        return np.asarray(self.image["ijk_to_ras"], float)

    @property
    def grid_shape(self):
        """(K, J, I) of a mask: (1, rows, cols) for a cine frame."""
        if self.is_cine:
            rows, cols = self.image["frame_shape"]
            return (1, int(rows), int(cols))
        i, j, k = self.image["dimensions"]
        return (int(k), int(j), int(i))

    @property
    def frame_times_ms(self):
        return list(self.image.get("frame_times_ms") or range(self.n_frames))

    # -- reading the parts -------------------------------------------------------------------

    def frame_labels(self, frame):
        """{label: 0/1} of frame ``frame``."""
        return {name: int(self.labels[int(frame), n]) for n, name in enumerate(ULTRASOUND_LABELS)}

    def mask_of(self, frame=None):
        """The label map a mask edit works on: frame ``frame``'s (cine) or the volume's; zeros when none."""
        if self.is_cine:
            existing = self.masks.get(int(frame))
            return existing if existing is not None else np.zeros(self.grid_shape, np.uint8)
        return self.mask if self.mask is not None else np.zeros(self.grid_shape, np.uint8)

    def structure_mask(self, structure, frame=None):
        """(K, J, I) bool of one structure (cord / CSF on a frame, a vertebra in the volume)."""
        return self.mask_of(frame) == structure_value(structure)

    def pixel_box(self, frame, structure):
        """Cine box x0, y0, x1, y1 (x1 = last column + 1), or None."""
        box = self.boxes.get((int(frame), structure))
        return None if box is None else (box[0], box[1], box[3], box[4])

    def box_geometry(self, frame, label):
        """(center RAS, size mm, axes) of a box, or None."""
        box = self.boxes.get((frame if frame is None else int(frame), label))
        return None if box is None else box_to_ras(box, self.ijk_to_ras)

    def user_items(self):
        return sorted(item for item, source in self.sources.items() if source == "user")

    # -- writing ------------------------------------------------------------------------------

    def manifest(self):
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "image": self.image,
            "created": self.created,
            "sources": dict(sorted(self.sources.items())),
            "prefills": self.prefills,
            "edits": self.edits,
            "saved": self.saved,
        }

    def write(self, parts=None):
        """Write the given parts (default: all) of the folder: 'manifest', 'frames', 'mask/F',
        'masks', 'boxes', 'vertebrae', 'discs', 'severity', 'fractures'."""
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        everything = parts is None
        parts = set(parts or ())
        if everything:
            parts = {"manifest", "boxes"} | ({"frames", "masks"} if self.is_cine else
                                             {"vertebrae", "discs", "severity", "fractures"})
        writers = {"manifest": lambda: files.write_json(folder / MANIFEST, self.manifest()),
                   "frames": self._write_frames, "boxes": self._write_boxes, "vertebrae": self._write_vertebrae,
                   "discs": self._write_discs, "severity": self._write_severity, "fractures": self._write_fractures}
        # The manifest first: its sources mark an item as the user's before the data says so,
        # so a crash in between can never let a prefill replace a user's edit.
        for part in sorted(parts, key=lambda p: (p != "manifest", p)):
            if part == "masks":
                self._write_all_masks()
            elif part.startswith("mask/"):
                self._write_frame_mask(int(part.split("/")[1]))
            elif part in writers:
                writers[part]()
            else:
                raise ValueError(f"unknown part {part!r}")

    def _source(self, item):
        return self.sources.get(item, "")

    def _write_frames(self):
        times = self.frame_times_ms
        rows = [[f, round(float(times[f]), 4), *[int(v) for v in self.labels[f]], self._source(f"labels/{f}")]
                for f in range(self.n_frames)]
        files.write_tsv(Path(self.folder) / FRAMES, ["frame", "time_ms", *ULTRASOUND_LABELS, "source"], rows)

    def _write_frame_mask(self, frame):
        mask = self.masks.get(frame)
        names = {v: k for k, v in CINE_STRUCTURES.items()}
        path = Path(self.folder) / mask_file(frame)
        if mask is None or not mask.any():
            files.remove(path)
            self.masks.pop(frame, None)
            return
        files.write_seg_nrrd(path, mask, self.ijk_to_ras, names)

    def _write_all_masks(self):
        folder = Path(self.folder) / MASKS_DIR
        if folder.is_dir():
            for path in folder.glob("frame_*.seg.nrrd"):
                match = re.fullmatch(r"frame_(\d+)\.seg\.nrrd", path.name)
                if match and int(match.group(1)) not in self.masks:
                    path.unlink()
        for frame in list(self.masks):
            self._write_frame_mask(frame)

    def _write_vertebrae(self):
        path = Path(self.folder) / VERTEBRAE
        if self.mask is None:
            files.remove(path)
            return
        values = [int(v) for v in np.unique(self.mask) if v]
        files.write_seg_nrrd(path, self.mask, self.ijk_to_ras, {v: structure_name(v, "volume") for v in values})

    def _write_boxes(self):
        entries = []
        for (frame, label), box in sorted(self.boxes.items(), key=lambda kv: (kv[0][0] is not None, kv[0][0] or 0, kv[0][1])):
            center, size, axes = box_to_ras(box, self.ijk_to_ras)
            entries.append(files.roi_entry(center, size, axes, label, "" if frame is None else f"frame {frame}"))
        files.write_markups(Path(self.folder) / BOXES, entries)

    def _write_discs(self):
        points = [(level, self.points[level]) for level in DISC_LEVELS if level in self.points]
        files.write_markups(Path(self.folder) / DISCS, [files.points_entry(points)] if points else [])

    def _write_severity(self):
        path = Path(self.folder) / SEVERITY
        if not self.severity:
            files.remove(path)
            return
        rows = [[level, condition, self.severity.get((level, condition), ""),
                 self._source(f"severity/{level}/{condition}")]
                for level in DISC_LEVELS for condition in CONDITIONS]
        files.write_tsv(path, ["level", "condition", "grade", "source"], rows)

    def _write_fractures(self):
        path = Path(self.folder) / FRACTURES
        if not self.fractures:
            files.remove(path)
            return
        names = list(CERVICAL_VERTEBRAE) + sorted((v for v in self.fractures if v not in CERVICAL_VERTEBRAE),
                                        key=lambda n: structure_value(n))
        rows = [[v, self.fractures.get(v, ""), self._source(f"fracture/{v}")] for v in names]
        rows.append([PATIENT, int(any(self.fractures.values())), ""])
        files.write_tsv(path, ["vertebra", "fractured", "source"], rows)


# -- reading a folder ------------------------------------------------------------------------------


def load_case(folder):
    """The ``CaseData`` of a case folder (annotation.json and the files beside it)."""
    folder = Path(folder).expanduser().absolute()
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{folder}: not an annotation case folder (no {MANIFEST})")
    manifest = files.read_json(manifest_path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{manifest_path}: not a SpineAI annotation manifest")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"{manifest_path}: format version {manifest.get('format_version')} is newer than "
                         f"this SpineAI reads ({FORMAT_VERSION}); update SpineAI")
    case = CaseData(folder=folder, task=manifest.get("task", ""), image=manifest.get("image") or {},
                    created=manifest.get("created") or {}, sources=dict(manifest.get("sources") or {}),
                    prefills=list(manifest.get("prefills") or []), edits=list(manifest.get("edits") or []),
                    saved=manifest.get("saved") or {})
    if case.kind not in ("cine", "volume"):
        raise InputError(f"{manifest_path}: image kind must be 'cine' or 'volume', not {case.kind!r}")
    if case.is_cine:
        _read_cine(case)
    else:
        _read_volume(case)
    _read_boxes(case)
    return case


def _read_cine(case):
    folder = Path(case.folder)
    case.labels = np.zeros((case.n_frames, len(ULTRASOUND_LABELS)), np.int8)
    if (folder / FRAMES).is_file():
        for row in files.read_tsv(folder / FRAMES):
            try:
                frame = int(row["frame"])
                values = [int(float(row.get(name) or 0)) for name in ULTRASOUND_LABELS]
            except (KeyError, ValueError) as error:
                raise InputError(f"{folder / FRAMES}: bad row {row} ({error})") from None
            if 0 <= frame < case.n_frames:
                case.labels[frame] = values
    masks = folder / MASKS_DIR
    if masks.is_dir():
        for path in sorted(masks.glob("frame_*.seg.nrrd")):
            match = re.fullmatch(r"frame_(\d+)\.seg\.nrrd", path.name)
            if not match or int(match.group(1)) >= case.n_frames:
                continue
            mask = files.read_seg_nrrd(path, case.ijk_to_ras, case.grid_shape,
                                       lambda name, value: CINE_STRUCTURES.get(name, value if name is None else None))
            if mask.any():
                case.masks[int(match.group(1))] = mask


def _vertebra_value(name, value):
    if name is None:
        return value
    try:
        return terminology.vertebra_number(name)
    except (KeyError, ValueError):
        return None


def _read_volume(case):
    folder = Path(case.folder)
    if (folder / VERTEBRAE).is_file():
        case.mask = files.read_seg_nrrd(folder / VERTEBRAE, case.ijk_to_ras, case.grid_shape, _vertebra_value)
    if (folder / DISCS).is_file():
        for entry in files.read_markups(folder / DISCS):
            for label, ras, _ in entry["points"]:
                if label in DISC_LEVELS:
                    case.points[label] = ras
    if (folder / SEVERITY).is_file():
        for row in files.read_tsv(folder / SEVERITY):
            grade = (row.get("grade") or "").strip()
            if grade in GRADE_NAMES and row.get("level") in DISC_LEVELS and row.get("condition") in CONDITIONS:
                case.severity[(row["level"], row["condition"])] = grade
    if (folder / FRACTURES).is_file():
        for row in files.read_tsv(folder / FRACTURES):
            name, value = (row.get("vertebra") or "").strip(), (row.get("fractured") or "").strip()
            if name and name != PATIENT and value in ("0", "1"):
                case.fractures[name] = int(value)


def _read_boxes(case):
    path = Path(case.folder) / BOXES
    if not path.is_file():
        return
    for entry in files.read_markups(path):
        if entry.get("type") != "ROI" or "center" not in entry or not entry["points"]:
            continue
        label, _, description = entry["points"][0]
        match = re.fullmatch(r"frame (\d+)", description.strip())
        frame = int(match.group(1)) if match else None
        if case.is_cine and frame is None:
            continue
        box = list(ras_to_box(entry["center"], entry["size"], entry["axes"], case.ijk_to_ras))
        if case.is_cine:
            box[2], box[5] = 0, 1  # a frame's box is one slice
        case.boxes[(frame, label)] = tuple(box)
