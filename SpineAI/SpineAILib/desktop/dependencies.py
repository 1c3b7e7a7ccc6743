"""The dependency handler: what SpineAI needs in Slicer's Python, and how it gets there
without breaking the Slicer it runs in.

Rules (issue 19):

* versions, not names: each package has the lowest version SpineAILib works with;
  an installed package below it counts as missing (``check``);
* Slicer's own packages (numpy, pydicom, pillow, ...) are never installed, upgraded or
  downgraded by SpineAI: too old means this Slicer is too old (``CORE``);
* nothing already installed changes while Slicer runs: pip gets a constraints file that
  pins every installed distribution SpineAI is not installing itself (numpy, torch and
  Slicer's other packages included), so it picks versions that fit the running Slicer
  (monai for its torch, opencv for its numpy) or fails with one line;
* a run needs onnxruntime, not torch (issue 20: the bundles carry ONNX graphs); torch,
  torchvision and MONAI are asked for only to train or fine-tune (``TRAIN``);
* torch comes through the PyTorch extension only (the wheel for the user's GPU driver);
  a missing torchvision next to an installed torch is installed to match that torch,
  from the same wheel index.

Everything here is plain Python (no slicer import), so it is tested outside Slicer; the
desktop module asks once, then runs ``plan.pip_arguments`` through ``slicer.util.pip_install``.
"""

import os
import re
import sys
import tempfile
from dataclasses import dataclass, field

# The Slicer versions SpineAI supports and the Python each bundles (README, extension metadata, module).
MINIMUM_SLICER = (5, 8)
SLICER_PYTHON = {(5, 8): (3, 9), (5, 10): (3, 12)}
MINIMUM_PYTHON = (3, 9)


@dataclass(frozen=True)
class Need:
    module: str  # import name
    distribution: str  # pip / importlib.metadata name
    minimum: str  # the lowest version SpineAILib works with
    extra: tuple = ()  # installed together with it (plug-ins)
    core: bool = False  # Slicer's own: never installed or changed by SpineAI
    torch: bool = False  # through the PyTorch extension


NEEDS = (
    Need("numpy", "numpy", "1.24", core=True),
    Need("pydicom", "pydicom", "2.4", core=True),  # Slicer 5.8 and 5.10 ship 2.4.4; SpineAILib reads DICOM with 2.4 and 3
    Need("PIL", "pillow", "9.0", core=True),
    Need("nibabel", "nibabel", "5.0"),
    Need("nrrd", "pynrrd", "1.0"),
    Need("cv2", "opencv-python-headless", "4.8"),
    Need("safetensors", "safetensors", "0.4"),
    Need("psutil", "psutil", "5.9"),
    Need("matplotlib", "matplotlib", "3.5"),
    Need("pylibjpeg", "pylibjpeg", "2.0", extra=("pylibjpeg-openjpeg", "pylibjpeg-libjpeg")),
    Need("torch", "torch", "2.1", torch=True),
    Need("torchvision", "torchvision", "0.16", torch=True),
    Need("monai", "monai", "1.4"),
    Need("onnxruntime", "onnxruntime", "1.16"),  # runs the bundles' model.onnx (CPU; onnxruntime-gpu also counts)
    Need("highdicom", "highdicom", "0.22"),  # DICOM outputs only (SEG, SR): needs pydicom >= 3.0.1
)
NEEDS_BY_MODULE = {n.module: n for n in NEEDS}
# What each action needs: reading files, the scene and datasets need no torch; nor does a run
# (ONNX Runtime runs the networks); training or fine-tuning does (the PyTorch extension).
FILES = ("numpy", "pydicom", "PIL", "nibabel", "nrrd", "cv2", "pylibjpeg", "psutil")
TRAINING_ONLY = ("torch", "torchvision", "monai")
DICOM_OUTPUTS_ONLY = ("highdicom",)
RUN = tuple(n.module for n in NEEDS if n.module not in TRAINING_ONLY + DICOM_OUTPUTS_ONLY)
DICOM_OUTPUTS = RUN + DICOM_OUTPUTS_ONLY
TRAIN = tuple(n.module for n in NEEDS if n.module not in DICOM_OUTPUTS_ONLY)


def parse_version(text):
    """'2.4.4' -> (2, 4, 4); '2.5.1+cu121' -> (2, 5, 1); '1.26.0rc1' -> (1, 26, 0); '' -> ()."""
    parts = []
    for piece in re.split(r"[.+-]", str(text or "").strip()):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
        if digits.group() != piece:
            break
    return tuple(parts)


def version_at_least(version, minimum):
    v, m = parse_version(version), parse_version(minimum)
    width = max(len(v), len(m))
    return v + (0,) * (width - len(v)) >= m + (0,) * (width - len(m))


def installed_versions():
    """{distribution name (lower case, '-' for '_'): version} of this Python's site-packages."""
    from importlib import metadata

    versions = {}
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").strip()
        if name:
            versions.setdefault(name.lower().replace("_", "-"), dist.version)
    return versions


@dataclass
class Problem:
    need: Need
    installed: str  # None when missing

    @property
    def text(self):
        n = self.need
        return f"{n.distribution} (missing)" if self.installed is None else f"{n.distribution} {self.installed} (needs {n.minimum} or later)"


def check(modules=RUN, versions=None):
    """The needs of ``modules`` that are missing or too old here (``versions``: installed_versions())."""
    versions = installed_versions() if versions is None else {k.lower().replace("_", "-"): v for k, v in versions.items()}
    problems = []
    for module in modules:
        need = NEEDS_BY_MODULE[module]
        installed = versions.get(need.distribution.lower())
        if installed is None and need.module == "onnxruntime":  # the GPU build serves as well
            installed = versions.get("onnxruntime-gpu")
        if installed is None or not version_at_least(installed, need.minimum):
            problems.append(Problem(need, installed))
    return problems


def torchvision_for(torch_version):
    """(requirement, wheel index or None) of the torchvision that matches an installed torch:
    torch 2.N pairs with torchvision 0.(N+15); a '+cu121' / '+cpu' build comes from PyTorch's index."""
    v = parse_version(torch_version)
    if len(v) < 2 or v[0] != 2:
        raise ValueError(f"torch {torch_version}: no known matching torchvision; update torch with the PyTorch extension")
    local = str(torch_version).partition("+")[2]
    index = f"https://download.pytorch.org/whl/{local}" if re.fullmatch(r"cu\d+|cpu|rocm[\d.]+", local) else None
    return f"torchvision=={'0.%d' % (v[1] + 15)}.*", index


@dataclass
class Plan:
    """What to do about the problems: refusals (one line each), the PyTorch extension, pip."""

    problems: list
    refusals: list = field(default_factory=list)  # cannot be fixed from inside this Slicer
    torch_from_extension: bool = False  # torch missing / too old: the PyTorch extension installs it
    requirements: list = field(default_factory=list)  # pip requirement strings
    index: str = None  # extra wheel index (torchvision for a '+cuXXX' torch)
    constraints: list = field(default_factory=list)  # 'name==version' of everything already installed

    @property
    def summary(self):
        return ", ".join(p.text for p in self.problems)

    def pip_arguments(self, constraints_path):
        """The arguments after `pip install` (the constraints written to ``constraints_path``)."""
        arguments = [*self.requirements, "-c", str(constraints_path)]
        if self.index:
            arguments += ["--extra-index-url", self.index]
        return arguments

    def write_constraints(self, folder=None):
        fd, path = tempfile.mkstemp(prefix="spineai-constraints-", suffix=".txt", dir=folder)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(self.constraints) + "\n")
        return path


def plan(problems, versions=None, python=None, pytorch_extension=True):
    """How to fix ``problems`` without changing what the running Slicer already has."""
    versions = installed_versions() if versions is None else {k.lower().replace("_", "-"): v for k, v in versions.items()}
    python = tuple(python or sys.version_info[:2])
    result = Plan(problems=list(problems))
    if python < MINIMUM_PYTHON:
        result.refusals.append(f"Python {python[0]}.{python[1]} is too old: SpineAI needs Slicer "
                               f"{MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]} or later")  # fmt: skip
        return result
    installing = set()
    for problem in problems:
        need = problem.need
        if need.core:
            result.refusals.append(f"this Slicer's {problem.text}: SpineAI does not replace Slicer's own packages; "
                                   f"use Slicer {MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]} or later")  # fmt: skip
        elif need.module == "torch" or (need.module == "torchvision" and "torch" not in versions):
            if not pytorch_extension:
                result.refusals.append(f"{problem.text}: install the PyTorch extension (Extension Manager), restart "
                                       "Slicer and try again; it installs the torch that fits your GPU")  # fmt: skip
            result.torch_from_extension = True
        elif need.module == "torchvision":
            if problem.installed is not None and not result.torch_from_extension:
                result.refusals.append(f"{problem.text}: update PyTorch with the PyTorch extension")
                continue
            requirement, index = torchvision_for(versions["torch"])
            result.requirements.append(requirement)
            result.index = index
            installing.add("torchvision")
        else:
            result.requirements.append(f"{need.distribution}>={need.minimum}")
            result.requirements.extend(need.extra)
            installing.update({need.distribution.lower(), *need.extra})
    result.constraints = sorted(f"{name}=={version}" for name, version in versions.items()
                                if name not in installing and _pinnable(version))  # fmt: skip
    return result


def _pinnable(version):
    return bool(parse_version(version)) and " " not in version


def slicer_version_problem(major, minor, python=None):
    """One line when this Slicer (or its Python) is older than SpineAI supports, else None."""
    python = tuple(python or sys.version_info[:2])
    if (int(major), int(minor)) < MINIMUM_SLICER:
        return (f"SpineAI needs 3D Slicer {MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]} or later "
                f"(this is {major}.{minor}); install a newer Slicer from download.slicer.org")  # fmt: skip
    if python < MINIMUM_PYTHON:
        return f"SpineAI needs Python {MINIMUM_PYTHON[0]}.{MINIMUM_PYTHON[1]} or later in Slicer (this is {python[0]}.{python[1]})"
    return None


def dicom_outputs_problem(pydicom_version=None, python=None):
    """One line when DICOM outputs (``--dicom``) cannot be written in this Python, else None.

    highdicom needs pydicom >= 3.0.1 and Python >= 3.10; Slicer 5.8 and 5.10 ship pydicom 2.4.4,
    which SpineAI never replaces under a running Slicer (its DICOM module relies on it)."""
    python = tuple(python or sys.version_info[:2])
    if pydicom_version is None:
        try:
            from importlib.metadata import version

            pydicom_version = version("pydicom")
        except Exception:
            pydicom_version = "0"
    if python < (3, 10) or parse_version(pydicom_version) < parse_version("3.0.1"):
        return (f"DICOM outputs need pydicom 3.0.1 or later and Python 3.10 or later (this Slicer has pydicom "
                f"{pydicom_version}, Python {python[0]}.{python[1]}); write them with `spineai run --dicom` from "
                "the command line, or untick the box")  # fmt: skip
    return None


# -- in Slicer ---------------------------------------------------------------------------------


def ensure(modules=RUN, ask=True, what="this"):
    """Install what ``modules`` need into Slicer's Python, after one confirmation; True when all is there.

    Called before every action that needs packages (Apply, Open case, Prefill, dataset
    export/import, the self-test). Failures are shown as one line and return False.
    """
    import slicer

    problems = check(modules)
    if not problems:
        return True
    try:
        import PyTorchUtils  # the PyTorch extension

        pytorch = PyTorchUtils.PyTorchUtilsLogic()
    except ImportError:
        pytorch = None
    steps = plan(problems, pytorch_extension=pytorch is not None)
    if steps.refusals:
        slicer.util.errorDisplay("SpineAI cannot run here: " + "; ".join(steps.refusals))
        return False
    if ask and not slicer.util.confirmOkCancelDisplay(
        f"SpineAI needs these Python packages for {what}: {steps.summary}.\n\n"
        "Download and install them now? Packages Slicer already has are kept as they are. "
        "This can take several minutes.",
        "SpineAI: install Python packages",
    ):
        return False
    try:
        with slicer.util.WaitCursor():
            if steps.torch_from_extension:
                if pytorch.installTorch(askConfirmation=False, torchVersionRequirement=">=" + NEEDS_BY_MODULE["torch"].minimum) is None:
                    raise RuntimeError("the PyTorch extension did not install torch")
                steps = plan(check(modules), pytorch_extension=True)  # pins the torch just installed
                if steps.refusals:
                    raise RuntimeError("; ".join(steps.refusals))
            if steps.requirements:
                constraints = steps.write_constraints()
                try:
                    slicer.util.pip_install(["--disable-pip-version-check", *steps.pip_arguments(constraints)])
                finally:
                    os.remove(constraints)
    except Exception as error:
        slicer.util.errorDisplay(f"SpineAI could not install its packages: {str(error).splitlines()[0] if str(error) else error}",
                                 detailedText=str(error))  # fmt: skip
        return False
    still = check(modules)
    if still:
        slicer.util.errorDisplay("SpineAI could not install: " + ", ".join(p.text for p in still) +
                                 ". Restart Slicer and try again; the Python console has pip's output.")  # fmt: skip
        return False
    return True

