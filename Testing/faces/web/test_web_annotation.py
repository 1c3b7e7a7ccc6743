"""Annotating in Chromium: open a case on a cine, step frames and toggle labels with the keyboard,
paint a mask stroke and draw a box in the view, undo / redo with Ctrl+Z / Ctrl+Y, reload the
page; everything is checked in the case folder on disk. Then the Dataset buttons: export the
case (mask pixel for pixel, box, dataset.json), the refusal of a non-empty folder without
"add to existing", an idempotent add, and the import listed and reopened in the Annotate panel.

One server for the whole scenario (start-up and first frames ≈ 10 s on two cores).
"""

import json
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


def _dataset_result(page, previous):
    """The Dataset section's next final message: Export enabled again (not running), text changed."""
    page.wait_for_function(
        """(prev) => { const el = document.getElementById('spineai-dataset-message');
                       const button = document.getElementById('spineai-dataset-export');
                       return el && button && !button.disabled && el.innerText.trim() && el.innerText !== prev; }""",
        arg=previous, timeout=120000)
    return text_of(page, "spineai-dataset-message")


def _check_export(out, mask, box):
    """The export on disk: the painted frame's CSF mask pixel for pixel, the box, the manifest."""
    from PIL import Image

    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["task"] == "lp-ultrasound" and [c["id"] for c in manifest["cases"]] == ["case-0001"]
    # The painted frame (index 3) is the export's frame_0004 (counted from 1 there).
    exported = np.asarray(Image.open(out / "case-0001" / "masks" / "frame_0004_csf.png"))
    assert np.array_equal(exported > 0, mask == 2)
    assert not np.asarray(Image.open(out / "case-0001" / "masks" / "frame_0004_cord.png")).any()
    boxes = json.loads((out / "boxes.json").read_text())["boxes"]
    assert [(b["label"], b["frame"], b["pixel"]) for b in boxes] == [("csf", 3, [float(v) for v in box])]


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
    env = {"SPINEAI_USER": "tester", "SPINEAI_DEID_KEY_FILE": str(tmp_path / "site.key")}
    with WebServer(path, "--out", tmp_path / "runs", log_path=tmp_path / "server.log", env=env) as server, browser_page(server.url) as page:
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
        assert status.startswith("saved ") and "· 6 edits · last: tester " in status  # 8 log entries: undo and redo are no edits
        edits = _case(folder).edits
        assert [e["action"] for e in edits][-4:] == ["paint", "box", "undo", "redo"]
        assert {e["user"] for e in edits} == {"tester"}

        # 5. A closed tab loses nothing: a fresh page shows the same case and frame state.
        page.reload()
        wait_for_views(page, (AXIAL,))
        assert wait_for_text(page, "spineai-annot-status", "t.startsWith('saved ')") == status
        assert text_of(page, "spineai-annot-frame-info").startswith("frame 4: tester")
        page.screenshot(path=str(tmp_path / "page.png"))

        # 6. Export dataset from the page: the folder beside the case, the case's task; the painted
        #    frame's mask and the box reach the export, in a child process of the server.
        out = tmp_path / "dataset"
        assert page.input_value("#spineai-dataset-out") == str(out)
        page.click("#spineai-dataset-export")
        message = _dataset_result(page, "")
        assert message == f"exported 1 case to {out}: dataset.json lists 1 case (train 1)", message
        _check_export(out, mask, box)
        export_bytes = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

        # 7. Again without "add to existing": refused in one line, nothing touched; with it: no change.
        page.click("#spineai-dataset-export")
        refused = _dataset_result(page, message)
        assert refused.startswith(f"{out}: is not empty; choose a new folder, or tick 'add to existing'"), refused
        assert "text-error" in page.get_attribute("#spineai-dataset-message", "class")
        page.click("#spineai-dataset-add")
        page.click("#spineai-dataset-export")
        same = _dataset_result(page, refused)
        assert same == f"no change: {out} already holds this case as annotated now", same
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == export_bytes

        # 8. Import it through the page (the field holds the exported folder): the case is listed;
        #    opening it brings its image and its annotations into the Annotate panel.
        assert page.input_value("#spineai-dataset-import-path") == str(out)
        page.click("#spineai-dataset-import")
        imported = _dataset_result(page, same)
        cases = tmp_path / "dataset-cases"
        assert imported == f"imported 1 case into {cases}: open one to edit", imported
        page.wait_for_selector(".spineai-dataset-case")
        assert page.inner_text(".spineai-dataset-case").strip() == "case-0001 · train"
        page.click(".spineai-dataset-case")
        wait_for_text(page, "spineai-annot-message", "t.startsWith('case case-0001 opened')")
        assert page.input_value("#spineai-annot-folder") == str(cases / "case-0001")
        assert page.input_value("#spineai-dataset-out") == str(out)  # an imported case goes back to its dataset
        reopened = _case(cases / "case-0001")
        assert np.array_equal(reopened.mask_of(3)[0] == 2, mask == 2)
        assert reopened.pixel_box(3, "csf") == box
        page.screenshot(path=str(tmp_path / "dataset.png"))
        assert server.process.poll() is None
    scenario_s = time.monotonic() - t0
    print(f"browser scenario {scenario_s:.1f} s")
