"""A run's output folder, read back: which files are results and how they enter a scene.

Shared by the web app and the desktop module so both show exactly the same things.
"""

import json
from pathlib import Path

from .errors import InputError

NODE_FILE_SUFFIXES = (".seg.nrrd", ".mrk.json", ".tsv")


def result_files(folder):
    """The segmentations, markups and tables in ``folder``, in a stable order.

    A table's ``.schema.tsv`` (its column types) is read with the table, not as a table.
    """
    folder = Path(folder)
    return [
        path
        for suffix in NODE_FILE_SUFFIXES
        for path in sorted(folder.glob(f"*{suffix}"))
        if not path.name.endswith(".schema.tsv")
    ]


def report_input_path(folder):
    """The input a run was made from (report.json), if it still exists."""
    try:
        report = json.loads((Path(folder) / "report.json").read_text())
        source = report.get("input", {}).get("path")
    except (OSError, ValueError, AttributeError):
        return None
    return source if source and Path(source).exists() else None


def load_results(ctx, folder):
    """Load every result file of ``folder`` into the scene; returns the new nodes."""
    from .scene.storage import load_node

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (give the output folder of a run)")
    files = result_files(folder)
    if not files:
        raise InputError(f"{folder}: no .seg.nrrd, .mrk.json or .tsv results in it")
    return [load_node(ctx, path) for path in files]
