"""RSNA 2024 lumbar spine degenerative classification: metric, submission, data layout,
a synthetic study generator, and the 2.5-D severity grading model.

Only numpy and pydicom are imported at package import; torch and monai load in the
modules that train or predict.
"""
