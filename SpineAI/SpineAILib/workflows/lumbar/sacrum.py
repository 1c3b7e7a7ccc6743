"""S1, the first sacral body: the anchor the lumbar levels are counted up from (issue 12).

The sacrum bundle (``lumbar-mri-sacrum``, labels background and S1) is an engine bundle
like the level model: 2-D sagittal slices, the same ``input`` block, so when its spacing
and intensity equal the level bundle's the slices already prepared for the level model
are reused (``find_sacrum``). Its S1 voxels, or a ready S1 mask (``sacrum_from_mask``:
a reviewed label, or the tests' truth), are checked before anything is counted from them:

- **big enough**: volume, height and largest sagittal section (``MIN_S1_*``; the S1 labels
  cover the top of the body, so a smaller bar than ``postprocess.plausible``'s for a whole one);
- **below the column**: its centre lies at least ``BELOW_MIN_STEPS`` body spacings below the
  lowest body the level model found (measured along the column's direction there), bodies
  that mostly lie inside the S1 mask excepted (the level model may call S1 "L5");
- **on the column**: at most ``MAX_LATERAL_MM`` to the side of that body, and at most
  ``MAX_STEPS`` spacings below it (further away it is no anchor for this column).

Of the pieces that pass, the largest is S1; when none does, S1 is "not found" with the reason
the largest piece failed. Everything works on canonical arrays ``[sagittal, row S->I, column A->P]``.
"""

from dataclasses import dataclass, field

import numpy as np

from SpineAILib.morphology import component_indices
from SpineAILib.terminology import vertebra_number
from SpineAILib.workflows.lumbar.naming import body_centres_mm, column_spacing_mm
from SpineAILib.workflows.lumbar.postprocess import measure_body
from SpineAILib.workflows.lumbar.predict import predict_labels, prepare

BUNDLE_ID = "lumbar-mri-sacrum"
BUNDLE_DIR_NAME = "lumbar-mri-sacrum"
SUB_TASK = "lumbar-mri/sacrum"  # its task (spineai-train lumbar-mri --target sacrum); plain lumbar-mri is accepted too
TASKS = ("lumbar-mri", SUB_TASK)
LABELS = ["background", "S1"]
S1_VALUE = vertebra_number("S1")  # VerSe 26
# The team's S1 labels cover the top of the body (0.85 of L5's height below its endplate): the smallest of the 54 is
# 12 ml, 13 mm high, 221 mm2 in its largest sagittal section (vb3_06). Smaller pieces are noise, or S1 cut by the image.
MIN_S1_ML = 4.0
MIN_S1_HEIGHT_MM = 8.0
MIN_S1_AREA_MM2 = 150.0
# A body this share of whose voxels lie in the S1 mask is S1 (the level model called the sacrum a lumbar level).
S1_BODY_SHARE = 0.5
# On the 54 real cases (the team's S1 labels, the level model's L5) S1's centre lies 0.61-0.96 body spacings below
# L5's along the column (0.69-1.07 in 3-D), within 3.6 mm of it left-right. Beyond these bounds a piece is no S1 for
# this column:
BELOW_MIN_STEPS = 0.4
MAX_STEPS = 3.5  # room for two missed bodies between the lowest body found and S1
MAX_LATERAL_MM = 20.0  # a lateral curve moves L5 and S1 together; 20 mm is far beyond the 3.6 mm seen
# The sacrum model runs only on the sagittal slices the bodies span, widened by this much either side (S1 lies within
# MAX_LATERAL_MM of L5's centre and is no wider than L5): on a study much wider than the spine the rest is left out.
SLICE_MARGIN_MM = MAX_LATERAL_MM


@dataclass(eq=False)  # holds arrays: compared by identity
class Sacrum:
    """The S1 found (or not) on the canonical grid: its flat voxel indices, size, centre and the checks made."""

    found: bool
    reason: str = ""  # why it is not found ('' when found)
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # flat indices into the canonical grid
    volume_ml: float = 0.0
    centre_mm: np.ndarray = None  # (sagittal, row, column) mm, canonical
    height_mm: float = 0.0
    checks: dict = field(default_factory=dict)  # what was measured, for the report's evidence
    body: object = None  # the piece measured as a postprocess.Body (its size)

    def share_of(self, body):
        """The share of ``body``'s voxels (postprocess.Body) that lie in this S1."""
        if not len(self.index) or not len(body.index):
            return 0.0
        return float(np.isin(body.index, self.index, assume_unique=True).mean())

    def is_s1(self, body):
        return self.share_of(body) >= S1_BODY_SHARE

    def mask(self, shape):
        out = np.zeros(shape, bool)
        out.ravel()[self.index] = True
        return out


# -- the bundle ------------------------------------------------------------------------------


def sacrum_bundle_path():
    """The installed sacrum bundle: the catalogue's ``lumbar-mri-sacrum`` entry when on disk, else a
    ``lumbar-mri-sacrum`` folder under the models folders, else None (levels are then named from the column)."""
    from SpineAILib.errors import BundleError
    from SpineAILib.models.catalogue import list_models, sub_model_path

    try:
        for entry in list_models():
            if entry["bundle_id"] == BUNDLE_ID and entry["location"]:
                from pathlib import Path

                return Path(entry["location"])
    except BundleError:  # a catalogue that does not load: the folder may still be there
        pass
    return sub_model_path(SUB_TASK, BUNDLE_DIR_NAME)


def load_sacrum(device, path=None):
    """The sacrum bundle at ``path`` (default: the installed one), or None when there is none.

    BundleError when the bundle is not an S1 model (labels other than background, S1).
    """
    from SpineAILib.errors import BundleError
    from SpineAILib.models.engine import load_model

    path = path or sacrum_bundle_path()
    if path is None:
        return None
    bundle = load_model(path, device=device)
    meta = bundle.metadata
    if meta.get("task") not in TASKS or list(meta.get("labels", [])) != LABELS:
        raise BundleError(f"model bundle {path} is no sacrum model: task {meta.get('task')!r}, labels "
                          f"{meta.get('labels')} (expected task {SUB_TASK}, labels {LABELS})")  # fmt: skip
    return bundle


def shares_input(sacrum_meta, level_meta):
    """Whether the two bundles see the same slices (spacing and intensity): then the level model's are reused."""
    a, b = sacrum_meta.get("input", {}), level_meta.get("input", {})
    return a.get("spacing") == b.get("spacing") and (a.get("intensity") or {}) == (b.get("intensity") or {})


# -- finding it ------------------------------------------------------------------------------


def find_sacrum(bundle, canonical, spacing, bodies, slices=None, level_meta=None, step=1, progress=None):
    """Sacrum: the ``bundle``'s S1 on the canonical volume, checked against the column's named ``bodies``.

    ``slices``: the level model's prepared slices, reused when ``shares_input`` (``level_meta``:
    the level bundle's metadata); else the sacrum bundle's own are prepared. ``step``: as
    ``predict.predict_labels`` (every step-th sagittal slice, the others interpolated).
    """
    meta = bundle.metadata
    if slices is None or level_meta is None or not shares_input(meta, level_meta):
        slices = prepare(canonical, spacing, float(meta["input"]["spacing"][0]), meta["input"].get("intensity"))
    offset = float((meta.get("thresholds") or {}).get("background_logit_offset", 0.0))
    k0, k1 = slices_to_run(bodies, canonical.shape, spacing)
    mask = np.zeros(canonical.shape, bool)
    classes = predict_labels(bundle.model, slices[k0:k1], (k1 - k0, *canonical.shape[1:]), bundle.device,
                             progress=progress, background_offset=offset, step=step)  # fmt: skip
    mask[k0:k1] = classes == 1
    return sacrum_from_mask(mask, spacing, bodies)


def slices_to_run(bodies, shape, spacing):
    """(first, end) sagittal slices the sacrum model runs on: those the bodies span, ``SLICE_MARGIN_MM`` wider
    either side; every slice without bodies."""
    if not bodies:
        return 0, shape[0]
    k = np.concatenate([np.unravel_index(b.index, shape)[0] for b in bodies])
    margin = int(np.ceil(SLICE_MARGIN_MM / spacing[0]))
    return max(0, int(k.min()) - margin), min(shape[0], int(k.max()) + margin + 1)


def sacrum_from_mask(mask, spacing, bodies):
    """Sacrum from a ready S1 mask (canonical bool array): the model's, a reviewed label or a test's truth.

    ``bodies``: the bodies the column named (postprocess.Body, any order), to check S1 against; not those it left
    out below (a vertebra-like body below S1 is for naming.count_from_sacrum to weigh).
    """
    mask = np.asarray(mask, bool)
    pieces = component_indices(mask) if mask.any() else []
    if not pieces:
        return Sacrum(False, "no S1 in view: the sacrum model found none")
    column = sorted((b for b in bodies if not _mostly_in(b, mask)), key=lambda b: b.row_mm)
    first_reason = None
    for index in pieces:  # largest first
        candidate = _measure(index, mask.shape, spacing)
        reason = implausible(candidate, column, mask.shape, spacing)
        if not reason:
            return candidate
        first_reason = first_reason or reason
    return Sacrum(False, first_reason)


def _mostly_in(body, mask):
    return float(mask.ravel()[body.index].mean()) >= S1_BODY_SHARE if len(body.index) else False


def _measure(index, shape, spacing):
    body = measure_body(index, np.ones(shape, np.uint8), shape, spacing, 2)
    centre = np.array(np.unravel_index(index, shape), float).mean(axis=1) * np.asarray(spacing, float)
    checks = {"volume_ml": round(body.volume_ml, 1), "height_mm": round(body.height_mm, 1),
              "largest_sagittal_section_mm2": round(body.area_mm2)}  # fmt: skip
    return Sacrum(True, "", np.sort(index), round(body.volume_ml, 2), centre, body.height_mm, checks, body)


def implausible(sacrum, column, shape, spacing):
    """Why the S1 piece ``sacrum`` cannot anchor the ``column`` (bodies top to bottom, S1-like ones left out);
    '' when it can."""
    body = sacrum.body
    if body.volume_ml < MIN_S1_ML or body.height_mm < MIN_S1_HEIGHT_MM or body.area_mm2 < MIN_S1_AREA_MM2:
        return (f"what the sacrum model marked is too small for a vertebral body ({body.volume_ml:.1f} ml, "
                f"{body.height_mm:.0f} mm high, largest sagittal section {body.area_mm2:.0f} mm2; at least "
                f"{MIN_S1_ML:.0f} ml, {MIN_S1_HEIGHT_MM:.0f} mm, {MIN_S1_AREA_MM2:.0f} mm2)")  # fmt: skip
    if not column:
        return ""
    centres = body_centres_mm(column, shape, spacing)
    lowest = centres[-1]
    spacing_mm = column_spacing_mm(centres, [b.height_mm for b in column])
    direction = lowest - centres[-2] if len(centres) > 1 else np.array([0.0, 1.0, 0.0])  # else straight down the rows
    direction = direction / (np.linalg.norm(direction) or 1.0)
    below = float((sacrum.centre_mm - lowest) @ direction) / spacing_mm
    lateral = abs(float(sacrum.centre_mm[0] - lowest[0]))
    steps = float(np.linalg.norm(sacrum.centre_mm - lowest)) / spacing_mm
    sacrum.checks.update({"below_lowest_body_spacings": round(below, 2), "lateral_offset_mm": round(lateral, 1),
                          "spacings_from_lowest_body": round(steps, 2)})  # fmt: skip
    if below < BELOW_MIN_STEPS:
        return (f"what the sacrum model marked is not below the lowest vertebral body ({below:.2f} body spacings "
                "down the column; S1 lies about one below L5)")  # fmt: skip
    if lateral > MAX_LATERAL_MM:
        return (f"what the sacrum model marked lies {lateral:.0f} mm to the side of the lowest vertebral body: off the "
                "column")  # fmt: skip
    if steps > MAX_STEPS:
        return (f"what the sacrum model marked lies {steps:.1f} body spacings from the lowest vertebral body: too far "
                "below it to count the levels from")  # fmt: skip
    return ""
