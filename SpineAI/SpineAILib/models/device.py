"""Which torch device a model runs on, and how many CPU threads torch may use."""

import os
import re

from SpineAILib.errors import SpineAIError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class DeviceUnavailableError(SpineAIError):
    """The requested device does not exist on this machine."""


def choose_device(preference="auto"):
    """Return the torch.device for 'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    import torch

    text = str(preference or "auto").strip().lower()
    if text not in DEVICE_CHOICES and not re.fullmatch(r"cuda:\d+", text):
        raise SpineAIError(f"device must be auto, cpu, cuda or cuda:N (got {preference!r})")
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise DeviceUnavailableError(
                f"CUDA was requested but no CUDA GPU is available (torch {torch.__version__}, {built}); "
                "use --device cpu or auto"
            )
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"CUDA device {index} was requested but this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
        return torch.device("cuda", index)
    configure_cpu_threads()
    return torch.device("cpu")


def available_cpus():
    """CPUs this process may run on (the affinity mask in containers, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def cpu_threads():
    """How many threads inference may use: SPINEAI_THREADS / OMP_NUM_THREADS when set, else the
    CPUs this process may run on (torch and ONNX Runtime both count the host's cores, which
    oversubscribes a container limited to a few)."""
    wanted = os.environ.get("SPINEAI_THREADS") or os.environ.get("OMP_NUM_THREADS")
    try:
        return max(1, int(wanted)) if wanted else available_cpus()
    except ValueError:
        return available_cpus()


def configure_cpu_threads():
    """Match torch's intra-op threads to ``cpu_threads()``; returns that number."""
    import torch

    threads = cpu_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
