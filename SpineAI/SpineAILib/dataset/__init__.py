"""Datasets from what annotators and runs produce: de-identified export, import for editing.

``export_dataset(sources, task, out_dir, add=False, split=None, seed=0)`` writes a
folder the training package reads directly (layout.py: the seeds' ultrasound layout,
the mri_lumbar volume layout, boxes.json, and the dataset.json manifest of
manifest.py); ``import_dataset(dataset_dir, out_dir=None)`` writes the cases back as
run-folder-shaped case folders. De-identification: deid.py. What the front ends' Export /
Import dataset buttons decide (default folders, the task, one-line results): actions.py.
Heavy modules (slicer, nibabel, cv2) load only when a function runs.
"""


def export_dataset(sources, task, out_dir, **kwargs):
    from SpineAILib.dataset.export import export_dataset as run

    return run(sources, task, out_dir, **kwargs)


def import_dataset(dataset_dir, out_dir=None, **kwargs):
    from SpineAILib.dataset.importer import import_dataset as run

    return run(dataset_dir, out_dir, **kwargs)


__all__ = ["export_dataset", "import_dataset"]
