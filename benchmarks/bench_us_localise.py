"""Ultrasound localiser and Grad-CAM speed: ms per frame, torch vs ONNX Runtime, whole cine and live.

    .venv/bin/python benchmarks/bench_us_localise.py [--bundle BUNDLE] [--frames 96] [--threads 2] [--repeats 3]

On one generated cine (SpineAITraining.ultrasound.generator, 224 x 224, linear_hf):

* whole cine: ``us_localise.localise`` (grey, resize to the network size, UNet, sigmoid,
  resize back, threshold, small components dropped, boxes), 32 frames per batch; best
  of ``--repeats``; model loading measured separately (ONNX: includes the in-memory export);
* live: one frame per call, median and 95th percentile after 5 warm-up frames;
* Grad-CAM (``explain.grad_cam``) of one class on a 224 x 224 frame for torchvision
  ResNet18 (the classifier's default network), median of 5.

Also the load average, since this machine is shared. Writes
benchmarks/results/lp_ultrasound_localiser_speed.json and fills the "Speed" section
of benchmarks/results/lp_ultrasound_localiser.md. Not a test: nothing is asserted.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import describe_machine  # noqa: E402

RESULTS = HERE / "results"
MARK_BEGIN, MARK_END = "<!-- speed:begin -->", "<!-- speed:end -->"


def _time_whole(localiser, frames, repeats):
    from SpineAILib.workflows.ultrasound.localise import localise

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        localise(localiser, frames)
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / len(frames)


def _time_live(localiser, frames):
    from SpineAILib.workflows.ultrasound.localise import localise

    times = []
    for i, frame in enumerate(frames[:45]):
        start = time.perf_counter()
        localise(localiser, frame[None])
        if i >= 5:
            times.append(1000.0 * (time.perf_counter() - start))
    return float(np.median(times)), float(np.percentile(times, 95))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("SPINEAI_THREADS", str(args.threads))

    import torch

    torch.set_num_threads(args.threads)
    from SpineAILib.explain import grad_cam
    from SpineAILib.models import build_network
    from SpineAILib.workflows.ultrasound.localise import default_localiser_path, load_localiser
    from SpineAITraining.ultrasound.generator import generate_cine

    bundle = args.bundle or default_localiser_path()
    if bundle is None:
        sys.exit("no localiser bundle (pass --bundle)")
    cine = generate_cine(3, machine="linear_hf", view="sagittal_midline", n_frames=args.frames)
    result = {"machine": describe_machine(), "threads": args.threads, "frames": args.frames,
              "frame_size": list(cine.frames.shape[1:3]), "bundle": str(bundle),
              "load_average_before": os.getloadavg()}  # fmt: skip
    for backend in ("torch", "onnx"):
        start = time.perf_counter()
        localiser = load_localiser(bundle, device="cpu", backend=backend)
        load_s = time.perf_counter() - start
        if localiser.backend != backend:
            result[backend] = {"available": False}
            continue
        whole = _time_whole(localiser, cine.frames, args.repeats)
        median, p95 = _time_live(localiser, cine.frames)
        result[backend] = {"load_s": round(load_s, 2), "whole_cine_ms_per_frame": round(whole, 2),
                           "whole_cine_fps": round(1000.0 / whole, 1), "live_median_ms": round(median, 2),
                           "live_p95_ms": round(p95, 2)}  # fmt: skip
        print(backend, result[backend], flush=True)

    model = build_network("tv_resnet18", in_channels=1, num_classes=3).eval()
    x = torch.rand(1, 224, 224)
    grad_cam(model, x, 1)  # warm-up (also finds the target layer once)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        grad_cam(model, x, 1)
        times.append(1000.0 * (time.perf_counter() - start))
    result["grad_cam_tv_resnet18_224_ms"] = round(float(np.median(times)), 1)
    start = time.perf_counter()
    grad_cam(model, x, [0, 1, 2])
    result["grad_cam_tv_resnet18_224_three_classes_ms"] = round(1000.0 * (time.perf_counter() - start), 1)
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    if args.no_write:
        return 0
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lp_ultrasound_localiser_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    _write_markdown(result)
    return 0


def _write_markdown(result):
    path = RESULTS / "lp_ultrasound_localiser.md"
    m = result["machine"]
    lines = [MARK_BEGIN, "## Speed", "",
             f"`benchmarks/bench_us_localise.py`, {m.get('cpu')} ({m.get('cores')} cores), {result['threads']} threads, "
             f"torch {m.get('torch')}; a generated {result['frames']}-frame {result['frame_size'][0]}x{result['frame_size'][1]} cine. "
             f"Load average before / after: {', '.join(f'{v:.1f}' for v in result['load_average_before'])} / "
             f"{', '.join(f'{v:.1f}' for v in result['load_average_after'])} (shared machine: other jobs ran beside it).",
             "", "| backend | load (s) | whole cine ms/frame (batch 32) | frames/s | live ms/frame median | live p95 |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for backend in ("torch", "onnx"):
        r = result.get(backend, {})
        if r.get("available") is False:
            lines.append(f"| {backend} | not available | | | | |")
            continue
        lines.append(f"| {backend} | {r['load_s']} | {r['whole_cine_ms_per_frame']} | {r['whole_cine_fps']} | "
                     f"{r['live_median_ms']} | {r['live_p95_ms']} |")
    lines += ["", f"Grad-CAM (`SpineAILib.explain.grad_cam`), torchvision ResNet18, one 224x224 frame: "
                  f"{result['grad_cam_tv_resnet18_224_ms']} ms for one class, "
                  f"{result['grad_cam_tv_resnet18_224_three_classes_ms']} ms for all three from one forward pass.",
              MARK_END]  # fmt: skip
    block = "\n".join(lines)
    text = path.read_text() if path.is_file() else "# LP-ultrasound localiser\n"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + block + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
