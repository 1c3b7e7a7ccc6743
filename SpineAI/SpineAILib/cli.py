"""``spineai``: the command-line face. Thin: parse, call the logic, print.

Heavy modules (torch, slicer, vtk) are imported inside the command functions so
that ``--help`` and argument errors answer at once.
"""

import argparse
import json
import sys

from SpineAILib import __version__
from SpineAILib.errors import InputError, run_reporting_errors
from SpineAILib.vocabulary import DEVICES  # imports nothing: --help stays instant
from SpineAILib.vocabulary import TASKS as TASK_NAMES


def build_parser():
    parser = argparse.ArgumentParser(
        prog="spineai",
        description="Spine imaging AI: infant lumbar ultrasound, lumbar MRI and cervical CT.",
    )
    parser.add_argument("--version", action="version", version=f"spineai {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of unexpected errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="describe an image file or DICOM folder (modality, series, geometry)")
    p.add_argument("input", help="DICOM folder or file, NIfTI/NRRD, video, frame folder or image")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("run", help="run a workflow and write its results to a folder")
    p.add_argument("task", choices=TASK_NAMES)
    p.add_argument("input", help="DICOM folder or file, NIfTI/NRRD, video, frame folder or image")
    p.add_argument("--out", required=True, help="output folder (must be new or empty unless --force)")
    p.add_argument("--model", help="model bundle folder (default: the catalogue's bundle for the task)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--engine", choices=("auto", "onnx", "torch"), default=None,
                   help="what runs the networks: ONNX Runtime (auto: whenever the bundle carries model.onnx; "
                        "no PyTorch needed) or torch (development and comparison); default $SPINEAI_ENGINE or auto")
    p.add_argument("--series", help="which series of a DICOM folder (number from `spineai info` or SeriesInstanceUID)")
    p.add_argument("--force", action="store_true", help="replace results already in --out")
    p.add_argument("--dicom", action="store_true",
                   help="also write dicom/: DICOM SEG, SR and secondary captures in the source's study (DICOM input only)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("measure", help="vertebral body heights, Genant grades and L1 bone density from a vertebra "
                                          "label map one already has (e.g. TotalSegmentator's) on its CT")
    p.add_argument("ct", help="the CT (DICOM folder or file, NIfTI/NRRD), in Hounsfield units")
    p.add_argument("segmentation", help="vertebra label map on the CT's voxel grid (NIfTI/NRRD)")
    p.add_argument("--out", required=True, help="output folder (must be new or empty unless --force)")
    p.add_argument("--numbering", choices=("verse", "totalsegmentator"), default="verse",
                   help="what the label values mean: VerSe numbers (C1=1 ... L5=24, S1=26; default) or "
                        "TotalSegmentator v2 classes (S1=26, L5=27 ... C1=50; other classes left out)")
    p.add_argument("--force", action="store_true", help="replace results already in --out")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("send", help="send a folder of DICOM files (a run's dicom/) to a PACS or Orthanc (C-STORE)")
    p.add_argument("folder", help="folder of DICOM files, e.g. RESULTS/dicom")
    p.add_argument("--to", required=True, metavar="HOST:PORT", help="the DICOM server, e.g. 127.0.0.1:4242")
    p.add_argument("--aet", required=True, metavar="AE", help="the server's AE title, e.g. ORTHANC")
    p.add_argument("--calling-aet", default="SPINEAI", metavar="AE", help="our AE title (default SPINEAI)")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("models", help="list the model bundles in the catalogue")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("web", help="open the web app (trame-slicer) in a browser")
    p.add_argument("input", nargs="?", help="file or DICOM folder to load at start")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--out", help="folder for workflow results run from the web app (default: WORKSPACE/runs)")
    p.add_argument("--workspace", help="folder that keeps runs, cases and uploads across restarts (default ~/SpineAI-workspace)")
    p.add_argument("--data-root", dest="data_roots", action="append", metavar="DIR",
                   help="a folder the file browser shows (repeatable; default: your home folder)")
    p.add_argument("--open", action="store_true", help="open the system's browser")
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("dataset", help="export annotated cases as a de-identified training dataset, or import one to edit")
    dataset = p.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    q = dataset.add_parser("export", help="write a dataset folder the training package reads (spineai-train TASK --data DIR)")
    q.add_argument("sources", nargs="+", metavar="SCENE_OR_CASE_FOLDER",
                   help="run output folders, annotation case folders or .mrb scenes")
    q.add_argument("--task", required=True, choices=TASK_NAMES)
    q.add_argument("--out", required=True, help="dataset folder (new or empty, unless --add)")
    q.add_argument("--add", action="store_true", help="add the cases to the dataset in --out (a case already there is replaced)")
    q.add_argument("--split", help="fractions by case, e.g. train=0.7,validation=0.15,test=0.15 (the default)")
    q.add_argument("--seed", type=int, default=0, help="seed of the split order")
    q.add_argument("--key-file", help="de-identification key (default ~/.config/spineai/deidentify.key, made on first use)")
    q.set_defaults(func=cmd_dataset_export)
    q = dataset.add_parser("import", help="write a dataset's cases back as case folders to open and edit")
    q.add_argument("dataset", help="a dataset folder written by `spineai dataset export`")
    q.add_argument("--out", help="folder for the case folders (default: DATASET-cases beside it)")
    q.set_defaults(func=cmd_dataset_import)

    p = sub.add_parser("demo", help="generate sample data, load it into a scene, render it, open it in the web app")
    p.add_argument("--out", default="demo_output")
    p.add_argument("--force", action="store_true", help="replace an earlier demo output")
    p.add_argument("--no-web", action="store_true", help="skip the web app check")
    p.set_defaults(func=cmd_demo)
    return parser


def cmd_info(args):
    from SpineAILib.io import describe
    from SpineAILib.pacs import describe_seg, is_dicom_seg

    if is_dicom_seg(args.input):  # a DICOM SEG (e.g. a run's dicom/seg_*.dcm): its segments
        info = {"path": args.input, "input_kind": "dicom-seg", "items": [describe_seg(args.input)]}
    else:
        info = describe(args.input)
    problems = [item["problem"] for item in info["items"] if item.get("problem")]
    if problems and len(problems) == len(info["items"]):
        raise InputError(f"{info['path']}: {problems[0]}")  # nothing here can be loaded
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}  ({info['input_kind']})")
    for n, item in enumerate(info["items"], 1):
        print(format_item(n, item))
    return 0


def format_item(n, item):
    if item.get("kind") == "segmentation":
        lines = [f"[{n}] SEG segmentation  {item.get('description', '')}".rstrip(),
                 f"    series: {item['series_uid']}  study: {item['study_uid']}",
                 f"    frames: {item['frames']}  size (rows x cols): {item['dimensions'][1]} x {item['dimensions'][0]}"
                 f"  type: {item['segmentation_type']}  source instances referenced: {item['referenced_instances']}"]
        lines += [f"    segment {s['number']}: {s['label']}  ({s['type']})" for s in item["segments"]]
        return "\n".join(lines)
    if item.get("kind") == "cine":
        lines = [
            f"[{n}] {item.get('modality') or '?'} cine  {item.get('description', '')}".rstrip(),
            f"    frames: {item['frames']}  size (rows x cols): {item['frame_size'][0]} x {item['frame_size'][1]}"
            f"  colour: {'yes' if item['color'] else 'no'}",
            f"    frame time: {item.get('frame_time_ms')} ms  duration: {item.get('duration_ms')} ms"
            f"  pixel spacing: {item.get('pixel_spacing')} mm",
        ]
    else:
        head = f"[{n}] {item.get('modality') or '?'} {item.get('kind', 'volume')}  {item.get('description', '')}".rstrip()
        lines = [head]
        if item.get("series_uid"):
            lines.append(f"    series: {item['series_uid']}")
        if "orientation" in item:
            lines.append(f"    orientation: {item['orientation']}")
        if "dimensions" in item:
            lines.append(f"    dimensions (I J K): {' '.join(map(str, item['dimensions']))}")
        if "spacing" in item:
            lines.append(f"    spacing (mm): {' '.join(f'{s:g}' for s in item['spacing'])}")
        if item.get("problem"):
            lines.append(f"    problem: {item['problem']}")
        if item.get("ijk_to_ras"):
            lines.append("    IJK->RAS:")
            lines += ["      " + "  ".join(f"{v:10.4f}" for v in row) for row in item["ijk_to_ras"]]
    lines += [f"    warning: {w}" for w in item.get("warnings", [])]
    return "\n".join(lines)


def cmd_run(args):
    import os

    from SpineAILib.tasks import run_task

    if getattr(args, "engine", None):  # read by SpineAILib.models.engine.load_model (and child processes)
        os.environ["SPINEAI_ENGINE"] = args.engine

    def progress(fraction, message):
        print(f"[{fraction * 100:5.1f}%] {message}", file=sys.stderr, flush=True)

    report = run_task(
        args.task, args.input, args.out, model=args.model, device=args.device,
        force=args.force, series=args.series, progress=progress, dicom=args.dicom,
    )
    for role, name in report.get("outputs", {}).items():
        print(f"{role}: {name}")
    return 0


def cmd_measure(args):
    from SpineAILib.measure_vertebrae import measure_segmentation, summary_lines

    report = measure_segmentation(args.ct, args.segmentation, args.out, numbering=args.numbering, force=args.force,
                                  progress=_progress)  # fmt: skip
    for line in summary_lines(report):
        print(line)
    return 0


def cmd_send(args):
    from SpineAILib.pacs import send_folder

    stored = send_folder(args.folder, args.to, args.aet, calling_aet=args.calling_aet, progress=_progress)
    print(f"{stored} instance(s) stored on {args.aet}@{args.to}")
    return 0


def cmd_models(args):
    from SpineAILib.models.catalogue import list_models

    models = list_models()
    if args.json:
        print(json.dumps(models, indent=2))
    elif not models:
        print("no model bundles installed; train one with `spineai-train TASK ...`")
    else:
        for m in models:
            print(f"{m['task']:15s} {m['bundle_id']} {m.get('version', '')}  {m.get('description', '')}")
    return 0


def cmd_web(args):
    from SpineAILib.web.app import serve

    return serve(args.input, host=args.host, port=args.port, open_browser=args.open, out_dir=args.out,
                 workspace=args.workspace, data_roots=args.data_roots) or 0


def _progress(fraction, message):
    print(f"[{fraction * 100:5.1f}%] {message}", file=sys.stderr, flush=True)


def cmd_dataset_export(args):
    from SpineAILib.dataset import export_dataset

    manifest = export_dataset(args.sources, args.task, args.out, add=args.add, split=args.split, seed=args.seed,
                              progress=_progress, key_file=args.key_file)  # fmt: skip
    counts = {}
    for case in manifest["cases"]:
        counts[case["split"]] = counts.get(case["split"], 0) + 1
    print(f"{args.out}: {len(manifest['cases'])} cases ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
    return 0


def cmd_dataset_import(args):
    from SpineAILib.dataset import import_dataset

    for folder in import_dataset(args.dataset, args.out, progress=_progress):
        print(folder)
    return 0


def cmd_demo(args):
    from SpineAILib.demo import run_demo

    run_demo(args.out, force=args.force, web=not args.no_web)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_reporting_errors("spineai", lambda: args.func(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
