"""``spineai measure``: heights, Genant grades and bone density from a vertebra segmentation one already has.

Many readers already hold a vertebra label map of their CT (TotalSegmentator's, VerSe-style
annotations, a corrected SpineAI run). This measures it with ``vertebral_bodies`` and writes
``vertebrae.tsv`` (one row per vertebra, columns ``vertebral_bodies.TSV_COLUMNS``) and
``report.json`` (the rows, the L1 bone-density flag with its thresholds and source, the
label numbering used) into a new output folder, atomically, like a run.

The label numbering must be said, never guessed: ``verse`` (C1-C7 = 1-7, T1-T12 = 8-19,
L1-L5 = 20-24, L6 25, S1 26, T13 28) or ``totalsegmentator`` (its v2 classes: S1 26, L5-L1
27-31, T12-T1 32-43, C7-C1 44-50; its other classes, organs and ribs, are left out). A value
the numbering does not know is refused rather than read as some vertebra. The label map must
be on the CT's own voxel grid (TotalSegmentator's output is).
"""

import json
from pathlib import Path

import numpy as np

from SpineAILib.errors import InputError
from SpineAILib.images import VolumeImage
from SpineAILib.terminology import VERTEBRAE

VERSE_VALUES = frozenset(VERTEBRAE)
# TotalSegmentator v2 class -> VerSe number: vertebrae_S1 26, L5..L1 27..31, T12..T1 32..43, C7..C1 44..50.
TOTALSEGMENTATOR_TO_VERSE = {26: 26, **{27 + i: 24 - i for i in range(5)}, **{32 + i: 19 - i for i in range(12)},
                             **{44 + i: 7 - i for i in range(7)}}  # fmt: skip
TOTALSEGMENTATOR_CLASSES = 117  # values above this are no TotalSegmentator v2 class
NUMBERINGS = ("verse", "totalsegmentator")
OUTPUTS = {"table": "vertebrae.tsv"}


def to_verse(labels, numbering):
    """The label array in VerSe numbers (uint8); InputError for a value the numbering does not know."""
    values = np.unique(labels)
    values = values[values != 0]
    if numbering == "verse":
        unknown = [int(v) for v in values if int(v) not in VERSE_VALUES]
        if unknown:
            raise InputError(f"the label map holds values that are no VerSe vertebra number: {_few(unknown)} "
                             "(VerSe: C1-C7 1-7, T1-T12 8-19, L1-L5 20-24, L6 25, S1 26, T13 28); "
                             "for a TotalSegmentator label map give --numbering totalsegmentator")  # fmt: skip
        return labels.astype(np.uint8, copy=False)
    if numbering == "totalsegmentator":
        unknown = [int(v) for v in values if not 0 < int(v) <= TOTALSEGMENTATOR_CLASSES or int(v) != v]
        if unknown:
            raise InputError(f"the label map holds values that are no TotalSegmentator class: {_few(unknown)}")
        lut = np.zeros(TOTALSEGMENTATOR_CLASSES + 1, np.uint8)
        for ts, verse in TOTALSEGMENTATOR_TO_VERSE.items():
            lut[ts] = verse
        return lut[labels.astype(np.int64)]
    raise InputError(f"unknown label numbering {numbering!r}; choose one of: {', '.join(NUMBERINGS)}")


def _few(values):
    shown = ", ".join(str(v) for v in values[:8])
    return shown + (f" and {len(values) - 8} more" if len(values) > 8 else "")


def check_ct_and_labels(ct, labels):
    from SpineAILib.ct_checks import check_ct

    if not isinstance(ct, VolumeImage) or not isinstance(labels, VolumeImage):
        raise InputError("both the CT and the segmentation must be 3-D volumes")
    check_ct(ct, task="spineai measure", what="a CT (measurements are in Hounsfield units)")
    if not np.issubdtype(labels.voxels.dtype, np.integer):
        whole = np.all(np.equal(np.mod(labels.voxels, 1), 0))
        if not whole:
            raise InputError("the segmentation holds fractional values: give a label map (whole numbers per voxel)")


def onto_ct_grid(ct, labels):
    """``labels`` on ``ct``'s voxel grid: as given when the grids are equal, reordered when they hold the
    same voxel centres in another axis order or direction (a NIfTI written from a DICOM series often
    does); InputError otherwise (no interpolation: an outline must not be invented)."""
    if labels.voxels.shape == ct.voxels.shape and np.allclose(labels.ijk_to_ras, ct.ijk_to_ras, atol=1e-3):
        return labels
    k, j, i = ct.voxels.shape
    corners = np.array([[a, b, c, 1.0] for a in (0, i - 1) for b in (0, j - 1) for c in (0, k - 1)])
    to_label = np.linalg.inv(labels.ijk_to_ras) @ ct.ijk_to_ras
    mapped = corners @ to_label.T
    rotation = to_label[:3, :3]
    exact = np.allclose(np.abs(rotation), np.round(np.abs(rotation)), atol=1e-3) and \
        np.allclose(np.abs(rotation).sum(axis=0), 1.0, atol=1e-3) and np.allclose(mapped, np.round(mapped), atol=1e-2)
    shape_ijk = labels.voxels.shape[::-1]
    inside = exact and all(0 <= mapped[:, a].min() and mapped[:, a].max() <= shape_ijk[a] - 1 + 1e-2 for a in range(3))
    if not inside:
        raise InputError(f"the segmentation ({'x'.join(map(str, shape_ijk))} voxels) is not on the CT's voxel grid "
                         f"({'x'.join(map(str, ct.dimensions))}): resample it onto the CT first (nearest neighbour)")
    grid = np.stack(np.meshgrid(np.arange(i), np.arange(j), np.arange(k), indexing="ij"), -1).reshape(-1, 3)
    index = np.rint(grid @ rotation.T + to_label[:3, 3]).astype(np.int64)
    voxels = np.asarray(labels.voxels)[index[:, 2], index[:, 1], index[:, 0]].reshape(i, j, k).transpose(2, 1, 0)
    return VolumeImage(np.ascontiguousarray(voxels), ct.ijk_to_ras.copy(), modality=labels.modality, is_labelmap=True)


def measure_segmentation(ct_path, segmentation_path, out_dir, numbering="verse", force=False, progress=None):
    """Measure ``segmentation_path`` on ``ct_path`` into ``out_dir``; returns the report dict."""
    from SpineAILib.io import load
    from SpineAILib.outputs import check_output_folder, output_lock, staged_output_folder, write_text_atomic
    from SpineAILib.vertebral_bodies import TSV_COLUMNS, l1_bone_density, measure_vertebral_bodies, tsv_text

    progress = progress or (lambda fraction, message: None)
    if numbering not in NUMBERINGS:
        raise InputError(f"unknown label numbering {numbering!r}; choose one of: {', '.join(NUMBERINGS)}")
    out_dir = check_output_folder(out_dir, force)
    with output_lock(out_dir):
        progress(0.0, f"reading {ct_path}")
        ct = load(ct_path)
        progress(0.1, f"reading {segmentation_path}")
        segmentation = load(segmentation_path)
        check_ct_and_labels(ct, segmentation)
        labels = VolumeImage(to_verse(np.asarray(segmentation.voxels), numbering), segmentation.ijk_to_ras,
                             modality=ct.modality, is_labelmap=True)  # fmt: skip
        labels = onto_ct_grid(ct, labels)
        if not labels.voxels.any():
            raise InputError(f"the segmentation holds no vertebra in the {numbering} numbering")
        progress(0.2, "measuring the vertebral bodies")
        rows = measure_vertebral_bodies(ct, labels)
        density = l1_bone_density(rows)
        report = {
            "command": "measure",
            "input": {"ct": str(Path(ct_path).absolute()), "segmentation": str(Path(segmentation_path).absolute()),
                      "numbering": numbering},
            "outputs": dict(OUTPUTS),
            "vertebrae": rows,
            "bone_density": density,
            "columns": {name: meaning for name, meaning in TSV_COLUMNS},
            "note": "measured on the segmentation given, not on a SpineAI model's output: its outlines decide "
                    "the heights, grades and attenuation",
        }  # fmt: skip
        with staged_output_folder(out_dir, force) as staging:
            write_text_atomic(staging / OUTPUTS["table"], tsv_text(rows))
            write_text_atomic(staging / "report.json", json.dumps(report, indent=2))
    progress(1.0, f"results written to {out_dir}")
    return report


def summary_lines(report):
    """What the command prints: one line per vertebra, then the bone-density line."""
    lines = []
    for row in report["vertebrae"]:
        if row.get("cut_by_field_of_view"):
            lines.append(f"{row['name']}: cut by the field of view")
            continue
        heights = [row.get(k) for k in ("anterior_height_mm", "middle_height_mm", "posterior_height_mm")]
        parts = []
        if all(h is not None for h in heights):
            parts.append("heights A/M/P " + "/".join(f"{h:.1f}" for h in heights) + " mm")
        if row.get("genant_grade") is not None:
            parts.append(f"Genant {row['genant_grade']}" + (f" ({row['genant_morphology']})" if row.get("genant_morphology") else ""))
        if row.get("hu_mean") is not None:
            parts.append(f"{row['hu_mean']:.0f} HU")
        if not parts:
            parts.append("; ".join(row.get("notes") or []) or "not measured")
        lines.append(f"{row['name']}: " + ", ".join(parts))
    lines.append(report["bone_density"]["text"])
    return lines
