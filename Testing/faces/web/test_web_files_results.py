"""Issue 14 in Chromium, on the real images shipped in SpineAI/Resources/SampleData, asserting what
a person sees:

* the file browser lists a DICOM folder's series (modality, description, orientation, slices)
  and loads one (the axial view shows the CT); a link pointing out of the data root is not listed;
* before cervical-ct on that abdominal CT the app says the input does not fit, Stop stops it;
* a new load clears the old status line;
* lumbar-mri on the real T2 MRI: every warning in full (not cut to one line), the grade grid in
  colour (green Normal/Mild cells), the levels not assessed collapsed with their reason, the heat
  map's legend and its note; the Workspace lists the run under its input;
* Clear empties the status line and the Results section;
* a workspace case and run survive a server restart; an upload lands in the workspace and loads.
"""

import json
import os
import shutil

import numpy as np
import pytest
from web_helpers import (
    AXIAL,
    WebServer,
    browser_page,
    missing_browser_reason,
    set_text_field,
    text_of,
    view_img_selector,
    view_pixels,
    wait_for_text,
    wait_for_views,
)

from SpineAILib.samples.real import real_sample

GRADED_WARNING = ("severity grades come from lumbar-mri-severity-synthetic, a model trained on synthetic studies, "
                  "not on real MRI: they show the pipeline working, not a clinical grading")
CONDITIONS = ("spinal_canal_stenosis", "left_neural_foraminal_narrowing", "right_neural_foraminal_narrowing",
              "left_subarticular_stenosis", "right_subarticular_stenosis")


def _graded_run(folder, mri, research=False):
    """A lumbar-mri results folder over the real MRI with graded levels: severity.tsv (L1/L2 and L2/L3
    graded Normal/Mild, Moderate, Severe; L3/L4..L5/S1 not assessed), a heat map on the MRI's grid.
    ``research``: graded by a model not trained on patient labels (report and table say so), else by one
    trained on real RSNA data."""
    from SpineAILib.vocabulary import SEVERITY_RESEARCH_NOTE

    import dataclasses

    from SpineAILib import io
    from SpineAILib.io.volumes import save_volume_file

    folder.mkdir()
    grades = {"Normal/Mild": (0.91, 0.07, 0.02), "Moderate": (0.2, 0.7, 0.1), "Severe": (0.1, 0.2, 0.7)}
    lines = ["level\tcondition\tp_normal_mild\tp_moderate\tp_severe\tgrade\tassessed\tseries\treason\trow_id\tresearch_output"]
    for level in ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"):
        for k, condition in enumerate(CONDITIONS):
            if level in ("L1/L2", "L2/L3"):
                grade = ("Normal/Mild", "Moderate", "Severe", "Normal/Mild", "Normal/Mild")[k]
                p = grades[grade]
                lines.append(f"{level}\t{condition}\t{p[0]}\t{p[1]}\t{p[2]}\t{grade}\t1\tSagittal T2/STIR\t\tx\t{int(research)}")
            else:
                lines.append(f"{level}\t{condition}\tnan\tnan\tnan\tnot assessed\t0\t\t"
                             f"disc level not visible: L5 not found in the image\tx\t{int(research)}")
    (folder / "severity.tsv").write_text("\n".join(lines) + "\n")
    image = io.load(mri)
    heat = np.zeros(image.voxels.shape, np.float32)
    heat[tuple(slice(n // 3, n // 2) for n in heat.shape)] = 0.8
    save_volume_file(dataclasses.replace(image, voxels=heat, is_labelmap=False), folder / "severity_heatmap.nrrd")
    severity = {"research_output": research, "research_note": SEVERITY_RESEARCH_NOTE if research else ""}
    (folder / "report.json").write_text(json.dumps({
        "task": "lumbar-mri", "input": {"path": str(mri)}, "warnings": [GRADED_WARNING] if research else [],
        "results": {"message": "graded for the test", "severity": severity}}))
    return folder


def _skip_without_browser():
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)


def _data_root(tmp_path):
    """A data root with the real CT series and MRI, and a link that points out of it."""
    root = tmp_path / "root"
    shutil.copytree(real_sample("ct_abdomen_dicom").path, root / "ct_abdomen_dicom")
    shutil.copy2(real_sample("mri_t2_thoracolumbar.nii.gz").path, root / "mri_t2.nii.gz")
    secret = tmp_path / "secret-outside"
    secret.mkdir()
    (secret / "private.nii.gz").write_bytes(b"not for the browser")
    os.symlink(secret, root / "link-out")
    return root


def _wait_until_lit(page, tag, fraction=0.2, timeout_ms=60000):
    """Until a ``fraction`` of view ``tag``'s pixels is lit: the image, not the black of an empty view."""
    page.wait_for_function(
        """([s, f]) => { const img = document.querySelector(s); if (!img || !img.complete || !img.naturalWidth) return false;
               const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
               const g = c.getContext('2d'); g.drawImage(img, 0, 0);
               const d = g.getImageData(0, 0, c.width, c.height).data; let lit = 0;
               for (let i = 0; i < d.length; i += 4) if (Math.max(d[i], d[i + 1], d[i + 2]) > 40) lit++;
               return lit > d.length / 4 * f; }""",
        arg=[view_img_selector(tag), fraction], timeout=timeout_ms)
    return view_pixels(page, tag)


@pytest.mark.browser
def test_browse_series_check_run_results_and_clear(tmp_path):
    _skip_without_browser()
    root = _data_root(tmp_path)
    ws = tmp_path / "workspace"
    args = ("--data-root", root, "--workspace", ws)
    with WebServer(*args, log_path=tmp_path / "server.log") as server, browser_page(server.url) as page:
        # 1. The browser shows the root, not the link out of it.
        listed = wait_for_text(page, "spineai-browse-list", "t.includes('ct_abdomen_dicom')")
        assert "mri_t2.nii.gz" in listed and "link-out" not in listed and "secret" not in listed, listed
        assert text_of(page, "spineai-browse-path") == str(root.resolve())

        # 2. A DICOM folder: its series with modality, description, orientation, slice count; Load.
        page.click(".spineai-browse-folder:has-text('ct_abdomen_dicom')")
        series = wait_for_text(page, "spineai-browse-series", "t.includes('slices')")
        assert "CT Body 3.0 — CT axial, 20 slices" in series, series
        page.click(".spineai-browse-series-load")
        loaded = wait_for_text(page, "spineai-load-message", "t.startsWith('loaded')")
        assert "512×512×20 CT" in loaded, loaded
        wait_for_views(page, (AXIAL,))
        rgb = _wait_until_lit(page, AXIAL, 0.08)  # the CT's body, not the black of an empty view
        assert rgb.std() > 10

        # 3. cervical-ct on an abdominal CT: the app says why it does not fit; Stop stops it.
        page.click("#spineai-run-button")
        concern = wait_for_text(page, "spineai-fit", "t.includes('neck')")
        assert "no slice is neck-sized" in concern and "run anyway" in concern.lower(), concern
        page.click("#spineai-fit-stop")
        assert wait_for_text(page, "spineai-task-status", "t.includes('not run')").startswith("cervical-ct not run")
        assert not page.is_visible("#spineai-fit")

        # 4. Another load (the MRI, from the browser) clears that status line.
        page.click("#spineai-browse-up")
        page.click(".spineai-browse-file:has-text('mri_t2.nii.gz')")
        wait_for_text(page, "spineai-load-message", "t.startsWith('loaded mri_t2')")
        page.wait_for_function("() => !document.getElementById('spineai-task-status').offsetParent")

        # 5. lumbar-mri on the real MRI: every warning of its report in full, the grid, the run in Workspace.
        page.click("#spineai-task-select", force=True)  # a NIfTI names no modality: the user picks the task
        page.click(".v-list-item-title:has-text('lumbar-mri')")
        page.click("#spineai-run-button")
        wait_for_text(page, "spineai-task-status", "t.startsWith('lumbar-mri done')", timeout_ms=240000)
        report = json.loads(next((ws / "runs").glob("lumbar-mri-*/report.json")).read_text())
        assert report["warnings"], "a real MRI without the sacrum in view carries warnings"
        warnings = wait_for_text(page, "spineai-warnings", "t.includes('warning')")
        for warning in report["warnings"]:
            assert " ".join(warning.split()) in warnings, (warning, warnings)  # the whole sentence, on screen
        longest = max(report["warnings"], key=len)
        box = page.locator(".spineai-warning", has_text=longest[:40]).first
        assert box.evaluate("e => e.scrollWidth <= e.clientWidth + 1 && getComputedStyle(e).whiteSpace !== 'nowrap'")
        assert box.bounding_box()["height"] > 20, "a long warning wraps onto several lines"
        # what the level names rest on: no sacrum in view, so the column's own run, with the reason
        assert report["results"]["naming"]["anchor"] == "column"
        naming = wait_for_text(page, "spineai-level-naming", "t.includes('Level names')")
        assert "Levels named from the column, top down: S1 not used" in naming, naming
        grid = wait_for_text(page, "spineai-grade-grid", "t.includes('Canal')")
        assert "L5/S1" in grid and "not assessed" in grid, grid  # the sacrum is out of view: L5/S1 collapsed
        # the shipped grader was trained on synthetic studies: its grades are shown as a research output
        assert page.is_visible("#spineai-research-note"), "the research-model note is on screen"
        assert "not trained on patient labels" in text_of(page, "spineai-research-note")
        runs = wait_for_text(page, "spineai-workspace", "t.includes('lumbar-mri')")
        assert "mri_t2.nii.gz" in runs, runs

        # 5b. A run's results folder with graded levels by a model trained on real RSNA data (Load results):
        # the grid in colour, no research note, probabilities on hover, the rows not assessed collapsed
        # with their reason, the heat map's legend.
        graded = _graded_run(tmp_path / "graded", root / "mri_t2.nii.gz")
        set_text_field(page, "spineai-results-path", str(graded))
        page.click("#spineai-results-button")
        wait_for_text(page, "spineai-load-message", "t.startsWith('loaded') && t.includes('graded')")
        grid = wait_for_text(page, "spineai-grade-grid", "t.includes('Sev')")
        assert "L5/S1 not assessed: disc level not visible: L5 not found in the image" in grid, grid
        cell = page.locator(".spineai-grade-cell", has_text="N/M").first
        assert "Normal/Mild — p Normal/Mild 0.91 · Moderate 0.07 · Severe 0.02" in cell.get_attribute("title")
        from io import BytesIO

        from PIL import Image

        shot = page.locator("#spineai-grade-grid").screenshot(path=str(tmp_path / "grid.png"))
        rgb = np.asarray(Image.open(BytesIO(shot)).convert("RGB")).astype(int)
        for name, colour in (("green", (46, 125, 50)), ("amber", (239, 143, 0)), ("red", (198, 40, 40))):
            near = np.all(np.abs(rgb - np.array(colour)) < 20, axis=2)
            assert near.mean() > 0.003, f"no {name} grade cell on screen"
        assert not page.is_visible("#spineai-research-note")
        legend = text_of(page, "spineai-heatmap-legend")
        assert "below 0.2: transparent" in legend, legend

        # 5c. The same grades from a research model (not trained on patient labels): the note above the
        # grid with the line that replaces the model, the cells greyed, their probabilities still on hover.
        research = _graded_run(tmp_path / "research", root / "mri_t2.nii.gz", research=True)
        set_text_field(page, "spineai-results-path", str(research))
        page.click("#spineai-results-button")
        wait_for_text(page, "spineai-load-message", "t.startsWith('loaded') && t.includes('research')")
        note = wait_for_text(page, "spineai-research-note", "t.includes('not trained on patient labels')")
        assert "spineai-train lumbar-severity --data RSNA_DIR" in note, note
        note_box, grid_box = (page.locator(s).first.bounding_box() for s in ("#spineai-research-note", ".spineai-grade-cell"))
        assert note_box["height"] > 0 and note_box["y"] + note_box["height"] <= grid_box["y"], "the note sits above the grid"
        cell = page.locator(".spineai-grade-cell", has_text="Sev").first
        assert "Severe — p Normal/Mild 0.10 · Moderate 0.20 · Severe 0.70" in cell.get_attribute("title")
        background = cell.evaluate("e => getComputedStyle(e).backgroundColor")
        r, g, b = (int(v) for v in background[background.index("(") + 1:background.index(")")].split(",")[:3])
        assert max(r, g, b) - min(r, g, b) < 40, f"a research grade cell is greyed, not {background}"
        shot = page.locator("#spineai-grade-grid").screenshot(path=str(tmp_path / "grid-research.png"))
        rgb = np.asarray(Image.open(BytesIO(shot)).convert("RGB")).astype(int)
        for name, colour in (("green", (46, 125, 50)), ("amber", (239, 143, 0)), ("red", (198, 40, 40))):
            near = np.all(np.abs(rgb - np.array(colour)) < 20, axis=2)
            assert near.mean() < 0.001, f"a {name} grade cell in full colour under a research model"
        warnings = text_of(page, "spineai-warnings")
        assert GRADED_WARNING in warnings

        # 6. Clear: the status line and the results go.
        page.click("#spineai-panel button:has-text('Clear')")
        wait_for_text(page, "spineai-load-message", "t === 'scene cleared'")
        page.wait_for_function("() => !document.getElementById('spineai-task-status').offsetParent")
        assert not page.is_visible("#spineai-results")
        assert page.input_value("#spineai-results-path") == ""


@pytest.mark.browser
def test_workspace_case_survives_a_restart_and_uploads_land_in_it(tmp_path):
    _skip_without_browser()
    root = _data_root(tmp_path)
    ws = tmp_path / "workspace"
    args = ("--data-root", root, "--workspace", ws)
    with WebServer(*args, log_path=tmp_path / "server1.log") as server, browser_page(server.url) as page:
        page.click(".spineai-browse-file:has-text('mri_t2.nii.gz')")
        wait_for_text(page, "spineai-load-message", "t.startsWith('loaded mri_t2')")
        assert page.input_value("#spineai-annot-folder") == str(ws.absolute() / "cases" / "mri_t2")
        page.click("#spineai-annot-open")
        wait_for_text(page, "spineai-annot-message", "t.includes('opened')")
        wait_for_text(page, "spineai-workspace", "t.includes('mri_t2')")
        # An upload: written into the workspace (atomically, under a safe name), then loaded.
        page.set_input_files("#spineai-upload", files=[{"name": "my scan (1).nii.gz", "mimeType": "application/gzip",
                                                         "buffer": real_sample("ct_abdomen.nii.gz").path.read_bytes()}])
        loaded = wait_for_text(page, "spineai-load-message", "t.startsWith('loaded my_scan_1_')")
        assert "122×101×112" in loaded, loaded
    assert (ws / "uploads" / "my_scan_1_.nii.gz").is_file()
    assert not list((ws / "uploads").glob(".upload-*"))  # no partial file left
    assert (ws / "cases" / "mri_t2" / "annotation.json").is_file()

    # A new server on the same workspace: the case is listed and opens with its image.
    with WebServer(*args, log_path=tmp_path / "server2.log") as server, browser_page(server.url) as page:
        cases = wait_for_text(page, "spineai-workspace", "t.includes('mri_t2')")
        assert "Cases" in cases, cases
        page.click(".spineai-workspace-case:has-text('mri_t2')")
        assert wait_for_text(page, "spineai-load-message", "t.startsWith('opened case')").startswith("opened case mri_t2")
        page.wait_for_function("(s) => { const i = document.querySelector(s); return i && i.naturalWidth > 50; }",
                               arg=view_img_selector(AXIAL))


@pytest.mark.browser
def test_echo_cine_is_questioned_before_lp_ultrasound(shared_data, tmp_path):
    """A cardiac echo passes the ultrasound reader; before lp-ultrasound the app says it does not fit."""
    _skip_without_browser()
    echo = shared_data / "us_format" / "cine_echo_30frames_ybr.dcm"
    if not echo.exists():
        pytest.skip(f"{echo} is absent")
    with WebServer(echo, "--data-root", tmp_path, "--workspace", tmp_path / "ws", log_path=tmp_path / "server.log") \
            as server, browser_page(server.url) as page:  # fmt: skip
        wait_for_text(page, "spineai-load-message", "t.startsWith('loaded cine')")
        page.click("#spineai-run-button")
        concern = wait_for_text(page, "spineai-fit", "t.includes('deep')")
        assert "123 mm deep" in concern and "lp-ultrasound" in concern, concern
        page.click("#spineai-fit-stop")
        assert wait_for_text(page, "spineai-task-status", "t.includes('not run')").startswith("lp-ultrasound not run")
        assert not list((tmp_path / "ws").glob("runs/*"))  # nothing was run
