"""The RSNA 2024 Kaggle layout: labelled lumbar MRI studies for training and evaluation.

train.csv (study_id + 25 `condition_level` grade columns), train_label_coordinates.csv
(study_id, series_id, instance_number, condition, level, x, y in pixels of that
instance), train_series_descriptions.csv and train_images/<study>/<series>/<instance>.dcm
(`test_` files alike, without labels). Studies, series and their geometry are read by
SpineAILib.workflows.lumbar.severity.study, which the module uses on a user's own study too.
"""

import csv
from pathlib import Path

from SpineAILib.workflows.lumbar.severity.study import LabelPoint, load_study_folder
from SpineAILib.workflows.lumbar.severity.submission import CONDITIONS, LEVELS, condition_key, level_key, row_id


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


class RSNADataset:
    """The Kaggle layout under ``root`` for ``split`` 'train' (labelled) or 'test' (images only)."""

    def __init__(self, root, split="train"):
        from .metric import grade_index

        self.root = Path(root)
        self.split = split
        self.images = self.root / f"{split}_images"
        desc_path = self.root / f"{split}_series_descriptions.csv"
        if not desc_path.is_file():
            raise FileNotFoundError(f"{desc_path} is missing: {self.root} is not in the RSNA 2024 layout")
        self.descriptions = {}
        for row in _read_csv(desc_path):
            self.descriptions.setdefault(str(row["study_id"]), {})[str(row["series_id"])] = row["series_description"]
        self.grades = {}
        labels = self.root / f"{split}.csv"
        if labels.is_file():
            for row in _read_csv(labels):
                grades = {}
                for condition in CONDITIONS:
                    for level in LEVELS:
                        value = row.get(f"{condition}_{level}")
                        if value not in (None, "") and str(value).lower() != "nan":
                            grades[(condition, level)] = grade_index(value)
                self.grades[str(row["study_id"])] = grades
        self.coordinates = {}
        coords = self.root / f"{split}_label_coordinates.csv"
        if coords.is_file():
            for row in _read_csv(coords):
                self.coordinates.setdefault(str(row["study_id"]), []).append(row)
        on_disk = {p.name for p in self.images.iterdir() if p.is_dir()} if self.images.is_dir() else set()
        self.study_ids = sorted((set(self.descriptions) | set(self.grades)) & on_disk, key=_study_order)
        self.missing_images = sorted((set(self.descriptions) | set(self.grades)) - on_disk, key=_study_order)

    @property
    def is_synthetic(self):
        """True when the set came from SpineAITraining.lumbar.severity.generator."""
        return (self.root / "generator_truth.json").is_file()

    def load_study(self, study_id):
        study_id = str(study_id)
        study = load_study_folder(self.images / study_id, study_id, self.descriptions.get(study_id, {}))
        study.grades = dict(self.grades.get(study_id, {}))
        for row in self.coordinates.get(study_id, []):
            try:
                key = (condition_key(row["condition"]), level_key(row["level"]))
            except ValueError as error:
                study.warnings.append(f"label coordinate skipped: {error}")
                continue
            series = study.series_by_id(row["series_id"])
            inst = series.instance(int(float(row["instance_number"]))) if series else None
            if inst is None:
                study.warnings.append(
                    f"{key[0]} {key[1]}: series {row['series_id']} instance {row['instance_number']} is not on disk; point skipped"
                )
                continue
            x, y = float(row["x"]), float(row["y"])
            study.points[key] = LabelPoint(key[0], key[1], series.series_id, inst.number, x, y, inst.ras(x, y))
        return study

    def solution_rows(self, study_ids):
        """Metric solution rows (row_id, grade) for the labelled rows of ``study_ids``."""
        rows = []
        for sid in study_ids:
            for (condition, level), grade in sorted(self.grades.get(str(sid), {}).items()):
                rows.append({"row_id": row_id(sid, condition, level), "grade": grade})
        return rows


def _study_order(study_id):
    return (0, int(study_id)) if str(study_id).isdigit() else (1, str(study_id))
