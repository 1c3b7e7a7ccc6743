"""Web app: page ready, and load → first image, as a user sees them in Chromium.

* page ready: server start → its ready line; page opened → the panel and all four views drawn;
* load → first image: the click on Load (the file browser's series Load for the real CT DICOM
  series shipped in SpineAI/Resources/SampleData, 20 × 512 × 512 JPEG 2000; a typed path for a
  generated 512 × 512 × 300 CT DICOM series, 300 files) → the axial view shows the CT (a share
  of its pixels lit, read from the view's image in the page). Goal: ≤ 2 s for the real series.

Writes benchmarks/results/web_load.json with the machine (machine.py). Run:
``.venv/bin/python benchmarks/bench_web_load.py`` (needs Chromium; a few minutes).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import describe_machine  # noqa: E402 (puts the checkout on sys.path)
from web_timing import clear_scene, until_lit  # noqa: E402


def run(big_ct, real_series, repeats):
    from SpineAILib.web.snapshot import AXIAL, WebServer, browser_page, view_img_selector, wait_for_views

    view = view_img_selector(AXIAL)
    out = {"page_ready": [], "real_ct_series_20x512x512": [], "ct_series_300x512x512": []}
    with tempfile.TemporaryDirectory() as ws:
        t0 = time.perf_counter()
        with WebServer("--data-root", real_series.parent, "--workspace", ws) as server:
            ready = time.perf_counter() - t0
            with browser_page(server.url) as page:
                t_page = time.perf_counter()
                page.wait_for_selector("#spineai-browse-list")
                wait_for_views(page)
                out["page_ready"].append({"server_ready_s": round(ready, 2),
                                          "page_to_panel_and_views_s": round(time.perf_counter() - t_page, 2)})
                for i in range(repeats):
                    page.click(f".spineai-browse-folder:has-text('{real_series.name}')")
                    page.wait_for_function("(p) => document.getElementById('spineai-browse-path').innerText === p",
                                           arg=str(real_series.resolve()))
                    t = time.perf_counter()
                    page.click(".spineai-browse-series-load")
                    said, seconds = until_lit(page, view, t, 0.08)
                    message = page.inner_text("#spineai-load-message")
                    out["real_ct_series_20x512x512"].append({"load_to_first_image_s": round(seconds, 2),
                                                             "load_to_loaded_message_s": round(said, 2), "message": message})
                    print("real series", said, seconds, message, flush=True)
                    clear_scene(page, view)
                    page.click("#spineai-browse-up")
                    page.wait_for_function("(p) => document.getElementById('spineai-browse-path').innerText === p",
                                           arg=str(real_series.parent.resolve()))
                for i in range(max(1, repeats - 1)):
                    page.fill("#spineai-load-path", str(big_ct))
                    t = time.perf_counter()
                    page.click("#spineai-load-button")
                    said, seconds = until_lit(page, view, t, 0.05)
                    message = page.inner_text("#spineai-load-message")
                    out["ct_series_300x512x512"].append({"load_to_first_image_s": round(seconds, 2),
                                                         "load_to_loaded_message_s": round(said, 2), "message": message})
                    print("512x512x300", said, seconds, message, flush=True)
                    clear_scene(page, view)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from SpineAILib.samples.real import real_sample
    from SpineAILib.web.snapshot import missing_browser_reason

    if missing_browser_reason():
        sys.exit(f"skipped: {missing_browser_reason()}")
    sys.path.insert(0, str(HERE))
    from bench_platform import make_big_ct

    with tempfile.TemporaryDirectory() as tmp:
        big = make_big_ct(Path(tmp) / "ct512")
        measurements = run(big, real_sample("ct_abdomen_dicom").path, args.repeats)
    results = {"machine": describe_machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "load_average_1_5_15": [round(x, 2) for x in __import__("os").getloadavg()],
               "measurements": measurements}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "web_load.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(measurements, indent=2))


if __name__ == "__main__":
    main()
