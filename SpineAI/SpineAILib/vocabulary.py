"""The names every part of SpineAI shares: tasks, labels, levels, devices.

One home for them, so the CLI, the web app, the desktop module, the annotation
case format, the bundle schema and the workflows can never disagree. Imports nothing.
"""

# -- tasks (as typed on the command line, stored in report.json, case.json and bundle metadata)
LP_ULTRASOUND = "lp-ultrasound"
LUMBAR_MRI = "lumbar-mri"
CERVICAL_CT = "cervical-ct"
SPINE_CT = "spine-ct"
TASKS = (LP_ULTRASOUND, LUMBAR_MRI, CERVICAL_CT, SPINE_CT)

# -- devices a run may ask for
DEVICES = ("auto", "cpu", "cuda")

# -- lp-ultrasound: the per-frame labels, in the order of every table and network output
ULTRASOUND_LABELS = ("bad_quality", "spinal_cord", "csf")
# ... and the structures drawn on a frame (masks, boxes); on a frame's label map they are 1, 2
ULTRASOUND_STRUCTURES = ("spinal_cord", "csf")

# -- vertebrae
CERVICAL_VERTEBRAE = ("C1", "C2", "C3", "C4", "C5", "C6", "C7")
LUMBAR_VERTEBRAE = ("L1", "L2", "L3", "L4", "L5")
# what an annotator may name on a lumbar MRI (the level model's T11-L5 and the sacrum)
LUMBAR_MRI_VERTEBRAE = ("T11", "T12", *LUMBAR_VERTEBRAE, "S1")

# -- lumbar-mri severity grades (RSNA 2024): the conditions graded at each disc level, and the grades
SEVERITY_CONDITIONS = (
    "spinal_canal_stenosis",
    "left_neural_foraminal_narrowing",
    "right_neural_foraminal_narrowing",
    "left_subarticular_stenosis",
    "right_subarticular_stenosis",
)
SEVERITY_GRADE_NAMES = ("Normal/Mild", "Moderate", "Severe")  # as RSNA's train.csv spells them
# what a grade from a bundle trained without patient labels (synthetic studies) is shown with, everywhere
SEVERITY_TRAIN_COMMAND = "spineai-train lumbar-severity --data RSNA_DIR"
SEVERITY_RESEARCH_NOTE = ("research model — not trained on patient labels; grades show the pipeline working, "
                          f"not a reading; to replace it: {SEVERITY_TRAIN_COMMAND}")

# -- what a result table says where it makes a call, and where it makes none
FRACTURE_CALL = "fracture"
NO_FRACTURE_CALL = "no fracture"
NOT_IN_VIEW = "not in view"
NOT_ASSESSED = "not assessed"
