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
    return subprocess.run([SPINEAI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


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
    for name in ("samples/ct_dicom", "samples/mri_sagittal.nii.gz", "samples/mri_study", "samples/us_cine.dcm",
                 "ct.nrrd", "vertebrae.seg.nrrd", "discs.mrk.json", "vertebrae.tsv", "scene.mrb", "summary.json"):
        assert (out / name).exists(), name
    assert not (out / "web.png").exists()  # --no-web
    assert len(list((out / "samples" / "ct_dicom").iterdir())) == 64  # a real DICOM series, one file a slice
    names = [r["name"] for r in _tsv(out / "vertebrae.tsv")]
    assert names == ["L1", "L2", "L3", "L4", "L5"], names
    pictures = sorted((out / "pictures").glob("*.png"))
    assert len(pictures) >= 5
    for picture in pictures:
        rgb = np.asarray(Image.open(picture).convert("RGB"))
        assert rgb.std() > 5, picture.name  # a rendered view, not a blank
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["workflows"]) == {"lumbar-mri", "lp-ultrasound"}
    assert not [m for m in summary["workflows"].values() if m.startswith("not run")], summary["workflows"]
    assert "done in" in log

    # runs/lumbar-mri: vertebrae, disc levels, severity.tsv and the heat map; the README: L1-L4 on the phantom
    run = out / "runs" / "lumbar-mri"
    report = json.loads((run / "report.json").read_text())
    assert {"L1", "L2", "L3", "L4"} <= set(report["results"]["levels_found"]), report["results"]["levels_found"]
    assert report["input"]["path"].startswith(str(out.absolute()))  # points at the final folder, not the staging one
    assert len(_tsv(run / "severity.tsv")) == 25 and (run / "severity_heatmap.nrrd").is_file()
    # runs/lp-ultrasound: one row per frame of the 24-frame cine, timeline and heat maps
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
