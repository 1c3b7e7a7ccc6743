"""Platform benchmark: startup, loading (time + peak memory), first web view.

    .venv/bin/python benchmarks/bench_platform.py [--skip-web]

Writes benchmarks/results/platform.json and platform.md with the machine
description. Each measurement runs in a fresh subprocess, so peak memory
(ru_maxrss) belongs to that one job and imports are cold.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(HERE))
from machine import describe_machine, python_json  # noqa: E402

LOAD_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
from SpineAILib.io import load
t1 = time.perf_counter()
image = load(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "peak_rss_mib": PEAK,
                  "shape": list(image.voxels.shape), "dtype": str(image.voxels.dtype)}))
"""

SCENE_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
from SpineAILib.io import load
from SpineAILib.scene.context import SceneContext
from SpineAILib.scene.volumes import add_volume
image = load(sys.argv[1])
t1 = time.perf_counter()
ctx = SceneContext.headless()
t2 = time.perf_counter()
add_volume(ctx, image)
t3 = time.perf_counter()
print(json.dumps({"read_s": t1 - t0, "scene_create_s": t2 - t1, "add_volume_s": t3 - t2,
                  "peak_rss_mib": PEAK}))
"""




def best_of(n, fn):
    runs = [fn() for _ in range(n)]
    return min(runs, key=lambda r: r.get("load_s", r.get("seconds", 0))), runs


def bench_startup(repeats=5):
    spineai = str(Path(sys.executable).with_name("spineai"))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([spineai, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return {"spineai_help_s_median": sorted(times)[len(times) // 2], "runs": times}


def make_big_ct(folder):
    """A 512x512x300 CT phantom written as a real DICOM series (300 files)."""
    from SpineAILib.samples.dicom_writer import write_dicom_series
    from SpineAILib.samples.spine_phantom import make_phantom

    image, _ = make_phantom("CT", shape_kji=(300, 512, 512), spacing=(0.7, 0.7, 1.0))
    write_dicom_series(image, folder, modality="CT", series_description="Benchmark 512x512x300")
    return folder


def bench_web_first_view(volume):
    """Seconds from starting the web app on VOLUME to every view rendered in Chromium."""
    from SpineAILib.web.snapshot import WebServer, browser_page, missing_browser_reason, wait_for_views

    if missing_browser_reason():
        return {"skipped": missing_browser_reason()}
    t0 = time.perf_counter()
    with WebServer(volume) as server:
        ready = time.perf_counter() - t0
        with browser_page(server.url) as page:
            t_page = time.perf_counter()
            wait_for_views(page)
            done = time.perf_counter()
    return {"server_ready_s": ready, "page_to_views_s": done - t_page, "start_to_views_s": done - t0}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-web", action="store_true")
    args = parser.parse_args()
    results = {"machine": describe_machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "measurements": {}}
    m = results["measurements"]
    m["startup"] = bench_startup()
    print("startup", m["startup"]["spineai_help_s_median"], flush=True)
    real_ct = SHARED / "ct_thoracolumbar" / "dicom_series"
    if real_ct.is_dir():
        m["real_ct_dicom_20x512x512_jpeg2000"] = [python_json(LOAD_SNIPPET, real_ct) for _ in range(3)]
        print("real ct", m["real_ct_dicom_20x512x512_jpeg2000"][-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        big = make_big_ct(Path(tmp) / "ct512")
        m["ct_dicom_300x512x512"] = [python_json(LOAD_SNIPPET, big) for _ in range(2)]
        print("512x512x300", m["ct_dicom_300x512x512"][-1], flush=True)
        m["ct_dicom_300x512x512_into_scene"] = python_json(SCENE_SNIPPET, big)
        print("into scene", m["ct_dicom_300x512x512_into_scene"], flush=True)
    if not args.skip_web and (SHARED / "ct_thoracolumbar" / "ct.nii.gz").exists():
        m["web_first_view_real_ct_nifti"] = [bench_web_first_view(SHARED / "ct_thoracolumbar" / "ct.nii.gz") for _ in range(2)]
        print("web", m["web_first_view_real_ct_nifti"], flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "platform.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out / 'platform.json'}")


if __name__ == "__main__":
    main()
