"""Infant lumbar-puncture ultrasound: metrics, thresholds, smoothing, preprocessing,
training, ONNX/torch agreement, the offline fallback and `spineai run lp-ultrasound`
end to end with the bundled model (generated cines and the real us_format files)."""

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED_DATA

BUNDLED = REPO / "SpineAI" / "Resources" / "Models" / "lp-ultrasound-classifier"
COLUMNS = ["frame", "time_ms", "p_bad_quality", "p_spinal_cord", "p_csf", "bad_quality", "spinal_cord", "csf"]
SPINEAI = str(Path(sys.executable).with_name("spineai"))


def bundled():
    if not (BUNDLED / "model.safetensors").is_file():
        pytest.skip(f"bundled model {BUNDLED} is absent")
    return BUNDLED


# ---------------------------------------------------------------------------- metrics


def test_metrics_against_hand_computed_values():
    from SpineAITraining.ultrasound.metrics import evaluate

    #            bad cord csf
    y_true = [[0, 1, 1],  # f0
              [0, 0, 1],  # f1
              [1, 0, 0],  # f2
              [0, 1, 0]]  # f3
    y_pred = [[0, 1, 0],  # f0: CSF missed
              [0, 1, 1],  # f1: cord called wrongly
              [1, 0, 0],  # f2: all right
              [1, 0, 0]]  # f3: bad called wrongly, cord missed
    t = evaluate(y_true, y_pred)
    bad, cord, csf = (t["per_label"][k] for k in ("bad_quality", "spinal_cord", "csf"))
    # bad: truth 0,0,1,0 / call 0,0,1,1 -> TN 2, FP 1, FN 0, TP 1; P = 1/2, R = 1, F1 = 2*.5*1/1.5 = 2/3
    assert (bad["tn"], bad["fp"], bad["fn"], bad["tp"]) == (2, 1, 0, 1)
    assert bad["precision"] == 0.5 and bad["recall"] == 1.0 and bad["f1"] == pytest.approx(2 / 3)
    # cord: truth 1,0,0,1 / call 1,1,0,0 -> TP 1 (f0), FP 1 (f1), TN 1 (f2), FN 1 (f3): P = R = F1 = 1/2, acc 2/4
    assert (cord["tn"], cord["fp"], cord["fn"], cord["tp"]) == (1, 1, 1, 1)
    assert cord["f1"] == 0.5 and cord["accuracy"] == 0.5
    # csf: truth 1,1,0,0 / call 0,1,0,0 -> TP 1, FN 1, TN 2, FP 0: P = 1, R = 1/2, F1 = 2/3, acc 3/4
    assert (csf["tn"], csf["fp"], csf["fn"], csf["tp"]) == (2, 0, 1, 1)
    assert csf["precision"] == 1.0 and csf["recall"] == 0.5 and csf["accuracy"] == 0.75
    o = t["overall"]
    # micro: TN 2+1+2 = 5, FP 1+1+0 = 2, FN 0+1+1 = 2, TP 1+1+1 = 3 -> P = R = F1 = 3/5
    assert (o["tn"], o["fp"], o["fn"], o["tp"]) == (5, 2, 2, 3)
    assert o["precision_micro"] == pytest.approx(0.6) and o["recall_micro"] == pytest.approx(0.6)
    assert o["f1_micro"] == pytest.approx(0.6)
    # 4 wrong cells of 12: Hamming loss 1/3, cell accuracy 8/12
    assert o["hamming_loss"] == pytest.approx(1 / 3) and o["accuracy"] == pytest.approx(2 / 3)
    assert o["exact_match"] == 0.25  # only f2 is right in all three labels
    assert o["jaccard_micro"] == pytest.approx(3 / 7)  # TP / (TP + FP + FN)
    # per frame |T & P| / |T | P|: f0 1/2, f1 1/2, f2 1, f3 0/2 -> mean 0.5
    assert o["jaccard_samples"] == pytest.approx(0.5)
    assert o["f1_macro"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)  # = 11/18
    assert t["clinical"] == {"fn_spinal_cord": 1, "fp_csf": 0}
    assert o["misclassified_frames"] == 3


def test_roc_auc_counts_ties_as_half():
    from SpineAITraining.common.metrics import roc_auc, roc_curve

    # positives 0.9, 0.6; negatives 0.6, 0.2: pairs (0.9>0.6) 1, (0.9>0.2) 1, (0.6=0.6) 1/2, (0.6>0.2) 1 -> 3.5/4
    assert roc_auc([1, 0, 0, 1], [0.9, 0.6, 0.2, 0.6]) == pytest.approx(0.875)
    assert roc_auc([1, 1], [0.2, 0.3]) is None
    fpr, tpr, _ = roc_curve([1, 0, 0, 1], [0.9, 0.6, 0.2, 0.6])
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.875)


def test_markdown_table_marks_the_clinical_cells():
    from SpineAITraining.ultrasound.metrics import evaluate, markdown_table

    t = evaluate([[0, 1, 1]], [[0, 1, 1]], [[0.1, 0.9, 0.8]])
    md = markdown_table({"test": t, "held-out": t})
    assert "| Metric | test | held-out |" in md
    assert "spinal_cord FN **(clinical)**" in md and "csf FP **(clinical)**" in md


# ---------------------------------------------------------------------------- thresholds


def test_thresholds_meet_the_clinical_targets():
    from SpineAITraining.ultrasound.thresholds import choose_thresholds, threshold_for_precision, threshold_for_recall

    # cord: 10 positives, recall 0.9 needs 9 of them -> the 9th highest positive score, 0.3;
    # next lower score overall is 0.2, so the threshold sits at (0.3 + 0.2) / 2 = 0.25
    pos = [0.99, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.3, 0.05]
    neg = [0.4, 0.2, 0.1, 0.02]
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    p = np.r_[pos, neg]
    t, recall = threshold_for_recall(y, p, 0.9)
    assert t == pytest.approx(0.25) and recall == pytest.approx(0.9)
    assert ((p >= t) & (y == 1)).sum() / y.sum() >= 0.9

    # csf: positives .9 .8 .7 .4, negatives .75 .3 .2. Precision from the top:
    # .9 1/1, .8 2/2, .75 2/3, .7 3/4, .4 4/5, .3 4/6 -> target .75: lowest ok score .4 -> (.4 + .3)/2
    y = np.array([1, 1, 1, 1, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.4, 0.75, 0.3, 0.2])
    t, precision = threshold_for_precision(y, p, 0.75)
    assert t == pytest.approx(0.35) and precision == pytest.approx(0.8)
    t, precision = threshold_for_precision(y, p, 0.9)  # only .9 and .8 qualify -> (.8 + .75)/2
    assert t == pytest.approx(0.775) and precision == 1.0

    labels = ["bad_quality", "spinal_cord", "csf"]
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, size=(400, 3))
    probs = np.clip(truth * 0.35 + rng.uniform(0, 0.65, size=(400, 3)), 0, 1)
    thresholds, notes = choose_thresholds(truth, probs, labels)
    called = probs >= np.array([thresholds[k] for k in labels])
    cord_recall = (called[:, 1] & (truth[:, 1] == 1)).sum() / truth[:, 1].sum()
    csf_precision = (called[:, 2] & (truth[:, 2] == 1)).sum() / called[:, 2].sum()
    assert cord_recall >= 0.98 and csf_precision >= 0.98
    assert notes["spinal_cord"]["rule"] == "recall" and notes["csf"]["rule"] == "precision"
    assert notes["bad_quality"]["rule"] == "f1"


# ---------------------------------------------------------------------------- smoothing and decisions


def test_centred_smoothing_is_frame_rate_aware():
    from SpineAILib.workflows.ultrasound.inference import CausalSmoother, smooth_centred

    p = np.array([0, 0, 1, 0, 0], dtype=float)[:, None]
    # 30 frames/s, 100 ms window: +-50 ms reaches one neighbour each side -> 1/3 around the spike;
    # the end frames average over the two frames they have
    times = np.arange(5) * (1000 / 30)
    assert smooth_centred(p, times, 100)[:, 0] == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3, 0])
    # 10 frames/s: the same window holds only the frame itself
    assert smooth_centred(p, np.arange(5) * 100.0, 100)[:, 0] == pytest.approx([0, 0, 1, 0, 0])
    # irregular timing: frame 3 is 20 ms after frame 2, frame 4 far away
    t = np.array([0, 100, 200, 220, 500.0])
    assert smooth_centred(p, t, 100)[:, 0] == pytest.approx([0, 0, 0.5, 0.5, 0])
    assert smooth_centred(np.array([[0.7, 0.2, 0.1]]), [0.0], 200).tolist() == [[0.7, 0.2, 0.1]]  # one frame
    ema = CausalSmoother(200)  # tau 100 ms: after 100 ms a step has reached 1 - 1/e
    ema.update([0.0], 0)
    assert ema.update([1.0], 100)[0] == pytest.approx(1 - np.exp(-1))


def test_bad_quality_frames_show_no_cord_or_csf():
    from SpineAILib.workflows.ultrasound.inference import best_frames, decide

    p = np.array([[0.9, 0.9, 0.9], [0.1, 0.9, 0.95], [0.1, 0.2, 0.6], [0.1, 0.9, 0.97]])
    calls = decide(p, {"bad_quality": 0.5, "spinal_cord": 0.5, "csf": 0.5})
    assert calls.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1], [0, 1, 1]]
    forced = decide(p, {"bad_quality": 0.5, "spinal_cord": 0.5, "csf": 0.5}, force_bad=[False, True, False, False])
    assert forced[1].tolist() == [1, 0, 0]
    times = np.array([0, 100, 200, 900.0])
    assert best_frames(p, calls, times) == [3, 1]  # 3 (0.97) then 1 (0.95); 2 is within 500 ms of 1
    assert best_frames(p, calls, times, min_gap_ms=0) == [3, 1, 2]


# ---------------------------------------------------------------------------- preprocessing


def test_preprocessing_crops_the_content_and_gives_model_shapes():
    from SpineAILib.workflows.ultrasound.preprocess import Preprocessor, centre_crop_box, colour_fraction, content_box, letterbox_square

    frame = np.zeros((200, 300), np.uint8)
    frame[40:160, 50:250] = 128  # content 120 x 200 inside black borders
    frame[5:8, 5:60] = 255  # a thin caption line: removed by the opening
    assert content_box(frame) == (40, 160, 50, 250)
    # central 80 %: 96 x 160, centred -> rows 52..148, cols 70..230
    assert centre_crop_box((40, 160, 50, 250), 0.8) == (52, 148, 70, 230)
    assert letterbox_square(np.ones((2, 4), np.uint8)).tolist() == [[0] * 4, [1] * 4, [1] * 4, [0] * 4]
    pre = Preprocessor(size=(96, 96))
    x = pre.frame(frame, content_box(frame))
    assert x.shape == (1, 96, 96) and x.dtype == np.float32
    batch = pre.batch(np.stack([frame] * 3))
    assert batch.shape == (3, 1, 96, 96)
    rgb = np.repeat(frame[..., None], 3, axis=2)
    assert np.allclose(pre.frame(rgb, content_box(rgb)), x)  # grey and RGB-grey give the same input
    # colour screening: grey 0; a saturated Doppler patch counts; a dark navy bar does not
    assert colour_fraction(rgb) == 0.0
    doppler = rgb.copy()
    doppler[80:120, 120:180] = (230, 40, 30)
    assert colour_fraction(doppler, (40, 160, 50, 250)) > 0.02
    navy = rgb.copy()
    navy[40:160, 50:250] = (37, 62, 94)
    assert colour_fraction(navy) == 0.0
    meta = pre.metadata()
    assert Preprocessor.from_metadata(meta) == pre


def test_training_augmentation_keeps_shapes():
    from SpineAILib.workflows.ultrasound.preprocess import Preprocessor
    from SpineAITraining.ultrasound.preprocess import EvalTransform, TrainTransform

    pre = Preprocessor(size=(64, 64))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, size=(120, 100), dtype=np.uint8)
    colour = rng.integers(0, 255, size=(120, 100, 3), dtype=np.uint8)
    for f in (frame, colour):
        for _ in range(5):
            assert TrainTransform(pre)(f, None, rng).shape == (1, 64, 64)
        assert EvalTransform(pre)(f, None).shape == (1, 64, 64)


# ---------------------------------------------------------------------------- networks, training, bundles


def test_imagenet_weights_offline_fallback_is_logged(monkeypatch, tmp_path, caplog):
    import socket

    from SpineAITraining.ultrasound.classifier import build_classifier

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    with caplog.at_level(logging.WARNING, logger="spineai.train.lp_ultrasound"):
        model, init = build_classifier("resnet18", "auto")
    assert init.startswith("random")
    assert "OFFLINE FALLBACK" in caplog.text and "resnet18" in caplog.text
    assert model.fc.out_features == 3 and model.conv1.in_channels == 1
    with pytest.raises(RuntimeError, match="could not be fetched"):
        build_classifier("resnet18", "yes")
    assert build_classifier("small", "auto")[1] == "random"


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A few seconds of training on a tiny generated set, through the real entry point."""
    from SpineAITraining.ultrasound.train_classifier import main

    out = tmp_path_factory.mktemp("lpus") / "tiny-bundle"
    code = main(["--generate", "3", "--frames-per-video", "6", "--epochs", "1", "--network", "small", "--size", "48",
                 "--negatives", "1", "--held-out-videos", "1", "--eval-videos", "2", "--eval-frames-per-video", "6",
                 "--batch-size", "8", "--threads", "1", "--quiet",
                 "--pretrained", "no", "--out", str(out)])
    assert code == 0
    return out


def test_tiny_training_run_writes_a_bundle_that_loads(tiny_bundle):
    from SpineAILib.models.bundle import load_bundle

    loaded = load_bundle(tiny_bundle, device="cpu", expected_task="lp-ultrasound")
    meta = loaded.metadata
    assert meta["labels"] == ["bad_quality", "spinal_cord", "csf"]
    assert set(meta["thresholds"]) == {"bad_quality", "spinal_cord", "csf"}
    assert meta["input"]["size"] == [48, 48]
    split = meta["training"]["split"]
    assert split["method"].startswith("by video")
    # the smoothing window is the validation's choice among the candidates
    search = {w["window_ms"]: w["val_f1_micro"] for w in split["smoothing_window_search"]}
    assert set(search) == {0.0, 100.0, 200.0, 300.0}
    assert search[meta["inference"]["smoothing_window_ms"]] == max(search.values())
    report = tiny_bundle / "report"
    for name in ("metrics.json", "metrics.md", "roc_test.png", "confusion_test.png", "timeline_test_example.png"):
        assert (report / name).is_file(), name
    tables = json.loads((report / "metrics.json").read_text())["tables"]
    assert {"test", "held_out_machine"} <= set(tables)
    assert (tiny_bundle.parent / "tiny-bundle.work" / "by-video" / "state.json").is_file()  # the resumable checkpoint


def test_onnx_runtime_and_torch_give_the_same_probabilities(tmp_path, monkeypatch):
    from SpineAILib.workflows.ultrasound.inference import FrameClassifier

    monkeypatch.setenv("SPINEAI_CACHE", str(tmp_path))  # export afresh
    bundle = bundled()
    onnx = FrameClassifier(bundle, device="cpu", backend="onnx")
    torch_ = FrameClassifier(bundle, device="cpu", backend="torch")
    assert onnx.backend == "onnxruntime" and torch_.backend == "torch"
    # the shipped bundle carries its graph (model.onnx, issue 20); a bundle without one is exported to the cache
    assert onnx.onnx_path.is_file() and (onnx.onnx_path.parent == Path(bundle) or str(onnx.onnx_path).startswith(str(tmp_path)))
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, size=(5, 150, 180), dtype=np.uint8)
    batch = onnx.preprocessor.batch(frames)
    np.testing.assert_allclose(onnx.probabilities(batch), torch_.probabilities(batch), atol=1e-4)


def test_live_classifier_streams_one_frame_at_a_time():
    from SpineAILib.workflows.ultrasound.inference import LiveClassifier
    from SpineAITraining.ultrasound.generator import generate_cine

    cine = generate_cine(5, machine="linear_hf", n_frames=6)
    live = LiveClassifier(bundled(), fps=30)
    results = [live.push(frame) for frame in cine.frames]
    assert [r["time_ms"] for r in results] == pytest.approx(np.arange(6) * 1000 / 30)
    assert set(results[0]["calls"]) == {"bad_quality", "spinal_cord", "csf"}
    assert results[0]["smoothed"] == pytest.approx(results[0]["probabilities"])  # nothing to smooth yet
    for r in results:
        if r["calls"]["bad_quality"]:
            assert r["calls"]["spinal_cord"] == r["calls"]["csf"] == 0


# ---------------------------------------------------------------------------- end to end


def run_cli(input_path, out, heatmaps=False, cache=None):
    """`spineai run lp-ultrasound` in a subprocess -> (report, frames.tsv rows); checks the output contract."""
    env = dict(os.environ, SPINEAI_HEATMAPS="1" if heatmaps else "0", SPINEAI_MASKS="1" if heatmaps else "0")
    if cache:
        env["SPINEAI_CACHE"] = str(cache)
    result = subprocess.run([SPINEAI, "run", "lp-ultrasound", str(input_path), "--out", str(out), "--model", str(bundled())],
                            capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    with open(out / "frames.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert list(rows[0].keys()) == COLUMNS
    for name in ("frames.tsv", "frames.schema.tsv", "timeline.png", "scene.mrb", "report.json", *report["results"]["overlays"]):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    return report, rows


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Every command-line case, run two at a time (each is a cold process: start-up dominates).

    One ONNX export is shared through SPINEAI_CACHE (each run would otherwise import torch
    to export); only the DICOM case computes Grad-CAM heat maps and masks."""
    from concurrent.futures import ThreadPoolExecutor

    from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_dicom, write_frame_folder
    from SpineAILib.workflows.ultrasound.inference import FrameClassifier
    from SpineAITraining.ultrasound.generator import generate_cine

    root = tmp_path_factory.mktemp("lpus-cli")
    cache = root / "cache"
    old = os.environ.get("SPINEAI_CACHE")
    os.environ["SPINEAI_CACHE"] = str(cache)
    try:
        FrameClassifier(bundled(), device="cpu", backend="onnx")
    finally:
        os.environ.pop("SPINEAI_CACHE") if old is None else os.environ.__setitem__("SPINEAI_CACHE", old)

    cases = {}
    cine = generate_cine(11, machine="linear_hf", view="sagittal_midline", n_frames=16).to_cine()
    cases["dicom"] = (write_cine_dicom(cine, root / "cine.dcm"), True)
    frames = generate_cine(12, machine="curvilinear_a", n_frames=8).to_cine()
    paths = write_frame_folder(frames, root / "frames")
    cases["folder"] = (root / "frames", False)
    cases["png"] = (paths[0], False)
    cases["doppler"] = (write_cine_dicom(make_cine_phantom(n_frames=4, color=True), root / "doppler.dcm", color="RGB"), False)
    us_format = SHARED_DATA / "us_format"
    for name, file in (("air", "us_frame_no_anatomy_1.nrrd"), ("air2", "us_frame_no_anatomy_2.nrrd"),
                       ("air-screen", "us_palette_single.dcm"), ("echo", "cine_echo_30frames_ybr.dcm")):
        if (us_format / file).is_file():
            cases[name] = (us_format / file, False)

    def one(item):
        name, (path, heat) = item
        try:
            return name, run_cli(path, root / f"out-{name}", heatmaps=heat, cache=cache)
        except BaseException as error:  # reported by the test that needs this case
            return name, error

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, cases.items()))


def case(cli_runs, name):
    if name not in cli_runs:
        pytest.skip(f"input for {name} is absent")
    result = cli_runs[name]
    if isinstance(result, BaseException):
        raise result
    return result


def test_cli_on_generated_dicom_multiframe_with_heat_maps(cli_runs):
    report, rows = case(cli_runs, "dicom")
    assert len(rows) == 16
    assert report["results"]["backend"] == "onnxruntime"
    assert report["results"]["frames"] == 16 and set(report["results"]["counts"]) == {"bad_quality", "spinal_cord", "csf"}
    for row in rows:
        if row["bad_quality"] == "1":
            assert row["spinal_cord"] == row["csf"] == "0"
    assert not any("skipped" in w for w in report["warnings"]), report["warnings"]
    # the shipped classifier learnt from generated cines: every run says so with its calls
    assert any("trained on generated cines" in w and "not a clinical reading" in w for w in report["warnings"])


def test_cli_on_frame_folder_and_single_png(cli_runs):
    _, rows = case(cli_runs, "folder")
    assert len(rows) == 8 and [float(r["time_ms"]) for r in rows[:2]] == pytest.approx([0, 1000 / 30], abs=1e-3)
    report, rows = case(cli_runs, "png")
    assert len(rows) == 1 and rows[0]["time_ms"] == "0"
    assert report["results"]["smoothing_window_ms"] == 0.0  # one frame: nothing to smooth


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["air", "air2", "air-screen"])
def test_cli_probe_in_air_frames_are_bad_quality(cli_runs, name):
    """us_frame_no_anatomy_1/2.nrrd and us_palette_single.dcm (a Philips screen: header bar,
    captions, a small sector of reverberations): probe in air, no spine."""
    report, rows = case(cli_runs, name)
    assert len(rows) == 1
    assert (rows[0]["bad_quality"], rows[0]["spinal_cord"], rows[0]["csf"]) == ("1", "0", "0")
    assert report["results"]["best_frames"] == []


@pytest.mark.realdata
def test_cli_cardiac_echo_cine_is_not_called_cord_or_csf(cli_runs):
    report, rows = case(cli_runs, "echo")
    assert len(rows) == 30
    times = np.array([float(r["time_ms"]) for r in rows])
    assert np.diff(times) == pytest.approx(np.full(29, 33.333), abs=0.01)
    assert all(r["spinal_cord"] == "0" and r["csf"] == "0" for r in rows)
    assert report["results"]["counts"]["csf"] == 0 and report["results"]["counts"]["spinal_cord"] == 0


def test_cli_colour_doppler_frames_are_called_bad_quality_with_a_warning(cli_runs):
    report, rows = case(cli_runs, "doppler")
    assert all((r["bad_quality"], r["spinal_cord"], r["csf"]) == ("1", "0", "0") for r in rows)
    assert any("colour Doppler" in w for w in report["warnings"])
    assert report["results"]["screening"]["colour_frames"] == 4


def test_roc_plot_of_a_split_with_one_class_says_so_without_warnings(tmp_path):
    import warnings

    import numpy as np

    from SpineAITraining.ultrasound.plots import roc_curves

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns about an empty legend
        path = roc_curves(np.zeros((3, 2)), np.full((3, 2), 0.3), ["spinal_cord", "csf"], tmp_path / "roc.png")
    assert path.stat().st_size > 0


def test_the_onnx_cache_name_covers_the_network_metadata():
    """Issue 17 row 9: a bundle whose `network` metadata was altered must not run the cached graph
    exported for the original (the cache key is the weights AND what shapes the graph)."""
    import copy
    import json

    from SpineAILib.models.catalogue import default_bundle_path
    from SpineAILib.workflows.ultrasound.inference import cache_name

    meta = json.loads((default_bundle_path("lp-ultrasound") / "metadata.json").read_text())
    altered = copy.deepcopy(meta)
    altered["network"]["name"] = "something-else"
    size = (224, 224)
    assert cache_name(meta, "ab" * 32, size) == cache_name(copy.deepcopy(meta), "ab" * 32, size)
    assert cache_name(altered, "ab" * 32, size) != cache_name(meta, "ab" * 32, size)
    assert cache_name(meta, "cd" * 32, size) != cache_name(meta, "ab" * 32, size)
