"""The folder a synthetic data-set generator writes into: new, empty, or one the same generator wrote.

A generator given a folder of the user's (a home folder, /etc) must neither mix its files into it
nor delete anything there: a non-empty folder is used only when its ``generator_truth.json`` says
this generator wrote it, and then only with ``overwrite``, which removes the generator's own files
and folders first (links are unlinked, never followed).
"""

import json
import shutil
from pathlib import Path

from SpineAILib.errors import OutputError

TRUTH_FILE = "generator_truth.json"
MAX_TRUTH_BYTES = 256 * 1024 * 1024  # a truth file larger than this is no generator's


def written_by(folder, generator):
    """True when ``folder``'s generator_truth.json names ``generator`` (its module path)."""
    truth = Path(folder) / TRUTH_FILE
    try:
        if truth.is_symlink() or not truth.is_file() or truth.stat().st_size > MAX_TRUTH_BYTES:
            return False
        document = json.loads(truth.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeError):
        return False
    return isinstance(document, dict) and document.get("generator") == generator


def prepare_output(out_dir, generator, overwrite, owned):
    """The generator's output folder, ready to write (``owned``: the names the generator writes there)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        out_dir.mkdir(parents=True, exist_ok=True)
        return out_dir
    if not written_by(out_dir, generator):
        raise OutputError(f"{out_dir} is not empty and holds no data set written by {generator}: choose a new or "
                          "empty folder (nothing was written)")  # fmt: skip
    if not overwrite:
        raise OutputError(f"{out_dir} already holds a data set written by {generator}; choose another folder or "
                          "--overwrite")  # fmt: skip
    for name in owned:
        path = out_dir / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    return out_dir
