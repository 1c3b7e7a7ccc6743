"""`spineai-train`: train, evaluate and convert SpineAI model bundles.

Subcommands:
  spineai-train convert CHECKPOINT.pt --metadata META.json --out BUNDLE
  spineai-train export-onnx BUNDLE...   (model.onnx next to model.safetensors, compared first)
  spineai-train TASK ...     (lp-ultrasound, lumbar-mri, cervical-ct, and the sub-models
                             lumbar-severity, lumbar-refiner, lp-ultrasound-localiser, cervical-fracture;
                             spine-ct: the whole-spine CT vertebra model, issue 13)

A task's trainer is the module TRAINER_MODULES names (in its domain package:
SpineAITraining.ultrasound, .lumbar, .cervical) with ``main(argv)``; until it exists
the command says so. torch and monai are imported only by the subcommand that runs,
so --help is instant.
"""

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path

from SpineAILib.models.schema import TASKS  # light: torch and monai load only when a command runs

# Every trainer: one per `spineai run` task, plus the sub-models a task uses.
# spine-ct: the workflow is rule-based; this trains the experimental whole-spine CT vertebra network
# (issue 13), which no workflow uses yet.
TRAINERS = tuple(dict.fromkeys(TASKS + ("lumbar-severity", "lumbar-refiner", "lp-ultrasound-localiser",
                                        "cervical-fracture", "spine-ct")))
TRAINER_MODULES = {
    "lp-ultrasound": "SpineAITraining.ultrasound.train_classifier",
    "lp-ultrasound-localiser": "SpineAITraining.ultrasound.train_localiser",
    "lumbar-mri": "SpineAITraining.lumbar.train_levels",
    "lumbar-refiner": "SpineAITraining.lumbar.train_refiner",
    "lumbar-severity": "SpineAITraining.lumbar.train_severity",
    "cervical-ct": "SpineAITraining.cervical.train_segmentation",
    "cervical-fracture": "SpineAITraining.cervical.train_fracture",
    "spine-ct": "SpineAITraining.spine_ct.train_vertebrae",
}


def _trainer_module(task):
    return TRAINER_MODULES.get(task, "SpineAITraining.train_" + task.replace("-", "_"))


def _parser():
    parser = argparse.ArgumentParser(
        prog="spineai-train",
        description="Train SpineAI models and write model bundles (metadata.json + model.safetensors).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    convert = commands.add_parser(
        "convert",
        help="turn your own torch.save checkpoint into a bundle (read with torch.load(weights_only=True))",
        description="Convert a checkpoint of your own into a SpineAI bundle. The checkpoint is read with "
        "torch.load(weights_only=True), so it may hold tensors and plain containers only.",
    )
    convert.add_argument("checkpoint", type=Path, help="a .pt/.pth/.ckpt file written by torch.save")
    convert.add_argument("--metadata", type=Path, required=True, help="metadata.json for the bundle (sha256 is filled in)")
    convert.add_argument("--out", type=Path, required=True, help="bundle folder to create")
    convert.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    commands.add_parser("export-onnx", add_help=False,
                        help="export bundles' inference graphs (model.onnx), compared with torch before writing")
    for task in TRAINERS:
        sub = commands.add_parser(task, help=f"train the {task} model", add_help=False)
        sub.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _read_json(path):
    from SpineAILib.errors import InputError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"metadata file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path} is not valid JSON (line {error.lineno} column {error.colno}: {error.msg})") from None


def _convert(args):
    from SpineAILib.models.convert import convert_checkpoint

    folder = convert_checkpoint(args.checkpoint, args.out, _read_json(args.metadata), overwrite=args.overwrite)
    print(f"wrote model bundle {folder}")
    return 0


def _train(task, argv):
    from SpineAILib.errors import SpineAIError

    module = _trainer_module(task)
    if importlib.util.find_spec(module) is None:
        raise SpineAIError(
            f"training for {task} arrives with its workflow ({module} is not written yet); "
            "meanwhile `spineai-train convert` turns a checkpoint of your own into a bundle"
        )
    return importlib.import_module(module).main(argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    from SpineAILib.errors import run_reporting_errors

    def action():
        # A task's own trainer parses its arguments (and its own --help).
        if argv and argv[0] in TRAINERS:
            return _train(argv[0], argv[1:])
        if argv and argv[0] == "export-onnx":
            from SpineAILib.models.onnx_export import main as export_onnx

            return export_onnx(argv[1:])
        args = _parser().parse_args(argv)
        if args.command == "convert":
            return _convert(args)
        return _train(args.command, args.args)

    from SpineAITraining.common.distributed import end_launched_process

    return end_launched_process(run_reporting_errors("spineai-train", action))


if __name__ == "__main__":
    sys.exit(main())
