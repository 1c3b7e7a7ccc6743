"""The ultrasound review in Chromium: Run lp-ultrasound on a generated cine, then the per-frame
calls line, the timeline, Best frame and the heat-map toggle, checked against the run's files.

One server and one run for the whole scenario (start-up, the run in its child process and
the first frames cost ≈ 40 s on two cores).
"""

import time
from pathlib import Path

import pytest
from web_helpers import (
    AXIAL,
    WebServer,
    browser_page,
    coloured_fraction,
    img_src,
    missing_browser_reason,
    text_of,
    view_pixels,
    wait_for_new_frame,
    wait_for_text,
    wait_for_views,
    wait_until_frame_settles,
)

from conftest import REPO

BUNDLE = REPO / "SpineAI" / "Resources" / "Models" / "lp-ultrasound-classifier"


def _frame_shown(page):
    """0-based index of the frame the calls line names ('frame 12 / 30 · …' -> 11)."""
    return int(text_of(page, "spineai-cine-calls").split()[1]) - 1


def _wait_for_frame(page, index, timeout_ms=20000):
    return wait_for_text(page, "spineai-cine-calls", f"t.startsWith('frame {index + 1} /')", timeout_ms=timeout_ms)


@pytest.mark.browser
def test_ultrasound_review_in_browser(tmp_path):
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    if not (BUNDLE / "model.safetensors").is_file():
        pytest.skip(f"bundled model {BUNDLE} is absent")
    from SpineAILib.workflows.ultrasound.review import CineReview
    from SpineAILib.samples.cine_phantom import write_cine_dicom
    from SpineAITraining.ultrasound.generator import generate_cine

    # 30 frames at 30 frames/s with bad-quality stretches and cord + CSF in the others (seed 0).
    cine = generate_cine(0, machine="linear_hf", view="sagittal_midline", n_frames=30).to_cine()
    path = write_cine_dicom(cine, tmp_path / "cine.dcm")
    runs = tmp_path / "runs"
    t0 = time.monotonic()
    # Masks are not part of this view; leaving them out keeps the run short.
    with WebServer(path, "--out", runs, log_path=tmp_path / "server.log", env={"SPINEAI_MASKS": "0"}) as server, \
            browser_page(server.url) as page:
        wait_for_views(page, (AXIAL,))
        assert not page.is_visible("#spineai-cine-calls"), "calls shown before any run"
        page.click("#spineai-run-button")
        status = wait_for_text(page, "spineai-task-status", "t.startsWith('lp-ultrasound done:')", timeout_ms=240000)
        (run,) = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
        review = CineReview.from_folder(run)
        assert review is not None and review.n_frames == 30, status
        assert review.heatmap is not None and review.best, "the run wrote no heat map or no best frame"

        # 1. The calls line is the shared review's line for the frame on screen.
        line = _wait_for_frame(page, 0)
        assert line == review.calls_line(0)
        assert page.is_visible("#spineai-timeline")
        assert page.eval_on_selector("#spineai-timeline", "img => img.naturalWidth") > 400

        # 2. It follows the cine: a frame with other calls (a row of the frames table) ...
        other = next(i for i in range(30) if [p["called"] for p in review.parts(i)] != [p["called"] for p in review.parts(0)])
        page.click(f".spineai-table tbody tr:nth-child({other + 1})")
        line = _wait_for_frame(page, other)
        assert line == review.calls_line(other)
        assert line.split(" — ")[1] != review.calls_line(0).split(" — ")[1], "the calls did not change"
        # ... and playback.
        page.click("#spineai-cine-play")
        wait_for_text(page, "spineai-cine-calls", f"!t.startsWith('frame {other + 1} /')", timeout_ms=15000)
        page.click("#spineai-cine-play")  # pause
        wait_until_frame_settles(page, AXIAL, quiet_s=0.8)
        shown = _frame_shown(page)
        assert text_of(page, "spineai-cine-calls") == review.calls_line(shown)
        assert text_of(page, "spineai-cine-frame").startswith(f"frame {shown + 1} / 30")

        # 3. Best frame: report.json's best frame first, the next one on the next press.
        before = img_src(page, AXIAL)
        page.click("#spineai-best-frame")
        best = review.best[0]
        _wait_for_frame(page, best)
        assert text_of(page, "spineai-cine-frame").startswith(f"frame {best + 1} / 30")
        # the frame may already be the best one (playback paused there): wait for the message, not only the frame
        wait_for_text(page, "spineai-review-message", f"t.startsWith('best frame 1 of {len(review.best)}')")
        cursor = page.eval_on_selector("#spineai-timeline-cursor", "el => parseFloat(el.style.left)")
        assert cursor == pytest.approx(review.cursor_fraction(best) * 100, abs=0.1)
        if best != shown:
            wait_for_new_frame(page, AXIAL, before)
        for k in range(1, len(review.best) + 1):  # the next one on each press, then the first again
            page.click("#spineai-best-frame")
            _wait_for_frame(page, review.best[k % len(review.best)])
        # A click on the timeline goes to the frame at that time.
        width = page.eval_on_selector("#spineai-timeline", "img => img.clientWidth")
        height = page.eval_on_selector("#spineai-timeline", "img => img.clientHeight")
        page.click("#spineai-timeline", position={"x": review.cursor_fraction(best) * width, "y": height / 2})
        _wait_for_frame(page, best)

        # 4. The heat map toggle colours the view and takes the colour away again.
        settled = wait_until_frame_settles(page, AXIAL)
        grey = view_pixels(page, AXIAL, save_to=tmp_path / "best_frame.png")
        assert page.is_visible("#spineai-heatmap")
        page.check("#spineai-heatmap")
        wait_for_new_frame(page, AXIAL, settled)
        settled = wait_until_frame_settles(page, AXIAL)
        heat = view_pixels(page, AXIAL, save_to=tmp_path / "best_frame_heat.png")
        assert coloured_fraction(heat) > coloured_fraction(grey) + 0.02, "no heat-map colour over the frame"
        page.uncheck("#spineai-heatmap")
        wait_for_new_frame(page, AXIAL, settled)
        wait_until_frame_settles(page, AXIAL)
        again = view_pixels(page, AXIAL)
        assert coloured_fraction(again) < coloured_fraction(grey) + 0.005, "the heat map stayed after the toggle"
        page.screenshot(path=str(tmp_path / "page.png"))
        assert server.process.poll() is None
    print(f"whole scenario {time.monotonic() - t0:.1f} s; run: {Path(run).name}")
