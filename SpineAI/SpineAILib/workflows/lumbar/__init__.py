"""Vertebral levels on sagittal MRI: the slice grid, the model's prediction, 3-D clean-up, S1 (the sacrum)
and the level names counted up from it, disc points.

Pieces shared by the lumbar-mri workflow (tasks/lumbar_mri.py) and its trainer
(SpineAITraining/train_lumbar_mri.py); nothing here imports torch at import time.
"""

# The level model's classes: index -> VerSe number (0 = background).
CLASS_VALUES = (0, 18, 19, 20, 21, 22, 23, 24)
CLASS_NAMES = ("background", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
