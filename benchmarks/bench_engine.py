"""ONNX Runtime engine vs torch (issue 20): same outputs, speed, memory, start-up, install size.

    .venv/bin/python benchmarks/bench_engine.py [--part equivalence|speed|install|all] [--cases N]

* equivalence: every real lumbar case in ../shared/data/mri_lumbar through the level model,
  the refiner and the severity grader with each engine (a fresh process per engine): level
  names, Dice against the reference labels, severity rows; CT phantoms (segmentation names,
  fracture probabilities and calls); a 300-frame generated cine (probabilities, calls).
* speed: whole `spineai run` per workflow per engine in a fresh process (wall time, VmHWM),
  'onnx-no-torch' being a process where importing torch/monai fails; start-up = process
  start to the workflow's models loaded.
* install: the run-only environment (no torch, torchvision, monai, CUDA wheels) vs the full one,
  summed from the installed distributions' files.
Results: results/engine.{json,md} with the machine and its load average.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import PEAK, describe_machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
INPUTS = Path(tempfile.gettempdir()) / "spineai-bench-engine"
BLOCK = """
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "monai", "torchvision"):
            raise ImportError(name + " blocked")
        return None
sys.meta_path.insert(0, _Block())
"""


def load_average():
    return [round(v, 2) for v in os.getloadavg()]


def child(snippet, *args, block=False, env=None):
    code = "import sys\n" + (BLOCK if block else "") + snippet.replace("PEAK", PEAK)
    environment = dict(os.environ, PYTHONPATH=f"{REPO / 'SpineAI'}:{REPO}", **(env or {}))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=environment)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(wall, 2)
    return result


# -- inputs ---------------------------------------------------------------------------------


def inputs():
    INPUTS.mkdir(parents=True, exist_ok=True)
    cine, ct = INPUTS / "cine300.dcm", INPUTS / "ct512.nii"
    if not cine.is_file():
        from SpineAILib.samples.cine_phantom import write_cine_dicom
        from SpineAITraining.ultrasound.generator import generate_cine

        write_cine_dicom(generate_cine(2024, machine="linear_hf", view="sagittal_midline", n_frames=300).to_cine(), cine)
    if not ct.is_file():
        import bench_cervical_ct

        bench_cervical_ct.write_input(ct)
    # vb2_05: the T2 volume of bench_lumbar_mri.py (316 x 167 x 77, the "309 x 170 x 77" case)
    return {"lumbar-mri": DATA / "mri_lumbar" / "vb2_05.nii.gz", "lp-ultrasound": cine, "cervical-ct": ct}


# -- equivalence ------------------------------------------------------------------------------

EQUIVALENCE = r"""
import json, os, sys
import numpy as np
from SpineAILib.io import load
from SpineAILib.models.engine import load_model
from SpineAILib.models.catalogue import resolve_bundle
from SpineAILib.terminology import vertebra_name
from SpineAILib.workflows.lumbar.discs import disc_levels
from SpineAILib.workflows.lumbar.pipeline import segment_vertebrae
from SpineAILib.workflows.lumbar.refine import load_refiner
from SpineAILib.workflows.lumbar.severity import grade_levels
from SpineAILib.workflows.lumbar.severity.from_levels import study_for_run
from SpineAITraining.lumbar import mri_lumbar
engine, limit = sys.argv[1], int(sys.argv[2])
out = {"engine": engine, "lumbar": {}, "ct": {}, "us": None}
bundle = load_model(resolve_bundle("lumbar-mri"), device="cpu", engine=engine)
refiner = load_refiner("cpu")
assert bundle.engine == refiner.engine == grade_levels.load(grade_levels.severity_bundle_path(), "cpu").engine == engine
severity = grade_levels.severity_bundle_path()
cases = mri_lumbar.list_cases(sys.argv[3])[:limit]
for case in cases:
    image, truth = load(case.image), np.asarray(load(case.labels).voxels)
    result = segment_vertebrae(image, bundle, refiner=refiner)
    dice = {}
    for value in case.labelled_values:
        t = truth == value
        if t.any():
            p = result.labelmap.voxels == value
            dice[vertebra_name(value)] = 2.0 * float((p & t).sum()) / float(p.sum() + t.sum())
    discs = disc_levels(result.labelmap)
    study, canal, notes = study_for_run(image, case.image, result.labelmap, discs)
    rows, _, _, _ = grade_levels.grade(study, canal, severity, discs, device="cpu")
    out["lumbar"][case.case_id] = {"names": [v["name"] for v in result.vertebrae], "dice": dice,
        "rows": {r["row_id"]: [r["normal_mild"], r["moderate"], r["severe"], r["grade"], r["assessed"]] for r in rows}}
    np.save(os.path.join(sys.argv[4], f"{case.case_id}-{engine}.npy"), result.labelmap.voxels.astype(np.uint8))
from SpineAITraining.cervical.phantom import make_case
from SpineAILib.workflows.cervical.segment import segment
from SpineAILib.workflows.cervical import fracture
from SpineAILib.workflows.cervical.fracture import fracture_bundle_path
seg = load_model(resolve_bundle("cervical-ct"), device="cpu", engine=engine)
frac = load_model(fracture_bundle_path(), device="cpu", engine=engine)
threshold = float(frac.thresholds.get("vertebra", 0.5))
for seed in (4242, 4243, 4244, 4245):
    case = make_case(seed, spacing=(1.0, 1.0, 1.2), levels=("C1", "C2", "C3", "C4", "C5", "C6", "C7"),
                     shape_limit=(140, 110, 110), fracture_rate=0.7)
    result = segment(case.ct, seg)
    entries, crops = fracture.score_vertebrae(case.ct, result, frac)
    np.save(os.path.join(sys.argv[4], f"ct{seed}-{engine}.npy"), result.labelmap.voxels.astype(np.uint8))
    out["ct"][str(seed)] = {"names": [v["name"] for v in result.vertebrae],
                            "p": {e["name"]: e["probability"] for e in entries if e["present"]}, "threshold": threshold}
from SpineAILib.workflows.ultrasound.inference import FrameClassifier, decide, smooth_centred
clf = FrameClassifier(resolve_bundle("lp-ultrasound"), device="cpu", backend="onnx" if engine == "onnx" else "torch")
cine = load(sys.argv[5])
p = clf.cine_probabilities(cine.frames, 32)
out["us"] = {"p": p.tolist(), "calls": decide(smooth_centred(p, np.asarray(cine.frame_times_ms), clf.window_ms), clf.thresholds, clf.labels).tolist()}
print(json.dumps(out))
"""


def equivalence(limit, cine):
    import numpy as np

    work = Path(tempfile.mkdtemp(prefix="spineai-equivalence-"))
    # SPINEAI_ENGINE too: the refiner and the severity grader are loaded by the workflow's own functions
    runs = {e: child(EQUIVALENCE, e, limit, DATA / "mri_lumbar", work, cine, env={"SPINEAI_ENGINE": e}) for e in ("onnx", "torch")}
    a, b = runs["onnx"], runs["torch"]
    lumbar = []
    for case in a["lumbar"]:
        x, y = a["lumbar"][case], b["lumbar"][case]
        la, lb = np.load(work / f"{case}-onnx.npy"), np.load(work / f"{case}-torch.npy")
        dice_diff = max([abs(x["dice"][k] - y["dice"][k]) for k in x["dice"]] or [0.0])
        prob_diff = max([abs(p - q) for r in x["rows"] for p, q in zip(x["rows"][r][:3], y["rows"][r][:3])] or [0.0])
        same_rows = all(x["rows"][r][3:] == y["rows"][r][3:] for r in x["rows"])
        lumbar.append({"case": case, "same_names": x["names"] == y["names"], "names": x["names"],
                       "max_dice_difference": dice_diff, "voxels_differing": int((la != lb).sum()),
                       "max_probability_difference": prob_diff, "same_severity_rows": same_rows,
                       "dice_mean_onnx": float(np.mean(list(x["dice"].values()))) if x["dice"] else None})  # fmt: skip
    ct = []
    for seed in a["ct"]:
        x, y = a["ct"][seed], b["ct"][seed]
        la, lb = np.load(work / f"ct{seed}-onnx.npy"), np.load(work / f"ct{seed}-torch.npy")
        t = x["threshold"]
        ct.append({"phantom": seed, "same_names": x["names"] == y["names"], "voxels_differing": int((la != lb).sum()),
                   "max_probability_difference": max([abs(x["p"][k] - y["p"][k]) for k in x["p"]] or [0.0]),
                   "same_calls": all((x["p"][k] >= t) == (y["p"][k] >= t) for k in x["p"]) and set(x["p"]) == set(y["p"])})  # fmt: skip
    pa, pb = np.asarray(a["us"]["p"]), np.asarray(b["us"]["p"])
    us = {"frames": len(pa), "max_probability_difference": float(np.abs(pa - pb).max()),
          "same_calls": a["us"]["calls"] == b["us"]["calls"]}  # fmt: skip
    return {"lumbar": lumbar, "ct_phantoms": ct, "lp_ultrasound_cine": us,
            "process_s": {e: r["process_wall_s"] for e, r in runs.items()}}  # fmt: skip


# -- speed and memory ---------------------------------------------------------------------------

WHOLE = r"""
import json, time
t0 = time.perf_counter()
from SpineAILib.tasks import run_task
report = run_task(sys.argv[1], sys.argv[2], sys.argv[3], device="cpu", force=True)
print(json.dumps({"run_s": round(time.perf_counter() - t0, 2), "peak_mib": round(PEAK), "timings": report["timings"],
                  "torch_imported": "torch" in sys.modules}))
"""

STARTUP = r"""
import json, time
t0 = time.perf_counter()
from SpineAILib.models.engine import load_model
from SpineAILib.models.catalogue import resolve_bundle, sub_model_path
task = sys.argv[1]
subs = {"lumbar-mri": [("lumbar-mri/refiner", "lumbar-mri-body-refiner"), ("lumbar-mri/severity", "lumbar-mri-severity")],
        "cervical-ct": [("cervical-ct/fracture", "cervical-ct-fracture")],
        "lp-ultrasound": [("lp-ultrasound/localiser", "lp-ultrasound-localiser")]}[task]
models = [load_model(resolve_bundle(task), device="cpu")] + [load_model(sub_model_path(*s), device="cpu") for s in subs]
print(json.dumps({"startup_s": round(time.perf_counter() - t0, 3), "peak_mib": round(PEAK), "engines": [m.engine for m in models]}))
"""


def speed(paths, repeats=1):
    out = {}
    work = Path(tempfile.mkdtemp(prefix="spineai-speed-"))
    for task, path in paths.items():
        out[task] = {}
        for engine in ("torch", "onnx", "onnx-no-torch"):
            env = {"SPINEAI_ENGINE": "torch" if engine == "torch" else "onnx"}
            block = engine == "onnx-no-torch"
            runs = [child(WHOLE, task, path, work / f"{task}-{engine}", block=block, env=env) for _ in range(repeats)]
            best = min(runs, key=lambda r: r["process_wall_s"])
            start = child(STARTUP, task, block=block, env=env)
            out[task][engine] = {"whole_run_process_s": best["process_wall_s"], "run_task_s": best["run_s"],
                                 "peak_mib": best["peak_mib"], "torch_imported": best["torch_imported"],
                                 "startup_s": start["process_wall_s"], "startup_models_s": start["startup_s"],
                                 "startup_peak_mib": start["peak_mib"], "load_average": load_average(),
                                 "timings": best["timings"]}  # fmt: skip
            print(task, engine, {k: v for k, v in out[task][engine].items() if k != "timings"}, flush=True)
    return out


# -- install size -------------------------------------------------------------------------------

TRAIN_ONLY = ("torch", "torchvision", "monai", "triton", "sympy", "mpmath", "networkx", "jinja2", "markupsafe",
              "filelock", "fsspec", "onnx", "onnxscript", "onnx-ir", "ml-dtypes", "tensorboard", "tensorboard-data-server")  # fmt: skip


def install():
    from importlib import metadata

    sizes = {}
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
        total = 0
        for f in dist.files or ():
            try:
                total += os.path.getsize(dist.locate_file(f))
            except OSError:
                pass
        sizes[name] = sizes.get(name, 0) + total
    train = {n: s for n, s in sizes.items() if n in TRAIN_ONLY or n.startswith(("nvidia-", "cuda-"))}
    full = sum(sizes.values())
    return {"full_mib": round(full / 2**20), "run_only_mib": round((full - sum(train.values())) / 2**20),
            "training_only_mib": round(sum(train.values()) / 2**20),
            "largest_training_only": {n: round(s / 2**20) for n, s in sorted(train.items(), key=lambda x: -x[1])[:6]},
            "onnxruntime_mib": round(sizes.get("onnxruntime", 0) / 2**20),
            "note": "sizes of the installed files of each distribution in .venv (Playwright/test tools are counted in both)"}


def markdown(result):
    m = result["machine"]
    lines = [f"# ONNX Runtime engine vs torch ({result['date']})", "",
             f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB, no GPU; load average at start "
             f"{result['load_average_start']} (shared VM, other engineers' jobs running: times are upper bounds).",
             f"Equivalence measured {result.get('equivalence_measured', '')}; each speed row carries its own load average "
             "(2 cores: a load of 3 leaves a run about half the machine; the torch rows suffer most, its OpenMP threads spin).", ""]  # fmt: skip
    eq = result.get("equivalence")
    if eq:
        lumbar = eq["lumbar"]
        lines += ["## Same outputs (onnx vs torch)", "",
                  f"Lumbar MRI, {len(lumbar)} real cases (level model + refiner + severity): same names in "
                  f"{sum(c['same_names'] for c in lumbar)}/{len(lumbar)}; max Dice difference "
                  f"{max(c['max_dice_difference'] for c in lumbar):.2e}; max severity probability difference "
                  f"{max(c['max_probability_difference'] for c in lumbar):.2e}; same severity rows in "
                  f"{sum(c['same_severity_rows'] for c in lumbar)}/{len(lumbar)}; voxels differing per case: max "
                  f"{max(c['voxels_differing'] for c in lumbar)}.", "",
                  "| case | same names | max Dice diff | voxels differing | max p diff | same rows |", "|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {c['case']} | {c['same_names']} | {c['max_dice_difference']:.1e} | {c['voxels_differing']} | "
                  f"{c['max_probability_difference']:.1e} | {c['same_severity_rows']} |" for c in lumbar]  # fmt: skip
        lines += ["", "| CT phantom | same names | voxels differing | max fracture p diff | same calls |", "|---|---|---|---|---|"]
        lines += [f"| {c['phantom']} | {c['same_names']} | {c['voxels_differing']} | {c['max_probability_difference']:.1e} | {c['same_calls']} |"
                  for c in eq["ct_phantoms"]]  # fmt: skip
        us = eq["lp_ultrasound_cine"]
        lines += ["", f"lp-ultrasound, {us['frames']}-frame generated cine: max probability difference "
                      f"{us['max_probability_difference']:.1e}, same calls: {us['same_calls']}.", ""]  # fmt: skip
    sp = result.get("speed")
    if sp:
        lines += ["## Whole `spineai run` and start-up (fresh process each)", "",
                  "| workflow | engine | whole run (s) | peak (MiB) | torch imported | start-up to models loaded (s) | start-up peak (MiB) | load avg |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for task, engines in sp.items():
            for engine, r in engines.items():
                lines.append(f"| {task} | {engine} | {r['whole_run_process_s']} | {r['peak_mib']} | {r['torch_imported']} | "
                             f"{r['startup_s']} | {r['startup_peak_mib']} | {r['load_average'][0]} |")  # fmt: skip
        lines.append("")
    ins = result.get("install")
    if ins:
        lines += ["## Install size", "", f"Full environment {ins['full_mib']} MiB; run-only (no torch, torchvision, monai, "
                  f"CUDA wheels, onnx export tools) {ins['run_only_mib']} MiB; onnxruntime itself {ins['onnxruntime_mib']} MiB. "
                  f"Largest training-only: {ins['largest_training_only']}.", ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("equivalence", "speed", "install", "all"), default="all")
    parser.add_argument("--cases", type=int, default=1000, help="at most this many lumbar cases")
    parser.add_argument("--tasks", default="lumbar-mri,lp-ultrasound,cervical-ct", help="workflows for --part speed")
    parser.add_argument("--out", type=Path, default=RESULTS / "engine.json")
    args = parser.parse_args(argv)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result.update({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": describe_machine(), "load_average_start": load_average()})
    paths = inputs()
    if args.part in ("install", "all"):
        result["install"] = install()
    if args.part in ("equivalence", "all"):
        result["equivalence"] = equivalence(args.cases, paths["lp-ultrasound"])
        result["equivalence_measured"] = f"{time.strftime('%Y-%m-%d %H:%M')}, load {load_average()}"
    if args.part in ("speed", "all"):
        wanted = args.tasks.split(",")
        result["speed"] = {**result.get("speed", {}), **speed({t: p for t, p in paths.items() if t in wanted})}
    result["load_average_end"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
