"""Describe the machine a benchmark ran on (recorded beside every result)."""

import os
import platform
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
