"""Describe the machine a benchmark ran on (recorded beside every result)."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

# Benchmarks import SpineAILib / SpineAITraining from this checkout, installed or not.
_REPO = Path(__file__).resolve().parents[1]
for _path in (_REPO / "SpineAI", _REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def describe_machine():
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gib = None
    try:
        import psutil

        memory_gib = round(psutil.virtual_memory().total / 1024**3, 1)
    except ImportError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


# A child's own peak memory (VmHWM), as an expression for a snippet: ru_maxrss would include
# the parent's peak (Linux keeps it across fork/exec).
PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024"


def python_json(snippet, *args):
    """Run ``snippet`` (PEAK replaced) in a fresh Python with ``args``; its last stdout line as JSON."""
    snippet = snippet.replace("PEAK", PEAK)
    env = dict(os.environ, VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow")
    out = subprocess.run([sys.executable, "-c", snippet, *map(str, args)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


WHOLE_RUN = """
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[5]))
t0 = time.perf_counter()
from SpineAILib.tasks import run_task
report = run_task(sys.argv[1], sys.argv[2], sys.argv[3], device=sys.argv[4], force=True)
print(json.dumps({"run_s": time.perf_counter() - t0, "timings": report["timings"], "peak_rss_mib": PEAK}))
"""


def whole_run(task, input_path, out_dir, device, threads):
    """One cold ``run_task`` (the whole ``spineai run``: files, pictures, scene) in a fresh Python: run_s, timings, peak."""
    return python_json(WHOLE_RUN, task, input_path, out_dir, device, threads)


def median(values):
    values = sorted(values)
    return values[len(values) // 2]
