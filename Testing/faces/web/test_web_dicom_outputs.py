"""DICOM outputs from the web app, in Debian's Chromium: tick "DICOM outputs", Run on a DICOM study,
and the run folder holds dicom/ (SEG, SR, captures); the SEG, loaded back through the Load field,
is drawn in colour over the series, with its segments named."""

import json

import pytest
from web_helpers import (
    SAGITTAL,
    WebServer,
    browser_page,
    coloured_fraction,
    img_src,
    missing_browser_reason,
    set_text_field,
    text_of,
    view_pixels,
    wait_for_new_frame,
    wait_for_text,
    wait_for_views,
    wait_until_frame_settles,
)


@pytest.mark.browser
def test_dicom_outputs_checkbox_and_a_seg_loaded_back(tmp_path):
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    phantom = pytest.importorskip("SpineAITraining.cervical.phantom")
    from SpineAILib.models.catalogue import default_bundle_path
    from SpineAILib.samples.dicom_writer import write_dicom_series

    if default_bundle_path("cervical-ct") is None:
        pytest.skip("no cervical-ct bundle in the catalogue")
    case = phantom.make_case(90011, levels=("C2", "C3", "C4", "C5", "C6"), spacing=(1.0, 1.0, 2.0), fracture_rate=0.0)
    write_dicom_series(case.ct, tmp_path / "neck_ct", modality="CT", series_description="phantom cervical spine CT")

    with WebServer(tmp_path / "neck_ct", "--out", tmp_path / "runs", log_path=tmp_path / "server.log") as server, \
            browser_page(server.url) as page:  # fmt: skip
        wait_for_views(page, (SAGITTAL,))
        page.check("#spineai-dicom-outputs")
        page.click("#spineai-run-button")
        status = wait_for_text(page, "spineai-task-status", "t.startsWith('cervical-ct done:')", timeout_ms=300000)
        run = next((tmp_path / "runs").rglob("report.json")).parent
        report = json.loads((run / "report.json").read_text())
        from SpineAILib import pacs

        assert report["outputs"].get("dicom") and (run / "dicom").is_dir(), status
        seg = next(p for p in sorted((run / "dicom").rglob("*")) if pacs.is_dicom_seg(p))
        found = {v["name"] for v in report["results"]["vertebrae"]}
        # a fresh look: only the CT, then the SEG over it
        page.get_by_role("button", name="Clear", exact=True).click()
        set_text_field(page, "spineai-load-path", str(tmp_path / "neck_ct"))
        page.click("#spineai-load-button")
        wait_for_text(page, "spineai-load-message", "t.startsWith('loaded')")
        wait_until_frame_settles(page, SAGITTAL)
        before = img_src(page, SAGITTAL)
        assert coloured_fraction(view_pixels(page, SAGITTAL)) < 0.001
        set_text_field(page, "spineai-load-path", str(seg))
        page.click("#spineai-load-button")
        message = wait_for_text(page, "spineai-load-message", "t.startsWith('loaded DICOM SEG')")
        assert found and all(name in message for name in found), (message, found)
        wait_for_new_frame(page, SAGITTAL, before)
        wait_until_frame_settles(page, SAGITTAL)
        assert coloured_fraction(view_pixels(page, SAGITTAL, save_to=tmp_path / "seg_over_ct.png")) > 0.002
        assert "SEG" in text_of(page, "spineai-loaded-list") or seg.stem in text_of(page, "spineai-loaded-list")
        assert server.process.poll() is None
