"""The annotate -> export -> train -> run loop on tiny generated ultrasound cines, end to end.

The bundled model runs on three cines; an annotator's corrections go through the same
AnnotationSession the web app and the desktop module call (prefill from the run, frame
labels set to the truth, a CSF mask painted, a box drawn); the cases are exported as a
dataset; the trainer trains one short epoch from it (and resumes for a second); the new
bundle runs through `spineai run`.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

SPINEAI = str(Path(sys.executable).with_name("spineai"))
BUNDLED = REPO / "SpineAI" / "Resources" / "Models" / "lp-ultrasound-classifier"


@pytest.fixture
def quiet_run(monkeypatch, tmp_path):
    monkeypatch.setenv("SPINEAI_HEATMAPS", "0")  # the loop, not the pictures
    monkeypatch.setenv("SPINEAI_MASKS", "0")
    monkeypatch.setenv("SPINEAI_DEID_KEY_FILE", str(tmp_path / "site.key"))
    monkeypatch.setenv("SPINEAI_USER", "annotator-1")


def pixel_to_ras(cine, col, row):
    from SpineAILib.images import frame_ijk_to_ras

    return (frame_ijk_to_ras(cine.pixel_spacing) @ np.array([col, row, 0.0, 1.0]))[:3]


def test_run_annotate_export_train_run(tmp_path, quiet_run):
    if not (BUNDLED / "model.safetensors").is_file():
        pytest.skip(f"bundled model {BUNDLED} is absent")
    from SpineAILib.annotation.session import AnnotationSession
    from SpineAILib.dataset import export_dataset
    from SpineAILib.samples.cine_phantom import write_cine_dicom
    from SpineAILib.tasks import run_task
    from SpineAITraining.ultrasound.generator import generate_cine

    cases, truths = [], []
    for n in range(3):
        generated = generate_cine(70 + n, machine="linear_hf", view="sagittal_midline", n_frames=8, size=(96, 96))
        cine = generated.to_cine()
        dicom = write_cine_dicom(cine, tmp_path / f"cine{n}.dcm")
        run = tmp_path / f"run{n}"
        report = run_task("lp-ultrasound", dicom, run)  # 1. the model's calls
        assert report["results"]["frames"] == 8
        # 2. the annotator corrects them, through the session the front ends drive
        with AnnotationSession.open(tmp_path / f"case{n}", image_path=dicom, task="lp-ultrasound") as session:
            assert session.prefill(run)["set"] > 0
            for frame, truth in enumerate(generated.labels):
                session.set_frame_labels(frame, **dict(zip(("bad_quality", "spinal_cord", "csf"), map(int, truth))))
            if n == 0:
                session.paint([pixel_to_ras(cine, 40, 50)], "csf", radius_mm=3.0, frame=3)
                session.set_box(pixel_to_ras(cine, 10, 20), pixel_to_ras(cine, 39, 34), "csf", frame=5)
        cases.append(tmp_path / f"case{n}")
        truths.append(generated.labels)

    # 3. export
    dataset = tmp_path / "dataset"
    manifest = export_dataset(cases, "lp-ultrasound", dataset, split="train=0.34,validation=0.33,test=0.33")
    assert sorted(c["split"] for c in manifest["cases"]) == ["test", "train", "validation"]
    with open(dataset / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for n, truth in enumerate(truths):
        mine = [[int(r[k]) for k in ("bad_quality", "spinal_cord", "csf")] for r in rows if r["video"] == f"case-000{n + 1}"]
        np.testing.assert_array_equal(mine, truth)  # the corrections, not the model's calls
    assert sorted(p.name for p in (dataset / "case-0001" / "masks").iterdir()) == ["frame_0004_cord.png", "frame_0004_csf.png"]
    box = json.loads((dataset / "boxes.json").read_text())["boxes"]
    assert [(b["case"], b["label"], b["frame"]) for b in box] == [("case-0001", "csf", 5)]

    # 4. train one short epoch from the export, then resume for a second
    from SpineAITraining.ultrasound.train_classifier import main as train

    bundle = tmp_path / "bundle"
    common = ["--data", str(dataset), "--out", str(bundle), "--network", "small", "--size", "48", "--negatives", "1",
              "--batch-size", "8", "--threads", "1", "--pretrained", "no", "--quiet", "--windows", "0"]  # fmt: skip
    assert train([*common, "--epochs", "1"]) == 0
    assert train([*common, "--epochs", "2", "--resume"]) == 0
    meta = json.loads((bundle / "metadata.json").read_text())
    split = meta["training"]["split"]
    assert split["method"] == "by video, as the dataset's split column gives it"
    by_id = {c["id"]: c["split"] for c in manifest["cases"]}
    assert split["train"] == [k for k, v in by_id.items() if v == "train"]
    assert split["val"] == [k for k, v in by_id.items() if v == "validation"]
    assert meta["training"]["epochs_run"] == 2  # the resumed run continued after epoch 1
    assert (bundle / "report" / "metrics.md").is_file() and (bundle / "report" / "roc_test.png").is_file()
    assert list((tmp_path / "bundle.work" / "by-video" / "tensorboard").glob("events.out.tfevents.*"))

    # 5. the new bundle runs through the command line
    result = subprocess.run([SPINEAI, "run", "lp-ultrasound", str(tmp_path / "cine0.dcm"), "--out", str(tmp_path / "rerun"),
                             "--model", str(bundle)], capture_output=True, text=True, timeout=300, cwd=REPO,
                            env=dict(os.environ))  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "rerun" / "report.json").read_text())
    assert report["model"]["path"] == str(bundle) and report["results"]["frames"] == 8
