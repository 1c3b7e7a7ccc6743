"""A lumbar MRI study as the severity grading sees it: series identified as sagittal T1,
sagittal T2/STIR or axial T2, each instance with its own geometry.

Read from any folder of DICOM series (``load_study_folder``) or built over loaded
volumes (``series_from_volume``); SpineAITraining.rsna2024.layout adds the RSNA 2024
Kaggle layout and its labels on top.

Geometry is kept per instance, not per volume: RSNA's axial T2 series are often
several stacks with gaps and different tilts (one stack per disc), which no single
IJK->RAS matrix describes. Each instance maps its own pixels to patient RAS, so a
labelled (instance, x, y) becomes a RAS point, and a disc point found on a sagittal
series tells which axial slices cut it (distance from the point to each slice plane).
"""

from __future__ import annotations  # `X | None` fields on Python 3.9 (Slicer 5.8)

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SpineAILib.images import plane_of_normal
from SpineAILib.io.checks import check_allocation
from SpineAILib.workflows.lumbar.severity.submission import CONDITIONS, LEVELS, condition_group, row_id

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
KINDS = ("sagittal_t1", "sagittal_t2", "axial_t2")
KIND_TITLES = {"sagittal_t1": "Sagittal T1", "sagittal_t2": "Sagittal T2/STIR", "axial_t2": "Axial T2"}
# The series each condition group is graded on.
NEEDS = {"spinal": "sagittal_t2", "foraminal": "sagittal_t1", "subarticular": "axial_t2"}
KIND_PLANE = {"sagittal_t1": "sagittal", "sagittal_t2": "sagittal", "axial_t2": "axial"}


# ---------------------------------------------------------------- one image plane


@dataclass
class Instance:
    """One slice with its own geometry: pixel (x = column, y = row) <-> RAS mm."""

    number: int
    path: Path
    origin: np.ndarray  # RAS of the centre of pixel (0, 0)
    row_dir: np.ndarray  # RAS unit vector along a row (x grows)
    col_dir: np.ndarray  # RAS unit vector down a column (y grows)
    spacing: tuple  # (between rows, between columns) mm
    rows: int
    cols: int
    thickness: float
    slope: float = 1.0
    intercept: float = 0.0
    array: np.ndarray | None = field(default=None, repr=False)  # pixels held in memory (volume input)
    frame: int | None = None  # frame of an enhanced multi-frame file

    def __post_init__(self):
        self.normal = np.cross(self.row_dir, self.col_dir)  # used per point and per slice: compute once

    def ras(self, x, y):
        return self.origin + float(x) * self.spacing[1] * self.row_dir + float(y) * self.spacing[0] * self.col_dir

    def pixel(self, ras):
        """(x, y, signed distance in mm from the plane) of a RAS point."""
        d = np.asarray(ras, dtype=float) - self.origin
        return float(d @ self.row_dir) / self.spacing[1], float(d @ self.col_dir) / self.spacing[0], float(d @ self.normal)

    def contains(self, ras, margin=0):
        x, y, _ = self.pixel(ras)
        return -margin <= x <= self.cols - 1 + margin and -margin <= y <= self.rows - 1 + margin

    def pixels(self):
        if self.array is not None:
            return np.asarray(self.array, dtype=np.float32)
        # The same decoding and checks as the series reader (io.dicom.read_pixels, io.checks).
        from SpineAILib.errors import InputError
        from SpineAILib.io.checks import check_finite
        from SpineAILib.io.dicom import read_pixels

        array = read_pixels(self.path)
        if self.frame is not None:
            array = array[self.frame] if array.ndim == 3 and self.frame < len(array) else None
        if array is None or array.shape != (self.rows, self.cols):
            raise InputError(f"{self.path.name}: pixel data is {getattr(array, 'shape', 'missing')}, the header says "
                             f"{(self.rows, self.cols)} (rows, columns)")  # fmt: skip
        out = array.astype(np.float32) * np.float32(self.slope) + np.float32(self.intercept)
        check_finite(out, what=self.path.name)
        return out


def _instance(s):
    """An Instance from SpineAILib.io.dicom's per-slice header record."""
    if s.iop is None or s.ipp is None:
        return None
    row = s.iop[:3] / np.linalg.norm(s.iop[:3])
    col = s.iop[3:] / np.linalg.norm(s.iop[3:])
    number = s.instance if s.instance else _number_from_name(s.path)
    return Instance(
        number=int(number), path=s.path, origin=LPS_TO_RAS @ s.ipp, row_dir=LPS_TO_RAS @ row, col_dir=LPS_TO_RAS @ col,
        spacing=tuple(s.pixel_spacing or (1.0, 1.0)), rows=s.rows, cols=s.cols, thickness=float(s.thickness or 0.0),
        slope=s.slope, intercept=s.intercept, frame=s.frame,
    )


def _number_from_name(path):
    stem = Path(path).stem
    return int(stem) if stem.isdigit() else 0


# ---------------------------------------------------------------- one series


@dataclass
class Series:
    series_id: str
    description: str
    kind: str | None  # sagittal_t1 / sagittal_t2 / axial_t2, or None when unidentified
    orientation: str  # plane of the (majority of the) slices
    instances: list  # sorted along the mean slice normal
    folder: Path | None = None
    warnings: list = field(default_factory=list)
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._by_number = {i.number: i for i in self.instances}
        n = np.sum([i.normal for i in self.instances], axis=0)
        self.normal = n / (np.linalg.norm(n) or 1.0)
        positions = np.sort([float(i.origin @ self.normal) for i in self.instances])
        steps = np.diff(positions)
        steps = steps[steps > 1e-3]
        # median step between slice planes (stacks with gaps between them keep their own step)
        self._spacing = float(np.median(steps)) if len(steps) else max(self.instances[0].thickness, 1.0)

    def instance(self, number):
        return self._by_number.get(int(number))

    def index_of(self, number):
        inst = self.instance(number)
        return None if inst is None else self.instances.index(inst)

    def pixels(self, index):
        """Pixel array of instance ``index`` (position in ``instances``), cached."""
        if index not in self._cache:
            self._cache[index] = self.instances[index].pixels()
        return self._cache[index]

    def distances(self, ras):
        """Signed distance (mm) of a RAS point from every instance plane."""
        return np.array([i.pixel(ras)[2] for i in self.instances])

    def nearest(self, ras, margin=0):
        """(index, |distance|) of the slice nearest ``ras`` among those whose field of view holds it; (None, inf) if none."""
        best = (None, float("inf"))
        for index, inst in enumerate(self.instances):
            d = abs(inst.pixel(ras)[2])
            if d < best[1] and inst.contains(ras, margin):
                best = (index, d)
        return best

    def slice_spacing(self):
        return self._spacing


def series_from_volume(image, kind, series_id="volume"):
    """A Series over a loaded VolumeImage (NIfTI/NRRD or an already loaded DICOM series).

    ``kind`` says what it is (sagittal_t1 / sagittal_t2 / axial_t2): a volume file has
    no series description to tell. Each K slice becomes an instance numbered k + 1.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    m = np.asarray(image.ijk_to_ras, float)
    si, sj, sk = image.spacing
    instances = [
        Instance(number=k + 1, path=Path(image.source or "volume"), origin=m[:3, :3] @ [0.0, 0.0, k] + m[:3, 3],
                 row_dir=m[:3, 0] / si, col_dir=m[:3, 1] / sj, spacing=(sj, si), rows=image.voxels.shape[1],
                 cols=image.voxels.shape[2], thickness=sk, array=image.voxels[k])
        for k in range(image.voxels.shape[0])
    ]
    normal = instances[0].normal
    instances.sort(key=lambda i: float(i.origin @ normal))
    orientation = plane_of_normal(normal)
    warnings = [] if orientation == KIND_PLANE[kind] else [f"a {kind} series was given with {orientation} slices"]
    return Series(str(series_id), KIND_TITLES[kind], kind, orientation, instances, None, warnings)


def identify_kind(description, orientation, header=None):
    """(kind or None, warning or None) from the series description checked against the geometry.

    The description names the weighting; the slice orientation (from
    ImageOrientationPatient) must agree with it. When the description is missing or
    unknown, the orientation and the header's timing (TR/TE/TI) decide.
    """
    text = (description or "").lower()
    weighting = None
    if "stir" in text or "t2" in text:
        weighting = "t2"
    elif "t1" in text:
        weighting = "t1"
    plane = "sagittal" if "sag" in text else "axial" if ("ax" in text or "tra" in text) else None
    if weighting is None:
        weighting = _weighting_from_header(header)
    if plane and orientation in ("sagittal", "axial") and plane != orientation:
        warning = f"series described as '{description}' has {orientation} slices; its geometry is trusted"
        plane = orientation
    else:
        warning = None
    plane = plane or (orientation if orientation in ("sagittal", "axial") else None)
    if plane == "sagittal" and weighting in ("t1", "t2"):
        return f"sagittal_{weighting}", warning
    if plane == "axial" and weighting in ("t2", None):
        return "axial_t2", warning
    return None, warning or f"series '{description}' ({orientation or 'unknown'} plane) is not one the grading uses"


def _weighting_from_header(header):
    if header is None:
        return None

    def value(key):
        try:
            return float(header.get(key))
        except (TypeError, ValueError):
            return None

    te, tr, ti = value("EchoTime"), value("RepetitionTime"), value("InversionTime")
    if ti and ti < 300:  # short-tau inversion recovery: fluid-bright like T2
        return "t2"
    if te is not None and te >= 60:
        return "t2"
    if te is not None and te <= 30 and tr is not None and tr <= 1000:
        return "t1"
    return None


def read_series(folder, description="", series_id=None):
    """A Series from the DICOM files below ``folder`` (headers only; pixels load on demand)."""
    from SpineAILib.io.dicom import scan_folder

    folder = Path(folder)
    infos = [i for i in scan_folder(folder) if i.kind == "volume"]
    return _series_from_infos(infos, series_id or folder.name, description, folder)


def _slices_of(info):
    """Every slice of a series, all stacks included (the volume reader keeps only the largest)."""
    from SpineAILib.io import dicom

    if len(info.slices) == len(info.files) and not info.is_multiframe:
        return info.slices
    slices = []
    for path in info.files:
        ds, _ = dicom._read_header(path)
        if ds is not None:
            slices.extend(dicom._enhanced_slices(path, ds) if dicom._is_enhanced_volume(ds) else [dicom._plain_slice(path, ds)])
    return slices


def _series_from_infos(infos, series_id, description, folder):
    warnings = []
    instances = []
    for info in infos:
        # The volume reader's objections (gaps between stacks, mixed tilts) do not matter
        # here: every instance carries its own geometry.
        warnings.extend(w for w in info.warnings if "stacks with different orientations" not in w)
        for s in _slices_of(info):
            inst = _instance(s)
            if inst is None:
                warnings.append(f"{s.path.name}: no position/orientation in the header; skipped")
            else:
                instances.append(inst)
    if not instances:
        return None
    # The size limit from the headers, before any pixel is read (as the series reader does).
    check_allocation((len(instances), max(i.rows for i in instances), max(i.cols for i in instances)), np.float32,
                     what=f"series {series_id}")  # fmt: skip
    header = infos[0].header
    description = description or (infos[0].description if infos else "")
    # Majority normal (stacks of one series may be tilted a little against each other).
    normals = np.array([i.normal for i in instances])
    normal = normals.sum(axis=0)
    normal /= np.linalg.norm(normal) or 1.0
    orientation = plane_of_normal(normal)
    instances.sort(key=lambda i: (float(i.origin @ normal), i.number))
    kind, warning = identify_kind(description, orientation, header)
    if warning:
        warnings.append(warning)
    return Series(str(series_id), description, kind, orientation, instances, Path(folder) if folder else None, warnings)


# ---------------------------------------------------------------- one study


@dataclass
class LabelPoint:
    condition: str
    level: str
    series_id: str
    instance_number: int
    x: float
    y: float
    ras: np.ndarray


@dataclass
class Study:
    study_id: str
    series: list  # every Series found
    grades: dict = field(default_factory=dict)  # (condition, level) -> 0/1/2 (absent = not labelled)
    points: dict = field(default_factory=dict)  # (condition, level) -> LabelPoint
    warnings: list = field(default_factory=list)

    def series_by_id(self, series_id):
        return next((s for s in self.series if s.series_id == str(series_id)), None)

    def series_of(self, kind):
        """The series of ``kind`` to grade on: the one holding most labelled points, then the longest."""
        candidates = [s for s in self.series if s.kind == kind]
        if not candidates:
            return None
        labelled = {p.series_id for p in self.points.values()}
        return max(candidates, key=lambda s: (sum(p.series_id == s.series_id for p in self.points.values()) if labelled else 0, len(s.instances)))

    def not_assessed(self):
        """{condition: reason} for conditions whose series is missing."""
        out = {}
        for condition in CONDITIONS:
            kind = NEEDS[condition_group(condition)]
            if self.series_of(kind) is None:
                out[condition] = f"no {KIND_TITLES[kind]} series"
        return out

    def level_points(self):
        """{level: RAS} of each disc level on the sagittal series: the canal point, else the foramina's midpoint."""
        out = {}
        for level in LEVELS:
            canal = self.points.get(("spinal_canal_stenosis", level))
            foramina = [self.points.get((f"{side}_neural_foraminal_narrowing", level)) for side in ("left", "right")]
            if canal is not None:
                out[level] = canal.ras
            elif all(p is not None for p in foramina):
                out[level] = (foramina[0].ras + foramina[1].ras) / 2
        return out

    def solution_rows(self):
        return [{"row_id": row_id(self.study_id, c, l), "grade": g} for (c, l), g in sorted(self.grades.items())]


@dataclass
class LevelLink:
    level: str
    point: np.ndarray  # RAS of the disc level on the sagittal series
    cutting: list  # axial instance numbers whose slab holds the point (nearest first)
    nearby: list  # [(instance number, signed distance mm)] within slab_mm, nearest first


def link_levels(axial, level_points, slab_mm=None):
    """Which axial slices cut each disc level: {level: LevelLink}.

    A slice cuts a point when the point lies inside its slab (|distance to the plane| <=
    half the slice thickness, or half the spacing when the header gives no thickness)
    and inside its field of view. ``nearby`` lists the slices within ``slab_mm`` / 2
    (default: 2.5 slice spacings), the stack a 2.5-D crop draws from.
    """
    links = {}
    if axial is None:
        return links
    spacing = axial.slice_spacing()
    slab_mm = slab_mm if slab_mm is not None else 5 * spacing
    for level, point in level_points.items():
        rows = []
        for inst in axial.instances:
            d = inst.pixel(point)[2]
            if inst.contains(point):
                rows.append((abs(d), d, inst))
        rows.sort(key=lambda r: r[0])
        cutting = [inst.number for a, _, inst in rows if a <= (inst.thickness or spacing) / 2 + 1e-6]
        nearby = [(inst.number, round(d, 3)) for a, d, inst in rows if a <= slab_mm / 2]
        links[level] = LevelLink(level, np.asarray(point, float), cutting, nearby)
    return links


def axial_levels(axial, level_points, max_mm=None):
    """{axial instance number: level of the nearest disc point}, for slices within ``max_mm`` of one."""
    if axial is None or not level_points:
        return {}
    max_mm = max_mm if max_mm is not None else 2.5 * axial.slice_spacing()
    out = {}
    for inst in axial.instances:
        best = min(((abs(inst.pixel(p)[2]), level) for level, p in level_points.items() if inst.contains(p)), default=None)
        if best and best[0] <= max_mm:
            out[inst.number] = best[1]
    return out


def load_study_folder(folder, study_id=None, descriptions=None):
    """A Study from a folder of DICOM series (any layout, searched recursively), without labels.

    ``descriptions``: {series_id: description}, e.g. from train_series_descriptions.csv;
    series ids are the series' folder names when each series has its own folder
    (Kaggle), else their SeriesInstanceUIDs.
    """
    from SpineAILib.io.dicom import scan_folder

    folder = Path(folder)
    descriptions = {str(k): v for k, v in (descriptions or {}).items()}
    groups = {}
    for info in scan_folder(folder):
        if info.kind != "volume":
            continue
        parent = info.files[0].parent
        sid = parent.name if parent != folder and parent.name in descriptions else (info.uid or parent.name)
        groups.setdefault(sid, []).append(info)
    study = Study(str(study_id or folder.name), [])
    for sid, infos in groups.items():
        series = _series_from_infos(infos, sid, descriptions.get(sid, ""), infos[0].files[0].parent)
        if series is not None:
            study.series.append(series)
            study.warnings.extend(f"series {sid}: {w}" for w in series.warnings)
    return study
