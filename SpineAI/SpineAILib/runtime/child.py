"""The one child-process protocol of SpineAI: every front end runs `spineai ...` through it.

Front ends that live in a long-running process (the web app, the desktop module, the
dataset buttons of both) run the ``spineai`` command line in a child process instead of
calling the library in a thread: the model, VTK rendering and the scene of a run stay out
of the front end's process (VTK and OpenGL are not thread-safe), a crash or a memory
spike of one run cannot take the front end down, and a run can be cancelled.

The protocol, in one place:

* launch: ``command(arguments, python)`` is ``PYTHON -m SpineAILib.cli ARGUMENTS`` and
  ``environment(extra)`` puts the folder holding SpineAILib first on PYTHONPATH (a Slicer
  module's library is not installed in the Python that runs it); ``start()`` starts it
  with stderr merged into stdout, or through the launcher a front end provides (the
  desktop module's ``slicer.util.launchConsoleProcess``);
* progress: the CLI prints ``[ 42.0%] message`` lines (``parse_progress``);
* failure: the CLI's last ``spineai: error: reason`` line (``error_reason``), one line;
* cancel: ``Child.cancel()`` kills the process and its children.

``run(arguments, progress=)`` is the blocking form (dataset actions), ``run_task_isolated``
the `spineai run` form that returns the report (the web app).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from SpineAILib.errors import SpineAIError

PROGRESS = re.compile(r"^\[\s*([0-9.]+)%\]\s*(.*)$")
ERROR_PREFIX = "spineai: "
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding SpineAILib


def parse_progress(line):
    """(fraction, message) of a CLI progress line, else None."""
    match = PROGRESS.match(str(line).strip())
    return (float(match.group(1)) / 100.0, match.group(2)) if match else None


def error_reason(lines):
    """The CLI's one-line reason among its output lines, or None."""
    for line in reversed(list(lines)):
        if line.startswith(ERROR_PREFIX):
            reason = line[len(ERROR_PREFIX):].strip()
            return reason[len("error: "):] if reason.startswith("error: ") else reason
    return None


def failure_reason(lines, returncode, arguments=()):
    """The one line a front end shows for a failed child: the CLI's reason, else its last line."""
    lines = list(lines)
    reason = error_reason(lines) or next((x.strip() for x in reversed(lines) if x.strip()), "")
    what = " ".join(map(str, list(arguments)[:2]))
    return reason or f"spineai {what} stopped with exit code {returncode}".replace("  ", " ")


def command(arguments, python=None, prefix=None):
    """The argv that runs ``spineai ARGUMENTS`` with ``python`` (this Python by default);
    ``prefix`` replaces ``PYTHON -m SpineAILib.cli`` (e.g. an installed ``spineai``)."""
    return [*(prefix or [str(python or sys.executable), "-m", "SpineAILib.cli"]), *map(str, arguments)]


def environment(extra=None, inherit=True):
    """Environment variables for the child: SpineAILib's folder first on PYTHONPATH, unbuffered output.

    ``inherit=False`` gives only the variables to set (for a launcher that starts from its own
    environment, e.g. Slicer's); ``extra`` may carry the PYTHONPATH to extend.
    """
    env = dict(os.environ) if inherit else {}
    env.update(extra or {})
    paths = [PACKAGE_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != PACKAGE_ROOT]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"  # progress lines arrive as they are printed
    return env


def _popen(argv, env):
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env=env, errors="replace")  # fmt: skip


class Child:
    """One running ``spineai`` child: its output lines, progress, the one-line failure, cancel."""

    def __init__(self, process, arguments):
        self.process = process
        self.arguments = list(arguments)
        self.lines = []
        self.cancelled = False

    @property
    def pid(self):
        return self.process.pid

    def read_lines(self):
        """Yield each output line (without its newline) until the child closes its output."""
        while True:
            try:
                line = self.process.stdout.readline()
            except UnicodeDecodeError:  # a non-UTF-8 locale: drop the line, keep reading
                continue
            if not line:
                return
            line = line.rstrip("\r\n")
            self.lines.append(line)
            yield line

    def wait(self):
        return self.process.wait()

    @property
    def returncode(self):
        return self.process.returncode

    def reason(self):
        return failure_reason(self.lines, self.returncode, self.arguments)

    def cancel(self):
        """Kill the child and its children (a launcher such as PythonSlicer leaves Python running otherwise)."""
        self.cancelled = True
        try:
            import psutil

            for grandchild in psutil.Process(self.process.pid).children(recursive=True):
                grandchild.kill()
        except Exception:  # psutil missing, or the process already gone
            pass
        try:
            self.process.kill()
        except OSError:
            pass


def start(arguments, python=None, env=None, launch=None, prefix=None):
    """Start ``spineai ARGUMENTS``; a Child. ``launch(argv, env)`` replaces subprocess.Popen
    (it must merge stderr into a text stdout) and gets only the variables to set."""
    argv = command(arguments, python, prefix)
    try:
        process = launch(argv, environment(env, inherit=False)) if launch else _popen(argv, environment(env))
    except OSError as error:
        raise SpineAIError(f"cannot start {argv[0]}: {error.strerror or error}") from None
    return Child(process, arguments)


def run(arguments, progress=None, python=None, env=None, launch=None, prefix=None):
    """Run ``spineai ARGUMENTS`` to the end; progress lines go to ``progress(fraction, message)``.

    Returns the output lines that are neither progress nor errors; a failure raises
    SpineAIError with the CLI's one-line reason.
    """
    child = start(arguments, python=python, env=env, launch=launch, prefix=prefix)
    output = []
    for line in child.read_lines():
        found = parse_progress(line)
        if found is not None:
            if progress is not None:
                progress(*found)
        elif line and not line.startswith(ERROR_PREFIX):
            output.append(line)
    if child.wait() != 0:
        raise SpineAIError(child.reason())
    return output


def run_arguments(task, input_path, out_dir, *, model=None, device="auto", series=None, force=False, dicom=False):
    """The arguments of `spineai run` for these options (after ``spineai``)."""
    arguments = ["run", task, str(input_path), "--out", str(out_dir), "--device", device or "auto"]
    if model:
        arguments += ["--model", str(model)]
    if series is not None:
        arguments += ["--series", str(series)]
    if force:
        arguments.append("--force")
    if dicom:
        arguments.append("--dicom")
    return arguments


def cli_command(task, input_path, out_dir, *, model=None, device="auto", series=None, force=False, python=None,
                dicom=False):  # fmt: skip
    """The argument list of `spineai run` for these options."""
    return command(run_arguments(task, input_path, out_dir, model=model, device=device, series=series, force=force,
                                 dicom=dicom), python)  # fmt: skip


def run_task_isolated(task, input_path, out_dir, *, model=None, device="auto", series=None, force=False, progress=None,
                      dicom=False):  # fmt: skip
    """Like tasks.run_task, in a child process; returns the report written to out_dir/report.json."""
    run(run_arguments(task, input_path, out_dir, model=model, device=device, series=series, force=force, dicom=dicom),
        progress=progress)  # fmt: skip
    return json.loads((Path(out_dir) / "report.json").read_text())
