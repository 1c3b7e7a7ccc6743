"""spine-ct in the web app, in Debian's Chromium, on the real thoracolumbar CT: pick the task, press Run;
the Results show how the levels were named, the vertebral-body table (T11's arch and T12, cut by the image's top, to S1,
named; L1's HU and Genant grade as the report has them, the cut vertebrae saying so), the L1 bone-density line with its source, and a
click on the L3 row moves the slice views to L3 (issue 13 item 3)."""

import json

import pytest
from conftest import require
from web_helpers import AXIAL, WebServer, browser_page, missing_browser_reason, slice_slider, text_of, wait_for_text, wait_for_views

NAMES = ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]  # T12 cut by the image's top edge, T11's arch behind it
AXIAL_THUMB = f"div:has(> .spineai-view-{AXIAL}) .slice-slider-gutter .v-slider-thumb"


@pytest.mark.browser
@pytest.mark.realdata
def test_spine_ct_vertebral_bodies_in_browser(shared_data, tmp_path):
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    ct = require(shared_data / "ct_thoracolumbar" / "ct.nii.gz")
    with WebServer(ct, "--out", tmp_path / "runs", log_path=tmp_path / "server.log") as server, \
            browser_page(server.url) as page:  # fmt: skip
        wait_for_views(page, (AXIAL,))
        page.click("#spineai-task-select", force=True)  # a NIfTI names no modality: the user picks the task
        page.click(".v-list-item-title:has-text('spine-ct')")
        page.click("#spineai-run-button")
        status = wait_for_text(page, "spineai-task-status", "t.startsWith('spine-ct done:')", timeout_ms=240000)
        assert "named from the sacrum and last rib: T11-S1" in status, status
        report = json.loads(next((tmp_path / "runs").rglob("report.json")).read_text())
        measured = {m["name"]: m for m in report["results"]["measurements"]}

        naming = wait_for_text(page, "spineai-level-naming", "t.includes('Levels')")
        assert "Levels counted from the sacrum (S1) and the last rib-bearing vertebra (T12): they agree" in naming, naming
        table = page.locator("#spineai-vertebral-bodies")
        rows = table.locator("tr.spineai-vertebra-row")
        assert [r.get_attribute("data-vertebra") for r in rows.all()] == NAMES
        l1 = table.locator("tr[data-vertebra='L1']")
        assert l1.locator(".spineai-vertebra-hu").inner_text().strip() == f"{measured['L1']['hu_mean']:.0f} HU"
        # L1's Genant grade as the report has it: 0 on this CT, with the range of grades its heights' tolerance allows
        grade, span = measured["L1"]["genant_grade"], measured["L1"]["genant_grade_range"]
        assert grade == 0, measured["L1"]
        shown = "0" + (f" (borderline {span[0]}–{span[1]})" if measured["L1"]["genant_borderline"] else "")
        assert l1.locator(".spineai-vertebra-genant").inner_text().strip() == shown
        assert l1.locator(".spineai-vertebra-heights").inner_text().strip() == "A/M/P {:.1f}/{:.1f}/{:.1f} mm".format(
            *(measured["L1"][f"{k}_height_mm"] for k in ("anterior", "middle", "posterior")))
        # T12 reaches the top of the image: its row says so, no heights
        shown = table.inner_text()
        assert shown.count("cut by the field of view") >= 1, shown
        assert table.locator("tr[data-vertebra='T12'] .spineai-vertebra-heights").inner_text().strip() == "—"
        assert "only its arch is in view" in shown, shown  # T11: its body is above the image

        # the picture with the heights drawn is shown under the table, loaded (a broken image has no width)
        picture = page.locator("#spineai-heights-picture")
        picture.scroll_into_view_if_needed()
        assert picture.is_visible() and picture.evaluate("img => img.complete && img.naturalWidth") > 300

        density = text_of(page, "spineai-bone-density")
        assert "L1 trabecular attenuation" in density and "Pickhardt" in density, density
        assert page.get_attribute("#spineai-bone-density .spineai-bone-density-text", "data-flag") == \
            report["results"]["bone_density"]["flag"]  # fmt: skip

        # A click on the L3 row: the views move to L3. Not the app's word for it alone: the axial
        # view's slice slider (the server's slice offset, as the page shows it) comes to L3's S.
        l3_s = measured["L3"]["centre_ras"][2]
        offset_before, low, high = slice_slider(page, AXIAL)
        assert low <= l3_s <= high and abs(offset_before - l3_s) > 6.0, (offset_before, l3_s)
        table.locator("tr[data-vertebra='L3']").click()
        message = wait_for_text(page, "spineai-load-message", "t.startsWith('views centred')")
        assert f"S {l3_s:.1f}" in message and "(L3)" in message, message
        page.wait_for_function(
            """([s, want]) => { const t = document.querySelector(s);
                   return t && Math.abs(parseFloat(t.getAttribute('aria-valuenow')) - want) <= 2.0; }""",
            arg=[AXIAL_THUMB, l3_s], timeout=20000)  # within a 3-mm slice
        page.locator("#spineai-results").screenshot(path=str(tmp_path / "results.png"))
        assert server.process.poll() is None
