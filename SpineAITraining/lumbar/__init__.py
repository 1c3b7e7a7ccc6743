"""Lumbar MRI: the ``mri_lumbar`` cases and their fixed split (mri_lumbar), the sagittal
augmentation (augment), the level model and its body refiner (train_levels: ``spineai-train
lumbar-mri``; train_refiner: ``spineai-train lumbar-refiner``) with their evaluations
(evaluate_levels, evaluate_disc_estimate), and the RSNA 2024 severity grading (severity/:
metric, Kaggle layout, synthetic studies; train_severity: ``spineai-train lumbar-severity``).
"""
