"""The metadata.json schema of a model bundle, checked by hand so each error names its field.

Unknown extra keys are allowed (a newer SpineAI of the same format_version may add
optional fields); required ones are checked for presence and type.
"""

import math
import re

from SpineAILib.errors import BundleError

FORMAT_VERSION = 1
from SpineAILib.vocabulary import TASKS, ULTRASOUND_LABELS, ULTRASOUND_STRUCTURES

_SUBTASK = re.compile(r"[a-z0-9][a-z0-9_-]*")
_BUNDLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _fail(where, field, problem):
    raise BundleError(f"{where}: field '{field}' {problem}")


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _require(meta, key, kind, where, prefix=""):
    field = prefix + key
    if key not in meta:
        _fail(where, field, "is missing")
    value = meta[key]
    if kind is str and not (isinstance(value, str) and value.strip()):
        _fail(where, field, f"must be a non-empty string (got {value!r})")
    if kind is dict and not isinstance(value, dict):
        _fail(where, field, f"must be an object (got {type(value).__name__})")
    if kind is list and not isinstance(value, list):
        _fail(where, field, f"must be a list (got {type(value).__name__})")
    return value


def is_task(task):
    """A top-level task ('lumbar-mri') or a sub-model of one ('lumbar-mri/severity')."""
    if not isinstance(task, str):
        return False
    top, slash, sub = task.partition("/")
    return top in TASKS and (not slash or bool(_SUBTASK.fullmatch(sub)))


def validate_metadata(meta, where="metadata.json", require_sha=True):
    """Raise BundleError naming the first bad field; return ``meta`` unchanged when valid."""
    if not isinstance(meta, dict):
        raise BundleError(f"{where}: must hold a JSON object (got {type(meta).__name__})")

    version = meta.get("format_version")
    if "format_version" not in meta:
        _fail(where, "format_version", "is missing")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        _fail(where, "format_version", f"must be a positive integer (got {version!r})")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{where}: bundle format_version {version} is newer than this SpineAI reads ({FORMAT_VERSION}); update SpineAI"
        )

    bundle_id = _require(meta, "bundle_id", str, where)
    if not _BUNDLE_ID.fullmatch(bundle_id):
        _fail(where, "bundle_id", f"may hold only letters, digits, '.', '_' and '-' (got {bundle_id!r})")
    _require(meta, "version", str, where)
    task = _require(meta, "task", str, where)
    if not is_task(task):
        _fail(where, "task", f"must be one of {', '.join(TASKS)} or TASK/sub-model (got {task!r})")

    network = _require(meta, "network", dict, where)
    _require(network, "name", str, where, "network.")
    _require(network, "args", dict, where, "network.")

    _check_input(_require(meta, "input", dict, where), where)

    labels = _require(meta, "labels", list, where)
    if not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        _fail(where, "labels", "must be a non-empty list of names")
    if len(set(labels)) != len(labels):
        _fail(where, "labels", "must not repeat a name")

    _check_task_labels(task, labels, where)
    _check_network_args(network["args"], where)

    thresholds = meta.get("thresholds")
    if thresholds is not None:
        if not isinstance(thresholds, dict) or not all(_number(v) for v in thresholds.values()):
            _fail(where, "thresholds", "must map names to numbers")

    training = _require(meta, "training", dict, where)
    for key in ("data", "command", "seed", "split"):
        if key not in training:
            _fail(where, f"training.{key}", "is missing")
    if training["seed"] is not None and not isinstance(training["seed"], int):
        _fail(where, "training.seed", f"must be an integer or null (got {training['seed']!r})")

    for i, metric in enumerate(_require(meta, "metrics", list, where)):
        if not isinstance(metric, dict):
            _fail(where, f"metrics[{i}]", "must be an object with name, value and data")
        _require(metric, "name", str, where, f"metrics[{i}].")
        _require(metric, "data", str, where, f"metrics[{i}].")
        if "value" not in metric:
            _fail(where, f"metrics[{i}].value", "is missing")
        if not _number(metric["value"]) and metric["value"] is not None:
            _fail(where, f"metrics[{i}].value", f"must be a number (got {metric['value']!r})")

    _require(meta, "created", str, where)
    if require_sha:
        sha = _require(meta, "sha256", str, where)
        if not _SHA256.fullmatch(sha):
            _fail(where, "sha256", "must be 64 lower-case hex digits")
    if meta.get("onnx") is not None:
        _check_onnx(meta["onnx"], where)
    return meta


# The inference graph a bundle may carry (SpineAILib.models.engine / onnx_export): optional;
# when present every field the engine relies on is checked here, before any file is read.
ONNX_MIN_OPSET, ONNX_MAX_OPSET = 7, 30


def _check_onnx(spec, where):
    if not isinstance(spec, dict):
        _fail(where, "onnx", f"must be an object (got {type(spec).__name__})")
    name = _require(spec, "file", str, where, "onnx.")
    if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".onnx"):
        _fail(where, "onnx.file", f"must be a .onnx file name inside the bundle (got {name!r})")
    for key in ("sha256", "weights_sha256"):
        if not _SHA256.fullmatch(str(_require(spec, key, str, where, "onnx."))):
            _fail(where, f"onnx.{key}", "must be 64 lower-case hex digits")
    opset = spec.get("opset")
    if not (_positive_int(opset) and ONNX_MIN_OPSET <= opset <= ONNX_MAX_OPSET):
        _fail(where, "onnx.opset", f"must be an integer from {ONNX_MIN_OPSET} to {ONNX_MAX_OPSET} (got {opset!r})")
    for key in ("inputs", "outputs"):
        names = _require(spec, key, list, where, "onnx.")
        if not names or not all(isinstance(x, str) and x for x in names):
            _fail(where, f"onnx.{key}", "must be a non-empty list of tensor names")
    check = spec.get("check")
    if check is not None:
        shape = check.get("input_shape") if isinstance(check, dict) else None
        if not (isinstance(shape, list) and 3 <= len(shape) <= 5 and all(_positive_int(v) for v in shape)
                and _product(shape) <= MAX_INPUT_VOXELS * 8):
            _fail(where, "onnx.check.input_shape", f"must be a list of 3 to 5 positive integers (got {shape!r})")
        output = check.get("output")
        if not (isinstance(output, dict) and isinstance(output.get("values"), list)
                and all(_number(v) for v in output["values"]) and _number(output.get("mean"))
                and _number(output.get("max_abs"))):
            _fail(where, "onnx.check.output", "must hold values, mean and max_abs (numbers)")
        if not (_number(check.get("tolerance", 1e-3)) and check.get("tolerance", 1e-3) > 0):
            _fail(where, "onnx.check.tolerance", "must be a positive number")
    cam = spec.get("cam")
    if cam is not None:
        if not isinstance(cam, dict):
            _fail(where, "onnx.cam", "must be an object")
        for key in ("features_layer", "weight", "bias"):
            _require(cam, key, str, where, "onnx.cam.")


def _check_input(spec, where):
    channels = spec.get("channels")
    if "channels" not in spec:
        _fail(where, "input.channels", "is missing")
    if not _positive_int(channels):
        _fail(where, "input.channels", f"must be a positive integer (got {channels!r})")
    if "size" not in spec and "patch_size" not in spec:
        _fail(where, "input.size", "is missing (give input.size or input.patch_size)")
    for key in ("size", "patch_size"):
        if key in spec:
            value = spec[key]
            if not (isinstance(value, list) and len(value) in (2, 3) and all(_positive_int(v) for v in value)):
                _fail(where, f"input.{key}", f"must be a list of 2 or 3 positive integers (got {value!r})")
            if max(value) > MAX_INPUT_SIDE or _product(value) > MAX_INPUT_VOXELS:
                _fail(where, f"input.{key}", f"{value!r} is larger than a network input can be here "
                                             f"(at most {MAX_INPUT_SIDE} per side, {MAX_INPUT_VOXELS} in all)")
    if spec.get("spacing") is not None:
        spacing = spec["spacing"]
        if not (isinstance(spacing, list) and spacing and all(_number(v) and v > 0 for v in spacing)):
            _fail(where, "input.spacing", f"must be a list of positive numbers in mm (got {spacing!r})")
    if "intensity" not in spec:
        _fail(where, "input.intensity", "is missing (describe the normalisation)")
    if not isinstance(spec["intensity"], dict):
        _fail(where, "input.intensity", "must be an object describing the normalisation")


# A bundle is input too: sizes and widths past these would allocate without bound before
# anything could check the weights (the shipped bundles use at most 224 px and 384 channels).
MAX_INPUT_SIDE = 1024
MAX_INPUT_VOXELS = 256**3
MAX_NETWORK_INT = 4096
MAX_WIDEN_FACTOR = 8.0
# Labels the workflows look up by name: a bundle that renamed them cannot serve its task.
REQUIRED_LABELS = {
    "lp-ultrasound": ULTRASOUND_LABELS,
    "lp-ultrasound/localiser": ULTRASOUND_STRUCTURES,
    "lumbar-mri/severity": ("normal_mild", "moderate", "severe"),
}
VERTEBRA_TASKS = ("lumbar-mri", "cervical-ct")  # background, then vertebra names


def _product(values):
    out = 1
    for v in values:
        out *= int(v)
    return out


def _check_task_labels(task, labels, where):
    missing = [name for name in REQUIRED_LABELS.get(task, ()) if name not in labels]
    if missing:
        _fail(where, "labels", f"must name {', '.join(REQUIRED_LABELS[task])} for task {task} (missing {', '.join(missing)})")
    if task in VERTEBRA_TASKS:
        from SpineAILib.terminology import vertebra_number

        unknown = [name for name in labels[1:] if not _is_vertebra(name, vertebra_number)]
        if labels[0] != "background" or unknown:
            _fail(where, "labels", f"must be 'background' then vertebra names (C1...L5) for task {task}"
                                   + (f"; {unknown[0]!r} is not one" if unknown else ""))


def _is_vertebra(name, vertebra_number):
    try:
        vertebra_number(name)
    except (KeyError, TypeError, ValueError):
        return False
    return True


def _check_network_args(args, where, prefix="network.args"):
    for key, value in args.items():
        field = f"{prefix}.{key}"
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if not math.isfinite(v):
                _fail(where, field, f"must be a finite number (got {v!r})")
            if key == "widen_factor" and not 0 < v <= MAX_WIDEN_FACTOR:
                _fail(where, field, f"must be above 0 and at most {MAX_WIDEN_FACTOR:g} (got {v!r})")
            if abs(v) > MAX_NETWORK_INT:
                _fail(where, field, f"{v!r} is larger than any network here uses (at most {MAX_NETWORK_INT})")
