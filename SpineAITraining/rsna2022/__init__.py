"""RSNA 2022 cervical spine fracture detection: a CT phantom of the cervical and upper
thoracic spine with labelled fractures, a generator that writes synthetic studies in the
exact Kaggle layout, the layout adapter (real or generated data) and the competition
metric. The submission naming and CSV writer live in SpineAILib.fracture_submission,
which the module ships.

Only numpy, pydicom and nibabel are imported here; nothing needs torch.
"""
