"""RSNA 2024 lumbar spine degenerative classification: metric, submission, data layout,
a synthetic study generator and the Kaggle layout reader (the grading model itself
lives in SpineAILib.severity, which the module ships).

Only numpy and pydicom are imported at package import; torch and monai load in the
modules that train or predict.
"""
