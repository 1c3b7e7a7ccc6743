"""RSNA 2024 lumbar spine degenerative classification: the competition metric (metric), the
Kaggle layout reader (layout) and a synthetic study generator (generator); the trainer is
SpineAITraining.lumbar.train_severity. The grading model itself lives in
SpineAILib.workflows.lumbar.severity, which the module ships.

Only numpy and pydicom are imported at package import; torch and monai load in the
modules that train or predict.
"""
