"""Annotating in Chromium: open a case on a cine, step frames and toggle labels with the keyboard,
paint a mask stroke and draw a box in the view, undo / redo with Ctrl+Z / Ctrl+Y, reload the
page; everything is checked in the case folder on disk (and in a dataset export when the
exporter is installed).

One server for the whole scenario (start-up and first frames ≈ 10 s on two cores).
"""

import importlib.util
import time

import numpy as np
import pytest
from web_helpers import (
    AXIAL,
    WebServer,
    browser_page,
    coloured_fraction,
    missing_browser_reason,
    set_text_field,
    text_of,
    view_img_selector,
    view_pixels,
    wait_for_new_frame,
    wait_for_text,
    wait_for_views,
    wait_until_frame_settles,
)


def _until(check, timeout_s=20.0, what="condition"):
    """Poll ``check()`` until it returns a true value (the value), or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _case(folder):
    from SpineAILib.annotation.case import load_case

    return load_case(folder)


@pytest.mark.browser
def test_annotate_a_cine_in_the_browser(tmp_path):
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_dicom

    cine = make_cine_phantom(n_frames=8, rows=160, cols=200)
    path = write_cine_dicom(cine, tmp_path / "cine.dcm")
    folder = tmp_path / "case"
    t0 = time.monotonic()
    with WebServer(path, "--out", tmp_path / "runs", log_path=tmp_path / "server.log",
                   env={"SPINEAI_USER": "tester"}) as server, browser_page(server.url) as page:
        wait_for_views(page, (AXIAL,))
        set_text_field(page, "spineai-annot-folder", str(folder))
        page.click("#spineai-annot-open")
        wait_for_text(page, "spineai-annot-message", "t.startsWith('case case opened')")
        assert (folder / "annotation.json").is_file()

        # 1. Keys: two frames on, cord and CSF on frame 3; C copies them onto frame 4; Q marks frame 5 bad.
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        wait_for_text(page, "spineai-cine-frame", "t.startsWith('frame 3 /')")
        page.keyboard.press("2")
        page.keyboard.press("3")
        wait_for_text(page, "spineai-annot-frame-info", "t.startsWith('frame 3: tester')")
        _until(lambda: _case(folder).frame_labels(2) == {"bad_quality": 0, "spinal_cord": 1, "csf": 1}, what="frame 3 labels")
        page.keyboard.press("ArrowRight")
        wait_for_text(page, "spineai-cine-frame", "t.startsWith('frame 4 /')")
        page.keyboard.press("c")
        page.keyboard.press("ArrowRight")
        page.keyboard.press("q")
        _until(lambda: _case(folder).frame_labels(4)["bad_quality"] == 1, what="frame 5 bad quality")
        case = _case(folder)
        assert case.frame_labels(3) == case.frame_labels(2) and case.sources["labels/3"] == "user"
        assert "labels/0" not in case.sources  # frames never touched stay unlabelled
        page.keyboard.press("ArrowLeft")
        wait_for_text(page, "spineai-cine-frame", "t.startsWith('frame 4 /')")

        # 2. Brush: a horizontal CSF stroke across the middle of the view.
        page.click("#spineai-annot-tool-brush")
        page.wait_for_selector(".spineai-annot-overlay", state="visible")
        settled = wait_until_frame_settles(page, AXIAL)
        before = view_pixels(page, AXIAL)
        view = page.locator(view_img_selector(AXIAL)).bounding_box()
        y = view["y"] + view["height"] * 0.5
        xs = [view["x"] + view["width"] * f for f in (0.42, 0.47, 0.52, 0.58)]
        page.mouse.move(xs[0], y)
        page.mouse.down()
        for x in xs[1:]:
            page.mouse.move(x, y, steps=3)
        page.mouse.up()
        _until(lambda: (folder / "masks" / "frame_0003.seg.nrrd").is_file(), what="the stroke's mask file")
        mask = _case(folder).mask_of(3)[0]
        rows, cols = np.nonzero(mask == 2)
        assert rows.size > 50 and np.ptp(cols) > 2 * np.ptp(rows), "the stroke is not a horizontal band"
        # ... where the pointer went: the view's pixels along the stroke turn colour.
        wait_for_new_frame(page, AXIAL, settled)
        wait_until_frame_settles(page, AXIAL)
        after = view_pixels(page, AXIAL, save_to=tmp_path / "stroke.png")
        band = (slice(int(view["height"] * 0.47), int(view["height"] * 0.53)),
                slice(int(view["width"] * 0.44), int(view["width"] * 0.56)))
        assert coloured_fraction(after[band]) > coloured_fraction(before[band]) + 0.3, "no colour under the stroke"

        # 3. Box: two clicks around the stroke.
        page.click("#spineai-annot-tool-box")
        page.mouse.click(view["x"] + view["width"] * 0.35, view["y"] + view["height"] * 0.40)
        wait_for_text(page, "spineai-annot-pending", "t.includes('opposite corner')")
        page.mouse.click(view["x"] + view["width"] * 0.65, view["y"] + view["height"] * 0.60)
        box = _until(lambda: _case(folder).pixel_box(3, "csf"), what="the box in boxes.mrk.json")
        x0, y0, x1, y1 = box
        assert x0 < cols.min() and x1 > cols.max() and y0 < rows.min() < rows.max() < y1, (box, cols.min(), cols.max())
        assert "frame 3" in (folder / "boxes.mrk.json").read_text()

        # 4. Ctrl+Z takes the box back (on disk too), Ctrl+Y restores it; the panel says who and when.
        page.keyboard.press("Control+z")
        _until(lambda: _case(folder).pixel_box(3, "csf") is None, what="undo of the box")
        page.keyboard.press("Control+y")
        _until(lambda: _case(folder).pixel_box(3, "csf") == box, what="redo of the box")
        status = wait_for_text(page, "spineai-annot-status", "t.endsWith(' redo')")
        assert status.startswith("saved ") and "· 8 edits · last: tester " in status
        edits = _case(folder).edits
        assert [e["action"] for e in edits][-4:] == ["paint", "box", "undo", "redo"]
        assert {e["user"] for e in edits} == {"tester"}

        # 5. A closed tab loses nothing: a fresh page shows the same case and frame state.
        page.reload()
        wait_for_views(page, (AXIAL,))
        assert wait_for_text(page, "spineai-annot-status", "t.startsWith('saved ')") == status
        assert text_of(page, "spineai-annot-frame-info").startswith("frame 4: tester")
        page.screenshot(path=str(tmp_path / "page.png"))
        assert server.process.poll() is None
    scenario_s = time.monotonic() - t0

    # 6. What the annotator made reaches a dataset export (once the exporter is installed).
    if importlib.util.find_spec("SpineAILib.dataset") is not None:
        from SpineAILib.dataset import export_dataset

        out = tmp_path / "export"
        export_dataset([folder], "lp-ultrasound", out)
        from PIL import Image

        written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
        # The painted frame (index 3) is the export's frame_0004 (counted from 1 there).
        exported = [p for p in written if p.endswith("masks/frame_0004_csf.png")]
        assert exported, f"the stroke's mask is not in the export: {sorted(written)}"
        assert np.array_equal(np.asarray(Image.open(out / exported[0])) > 0, mask == 2)
        assert any("csf" in (out / p).read_text(errors="ignore") for p in written if p.endswith(".json")), "no box"
    print(f"browser scenario {scenario_s:.1f} s")
