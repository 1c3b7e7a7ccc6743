"""`spineai demo`, the README's first promise (CI runs `setup.sh --no-demo`, so it is checked here):
the demo as a user runs it, with `--no-web`, then its browser screenshot step on the demo's own CT."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SPINEAI = str(Path(sys.executable).with_name("spineai"))


def _spineai(*args, timeout=900):
    return subprocess.run([SPINEAI, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_output"
    done = _spineai("demo", "--out", out, "--no-web")
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stderr


def _tsv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


def test_demo_writes_what_the_readme_lists(demo):
    from PIL import Image

    out, log = demo
    for name in ("samples/ct_dicom", "samples/ct_abdomen.nii.gz", "samples/mri_t2.nii.gz", "samples/us_cine.dcm",
                 "samples/LICENSE-TotalSegmentator", "samples/LICENSE-sct_tutorial_data",
                 "ct.nrrd", "scene.mrb", "summary.json"):
        assert (out / name).exists(), name
    assert not (out / "web.png").exists()  # --no-web
    assert len(list((out / "samples" / "ct_dicom").iterdir())) == 20  # the real DICOM series, one file a slice
    pictures = sorted((out / "pictures").glob("*.png"))
    assert len(pictures) >= 8
    for picture in pictures:
        rgb = np.asarray(Image.open(picture).convert("RGB"))
        assert rgb.std() > 5, picture.name  # a rendered view, not a blank
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["workflows"]) == {"lumbar-mri", "cervical-ct", "lp-ultrasound"}
    assert not [m for m in summary["workflows"].values() if m.startswith("not run")], summary["workflows"]
    assert set(summary["workflow_pictures"]) == {"lumbar-mri", "cervical-ct", "lp-ultrasound"}
    assert "done in" in log

    # runs/lumbar-mri on the real T2 MRI (about six vertebrae, the sacrum below the field of view): bodies
    # found, never an L5 (names are withheld with a warning when the level count is uncertain)
    run = out / "runs" / "lumbar-mri"
    report = json.loads((run / "report.json").read_text())
    assert "found" in report["results"]["message"], report["results"]["message"]
    assert "L5" not in report["results"]["levels_found"], report["results"]["levels_found"]
    assert report["warnings"], "a real MRI without the sacrum carries a warning about the level names"
    assert report["input"]["path"].startswith(str(out.absolute()))  # points at the final folder, not the staging one
    assert len(_tsv(run / "severity.tsv")) == 25 and (run / "severity_heatmap.nrrd").is_file()
    assert "warning" in (run / "results.html").read_text()  # the results as a reader sees them
    # runs/cervical-ct on the real abdominal CT: the check says it does not fit, the run finds no cervical vertebra
    assert any("neck" in line for line in summary["input_checks"]["cervical-ct"]), summary["input_checks"]
    assert summary["workflows"]["cervical-ct"] == "no cervical vertebrae found"
    # runs/lp-ultrasound (the one phantom): one row per frame of the 24-frame cine, timeline and heat maps
    run = out / "runs" / "lp-ultrasound"
    assert len(_tsv(run / "frames.tsv")) == 24
    assert (run / "timeline.png").is_file() and (run / "heatmap.seq.nrrd").is_file()


def test_demo_refuses_to_replace_its_output_without_force(demo):
    out, _ = demo
    before = sorted(p.name for p in out.iterdir())
    done = _spineai("demo", "--out", out, "--no-web", timeout=120)
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("spineai")]
    assert done.returncode == 2 and len(lines) == 1 and "--force" in lines[0], done.stderr
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.browser
def test_demo_screenshot_of_its_ct_in_the_web_app(demo, tmp_path):
    """Step 6 of the demo (what `--no-web` leaves out): the demo's CT opened in the web app, a screenshot."""
    from PIL import Image
    from SpineAILib.web.snapshot import missing_browser_reason, snapshot_web_app

    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    out, _ = demo
    shot = snapshot_web_app(out / "samples" / "ct_dicom", tmp_path / "web.png")
    rgb = np.asarray(Image.open(shot).convert("RGB"))
    assert rgb.shape[0] >= 400 and rgb.shape[1] >= 600
    assert rgb.std() > 10 and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 100  # views drawn, not an empty page
