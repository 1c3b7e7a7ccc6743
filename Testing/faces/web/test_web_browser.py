"""The web app in Debian's Chromium: real CT shown, a segmentation loaded over it, a bad path refused.

One server for the whole browser scenario (startup and first frames cost ≈ 10 s
on two cores); the host check starts its own server without a browser.
"""

import json
import time

import numpy as np
import psutil
import pytest
from web_helpers import (
    AXIAL,
    CORONAL,
    SAGITTAL,
    THREED,
    WebServer,
    browser_page,
    coloured_fraction,
    img_src,
    missing_browser_reason,
    set_text_field,
    slice_slider,
    text_of,
    view_pixels,
    wait_for_new_frame,
    wait_for_text,
    wait_for_views,
    wait_until_frame_settles,
)


def _background_colour(rgb):
    """The colour of the image border (the view's background around the slice)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return np.median(border, axis=0)


def _centre(rgb, fraction=0.3):
    h, w = rgb.shape[:2]
    dh, dw = int(h * fraction / 2), int(w * fraction / 2)
    return rgb[h // 2 - dh : h // 2 + dh, w // 2 - dw : w // 2 + dw]


@pytest.mark.browser
@pytest.mark.realdata
def test_ct_segmentation_and_bad_path_in_browser(shared_data, tmp_path):
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    ct = shared_data / "ct_thoracolumbar" / "ct.nii.gz"
    labels = shared_data / "ct_thoracolumbar" / "ct_model_labels_totalsegmentator.nii.gz"
    for path in (ct, labels):
        if not path.exists():
            pytest.skip(f"{path} is absent")

    t0 = time.monotonic()
    with WebServer(ct, log_path=tmp_path / "server.log") as server, browser_page(server.url) as page:
        # 1. The CT given on the command line is in all four views.
        wait_for_views(page, (AXIAL, SAGITTAL, CORONAL, THREED))
        first_view_s = time.monotonic() - t0
        wait_until_frame_settles(page, AXIAL)
        axial = view_pixels(page, AXIAL, save_to=tmp_path / "axial_ct.png")
        assert axial.std() > 20, "axial view is (nearly) uniform"
        background = _background_colour(axial)
        centre_difference = np.abs(_centre(axial).astype(float) - background).max(axis=2)
        assert np.mean(centre_difference > 30) > 0.5, "centre of the axial view looks like its background"
        assert coloured_fraction(axial) < 0.001, "grey CT should have no coloured pixels yet"
        assert view_pixels(page, THREED).std() > 5, "3-D view shows nothing"
        assert "ct" in text_of(page, "spineai-loaded-list")

        # 2. The label map, loaded through the panel, is drawn in colour over the CT.
        before = img_src(page, AXIAL)
        set_text_field(page, "spineai-load-path", str(labels))
        page.click("#spineai-load-button")
        message = wait_for_text(page, "spineai-load-message", "t.startsWith('loaded segmentation')")
        assert "8 segments" in message
        wait_for_new_frame(page, AXIAL, before)
        wait_until_frame_settles(page, AXIAL)
        overlay = view_pixels(page, AXIAL, save_to=tmp_path / "axial_segmentation.png")
        assert coloured_fraction(overlay) > 0.002, "no coloured segment pixels in the axial view"
        # Pitfall guard: the overlay is blended over the CT, not over black.
        assert overlay.std() > 20
        assert "segmentation" in text_of(page, "spineai-loaded-list")

        # 3. A bad path gives a one-line error and the app keeps serving.
        bad = tmp_path / "no-such-scan.nii.gz"
        set_text_field(page, "spineai-load-path", str(bad))
        page.click("#spineai-load-button")
        error = wait_for_text(page, "spineai-load-message", "t.includes('no such file')")
        assert str(bad) in error and "\n" not in error
        height = page.eval_on_selector("#spineai-load-message", "el => el.getBoundingClientRect().height")
        assert height < 30, f"error message spans several lines ({height} px)"
        assert "text-error" in page.get_attribute("#spineai-load-message", "class")
        page.screenshot(path=str(tmp_path / "page.png"))
        assert server.process.poll() is None, "server died on a bad path"
        assert "segmentation" in text_of(page, "spineai-loaded-list")
    print(f"first views after {first_view_s:.1f} s; whole scenario {time.monotonic() - t0:.1f} s")


def test_web_app_listens_on_localhost_only_by_default(tmp_path):
    with WebServer(log_path=tmp_path / "server.log") as server:
        listening = [
            c for c in psutil.Process(server.process.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN
        ]
        assert listening, "the server has no listening socket"
        assert {c.laddr.ip for c in listening} == {"127.0.0.1"}
        assert {c.laddr.port for c in listening} == {server.port}
        assert "WARNING" not in server.log()


def test_network_host_warns_about_no_authentication():
    from SpineAILib.web.app import host_warning

    assert host_warning("127.0.0.1", 8080) is None
    assert host_warning("localhost", 8080) is None
    assert host_warning("::1", 8080) is None
    warning = host_warning("0.0.0.0", 8080)
    assert "reachable from the network" in warning and "no authentication" in warning.lower()


@pytest.mark.browser
@pytest.mark.realdata
def test_cine_player_in_browser(shared_data, tmp_path):
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    cine = shared_data / "us_format" / "cine_echo_30frames_ybr.dcm"
    if not cine.exists():
        pytest.skip(f"{cine} is absent")
    with WebServer(cine, log_path=tmp_path / "server.log") as server, browser_page(server.url) as page:
        # The cine gets one 2-D view of its own (the other views are not in the layout).
        wait_for_views(page, (AXIAL,))
        assert page.locator(".spineai-view-Yellow").count() == 0
        assert wait_for_text(page, "spineai-cine-frame", "t.startsWith('frame 1 / 30')").endswith("0.0 ms")
        first = view_pixels(page, AXIAL)
        assert first.std() > 20
        start = img_src(page, AXIAL)
        page.click("#spineai-cine-play")
        wait_for_text(page, "spineai-cine-frame", "!t.startsWith('frame 1 /')", timeout_ms=15000)
        wait_for_new_frame(page, AXIAL, start)
        page.click("#spineai-cine-play")  # pause
        paused = wait_until_frame_settles(page, AXIAL, quiet_s=0.8)
        shown = text_of(page, "spineai-cine-frame")
        time.sleep(0.8)
        assert text_of(page, "spineai-cine-frame") == shown and img_src(page, AXIAL) == paused
        # "frame N / 30 · T ms": 33.3 ms per frame in this file.
        frame, time_ms = int(shown.split()[1]), float(shown.split()[-2])
        assert abs(time_ms - (frame - 1) * 100 / 3) < 0.2, shown


@pytest.mark.realdata
def test_run_button_runs_task_in_thread_and_loads_outputs(shared_data, tmp_path):
    """Run without a browser: the app's handler with a stand-in run_task that writes real result files."""
    import asyncio
    import shutil
    import threading
    import types

    from SpineAILib import io
    from SpineAILib.errors import SpineAIError
    from SpineAILib.scene import markups, segmentations, storage, tables, volumes
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.web.app import SpineAIWebApp

    ct = shared_data / "ct_thoracolumbar" / "ct.nii.gz"
    labels = shared_data / "ct_thoracolumbar" / "ct_model_labels_totalsegmentator.nii.gz"
    for path in (ct, labels):
        if not path.exists():
            pytest.skip(f"{path} is absent")

    # What a workflow leaves in its output folder.
    made = tmp_path / "made"
    ctx = SceneContext.headless()
    reference = volumes.add_volume(ctx, io.load(ct))
    seg = segmentations.add_segmentation_from_labelmap(ctx, io.load(labels), reference_node=reference, name="spine")
    storage.save_node(seg, made / "spine.seg.nrrd")
    storage.save_node(markups.add_points(ctx, "discs", [("L3/L4", (0.0, 0.0, 0.0))]), made / "discs.mrk.json")
    storage.save_node(tables.add_table(ctx, "levels", {"level": ["L3", "L4"], "p": [0.1, 0.9]}), made / "levels.tsv")

    calls = []

    def run_task(task, input_path, out_dir, device="auto", series=None, progress=None, dicom=False):
        calls.append((task, str(input_path), device, threading.current_thread() is threading.main_thread()))
        assert dicom is False  # the DICOM outputs box is off unless ticked
        progress(0.5, "half way")
        if task == "lumbar-mri":
            raise SpineAIError("no model bundle installed for lumbar-mri")
        shutil.copytree(made, out_dir)
        return {}

    app = SpineAIWebApp(out_dir=tmp_path / "runs")
    app._tasks = types.SimpleNamespace(run_task_isolated=run_task, TASKS={})
    app.load_now(str(ct))

    asyncio.run(app.run("lumbar-mri", "cpu"))
    assert app.state.task_status == "no model bundle installed for lumbar-mri"
    assert app.state.task_error and not app.state.task_running

    asyncio.run(app.run("cervical-ct", "cpu"))
    assert calls[-1] == ("cervical-ct", str(ct), "cpu", False), "run_task must get the loaded input, off the loop thread"
    assert not app.state.task_error, app.state.task_status
    assert app.state.task_progress == 100 and app.state.task_status.startswith("cervical-ct done")
    assert {i["kind"] for i in app.state["items"]} == {"volume", "segmentation", "markups", "table"}
    assert app.state.tables[0]["rows"] == [["L3", "0.1"], ["L4", "0.9"]]
    assert app.state.results_path.startswith(str(tmp_path / "runs" / "cervical-ct-"))


@pytest.mark.browser
def test_series_picker_for_a_folder_with_two_series(tmp_path):
    """A DICOM folder with two series: the app lists them, the user picks one, it loads."""
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    from SpineAILib.samples.dicom_writer import write_dicom_series
    from SpineAILib.samples.spine_phantom import make_phantom

    ct, _ = make_phantom("CT", shape_kji=(20, 40, 40), spacing=(4.0, 4.0, 9.0))
    mr, _ = make_phantom("MR", shape_kji=(12, 60, 50), spacing=(2.5, 2.5, 4.0), plane="sagittal")
    study = tmp_path / "study"
    write_dicom_series(ct, study / "ct", modality="CT", series_description="Phantom CT")
    write_dicom_series(mr, study / "mr", modality="MR", series_description="Phantom T2 sagittal", rescale=(1.0, 0.0))

    with WebServer(log_path=tmp_path / "server.log") as server, browser_page(server.url) as page:
        set_text_field(page, "spineai-load-path", str(study))
        page.click("#spineai-load-button")
        message = wait_for_text(page, "spineai-load-message", "t.includes('choose one below')")
        assert message.startswith("2 series")
        page.click("#spineai-series", force=True)  # the id sits on the input under Vuetify's field overlay
        page.click(".v-list-item-title:has-text('Phantom T2 sagittal')")
        page.click("#spineai-load-button")
        loaded = wait_for_text(page, "spineai-load-message", "t.startsWith('loaded')")
        assert "50×60×12 MR" in loaded, loaded
        assert not page.is_visible("#spineai-series"), "the picker stays after a successful load"


@pytest.mark.browser
def test_clicking_a_result_row_centres_the_views_on_its_level(tmp_path):
    """A results table row naming a disc level moves the slice views to that disc."""
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    from SpineAILib.io.volumes import save_volume_file
    from SpineAILib.samples.spine_phantom import disc_centres_ras, make_phantom
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.markups import add_points
    from SpineAILib.scene.storage import save_node
    from SpineAILib.scene.tables import add_table
    from SpineAILib.terminology import DISC_LEVELS

    ct, _ = make_phantom("CT", shape_kji=(48, 64, 64), spacing=(3.0, 3.0, 4.0))
    save_volume_file(ct, tmp_path / "ct.nii.gz")
    out = tmp_path / "run"
    out.mkdir()
    ctx = SceneContext.headless()
    save_node(add_points(ctx, "Discs", list(zip(DISC_LEVELS, disc_centres_ras()))), out / "discs.mrk.json")
    save_node(add_table(ctx, "Severity", {"level": DISC_LEVELS, "grade": ["Normal/Mild"] * 5}), out / "severity.tsv")

    with WebServer(tmp_path / "ct.nii.gz", log_path=tmp_path / "server.log") as server, browser_page(server.url) as page:
        wait_for_views(page, (AXIAL,))
        set_text_field(page, "spineai-results-path", str(out))
        page.click("#spineai-results-button")
        wait_for_text(page, "spineai-load-message", "t.startsWith('loaded 2 results')")
        before = img_src(page, AXIAL)
        offset_before, low, high = slice_slider(page, AXIAL)
        page.click(".spineai-table tbody tr:nth-child(4)")  # L4/L5
        message = wait_for_text(page, "spineai-load-message", "t.startsWith('views centred')")
        expected_s = disc_centres_ras()[3][2]
        assert f"S {expected_s:.1f}" in message, message
        wait_for_new_frame(page, AXIAL, before)  # the axial slice moved to the disc
        # Not the app's word for it: the axial view's slice slider (the server's slice offset, as the
        # page shows it) sits at the disc's S, and the disc is not where the view was before.
        assert low <= expected_s <= high
        assert abs(offset_before - expected_s) > 4.0, (offset_before, expected_s)
        page.wait_for_function(
            """([s, want]) => { const t = document.querySelector(s);
                   return t && Math.abs(parseFloat(t.getAttribute('aria-valuenow')) - want) <= 2.0; }""",
            arg=[f"div:has(> .spineai-view-{AXIAL}) .slice-slider-gutter .v-slider-thumb", expected_s], timeout=20000)
        offset, _, _ = slice_slider(page, AXIAL)
        assert abs(offset - expected_s) <= 2.0, (offset, expected_s)  # within half a 4-mm slice


@pytest.mark.browser
@pytest.mark.realdata
def test_lumbar_mri_run_in_browser_on_a_real_case(shared_data, tmp_path):
    """Load a held-out real lumbar MRI, press Run: named vertebrae, disc points and the severity table
    appear, and a table row centres the views on its level."""
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    from SpineAILib.models.catalogue import default_bundle_path

    if default_bundle_path("lumbar-mri") is None:
        pytest.skip("no lumbar-mri bundle in the catalogue")
    mri = shared_data / "mri_lumbar" / "vb3_18.nii.gz"  # a test-split case (SpineAITraining/splits)
    if not mri.exists():
        pytest.skip(f"{mri} is absent")
    with WebServer(mri, "--out", tmp_path / "runs", log_path=tmp_path / "server.log") as server, browser_page(
        server.url
    ) as page:
        wait_for_views(page, (SAGITTAL,))
        before = img_src(page, SAGITTAL)
        page.click("#spineai-run-button")
        status = wait_for_text(page, "spineai-task-status", "t.startsWith('lumbar-mri done:')", timeout_ms=240000)
        assert "vertebrae, discs, levels" in status, status
        assert "lumbar vertebra(e) found" in status and "synthetic" in status, status  # the report's message and warnings
        loaded = text_of(page, "spineai-loaded-list")
        assert "vertebrae" in loaded and "discs" in loaded
        wait_for_new_frame(page, SAGITTAL, before)
        wait_until_frame_settles(page, SAGITTAL)
        sagittal = view_pixels(page, SAGITTAL, save_to=tmp_path / "sagittal_levels.png")
        assert coloured_fraction(sagittal) > 0.002, "no coloured vertebrae in the sagittal view"

        # The severity table: 25 rows (5 levels x 5 conditions); a row takes the views to its disc.
        assert "severity" in loaded
        tables = page.locator(".spineai-table").all_inner_texts()
        severity = next(text for text in tables if "p_severe" in text)
        assert "not assessed" in severity
        assert page.locator(".spineai-table tbody tr", has_text="spinal_canal_stenosis").count() == 5  # one per level
        row = page.locator(".spineai-table tbody tr", has_text="L3/L4").filter(has_text="spinal_canal_stenosis")
        row.first.click()
        message = wait_for_text(page, "spineai-load-message", "t.startsWith('views centred')")
        report = json.loads(next((tmp_path / "runs").rglob("report.json")).read_text())
        disc = next(d for d in report["results"]["disc_levels"] if d["level"] == "L3/L4")
        assert f"S {disc['centre_ras'][2]:.1f}" in message, message  # at the L3/L4 disc point
        assert server.process.poll() is None
