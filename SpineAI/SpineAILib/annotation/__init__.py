"""Annotating cases: frame labels, masks, boxes, points, severity and fracture labels.

The web app, the desktop module and scripts all edit a case through
``AnnotationSession`` (session.py); the front ends only turn clicks and keys into
its calls. Every edit is saved at once (atomic writes), carries who and when, and
can be undone; reopening a case folder after a crash or a closed browser tab
restores everything.

Reading a case (for export, training, checks): ``load_case(folder) -> CaseData``
(case.py) gives every annotation as arrays and dicts, with provenance, without
importing slicer. Prefer it to parsing the files; the files are for other tools
(3D Slicer opens each of them) and for people.

Case folder format (format_version 1)
=====================================
A case is one image (an ultrasound cine, an MRI or a CT volume) and one folder::

    CASE/
      annotation.json        manifest, provenance and the edit log (always present)
      annotation.lock        while a SpineAI process has the case open (pid, host)
      frames.tsv             cine: per-frame labels
      masks/frame_0007.seg.nrrd   cine: cord/CSF mask of frame 7 (only frames with a mask)
      vertebrae.seg.nrrd     volume: vertebra masks
      discs.mrk.json         MRI: disc-level points L1/L2 ... L5/S1
      severity.tsv           MRI: grade per disc level and condition
      fractures.tsv          CT: fractured 0/1 per vertebra (+ patient_overall)
      boxes.mrk.json         boxes: cine cord/CSF boxes (frame-tagged); CT fracture boxes

A file is absent when it would be empty. The image itself is not copied: annotation.json
says where it is (de-identification happens on export, SpineAILib.dataset).

annotation.json::

    {"format": "spineai-annotation", "format_version": 1,
     "task": "lp-ultrasound" | "lumbar-mri" | "cervical-ct",
     "image": {"path": "/abs/path/to/input", "series": null | N (DICOM folder's series, as --series),
               "kind": "cine" | "volume", "modality": "US",
               cine:   "frames": N, "frame_shape": [rows, cols], "pixel_spacing": [row_mm, col_mm],
                       "frame_times_ms": [...], "ijk_to_ras": 4x4 of one frame,
               volume: "dimensions": [I, J, K], "ijk_to_ras": 4x4},
     "created": {"user": "...", "time": "ISO 8601 with offset"},
     "sources": {item: "model" | "user"},       # who made each item, see "Items" below
     "prefills": [{"folder": run folder, "user", "time", "items": n}],
     "edits": [{"n": 1, "user": "alice", "time": "2025-01-31T10:02:03+01:00",
                "action": "toggle", "item": "labels/12", "detail": "csf on"}, ...],
     "saved": {"user", "time"}}

``user`` is the OS login name unless the front end was given one (SPINEAI_USER or its own
field). The edit log is append-only (undo and redo are logged as edits too).

Items (the keys of "sources"; an item absent from "sources" was never set):
``labels/F`` (frame F's three labels), ``mask/F`` (frame F's mask), ``box/F/STRUCTURE``
(cine box), ``mask`` (the volume's vertebra masks), ``point/L4/L5`` (disc point),
``severity/L4/L5/CONDITION``, ``fracture/C3``, ``box/C3`` (fracture box). A prefill from a
model run only ever sets items that are absent or still "model": an item a user touched is
never replaced.

frames.tsv (tab-separated, one row per frame of the cine, frames counted from 0 as in
``spineai run``'s frames.tsv)::

    frame  time_ms  bad_quality  spinal_cord  csf  source
    0      0.0      0            1            1    user
    1      33.3     0            0            0              <- never labelled

The three label columns are 0/1; ``source`` is "user", "model" or "" (never labelled:
its zeros mean "unknown", not "absent"). A bad-quality frame may still carry cord/CSF
labels if the annotator set them; the file keeps what was set.

Masks (.seg.nrrd, 3D Slicer segmentation files, gzip): label values ``spinal_cord`` = 1,
``csf`` = 2 on a cine frame (one slice, the frame's grid: IJK->RAS = diag(-col_mm,
-row_mm, 1), as ``SpineAILib.scene.sequences`` shows frames); vertebra numbers (VerSe:
C1 = 1 ... L5 = 24, S1 = 26) for ``vertebrae.seg.nrrd`` on the volume's grid. Each segment
is named (segment ID = name), coloured, has standard terminology and the tag
``SpineAI.LabelValue``. As Slicer does, the stored block is cropped to the non-zero voxels:
``Segmentation_ReferenceImageExtentOffset`` (and the space origin) say where it lies on the
full grid. One layer: the label map's voxels are the label values.

discs.mrk.json: a Slicer markups point list (LPS in the file, as Slicer writes it), one
control point per placed level, labelled ``L1/L2`` ... ``L5/S1``.

boxes.mrk.json: a Slicer markups JSON file whose "markups" list holds one ROI per box
(Slicer opens one node per entry). Each ROI's control point label is the structure
(``spinal_cord`` / ``csf``) or the vertebra (``C3``); its description is ``frame 12`` for a
cine box (absent for volume boxes). Cine boxes cover whole pixels: pixel box x0, y0, x1, y1
(x1 = last column + 1, as ``us_localise`` gives them) <-> RAS through
``scene.cine_overlays.box_to_ras`` / ``ras_to_box`` on the frame's IJK->RAS; ``CaseData``
gives both.

severity.tsv: ``level  condition  grade  source`` with the 25 rows (5 levels x the 5 RSNA
2024 conditions, ``spinal_canal_stenosis`` ...); grade is ``Normal/Mild``, ``Moderate``,
``Severe`` or "" (not set).

fractures.tsv: ``vertebra  fractured  source`` for C1 ... C7 and ``patient_overall`` (1 when
any vertebra is marked); fractured is 0/1, or "" when not set.
"""

FORMAT = "spineai-annotation"
FORMAT_VERSION = 1

__all__ = ["FORMAT", "FORMAT_VERSION"]
