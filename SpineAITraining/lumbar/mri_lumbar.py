"""The real lumbar MRI in ../shared/data/mri_lumbar: cases, label numbers and the fixed split.

Two sources (see that folder's README): ``vb3_NN`` T1 volumes with L1-L5 bodies
labelled (T12 visible but unlabelled) and ``vb2_NN`` T2 volumes with T11-L5
labelled. The split is by case and stratified by source; it lives in
``splits/mri_lumbar_split.json`` and is regenerated only to check it is stable.

A SpineAI dataset export (``spineai dataset export --task lumbar-mri``: ``case-NNNN.nii.gz``
+ ``case-NNNN_labels.nii.gz`` and a ``dataset.json`` manifest) is read the same way: its
cases are the manifest's cases with a label map, each labels what its map holds, and its
split is the manifest's (``dataset_split``).
"""

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

SPLIT_FILE = Path(__file__).resolve().parents[1] / "splits" / "mri_lumbar_split.json"
SPLIT_SEED = 20240603
# Per source: (validation, test) case counts; the rest trains. About 13% / 20%.
SPLIT_COUNTS = {"vb2": (2, 3), "vb3": (5, 8)}
CASE_PATTERN = re.compile(r"^(vb[23])_(\d+)\.nii\.gz$")
# Labels each source annotates (VerSe numbers).
LABELLED = {"vb2": (18, 19, 20, 21, 22, 23, 24), "vb3": (20, 21, 22, 23, 24)}
SEQUENCE = {"vb2": "T2 TSE (Zukic et al. 2014)", "vb3": "T1 FFE (MyoSegmenTUM, Burian et al. 2019)"}
MANIFEST = "dataset.json"
EXPORT_SOURCE = "export"
IGNORE = 255  # training targets: pixels whose class the case does not say (unlabelled vertebrae)
LEVEL_VALUES = range(18, 25)  # T11..L5: what the level model learns


@dataclass(frozen=True)
class Case:
    case_id: str
    source: str  # "vb2" or "vb3"
    image: Path
    labels: Path
    labelled: tuple = None  # export cases: the levels their label map holds

    @property
    def labelled_values(self):
        return self.labelled if self.labelled is not None else LABELLED[self.source]


def source_of(case_id):
    return case_id.split("_")[0]


def is_export(data_dir):
    return (Path(data_dir) / MANIFEST).is_file()


def _manifest(data_dir):
    from SpineAILib.errors import InputError

    try:
        manifest = json.loads((Path(data_dir) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{data_dir}: {MANIFEST} is not readable ({error})") from None
    if manifest.get("task") != "lumbar-mri":
        raise InputError(f"{data_dir}: holds a {manifest.get('task')} dataset, not lumbar-mri")
    return manifest


def list_cases(data_dir):
    """Every case with both image and label file, sorted by id."""
    data_dir = Path(data_dir)
    if is_export(data_dir):
        return _export_cases(data_dir)
    cases = []
    for path in sorted(data_dir.glob("vb*_*.nii.gz")):
        match = CASE_PATTERN.match(path.name)
        if not match:
            continue  # label files and anything else
        labels = data_dir / f"{match.group(1)}_{match.group(2)}_labels.nii.gz"
        if labels.is_file():
            cases.append(Case(path.name[: -len(".nii.gz")], match.group(1), path, labels))
    return cases


def make_split(case_ids, seed=SPLIT_SEED, counts=None):
    """{'train', 'validation', 'test'}: sorted case ids, stratified by source, deterministic for ``seed``."""
    counts = counts or SPLIT_COUNTS
    split = {"train": [], "validation": [], "test": []}
    for source in sorted({source_of(c) for c in case_ids}):
        ids = sorted(c for c in case_ids if source_of(c) == source)
        random.Random(f"{seed}-{source}").shuffle(ids)  # string seed: stable across Python versions
        n_val, n_test = counts.get(source, (0, 0))
        split["test"] += ids[:n_test]
        split["validation"] += ids[n_test : n_test + n_val]
        split["train"] += ids[n_test + n_val :]
    return {part: sorted(ids) for part, ids in split.items()}


def split_document(case_ids, seed=SPLIT_SEED):
    return {
        "dataset": "mri_lumbar (../shared/data/mri_lumbar)",
        "method": "by case, stratified by source (vb2 T2 / vb3 T1): per source a seeded shuffle, then "
        + ", ".join(f"{s} {v} validation + {t} test" for s, (v, t) in sorted(SPLIT_COUNTS.items()))
        + "; the rest trains; the test part is never used for tuning",
        "seed": seed,
        **make_split(case_ids, seed),
    }


def _export_cases(data_dir):
    cases = []
    for entry in _manifest(data_dir)["cases"]:
        image, labels = data_dir / f"{entry['id']}.nii.gz", data_dir / f"{entry['id']}_labels.nii.gz"
        if image.is_file() and labels.is_file():
            levels = tuple(int(v) for v in entry.get("labelled", []) if int(v) in LEVEL_VALUES)
            cases.append(Case(entry["id"], EXPORT_SOURCE, image, labels, labelled=levels))
    return sorted(cases, key=lambda c: c.case_id)


def dataset_split(data_dir):
    """The split to train with: an export's own (its manifest, by case), else the fixed split file."""
    if data_dir is None or not is_export(data_dir):
        return load_split()
    manifest = _manifest(data_dir)
    parts = {"train": [], "validation": [], "test": []}
    labelled = {c.case_id for c in _export_cases(Path(data_dir))}
    for entry in manifest["cases"]:
        if entry["id"] in labelled and entry.get("split") in parts:
            parts[entry["split"]].append(entry["id"])
    return {"dataset": f"SpineAI dataset export {data_dir}", "file": str(Path(data_dir) / MANIFEST),
            "method": manifest.get("split", {}).get("method", "by case"), "seed": manifest.get("split", {}).get("seed"),
            **{k: sorted(v) for k, v in parts.items()}}  # fmt: skip


def training_parts(data_dir, train_cases=None, val_cases=None):
    """(split, training ids, validation ids) for a trainer: the split's parts unless comma-separated
    ``train_cases`` / ``val_cases`` override them; InputError for an export without either part
    and for any test case (test cases never train or tune)."""
    from SpineAILib.errors import InputError

    data_dir = Path(data_dir) if data_dir and Path(data_dir).is_dir() else None
    split = dataset_split(data_dir)
    train_ids = train_cases.split(",") if train_cases else split["train"]
    val_ids = val_cases.split(",") if val_cases else split["validation"]
    if data_dir is not None and is_export(data_dir) and (not train_ids or not val_ids):
        raise InputError(f"{data_dir}: the dataset's split has no {'training' if not train_ids else 'validation'} cases "
                         "with label maps; export more cases or choose --split fractions that give each part a case")
    leaked = sorted(set(train_ids + val_ids) & set(split["test"]))
    if leaked:
        raise InputError(f"cases {', '.join(leaked)} belong to the test split; they never train or tune")
    return split, train_ids, val_ids


def cases_by_id(data_dir, ids):
    """{id: Case} for ``ids`` in ``data_dir``; InputError for a missing folder or case."""
    from SpineAILib.errors import InputError

    if not Path(data_dir).is_dir():
        raise InputError(f"{data_dir}: no such data folder")
    found = {c.case_id: c for c in list_cases(data_dir)}
    missing = [c for c in ids if c not in found]
    if missing:
        raise InputError(f"{data_dir}: cases {', '.join(missing)} are missing")
    return {c: found[c] for c in ids}


def load_split(path=SPLIT_FILE):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def split_cases(data_dir, part, path=SPLIT_FILE):
    """The cases of ``part`` ('train', 'validation' or 'test') that exist in ``data_dir``."""
    wanted = set(load_split(path)[part])
    return [case for case in list_cases(data_dir) if case.case_id in wanted]


def require_cases(cases, data_dir, part="all"):
    """``cases`` when there are any; else the one-line refusal of a folder that holds none (a wrong --data)."""
    if not cases:
        from SpineAILib.errors import InputError

        which = "" if part == "all" else f"{part} "
        raise InputError(f"{data_dir}: no {which}case found there (--data is the mri_lumbar folder: vb2_*/vb3_* "
                         "images with their labels)")  # fmt: skip
    return cases


def write_split(data_dir, path=SPLIT_FILE):
    """(Re)write the split file from the cases in ``data_dir``; run once, then commit the file."""
    document = split_document([c.case_id for c in list_cases(data_dir)])
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return document


if __name__ == "__main__":
    import sys

    print(json.dumps(write_split(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mri_lumbar"), indent=2))
