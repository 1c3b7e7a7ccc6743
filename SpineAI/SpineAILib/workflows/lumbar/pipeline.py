"""Volume in, named vertebral bodies out: the level model's whole inference path.

Used by the lumbar-mri workflow and by the evaluation script, so the reported
metrics are those of what users run.
"""

import re
from dataclasses import dataclass, field

import numpy as np

from SpineAILib.errors import InputError
from SpineAILib.images import VolumeImage
from SpineAILib.terminology import vertebra_number
from SpineAILib.workflows.lumbar.grid import SagittalLayout, plane_size
from SpineAILib.workflows.lumbar.naming import ANCHOR_COLUMN, ANCHOR_SACRUM, check_names, recording_runner, soft_votes
from SpineAILib.workflows.lumbar.postprocess import clean_levels, measure_body
from SpineAILib.workflows.lumbar.predict import predict_labels, prepare
from SpineAILib.workflows.lumbar.refine import refine_bodies
from SpineAILib.workflows.lumbar.sacrum import S1_VALUE, find_sacrum, sacrum_from_mask

# The model runs on sagittal slices at least this far apart; thinner ones in between are
# interpolated (levels.predict.predict_labels): 1 mm slices hardly differ from their neighbours.
LATERAL_STEP_MM = 2.0
MIN_PLANE_MM = 30.0  # a sagittal field of view smaller than this cannot hold one lumbar body
# Signed images whose low end reaches this are in Hounsfield units (air -1000): CT.
CT_AIR_HU = -500.0
HEAD_PARTS = {"HEAD", "BRAIN", "SKULL", "HEADNECK"}
HEAD_WORDS = {"brain", "head", "cerebral", "cranial", "skull"}


@dataclass
class LevelResult:
    labelmap: VolumeImage  # VerSe numbers on the input's own grid
    vertebrae: list  # [{name, label, volume_ml, centre_ras}] top to bottom
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    # naming.check_names' outcome: anchor, status, reasons, warnings, withheld bodies, evidence
    naming: dict = field(default_factory=lambda: {"anchor": ANCHOR_COLUMN, "status": "named", "reasons": [],
                                                   "warnings": [], "withheld": [], "evidence": {}})  # fmt: skip


def check_mri(image):
    """Refuse CT and brain/head MRI, and views too small to hold a level; the layout of the sagittal slices."""
    check_modality(image)
    return check_field_of_view(image)


def check_modality(image):
    """CT (by modality or by Hounsfield-like intensities) and brain/head studies (by their header) are refused."""
    if image.modality == "CT":
        raise InputError("the input is a CT (DICOM modality CT); lumbar-mri needs a sagittal MRI of the lumbar spine")
    region = head_region(image.metadata)
    if region:
        raise InputError(f"the input is a brain/head MRI ({region}); lumbar-mri needs a sagittal MRI of the lumbar spine, "
                         "so no lumbar level is named")  # fmt: skip
    voxels = image.voxels
    if np.issubdtype(voxels.dtype, np.signedinteger) or np.issubdtype(voxels.dtype, np.floating):
        low = float(np.percentile(voxels[:: max(1, voxels.shape[0] // 16)], 1))
        if low <= CT_AIR_HU:
            raise InputError(
                f"the input looks like a CT, not an MRI: its intensities go down to {float(voxels.min()):.0f} "
                "(Hounsfield units, air at -1000); lumbar-mri needs a sagittal MRI of the lumbar spine"
            )


def head_region(metadata):
    """'BodyPartExamined HEAD' / 'series description "T1 brain"' when the header says head or brain, else ''."""
    part = str(metadata.get("BodyPartExamined", "")).strip().upper()
    if part in HEAD_PARTS:
        return f"BodyPartExamined {part}"
    for key in ("SeriesDescription", "ProtocolName"):
        words = set(re.split(r"[^a-z]+", str(metadata.get(key, "")).lower()))
        if words & HEAD_WORDS:
            return f'{key} "{metadata[key]}"'
    return ""


def check_field_of_view(image):
    """The sagittal layout; InputError when the sagittal field of view cannot hold one lumbar body."""
    layout = SagittalLayout.of(image.voxels.shape, image.ijk_to_ras)
    extent = [(n - 1) * s for n, s in zip(layout.shape[1:], layout.spacing[1:])]
    if min(extent) < MIN_PLANE_MM:
        raise InputError(
            f"the sagittal field of view is {extent[0]:.0f} x {extent[1]:.0f} mm (superior-inferior x "
            f"anterior-posterior); lumbar-mri needs at least {MIN_PLANE_MM:.0f} mm each way"
        )
    return layout


def segment_vertebrae(image, bundle, progress=None, refiner=None, sacrum=None, sacrum_mask=None):
    """Run the bundle's level model on ``image``, clean the result up in 3-D, find S1 and name the
    bodies (counted up from S1 when it is found, naming.check_names) and, with a ``refiner`` bundle
    (levels.refine), redraw the named bodies' outlines at 1 mm.

    ``sacrum``: the sacrum bundle (sacrum.load_sacrum); ``sacrum_mask``: a ready S1 mask on the
    image's own grid instead (a reviewed label). With neither, the names come from the column.
    """
    import time

    meta = bundle.metadata
    names = list(meta["labels"])
    values = [0] + [vertebra_number(n) for n in names[1:]]
    spacing = float(meta["input"]["spacing"][0])
    timings = {}

    t0 = time.perf_counter()
    layout = check_mri(image)
    canonical = layout.to_canonical(image.voxels)
    slices = prepare(canonical, layout.spacing, spacing, meta["input"].get("intensity"))
    timings["prepare_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    offset = float((meta.get("thresholds") or {}).get("background_logit_offset", 0.0))
    step = max(1, int(LATERAL_STEP_MM // layout.spacing[0]))
    recorder = recording_runner(bundle.model, bundle.device)  # keeps the logits: the naming checks' soft votes
    classes = predict_labels(recorder, slices, canonical.shape, bundle.device, progress=progress,
                             background_offset=offset, step=step)  # fmt: skip
    run_slices = sorted(set(range(0, canonical.shape[0], step)) | {canonical.shape[0] - 1})
    timings["slices_predicted"] = len(run_slices)
    timings["predict_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    dropped = []
    cleaned, bodies, notes = clean_levels(classes, layout.spacing, len(names), dropped=dropped)
    del classes, cleaned  # the named map is rebuilt from the bodies (apply_naming)
    model_size = (plane_size(canonical.shape[1], layout.spacing[1], spacing)[0],
                  plane_size(canonical.shape[2], layout.spacing[2], spacing)[0])  # fmt: skip
    soft = soft_votes(recorder.batches, run_slices, model_size, canonical.shape, bodies, len(names), offset)
    recorder.batches.clear()
    timings["postprocess_s"] = round(time.perf_counter() - t0, 3)

    s1 = None
    if sacrum is not None or sacrum_mask is not None:
        t0 = time.perf_counter()
        if sacrum_mask is not None:
            s1 = sacrum_from_mask(layout.to_canonical(np.asarray(sacrum_mask)) > 0, layout.spacing, bodies)
        else:
            s1 = find_sacrum(sacrum, canonical, layout.spacing, bodies, slices, meta, step)
        timings["sacrum_s"] = round(time.perf_counter() - t0, 3)
    del slices

    t0 = time.perf_counter()
    check = check_names(bodies, soft if soft is not None else [b.votes for b in bodies], canonical.shape,
                        layout.spacing, names, dropped, sacrum=s1)  # fmt: skip
    if soft is None:
        check.evidence["votes"] = "hard votes (the model's probabilities were not at hand)"
    column_names = [names[b.name_index] for b in bodies]  # the column's names before the checks
    body_list = describe_bodies(check, s1, names, layout, canonical.shape)
    cleaned, bodies, withheld, left_out = apply_naming(check, layout, names, canonical.shape)
    notes += left_out
    timings["naming_s"] = round(time.perf_counter() - t0, 3)
    if refiner is not None:
        t0 = time.perf_counter()
        cleaned, bodies, refine_notes = refine_bodies(cleaned, bodies, canonical, layout.spacing, refiner)
        notes += refine_notes
        timings["refine_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    s1_body = None
    if s1 is not None and s1.found and not check.s1_withheld:
        s1_body = add_s1(cleaned, s1, len(names), layout.spacing)
        names, values = names + ["S1"], values + [S1_VALUE]
    elif s1 is not None and s1.found:
        withheld.append(describe_withheld(s1.index, None, s1.volume_ml, layout, canonical.shape, check, "S1"))
    lut = np.array(values, np.uint8)
    labelmap = VolumeImage(
        voxels=layout.from_canonical(lut[cleaned]),
        ijk_to_ras=image.ijk_to_ras.copy(),
        modality=image.modality,
        description="Vertebrae",
        is_labelmap=True,
    )
    vertebrae = []
    for body in sorted(bodies + ([s1_body] if s1_body else []), key=lambda b: b.row_mm):
        vertebrae.append({
            "name": names[body.name_index],
            "label": int(values[body.name_index]),
            "volume_ml": round(body.volume_ml, 2),
            "centre_ras": centre_ras(body.index, layout, canonical.shape),
        })  # fmt: skip
    timings["labelmap_s"] = round(time.perf_counter() - t0, 3)
    naming = {
        "anchor": check.anchor,
        "status": check.status,
        "reasons": check.reasons,
        "warnings": check.warnings,
        "withheld": withheld,
        "column_names": column_names,
        "bodies": body_list,
        "named_across_gap": [check.chain[i] for i in check.renamed],
        "gaps": [{"between": [check.chain[g.above], check.chain[g.below]], "distance_mm": round(g.distance_mm, 1),
                  "expected_mm": round(g.expected_mm, 1), "missing": g.missing} for g in check.gaps],
        "cross_check": check.cross_check,
        "sacrum": sacrum_summary(s1, layout, canonical.shape),
        "evidence": check.evidence,
    }  # fmt: skip
    return LevelResult(labelmap, vertebrae, notes, timings, naming)


def centre_ras(index, layout, shape):
    """RAS centre (mm, rounded) of the canonical voxels ``index`` (flat)."""
    kji = np.array(np.unravel_index(index, shape), float).mean(axis=1)
    centre = layout.canonical_to_ras @ np.array([kji[2], kji[1], kji[0], 1.0])
    return [round(float(v), 2) for v in centre[:3]]


def describe_bodies(check, s1, names, layout, shape):
    """Every body named or withheld, top to bottom: the column's name (None: the column gave it none), the name
    given (None: withheld) and its centre; with S1 last when it is found (its column name: what the column called
    the body that is S1, if any)."""
    out = []
    for i, (body, name_index) in enumerate(zip(check.bodies, check.names)):
        if i in check.left_out:
            continue
        out.append({"column_name": names[body.name_index] if body.name_index else None,
                    "name": names[name_index] if name_index else None,
                    "centre_ras": centre_ras(body.index, layout, shape)})  # fmt: skip
    if s1 is not None and s1.found:
        called = check.cross_check.get("s1_called_by_column") or [None]
        out.append({"column_name": called[0], "name": None if check.s1_withheld else "S1",
                    "centre_ras": centre_ras(s1.index, layout, shape)})  # fmt: skip
    return out


def sacrum_summary(s1, layout, shape):
    """S1 for the report: found or not (with the reason), its size, centre and the plausibility checks."""
    if s1 is None:
        return {"found": False, "reason": "no sacrum model installed"}
    if not s1.found:
        return {"found": False, "reason": s1.reason}
    return {"found": True, "volume_ml": round(s1.volume_ml, 2), "centre_ras": centre_ras(s1.index, layout, shape),
            "checks": s1.checks}  # fmt: skip


def add_s1(cleaned, s1, s1_class, spacing):
    """S1 onto the class map as class ``s1_class`` where no named body is; its postprocess.Body (None: none left)."""
    index = s1.index[cleaned.ravel()[s1.index] == 0]
    if not len(index):
        return None
    cleaned.ravel()[index] = s1_class
    body = measure_body(index, cleaned, cleaned.shape, spacing, s1_class + 1)
    body.name_index = s1_class
    return body


def describe_withheld(index, column_name, volume_ml, layout, shape, check, counted_name=None):
    """A withheld body for the report: the column's name (None: it gave none), the name counted from S1 that is
    withheld (counted from the sacrum), size, centre and the reasons."""
    entry = {"column_name": column_name, "volume_ml": round(volume_ml, 2),
             "centre_ras": centre_ras(index, layout, shape), "reason": "; ".join(check.reasons)}  # fmt: skip
    return {**entry, "counted_name": counted_name} if check.anchor == ANCHOR_SACRUM else entry


def apply_naming(check, layout, names, shape):
    """The checked names on a fresh class map: withheld bodies stay off it (described instead), bodies left out
    (counted above the model's highest class) too, with a note.

    Returns (class map, bodies named, [{column_name, (counted_name,) volume_ml, centre_ras, reason}] withheld, notes).
    """
    out = np.zeros(shape, np.uint8)
    kept, withheld, notes = [], [], []
    for i, (body, name_index) in enumerate(zip(check.bodies, check.names)):
        if name_index:
            out.ravel()[body.index] = name_index
            body.name_index = name_index
            kept.append(body)
        elif i in check.left_out:
            notes.append(f"dropped a {body.volume_ml:.1f} ml body: {check.left_out[i]}")
        else:
            column_name = names[body.name_index] if body.name_index else None
            withheld.append(describe_withheld(body.index, column_name, body.volume_ml, layout, shape, check,
                                              check.chain[i]))  # fmt: skip
    return out, kept, withheld, notes
