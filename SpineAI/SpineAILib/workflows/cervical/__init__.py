"""Cervical spine CT: vertebrae C1-C7 (and T1 ...) by a 3-D UNet, per-vertebra fracture probabilities.

Shared by the cervical-ct workflow (workflow.py) and its trainers
(SpineAITraining/train_cervical_ct.py, train_cervical_fracture.py), so training and
inference prepare images identically. Nothing here imports torch at import time.
"""

SEGMENTATION_TASK = "cervical-ct"
FRACTURE_TASK = "cervical-ct/fracture"
FRACTURE_BUNDLE_DIR = "cervical-ct-fracture"
PATIENT_ROW = "patient_overall"
