"""Cervical CT: a CT phantom of the cervical and upper thoracic spine with labelled fractures
(phantom, anatomy, fractures, surroundings, sdf, tissues, artefacts), a generator that writes
synthetic studies in the exact RSNA 2022 Kaggle layout (generator), the layout adapter (layout,
real or generated data) and the competition metric (metric); the cases both trainers read
(cases) and the trainers themselves (train_segmentation: ``spineai-train cervical-ct``;
train_fracture: ``spineai-train cervical-fracture``), measured by evaluate. The submission
naming and CSV writer live in SpineAILib.workflows.cervical.submission, which the module ships.

Only numpy, pydicom and nibabel are imported at package import; torch loads in the trainers.
"""
