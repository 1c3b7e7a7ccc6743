"""Lumbar MRI benchmark: level detection + severity grading per study (time, peak memory).

    .venv/bin/python benchmarks/bench_lumbar_mri.py [--repeats 3] [--threads 2]

Inputs, from ../shared/data/mri_lumbar: a T2 volume (vb2_05), a T1 FFE volume
(vb3_18), and a three-series DICOM study made from vb2_05
(SpineAILib.samples.mri_study: sagittal T2, sagittal T1-like, axial T2). Each
measurement runs in a fresh subprocess (cold imports, its own VmHWM peak):

- ``analysis_s``: reading the input + level model + sacrum (S1) model + outline refiner + disc levels
  + grading + Grad-CAM, loaded as the workflow loads them (the inference engine: ONNX Runtime where a
  bundle has model.onnx); ``sacrum_s`` is the S1 model's share of ``levels_s`` and ``sacrum_load_s``
  of ``model_load_s`` (issue 12: what the S1 model adds);
- ``warm_s``: the same without loading the models (importing MONAI is most of that), as a
  process that keeps them loaded would see it;
- ``run_s``: the whole ``run_task`` (also writing files, rendering overlays, scene.mrb).

Writes benchmarks/results/lumbar_mri.json and lumbar_mri.md with the machine and its load.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "mri_lumbar"
sys.path.insert(0, str(HERE))
from machine import describe_machine, median, python_json, whole_run  # noqa: E402

ANALYSIS = """
import json, sys, time
from pathlib import Path
import os
os.environ["SPINEAI_THREADS"] = sys.argv[3]
t0 = time.perf_counter()
from SpineAILib.workflows.lumbar.discs import disc_levels, estimate_disc_below
from SpineAILib.workflows.lumbar.pipeline import segment_vertebrae
from SpineAILib.workflows.lumbar.refine import load_refiner
from SpineAILib.models.engine import load_model
from SpineAILib.models.catalogue import resolve_bundle
from SpineAILib.workflows.lumbar.sacrum import load_sacrum
from SpineAILib.workflows.lumbar.severity import grade_levels
from SpineAILib.workflows.lumbar.severity.from_levels import study_for_run
from SpineAILib.workflows.lumbar.severity.study_input import load_study_input
t_import = time.perf_counter() - t0
device = sys.argv[2]
t0 = time.perf_counter()
image = load_study_input(sys.argv[1])
t_read = time.perf_counter() - t0
t0 = time.perf_counter()
levels = load_model(resolve_bundle("lumbar-mri"), device=device, expected_task="lumbar-mri")
refiner = load_refiner(device)
t1 = time.perf_counter()
sacrum = load_sacrum(device)
t_sacrum_load = time.perf_counter() - t1
severity = grade_levels.load(grade_levels.severity_bundle_path(), device)
t_models = time.perf_counter() - t0
t0 = time.perf_counter()
result = segment_vertebrae(image, levels, refiner=refiner, sacrum=sacrum)
discs = disc_levels(result.labelmap)
if not result.naming.get("sacrum", {}).get("found"):
    discs = estimate_disc_below(result.labelmap, discs, "L5/S1")  # as the workflow does without S1
t_levels = time.perf_counter() - t0
t0 = time.perf_counter()
study, canal, notes = study_for_run(image, Path(sys.argv[1]), result.labelmap, discs)
rows, entries, points, loaded = grade_levels.grade(study, canal, severity, discs, device=device)
t_grade = time.perf_counter() - t0
t0 = time.perf_counter()
heat = grade_levels.heatmap(rows, entries, points, loaded, image, study)
t_heat = time.perf_counter() - t0
print(json.dumps({"import_s": t_import, "read_s": t_read, "model_load_s": t_models, "levels_s": t_levels,
                  "grading_s": t_grade, "heatmap_s": t_heat,
                  "sacrum_s": result.timings.get("sacrum_s", 0.0), "sacrum_load_s": t_sacrum_load,
                  "anchor": result.naming.get("anchor"),
                  "analysis_s": t_read + t_models + t_levels + t_grade + t_heat,
                  "rows_assessed": sum(r["assessed"] for r in rows), "shape": list(image.voxels.shape),
                  "peak_rss_mib": PEAK}))
"""


def inputs(work):
    from SpineAILib.io import load
    from SpineAILib.samples.mri_study import write_mri_study

    study = write_mri_study(load(SHARED / "vb2_05.nii.gz"), work / "study_vb2_05")
    return {
        "vb2_05 T2 volume (NIfTI)": SHARED / "vb2_05.nii.gz",
        "vb3_18 T1 FFE volume (NIfTI)": SHARED / "vb3_18.nii.gz",
        "3-series DICOM study from vb2_05": study,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} is missing: this benchmark needs the real lumbar MRI cases")
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, path in inputs(work).items():
            analysis = [python_json(ANALYSIS, path, args.device, args.threads) for _ in range(args.repeats)]
            whole = [whole_run("lumbar-mri", path, work / "out", args.device, args.threads) for _ in range(args.repeats)]
            entry = {
                "input": name,
                "shape_kji": analysis[0]["shape"],
                "rows_assessed": analysis[0]["rows_assessed"],
                **{key: round(median([a[key] for a in analysis]), 3)
                   for key in ("read_s", "model_load_s", "sacrum_load_s", "levels_s", "sacrum_s", "grading_s", "heatmap_s",
                               "analysis_s")},
                "anchor": analysis[0]["anchor"],
                "warm_s": round(median([a["analysis_s"] - a["model_load_s"] for a in analysis]), 3),
                "analysis_peak_mib": round(max(a["peak_rss_mib"] for a in analysis)),
                "run_s": round(median([w["run_s"] for w in whole]), 3),
                "run_peak_mib": round(max(w["peak_rss_mib"] for w in whole)),
            }  # fmt: skip
            results.append(entry)
            print(json.dumps(entry))
    document = {
        "benchmark": "lumbar-mri level detection + severity grading",
        "machine": describe_machine(),
        "device": args.device,
        "torch_threads": args.threads,
        "repeats": args.repeats,
        "load_average_before_after": [round(v, 2) for v in load_before] + [round(v, 2) for v in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lumbar_mri.json").write_text(json.dumps(document, indent=2))
    machine = document["machine"]
    lines = [
        "# lumbar-mri: level detection + severity grading per study",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, {args.device}, "
        f"threads {args.threads}; median of {args.repeats} cold runs; load average before/after "
        f"{document['load_average_before_after']}. Budgets: analysis <= 10 s, <= 3 GB (issue 3); the whole "
        "`spineai run` of a sagittal series <= 8 s, <= 1.5 GB (issue 12). *of it, S1* = the sacrum model's share "
        "(loading; finding S1).",
        "",
        "| input | shape (K,J,I) | anchor | read s | models s (of it, S1) | levels s (of it, S1) | grading s | Grad-CAM s "
        "| **analysis s** | models loaded s | peak MiB | **whole run s** | run peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['input']} | {r['shape_kji']} | {r['anchor']} | {r['read_s']} | {r['model_load_s']} "
                     f"({r['sacrum_load_s']}) | {r['levels_s']} ({r['sacrum_s']}) | "
                     f"{r['grading_s']} | {r['heatmap_s']} | **{r['analysis_s']}** | {r['warm_s']} | {r['analysis_peak_mib']} | "
                     f"{r['run_s']} | {r['run_peak_mib']} |")  # fmt: skip
    (args.out / "lumbar_mri.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
