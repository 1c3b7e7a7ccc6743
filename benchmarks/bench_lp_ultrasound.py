"""LP-ultrasound speed: whole-cine frames/s and live ms/frame, eager torch vs ONNX Runtime.

    .venv/bin/python benchmarks/bench_lp_ultrasound.py [--bundle BUNDLE] [--reference BUNDLE ...]
        [--frames 300] [--threads 2] [--repeats 3]

On one generated 300-frame cine (SpineAITraining.ultrasound.generator, 224 x 224):

* whole cine: preprocessing (content box, crop, resize, CLAHE) + the network,
  32 frames per batch, as ``spineai run`` does (model loading excluded; the best of
  ``--repeats`` runs);
* an untrained torchvision ResNet18 at 224 x 224 (the issue's eager reference) is
  measured the same way for speed (``--no-resnet18-reference`` skips it);
* live: LiveClassifier.push one frame at a time (preprocessing, network, causal
  smoothing, decisions); median and 95th percentile over the cine after 10 warm-up
  frames.

Both for eager torch and ONNX Runtime, ``--threads`` CPU threads each; every
``--reference`` bundle (e.g. ResNet18 at 224 x 224) is measured the same way, and
its test F1 is read from its report/metrics.json beside the bundled model's, so
the accuracy cost of the faster model is in the same file. Writes
benchmarks/results/lp_ultrasound.json and .md. Not a test: nothing is asserted.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from machine import describe_machine  # noqa: E402

BUNDLED = REPO / "SpineAI" / "Resources" / "Models" / "lp-ultrasound-classifier"


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def whole_cine(classifier, frames, repeats):
    from SpineAILib.workflows.ultrasound.inference import smooth_centred

    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        probs = classifier.cine_probabilities(frames, 32)
        smooth_centred(probs, np.arange(len(frames)) * 33.3, classifier.window_ms)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    # the network alone, on frames preprocessed once
    batch = classifier.preprocessor.batch(frames[:64])
    classifier.probabilities(batch[:32])
    t0 = time.perf_counter()
    for start in range(0, 64, 32):
        classifier.probabilities(batch[start : start + 32])
    network_ms = (time.perf_counter() - t0) / 64 * 1000
    t0 = time.perf_counter()
    classifier.preprocessor.batch(frames[:64])
    preprocess_ms = (time.perf_counter() - t0) / 64 * 1000
    return {"frames_per_s": round(len(frames) / best, 1), "seconds": round(best, 3),
            "network_ms_per_frame": round(network_ms, 2), "preprocess_ms_per_frame": round(preprocess_ms, 2)}


def live(bundle, backend, frames, threads):
    from SpineAILib.workflows.ultrasound.inference import LiveClassifier

    stream = LiveClassifier(bundle, device="cpu", backend=backend)
    if backend == "onnx" and stream.classifier._session is not None:
        pass  # threads set at session creation from SPINEAI_THREADS
    for frame in frames[:10]:
        stream.push(frame)
    latencies = []
    for frame in frames[10:]:
        t0 = time.perf_counter()
        stream.push(frame)
        latencies.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(float(np.median(latencies)), 2), "p95_ms": round(float(np.percentile(latencies, 95)), 2),
            "frames": len(latencies)}


def measure(bundle, frames, threads, repeats):
    import torch

    from SpineAILib.models.bundle import read_metadata
    from SpineAILib.workflows.ultrasound.inference import FrameClassifier

    meta = read_metadata(bundle)
    torch.set_num_threads(threads)
    out = {"bundle": str(bundle), "bundle_id": meta["bundle_id"], "network": meta["network"],
           "input_size": meta["input"]["size"], "weights_mb": round((Path(bundle) / "model.safetensors").stat().st_size / 1e6, 2)}
    metrics = Path(bundle) / "report" / "metrics.json"
    if metrics.is_file():
        tables = json.loads(metrics.read_text())["tables"]
        out["test_f1_micro"] = tables["test"]["overall"]["f1_micro"]
        if "held_out_machine" in tables:
            out["held_out_f1_micro"] = tables["held_out_machine"]["overall"]["f1_micro"]
    for backend in ("torch", "onnx"):
        classifier = FrameClassifier(bundle, device="cpu", backend=backend, threads=threads)
        torch.set_num_threads(threads)
        out[backend] = {"whole_cine": whole_cine(classifier, frames, repeats), "live": live(bundle, backend, frames, threads)}
        print(f"  {meta['bundle_id']} {backend}: {out[backend]}", flush=True)
    return out


def speed_reference_bundle(folder, size=224):
    """An untrained torchvision ResNet18 (grey input, 3 labels) at ``size``, the issue's eager
    reference, as a bundle in ``folder``: for speed only (its accuracy means nothing)."""
    from SpineAILib.models.bundle import save_bundle
    from SpineAILib.models.networks import build_network
    from SpineAILib.workflows.ultrasound.preprocess import Preprocessor

    network = {"name": "tv_resnet18", "args": {"in_channels": 1, "num_classes": 3}}
    meta = {
        "bundle_id": f"speed-reference-resnet18-{size}",
        "version": "0",
        "task": "lp-ultrasound",
        "network": network,
        "input": Preprocessor(size=(size, size)).metadata(),
        "labels": ["bad_quality", "spinal_cord", "csf"],
        "training": {"data": "none: random weights, speed reference only", "command": "", "seed": None, "split": None},
        "metrics": [],
    }
    return save_bundle(folder, meta, build_network(network["name"], **network["args"]), overwrite=True)


def _network_label(network):
    args = network.get("args", {})
    width = f" x{args['widen_factor']:g} width" if "widen_factor" in args else ""
    return f"{network['name']}{width}"


def render(results):
    lines = [f"# LP-ultrasound speed, {results['date']}, {results['threads']} threads, "
             f"load average before/after {results['load_average_before']} / {results.get('load_average_after')}", "",
             f"Cine: {results['cine']['frames']} generated frames of {results['cine']['size'][0]}x{results['cine']['size'][1]}; "
             "whole cine = preprocessing + network, 32 frames a batch; live = one frame at a time (LiveClassifier.push).", "",
             "| bundle | network | input | weights MB | test F1 | torch cine fps | ORT cine fps | torch live ms (p95) | ORT live ms (p95) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for b in results["bundles"]:
        lines.append(
            f"| {b['bundle_id']} | {_network_label(b['network'])} | {b['input_size'][0]}² | {b['weights_mb']} | "
            f"{format(b['test_f1_micro'], '.4f') if 'test_f1_micro' in b else 'n/a'} | "
            f"{b['torch']['whole_cine']['frames_per_s']} | {b['onnx']['whole_cine']['frames_per_s']} | "
            f"{b['torch']['live']['median_ms']} ({b['torch']['live']['p95_ms']}) | {b['onnx']['live']['median_ms']} ({b['onnx']['live']['p95_ms']}) |"
        )
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=BUNDLED)
    p.add_argument("--reference", type=Path, action="append", default=[], help="other bundles to measure (e.g. ResNet18 224)")
    p.add_argument("--no-resnet18-reference", action="store_true",
                   help="skip the eager ResNet18 224 x 224 speed reference (untrained weights, speed only)")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=HERE / "results" / "lp_ultrasound.json")
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the existing --out JSON")
    args = p.parse_args(argv)
    if args.render:
        lines = render(json.loads(args.out.read_text()))
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0
    os.environ["SPINEAI_THREADS"] = str(args.threads)

    from SpineAITraining.ultrasound.generator import generate_cine

    t0 = time.perf_counter()
    cine = generate_cine(2024, machine="linear_hf", view="sagittal_midline", n_frames=args.frames)
    print(f"generated a {args.frames}-frame cine in {time.perf_counter() - t0:.1f} s", flush=True)
    results = {
        "benchmark": "lp-ultrasound whole-cine and live speed",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": describe_machine(),
        "threads": args.threads,
        "load_average_before": load_average(),
        "cine": {"frames": args.frames, "size": list(cine.frames.shape[1:]), "generator": "linear_hf sagittal_midline seed 2024"},
        "bundles": [],
    }
    import tempfile

    references = list(args.reference)
    with tempfile.TemporaryDirectory() as temp:
        if not args.no_resnet18_reference:
            references.append(speed_reference_bundle(Path(temp) / "resnet18-224"))
        for bundle in [args.bundle, *references]:
            entry = measure(bundle, cine.frames, args.threads, args.repeats)
            if Path(bundle).is_relative_to(temp):
                entry["bundle"] = "(temporary: untrained tv_resnet18, speed only)"
            results["bundles"].append(entry)
    results["load_average_after"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    lines = render(results)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
