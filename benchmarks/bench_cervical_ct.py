"""Cervical CT benchmark: vertebra segmentation + fracture scoring of a 512x512x300 CT (time, peak memory).

    .venv/bin/python benchmarks/bench_cervical_ct.py [--repeats 3] [--threads 2]

Input: a generated phantom (SpineAITraining.rsna2022.phantom.make_case, seed 90100, C1-T1 in
view, one fracture) at 0.4 x 0.4 x 0.6 mm, centred in a 512 x 512 x 300 grid (air around the
phantom's own 140 mm field of view, as a 205 mm reconstruction would hold it), written once
as an uncompressed NIfTI. Each measurement runs in a fresh subprocess (cold imports, its own
VmHWM peak):

- ``analysis_s``: reading the CT + loading both bundles + segmentation (resample, UNet,
  clean-up, back to the input grid) + fracture scoring + Grad-CAM heat map, the part the
  issue's budget (<= 30 s, <= 4 GB on 2 CPU cores) is about;
- ``run_s``: the whole ``run_task`` (also the segmentation file, table, heat map file,
  overlays and scene.mrb).

Writes benchmarks/results/cervical_ct.json and cervical_ct.md with the machine and its load.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import describe_machine, median, python_json, whole_run  # noqa: E402

SHAPE_KJI = (300, 512, 512)
SPACING_IJK = (0.4, 0.4, 0.6)
SEED = 90100

ANALYSIS = """
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
t0 = time.perf_counter()
from SpineAILib.workflows.cervical.fracture import fracture_bundle_path, heatmap, score_vertebrae
from SpineAILib.workflows.cervical.segment import segment
from SpineAILib.io import load
from SpineAILib.models.bundle import load_bundle
from SpineAILib.models.catalogue import resolve_bundle
t_import = time.perf_counter() - t0
device = sys.argv[2]
t0 = time.perf_counter()
image = load(sys.argv[1])
t_read = time.perf_counter() - t0
t0 = time.perf_counter()
seg = load_bundle(resolve_bundle("cervical-ct"), device=device, expected_task="cervical-ct")
frac = load_bundle(fracture_bundle_path(), device=device, expected_task="cervical-ct/fracture")
t_models = time.perf_counter() - t0
t0 = time.perf_counter()
result = segment(image, seg)
t_seg = time.perf_counter() - t0
t0 = time.perf_counter()
entries, crops = score_vertebrae(image, result, frac)
t_frac = time.perf_counter() - t0
t0 = time.perf_counter()
heat = heatmap(image, result, frac, entries, crops)
t_heat = time.perf_counter() - t0
print(json.dumps({"import_s": t_import, "read_s": t_read, "model_load_s": t_models, "segmentation_s": t_seg,
                  "fracture_s": t_frac, "heatmap_s": t_heat,
                  "analysis_s": t_read + t_models + t_seg + t_frac + t_heat, "steps": result.timings,
                  "found": [v["name"] for v in result.vertebrae], "shape": list(image.voxels.shape),
                  "peak_rss_mib": PEAK}))
"""


def write_input(path):
    from SpineAILib.io.volumes import save_volume_file
    from SpineAITraining.cervical.phantom import make_case

    t0 = time.perf_counter()
    case = make_case(SEED, spacing=SPACING_IJK, shape_limit=SHAPE_KJI, fracture_levels=["C6"],
                     levels=("C1", "C2", "C3", "C4", "C5", "C6", "C7", "T1"))  # fmt: skip
    ct = pad_to(case.ct, SHAPE_KJI)
    save_volume_file(ct, path)
    return {"shape_kji": list(ct.voxels.shape), "spacing_ijk": [round(s, 3) for s in ct.spacing],
            "phantom_shape_kji": list(case.ct.voxels.shape),
            "fractured": [n for n, v in case.fractured.items() if v], "generate_s": round(time.perf_counter() - t0, 1)}


def pad_to(image, shape):
    """The phantom centred in a larger grid (air, -1024 HU, around it), as a 512 x 512 reconstruction of
    a wider field of view would hold it; the geometry moves with it."""
    import numpy as np

    from SpineAILib.images import VolumeImage

    before = [(n - m) // 2 for n, m in zip(shape, image.voxels.shape)]
    voxels = np.full(shape, -1024, np.int16)
    voxels[tuple(slice(b, b + m) for b, m in zip(before, image.voxels.shape))] = image.voxels
    matrix = image.ijk_to_ras.copy()
    matrix[:3, 3] -= matrix[:3, :3] @ np.array(before[::-1], float)  # (i, j, k) offsets
    return VolumeImage(voxels, matrix, modality="CT", description="phantom 512x512x300")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "ct_512x512x300.nii"
        made = write_input(path)
        print(json.dumps({"input": made}))
        load_before = os.getloadavg()
        analysis = [python_json(ANALYSIS, path, args.device, args.threads) for _ in range(args.repeats)]
        whole = [whole_run("cervical-ct", path, work / "out", args.device, args.threads) for _ in range(args.repeats)]
        load_after = os.getloadavg()
    keys = ("read_s", "model_load_s", "segmentation_s", "fracture_s", "heatmap_s", "analysis_s")
    result = {
        "input": f"phantom seed {SEED} (make_case), C1-T1 in view, fractured {made['fractured']}",
        **made,
        "found": analysis[0]["found"],
        **{key: round(median([a[key] for a in analysis]), 3) for key in keys},
        "analysis_runs_s": [round(a["analysis_s"], 2) for a in analysis],
        "segmentation_steps": analysis[0]["steps"],
        "analysis_peak_mib": round(max(a["peak_rss_mib"] for a in analysis)),
        "run_s": round(median([w["run_s"] for w in whole]), 3),
        "run_timings": whole[0]["timings"],
        "run_peak_mib": round(max(w["peak_rss_mib"] for w in whole)),
    }
    print(json.dumps(result))
    document = {
        "benchmark": "cervical-ct segmentation + fracture scoring of a 512x512x300 CT",
        "budget": "analysis <= 30 s and <= 4 GB on 2 CPU cores",
        "machine": describe_machine(),
        "device": args.device,
        "torch_threads": args.threads,
        "repeats": args.repeats,
        "load_average_before_after": [round(v, 2) for v in load_before] + [round(v, 2) for v in load_after],
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "result": result,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cervical_ct.json").write_text(json.dumps(document, indent=2) + "\n")
    machine, r = document["machine"], result
    lines = [
        "# cervical-ct: segmentation + fracture scoring of a 512 x 512 x 300 CT",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, {args.device}, torch threads "
        f"{args.threads}; median of {args.repeats} cold runs, each in its own process; load average (1, 5, 15 min) "
        f"before / after {document['load_average_before_after']} (the VM is shared with other jobs). "
        f"Budget (issue 4): analysis <= 30 s, <= 4 GB.",
        "",
        f"Input: {r['input']}, {r['shape_kji']} voxels (K, J, I) at {r['spacing_ijk']} mm (I, J, K); found {', '.join(r['found'])}.",
        "",
        "| read s | models s | segmentation s | fracture s | Grad-CAM s | **analysis s** | peak MiB | whole run s | run peak MiB |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {r['read_s']} | {r['model_load_s']} | {r['segmentation_s']} | {r['fracture_s']} | {r['heatmap_s']} | "
        f"**{r['analysis_s']}** | {r['analysis_peak_mib']} | {r['run_s']} | {r['run_peak_mib']} |",
        "",
        f"Segmentation steps (first run): {json.dumps(r['segmentation_steps'])}",
        "",
        f"Whole run (first): {json.dumps(r['run_timings'])}",
    ]  # fmt: skip
    (args.out / "cervical_ct.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
