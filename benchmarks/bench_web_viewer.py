"""Web viewer speed as a user sees it in Chromium: page ready, load → first image, and the time
per rendered frame while dragging window/level and while scrolling slices.

* page ready: server start → its ready line; page opened → panel and all four (empty) views drawn;
* load → first image: a typed path and a click on Load → the axial view shows the image (a share
  of its pixels lit, read from the view's <img> in the page; the empty view is black), for the
  real CT DICOM series (``../shared/data/ct_thoracolumbar/dicom_series``, 20 × 512 × 512 JPEG 2000)
  and a generated 512 × 512 × 300 CT DICOM series (300 files). Goal: ≤ 2 s;
* ms per frame: the page records the time each new frame of the axial view has loaded (its <img>
  ``load`` event) while a left-drag (window/level, 40 moves 30 ms apart) or the wheel (30 notches
  60 ms apart) goes on; reported: frames, the median and 90th percentile gap between frames, the
  first frame's delay after the first event, and how long the last frame came after the last
  event. Goal: ≤ 100 ms a frame.

The machine is shared: the load average before and after each part is recorded beside its numbers.
Writes ``benchmarks/results/web_viewer.{json,md}``. Run:
``.venv/bin/python benchmarks/bench_web_viewer.py [--repeats 3]`` (needs Chromium; a few minutes).
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
from machine import describe_machine, median  # noqa: E402 (puts the checkout on sys.path)
from web_timing import clear_scene, until_lit  # noqa: E402

REPO = HERE.parent
REAL_SERIES = Path(os.environ.get("SPINEAI_SHARED_DATA", REPO.parent / "shared" / "data")) / "ct_thoracolumbar" / "dicom_series"
GOAL_FIRST_IMAGE_S, GOAL_FRAME_MS = 2.0, 100.0

# Start recording the times (performance.now(), ms) at which the view's <img> loads a new frame.
RECORD_FRAMES = """(s) => { const img = document.querySelector(s); window.__frames = [];
    if (!img.__benchListening) { img.__benchListening = true;
        img.addEventListener('load', () => window.__frames.push(performance.now())); } }"""


def _load_avg():
    return [round(x, 2) for x in os.getloadavg()]


def _now_ms(page):
    return page.evaluate("performance.now()")


def _frames_after(page, since_ms, quiet_s=1.5, timeout_s=60):
    """Frame times (ms) after ``since_ms``, once no new frame has come for ``quiet_s``."""
    deadline, count, since = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        frames = [t for t in page.evaluate("window.__frames") if t >= since_ms]
        if len(frames) != count:
            count, since = len(frames), time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.1)
    return frames


def _frame_stats(frames, first_event_ms, last_event_ms):
    gaps = sorted(b - a for a, b in zip(frames, frames[1:]))
    return {
        "frames": len(frames),
        "events_span_ms": round(last_event_ms - first_event_ms),
        "median_frame_gap_ms": round(median(gaps), 1) if gaps else None,
        "p90_frame_gap_ms": round(gaps[int(0.9 * (len(gaps) - 1))], 1) if gaps else None,
        "ms_per_frame_overall": round((frames[-1] - first_event_ms) / len(frames), 1) if frames else None,
        "first_frame_after_ms": round(frames[0] - first_event_ms) if frames else None,
        "last_frame_after_last_event_ms": round(frames[-1] - last_event_ms) if frames else None,
    }


def drag_window_level(page, selector, moves=40, every_s=0.03):
    box = page.locator(selector).bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
    page.evaluate(RECORD_FRAMES, selector)
    page.mouse.move(x0, y0)
    first = _now_ms(page)
    page.mouse.down()
    for i in range(1, moves + 1):  # right and up: a wider window, a higher level
        page.mouse.move(x0 + 3 * i, y0 - 2 * i)
        time.sleep(every_s)
    page.mouse.up()
    last = _now_ms(page)
    return _frame_stats(_frames_after(page, first), first, last)


def scroll_slices(page, selector, notches=30, every_s=0.06):
    box = page.locator(selector).bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.evaluate(RECORD_FRAMES, selector)
    first = _now_ms(page)
    for i in range(notches):
        page.mouse.wheel(0, 100 if i < notches // 2 else -100)  # down half-way, then back up
        time.sleep(every_s)
    last = _now_ms(page)
    return _frame_stats(_frames_after(page, first), first, last)


def load_and_interact(page, selector, path, lit_fraction):
    """One load of ``path`` (typed, Load clicked) to its first image, then a W/L drag and a scroll."""
    load_avg = _load_avg()
    page.fill("#spineai-load-path", str(path))
    t0 = time.perf_counter()
    page.click("#spineai-load-button")
    said, first_image = until_lit(page, selector, t0, lit_fraction)
    message = page.inner_text("#spineai-load-message")
    time.sleep(3.0)  # let the remaining views' first renders finish before timing frames
    result = {"load_to_first_image_s": round(first_image, 2), "load_to_loaded_message_s": round(said, 2),
              "message": message, "load_avg_before": load_avg}
    result["wl_drag"] = drag_window_level(page, selector)
    result["scroll"] = scroll_slices(page, selector)
    result["load_avg_after"] = _load_avg()
    print(path.name, json.dumps(result), flush=True)
    return result


def run(volumes, repeats):
    from SpineAILib.web.snapshot import AXIAL, WebServer, browser_page, view_img_selector, wait_for_views

    selector = view_img_selector(AXIAL)
    out = {"page_ready": [], "volumes": {name: [] for name, _, _ in volumes}}
    with tempfile.TemporaryDirectory() as ws:
        load_avg = _load_avg()
        t0 = time.perf_counter()
        with WebServer("--workspace", ws) as server:
            ready = time.perf_counter() - t0
            with browser_page(server.url) as page:
                t_page = time.perf_counter()
                page.wait_for_selector("#spineai-load-button")
                wait_for_views(page)
                out["page_ready"].append({"server_start_to_ready_s": round(ready, 2),
                                          "page_to_panel_and_views_s": round(time.perf_counter() - t_page, 2),
                                          "load_avg_before": load_avg})
                print("page ready", out["page_ready"][-1], flush=True)
                for _ in range(repeats):
                    for name, path, lit_fraction in volumes:
                        out["volumes"][name].append(load_and_interact(page, selector, path, lit_fraction))
                        clear_scene(page, selector)
    return out


def _summary(runs, key):
    values = [r[key] for r in runs]
    return f"{median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def _frames_summary(runs, part):
    med = [r[part]["median_frame_gap_ms"] for r in runs if r[part]["median_frame_gap_ms"] is not None]
    p90 = [r[part]["p90_frame_gap_ms"] for r in runs if r[part]["p90_frame_gap_ms"] is not None]
    overall = [r[part]["ms_per_frame_overall"] for r in runs if r[part]["ms_per_frame_overall"] is not None]
    lag = [r[part]["last_frame_after_last_event_ms"] for r in runs if r[part]["last_frame_after_last_event_ms"] is not None]
    frames = [r[part]["frames"] for r in runs]
    if not med:
        return "no frames", "", "", ""
    return (f"{median(med):.0f} ms ({min(med):.0f}–{max(med):.0f})", f"{median(p90):.0f} ms",
            f"{median(overall):.0f} ms, {min(frames)}–{max(frames)} frames", f"{median(lag):.0f} ms")


def write_markdown(results, path):
    m, meas = results["machine"], results["measurements"]
    page = meas["page_ready"][0]
    loads = [la for runs in meas["volumes"].values() for r in runs for la in (r["load_avg_before"], r["load_avg_after"])]
    lines = [
        "# Web viewer speed (`benchmarks/bench_web_viewer.py`)",
        "",
        f"{results['date']}; {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, no GPU (Mesa llvmpipe), "
        f"Python {m['python']}. **Shared machine: 1-minute load average {min(la[0] for la in loads):.1f}–"
        f"{max(la[0] for la in loads):.1f} during the run** (other jobs; {m['cores']} cores), so these are "
        "times under heavy contention, not an idle machine's.",
        "",
        f"Page ready: server start → ready line {page['server_start_to_ready_s']:.1f} s; page opened → panel "
        f"and four views drawn {page['page_to_panel_and_views_s']:.1f} s.",
        "",
        f"| volume | load → first image (goal ≤ {GOAL_FIRST_IMAGE_S:.0f} s) | load → 'loaded' message | "
        f"W/L drag: median gap between frames (goal ≤ {GOAL_FRAME_MS:.0f} ms) | p90 gap | overall ms/frame | "
        "last frame after last move | scroll: median gap | p90 gap | overall ms/frame | last frame after last notch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in meas["volumes"].items():
        drag, scroll = _frames_summary(runs, "wl_drag"), _frames_summary(runs, "scroll")
        lines.append(f"| {name} | {_summary(runs, 'load_to_first_image_s')} | {_summary(runs, 'load_to_loaded_message_s')} "
                     f"| {' | '.join(drag)} | {' | '.join(scroll)} |")
    spans = {part: median([r[part]["events_span_ms"] for runs in meas["volumes"].values() for r in runs])
             for part in ("wl_drag", "scroll")}
    lines += [
        "",
        f"Median (min–max) of {results['repeats']} loads each, in one server and one Chromium page; between "
        "loads the scene is cleared. 'First image': the axial view's own pixels lit (the panel's 'loaded' "
        "message comes earlier: the server has read the file and set up the views, their frames follow). "
        "Frame gaps are measured in the page (each new axial frame's `<img>` load event) during a "
        f"40-move left-drag (moves 30 ms apart plus Playwright's round trip: {spans['wl_drag'] / 1000:.1f} s "
        f"in all, median) and 30 wheel notches (60 ms apart: {spans['scroll'] / 1000:.1f} s); 'overall "
        "ms/frame' is (last frame − first event) / frames. Per-run numbers and the load average before "
        "and after each are in `web_viewer.json`.",
        "",
    ]
    path.write_text("\n".join(lines))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-big", action="store_true", help="only the real CT series")
    args = parser.parse_args()
    from SpineAILib.web.snapshot import missing_browser_reason

    if missing_browser_reason():
        sys.exit(f"skipped: {missing_browser_reason()}")
    if not REAL_SERIES.is_dir():
        sys.exit(f"skipped: {REAL_SERIES} is absent")
    from bench_platform import make_big_ct

    with tempfile.TemporaryDirectory() as tmp:
        volumes = [("real CT series 20×512×512 (JPEG 2000)", REAL_SERIES, 0.08)]
        if not args.skip_big:
            volumes.append(("generated CT series 300×512×512", make_big_ct(Path(tmp) / "ct512"), 0.05))
        measurements = run(volumes, args.repeats)
    results = {"machine": describe_machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "repeats": args.repeats,
               "goals": {"first_image_s": GOAL_FIRST_IMAGE_S, "ms_per_frame": GOAL_FRAME_MS},
               "load_average_at_end_1_5_15": _load_avg(), "measurements": measurements}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "web_viewer.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    write_markdown(results, HERE / "results" / "web_viewer.md")
    print((HERE / "results" / "web_viewer.md").read_text())


if __name__ == "__main__":
    main()
