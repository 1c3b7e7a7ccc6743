"""Spine CT benchmark: the whole ``spineai run spine-ct`` of a 512x512x300 CT (time, peak memory).

    .venv/bin/python benchmarks/bench_spine_ct.py [--repeats 3]

Inputs: a whole-spine phantom that the rules name (so the endplates and measurements run), and the real thoraco-lumbar CT of ../shared/data/ct_thoracolumbar (122 x 101 x 112 voxels of
3 mm) repeated voxel by voxel (nearest neighbour) onto 512 x 512 x 300 voxels over the same field
of view (0.71 x 0.59 x 1.12 mm), int16, written once as an uncompressed NIfTI: the size of a
typical abdominal CT, with the same anatomy and densities in it (linear interpolation would blur
it: interpolated up and averaged back down, the 3 mm bone contrast drops and the result changes,
which is a weakness of the rules' fixed Hounsfield thresholds, not a speed question). Each run is the command line in a fresh process (``spineai run
spine-ct``: start-up, reading, the column and anchors, measurements, segmentation file, table,
overlays, scene.mrb); its peak memory is the child's maximum resident set size. The workflow
uses no network, so no torch is imported.

Writes benchmarks/results/spine_ct.json and spine_ct.md with the machine and its load.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "ct_thoracolumbar"
sys.path.insert(0, str(HERE))
from machine import describe_machine, median  # noqa: E402

SHAPE_IJK = (512, 512, 300)


def write_input(path):
    import nibabel as nib
    import numpy as np

    source = nib.load(str(SHARED / "ct.nii.gz"))
    voxels = np.asarray(source.dataobj, dtype=np.float32)  # (I, J, K)
    index = [np.minimum(((np.arange(n) + 0.5) * voxels.shape[axis] / n).astype(int), voxels.shape[axis] - 1)
             for axis, n in enumerate(SHAPE_IJK)]
    out = voxels[np.ix_(*index)]
    affine = source.affine.copy()
    for axis, n in enumerate(SHAPE_IJK):
        scale = voxels.shape[axis] / n
        affine[:3, 3] += affine[:3, axis] * (0.5 * scale - 0.5)
        affine[:3, axis] *= scale
    nib.save(nib.Nifti1Image(np.rint(out).astype(np.int16), affine), str(path))
    return {"shape_ijk": list(SHAPE_IJK), "spacing_ijk": [round(float(np.linalg.norm(affine[:3, a])), 3) for a in range(3)]}


def write_phantom(path):
    """The phantom of the workflow test (seed 5, abdomen, a spine-targeted 170 x 170 x 330 mm field, three planted
    compressions) at 512 x 512 x 301 voxels of 0.33 x 0.33 x 1.1 mm: the rules name it, so the endplates and the
    measurements run on named vertebrae (the resampled real CT names none)."""
    from SpineAITraining.spine_ct.phantom import make_spine_ct
    from SpineAILib.io.volumes import save_volume_file

    case = make_spine_ct(5, "abdomen", spacing=(170 / 512, 170 / 512, 1.1), size_mm=(170, 170, 330),
                         variants={"targeted": True, "scoliosis_deg": 0.0, "metal": None, "arms": "up",
                                   "compressions": [("L1", "wedge", 2), ("L3", "biconcave", 3), ("L4", "crush", 2)]},
                         max_voxels=512 * 512 * 301)  # fmt: skip
    save_volume_file(case.ct, path)
    return {"shape_ijk": [int(n) for n in case.ct.voxels.shape[::-1]], "spacing_ijk": [round(float(v), 3) for v in case.ct.spacing]}


# the child's own peak (its launcher has no other child): ru_maxrss of RUSAGE_CHILDREN, in KiB
LAUNCHER = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(done.returncode)")


def one_run(path, out):
    spineai = str(Path(sys.executable).with_name("spineai"))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LAUNCHER, spineai, "run", "spine-ct", str(path), "--out", str(out), "--force"],
                          capture_output=True, text=True, env=dict(os.environ, VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow"))  # fmt: skip
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    peak = int(done.stderr.strip().splitlines()[-1])
    report = json.loads((out / "report.json").read_text())
    return {"run_s": seconds, "peak_mib": peak / 1024.0, "timings": report["timings"],
            "levels": report["results"]["levels_found"]}  # fmt: skip


def measure(path, made, repeats, work):
    runs = [one_run(path, work / "out") for _ in range(repeats)]
    return {**made, "levels": runs[0]["levels"], "run_s": round(median([r["run_s"] for r in runs]), 3),
            "runs_s": [round(r["run_s"], 2) for r in runs], "peak_mib": round(max(r["peak_mib"] for r in runs)),
            "timings": runs[0]["timings"]}  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        real_path, phantom_path = work / "ct_512x512x300.nii", work / "phantom_512x512x300.nii"
        real_made, phantom_made = write_input(real_path), write_phantom(phantom_path)
        load_before = os.getloadavg()
        results = {"real": measure(real_path, real_made, args.repeats, work),
                   "phantom": measure(phantom_path, phantom_made, args.repeats, work)}  # fmt: skip
        load_after = os.getloadavg()
    document = {"benchmark": "spine-ct whole run of a 512x512x300 CT", "budget": "<= 20 s and <= 2 GB on 2 CPU cores",
                "machine": describe_machine(), "repeats": args.repeats,
                "load_average_before_after": [round(v, 2) for v in load_before] + [round(v, 2) for v in load_after],
                "date": time.strftime("%Y-%m-%d %H:%M"), "results": results}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "spine_ct.json").write_text(json.dumps(document, indent=2) + "\n")
    machine = document["machine"]
    real, phantom = results["real"], results["phantom"]
    lines = [
        "# spine-ct: whole run of a 512 x 512 x 300 CT",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB; median of {args.repeats} "
        f"cold runs of `spineai run spine-ct` per input, each its own process (peak: its maximum resident set); load "
        f"average (1, 5, 15 min) before / after {document['load_average_before_after']}. Budget (issue 13): <= 20 s, <= 2 GB.",
        "",
        f"Inputs: (real) the real CT of ct_thoracolumbar repeated voxel by voxel (nearest neighbour) onto {real['shape_ijk']} "
        f"voxels (I, J, K) at {real['spacing_ijk']} mm; found {', '.join(real['levels'])}. Named like the real CT "
        "at its own 3 mm grid (T11, its arch only, to S1; before the lumbosacral disc was looked for among the discs the "
        "chain passed over, this grid found no sacrum and named nothing), so the endplates and measurements run. (phantom) the workflow test's whole-spine phantom (seed 5, abdomen, a spine-targeted "
        "170 x 170 x 330 mm field, three planted compressions) at "
        f"{phantom['shape_ijk']} voxels of {phantom['spacing_ijk']} mm; found {', '.join(phantom['levels'])}: the "
        "endplate refinement and the measurements run on every named vertebra.",
        "",
        "| input | whole run s (median) | runs s | peak MiB |",
        "|---|---|---|---|",
        f"| real, resampled | **{real['run_s']}** | {real['runs_s']} | {real['peak_mib']} |",
        f"| phantom, named | **{phantom['run_s']}** | {phantom['runs_s']} | {phantom['peak_mib']} |",
        "",
        f"Steps (first run, real): {json.dumps(real['timings'])}",
        "",
        f"Steps (first run, phantom): {json.dumps(phantom['timings'])}",
    ]  # fmt: skip
    (args.out / "spine_ct.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
