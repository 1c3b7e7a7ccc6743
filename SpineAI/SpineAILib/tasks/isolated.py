"""Run a workflow in a child process, as `spineai run` does.

Front ends that live in a long-running process (the web app) use this instead of
calling run_task in a thread: the model, VTK rendering and the scene of the run
stay out of the server's process (VTK and OpenGL are not thread-safe), a crash or
a memory spike of one run cannot take the server down, and a run can be cancelled.
Progress comes back from the CLI's "[ 42.0%] message" lines; a failure comes back
as the CLI's one-line reason.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from ..errors import SpineAIError

PROGRESS = re.compile(r"^\[\s*([0-9.]+)%\]\s*(.*)$")
ERROR_PREFIX = "spineai: "


def cli_command(task, input_path, out_dir, *, model=None, device="auto", series=None, force=False, python=None):
    """The argument list of `spineai run` for these options."""
    command = [python or sys.executable, "-m", "SpineAILib.cli", "run", task, str(input_path), "--out", str(out_dir),
               "--device", device]  # fmt: skip
    if model:
        command += ["--model", str(model)]
    if series is not None:
        command += ["--series", str(series)]
    if force:
        command.append("--force")
    return command


def run_task_isolated(task, input_path, out_dir, *, model=None, device="auto", series=None, force=False, progress=None):
    """Like tasks.run_task, in a child process; returns the report written to out_dir/report.json."""
    command = cli_command(task, input_path, out_dir, model=model, device=device, series=series, force=force)
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    reason = None
    for line in process.stderr:
        line = line.rstrip()
        match = PROGRESS.match(line)
        if match and progress is not None:
            progress(float(match.group(1)) / 100.0, match.group(2))
        elif line.startswith(ERROR_PREFIX):
            reason = line[len(ERROR_PREFIX):].removeprefix("error: ")
    if process.wait() != 0:
        raise SpineAIError(reason or f"spineai run {task} stopped with exit code {process.returncode}")
    return json.loads((Path(out_dir) / "report.json").read_text())
