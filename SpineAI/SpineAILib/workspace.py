"""One folder that keeps a user's work across restarts: ``runs/`` (each run's output folder),
``cases/`` (annotation cases) and ``uploads/`` (files sent from a browser).

Chosen at start (``spineai web --workspace DIR``; default ``~/SpineAI-workspace``) and made only
when something is written into it. ``runs_by_input()`` lists the runs grouped by the input they
were made from (report.json), newest first; ``save_upload`` writes a browser's file atomically,
size-limited, under a sanitised name. GUI-free.
"""

import json
import os
import re
import tempfile
import time
from pathlib import Path

from SpineAILib.errors import InputError

WORKSPACE_ENV = "SPINEAI_WORKSPACE"  # the default when --workspace is not given (tests set it)
DEFAULT_WORKSPACE = Path("~/SpineAI-workspace")
MAX_UPLOAD_BYTES = 1024 * 1024 * 1024  # 1 GiB in all for one upload
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name, default="upload"):
    """A file name with no folder part, no leading dots and only letters, digits, '.', '_', '-'."""
    base = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).lstrip(".")[:120].strip("_")
    return base or default


class Workspace:
    def __init__(self, folder=None):
        self.folder = Path(folder or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE).expanduser().absolute()

    @property
    def runs(self):
        return self.folder / "runs"

    @property
    def cases(self):
        return self.folder / "cases"

    @property
    def uploads(self):
        return self.folder / "uploads"

    def new_run_folder(self, task, runs=None):
        """A new, not yet existing run folder ``runs/<task>-<date-time>`` (made unique)."""
        runs = Path(runs or self.runs)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out, n = runs / f"{task}-{stamp}", 1
        while out.exists():
            n += 1
            out = runs / f"{task}-{stamp}-{n}"
        return out

    def runs_by_input(self, runs=None, limit=200):
        """[{"input", "name", "runs": [{"path", "task", "when", "message", "warnings"}]}]: the runs in
        ``runs`` (default: the workspace's) grouped by their input, newest input and run first."""
        runs = Path(runs or self.runs)
        groups = {}
        try:
            reports = sorted(runs.glob("*/report.json"), key=lambda p: p.stat().st_mtime, reverse=True)[:limit]
        except OSError:
            return []
        for report_path in reports:
            try:
                report = json.loads(report_path.read_text(encoding="utf-8"))
                mtime = report_path.stat().st_mtime
            except (OSError, ValueError):
                continue
            source = str((report.get("input") or {}).get("path") or "unknown input")
            entry = {"path": str(report_path.parent), "task": report.get("task", ""),
                     "when": time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime)),
                     "message": str((report.get("results") or {}).get("message") or
                                    (report.get("results") or {}).get("summary") or ""),
                     "warnings": len(report.get("warnings") or [])}
            group = groups.setdefault(source, {"input": source, "name": Path(source.rstrip("/")).name or source,
                                               "runs": []})
            group["runs"].append(entry)
        return list(groups.values())

    def case_folders(self, cases=None):
        """[{"name", "path", "task"}] of the annotation cases in ``cases`` (default: the workspace's)."""
        out = []
        cases = Path(cases or self.cases)
        for path in sorted(cases.glob("*/annotation.json")) if cases.is_dir() else []:
            try:
                task = json.loads(path.read_text(encoding="utf-8")).get("task", "")
            except (OSError, ValueError):
                task = ""
            out.append({"name": path.parent.name, "path": str(path.parent), "task": task})
        return out

    def save_upload(self, name, data, batch=None, max_bytes=MAX_UPLOAD_BYTES):
        """Write ``data`` (bytes) as ``uploads/[batch/]<safe name>`` atomically (a temporary file
        beside it, then renamed); an existing file of that name is not replaced (a number is added).
        Refused over ``max_bytes``. Returns the path."""
        if data is None:
            raise InputError(f"{name}: the upload holds no data")
        if len(data) > max_bytes:
            raise InputError(f"{name}: {len(data) / 1e6:.0f} MB is more than the {max_bytes / 1e6:.0f} MB an upload may be")
        folder = self.uploads / safe_name(batch, "batch") if batch else self.uploads
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / safe_name(name)
        stem, suffix, n = target.name, "", 1
        if "." in stem:
            stem, suffix = stem.split(".", 1)
            suffix = "." + suffix
        while target.exists():
            n += 1
            target = folder / f"{stem}-{n}{suffix}"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
