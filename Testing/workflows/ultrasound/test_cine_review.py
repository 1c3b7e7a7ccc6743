"""Reviewing an ultrasound run (SpineAILib.workflows.ultrasound.review) and its per-frame heat maps
(SpineAILib.workflows.ultrasound.heatmaps, heatmap.seq.nrrd), on a real `lp-ultrasound` run of a generated cine."""

import csv
import json
import os
import shutil

import numpy as np
import pytest

from conftest import REPO, one_line_error

BUNDLE = REPO / "SpineAI" / "Resources" / "Models" / "lp-ultrasound-classifier"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One lp-ultrasound run (heat maps on, masks off) of a 30-frame generated cine with
    bad-quality stretches and cord + CSF in the other frames: (output folder, input path)."""
    if not (BUNDLE / "model.safetensors").is_file():
        pytest.skip(f"bundled model {BUNDLE} is absent")
    from SpineAILib.samples.cine_phantom import write_cine_dicom
    from SpineAILib.tasks import run_task
    from SpineAITraining.ultrasound.generator import generate_cine

    root = tmp_path_factory.mktemp("review")
    cine = generate_cine(0, machine="linear_hf", view="sagittal_midline", n_frames=30).to_cine()
    path = write_cine_dicom(cine, root / "cine.dcm")
    saved = {k: os.environ.get(k) for k in ("SPINEAI_MASKS", "SPINEAI_HEATMAPS")}
    os.environ.update({"SPINEAI_MASKS": "0", "SPINEAI_HEATMAPS": "1"})
    try:
        run_task("lp-ultrasound", path, root / "out", model=BUNDLE, device="cpu")
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    return root / "out", path


def _table(folder):
    with open(folder / "frames.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_calls_line_best_frames_and_timeline_follow_the_run_files(run):
    from SpineAILib.workflows.ultrasound.review import CineReview

    folder, _ = run
    rows = _table(folder)
    report = json.loads((folder / "report.json").read_text())
    review = CineReview.from_folder(folder)
    assert review.n_frames == len(rows) == 30 and review.matches(30) and not review.matches(29)

    for i in (0, 7, 29):
        row = rows[i]
        expected = (f"frame {i + 1} / 30 · {float(row['time_ms']):.1f} ms — "
                    f"bad quality: {'YES' if row['bad_quality'] == '1' else 'no'} (p {float(row['p_bad_quality']):.2f}) · "
                    f"spinal cord: {'YES' if row['spinal_cord'] == '1' else 'no'} (p {float(row['p_spinal_cord']):.2f}) · "
                    f"CSF: {'YES' if row['csf'] == '1' else 'no'} (p {float(row['p_csf']):.2f})")
        assert review.calls_line(i) == expected
    assert review.calls_line(30) == "" and review.parts(-1) == []
    # The cine has both kinds of frame, so the line changes along it.
    assert len({review.calls_line(i).split(" — ")[1] for i in range(30)}) > 1

    counts = report["results"]["counts"]
    assert review.overview().startswith(f"CSF called in {counts['csf']} of 30 frames, spinal cord in {counts['spinal_cord']}, "
                                        f"bad quality in {counts['bad_quality']}; ")
    best = [b["frame"] for b in report["results"]["best_frames"]]
    assert best and review.best == best
    seen, current = [], None
    for _ in range(len(best) + 1):
        current, message = review.next_best(current)
        seen.append(current)
    assert seen == best + best[:1], "Best frame must walk the best frames in rank order, then start again"
    assert review.next_best(None)[1].startswith(f"best frame 1 of {len(best)}: frame {best[0] + 1}")

    assert review.timeline == folder / "timeline.png" and review.timeline_data_url().startswith("data:image/png;base64,")
    left, right = report["results"]["timeline_axes"]["x_fraction"]
    assert 0 < left < right < 1
    positions = [review.cursor_fraction(i) for i in range(30)]
    assert all(left <= x <= right for x in positions) and positions == sorted(positions)
    assert [review.frame_at_fraction(x) for x in positions] == list(range(30))
    assert review.frame_at_fraction(left / 2) is None  # a click left of the time axis
    assert review.heatmap == folder / "heatmap.seq.nrrd"


def test_heat_map_sequence_holds_maps_of_called_frames_only(run):
    from SpineAILib.scene import SceneContext, load_node

    import slicer

    folder, _ = run
    rows = _table(folder)
    report = json.loads((folder / "report.json").read_text())
    ctx = SceneContext.headless()
    sequence = load_node(ctx, folder / "heatmap.seq.nrrd")
    assert sequence.GetNumberOfDataNodes() == 30
    assert [float(sequence.GetNthIndexValue(i)) for i in range(30)] == pytest.approx([float(r["time_ms"]) for r in rows], abs=1e-3)
    maps = np.stack([slicer.util.arrayFromVolume(sequence.GetNthDataNode(i))[0] for i in range(30)])
    assert maps.dtype == np.float32 and maps.min() >= 0 and maps.max() <= 1
    assert list(maps.shape[1:]) == report["results"]["heatmaps"]["grid"] and max(maps.shape[1:]) <= 96
    called = np.array([r["spinal_cord"] == "1" or r["csf"] == "1" for r in rows])
    assert called.any() and not called.all()
    assert all(maps[i].max() == 0 for i in np.nonzero(~called)[0]), "a frame without cord or CSF called has heat"
    assert all(maps[i].max() > 0.5 for i in np.nonzero(called)[0])
    assert report["results"]["heatmaps"]["frames_explained"] == int(called.sum())
    assert report["timings"]["heatmaps_s"] > 0


def test_heat_map_plays_with_the_cine_and_toggles(run):
    """heatmap.seq.nrrd loaded as a result joins the browser of the same cine loaded from the
    input; each frame shows its own map over the frame's field of view; the toggle is the
    slice views' foreground."""
    import slicer

    from SpineAILib import io, results
    from SpineAILib.scene import SceneContext, add_cine, set_frame
    from SpineAILib.scene.overlays import heatmap_background, set_heatmap_visible

    from SpineAILib.workflows.ultrasound.review import CineReview, review_browser

    folder, source = run
    ctx = SceneContext.headless()
    composite = ctx.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    _, browser, cine_proxy = add_cine(ctx, io.load(source), name="US")
    nodes = results.load_results(ctx, folder)
    assert review_browser(ctx, CineReview.from_folder(folder)).GetID() == browser.GetID()
    (layer,) = results.heatmap_layers(ctx, nodes)
    assert results.is_heatmap_layer(ctx, layer) and not results.is_heatmap_layer(ctx, cine_proxy)
    assert heatmap_background(ctx, layer).GetID() == cine_proxy.GetID()
    assert composite.GetForegroundVolumeID() is None, "a heat map must load hidden"

    heat_sequence = next(s for s in ctx.nodes("vtkMRMLSequenceNode") if s.GetAttribute("SpineAI.OverlayKind") == "heatmap")
    for i in (0, 13, 29):
        set_frame(ctx, browser, i)
        expected = slicer.util.arrayFromVolume(heat_sequence.GetNthDataNode(i))
        assert np.array_equal(slicer.util.arrayFromVolume(layer), expected)
    # The coarse grid covers the same field of view as the frame.
    frame_bounds, heat_bounds = [0.0] * 6, [0.0] * 6
    cine_proxy.GetRASBounds(frame_bounds)
    layer.GetRASBounds(heat_bounds)
    assert np.allclose(frame_bounds[:4], heat_bounds[:4], atol=0.5 * cine_proxy.GetSpacing()[0] + 1e-6)

    set_heatmap_visible(ctx, layer, True)
    assert composite.GetForegroundVolumeID() == layer.GetID()
    assert composite.GetBackgroundVolumeID() == cine_proxy.GetID()
    set_heatmap_visible(ctx, layer, False)
    assert composite.GetForegroundVolumeID() is None


def test_heat_map_joins_a_cine_indexed_in_seconds(run):
    """Desktop Slicer may hold the cine indexed in seconds: the heat map takes its index values."""
    import slicer

    from SpineAILib import io, results
    from SpineAILib.scene import SceneContext, add_cine, set_frame

    folder, source = run
    ctx = SceneContext.headless()
    cine_sequence, browser, _ = add_cine(ctx, io.load(source), name="US")
    values = [cine_sequence.GetNthIndexValue(i) for i in range(30)]
    for i, value in reversed(list(enumerate(values))):  # ms -> s, from the end so values never collide
        cine_sequence.UpdateIndexValue(value, f"{float(value) / 1000 + 1000:.6f}")
    cine_sequence.SetIndexUnit("s")
    (layer,) = results.heatmap_layers(ctx, results.load_results(ctx, folder))
    heat_sequence = next(s for s in ctx.nodes("vtkMRMLSequenceNode") if s.GetAttribute("SpineAI.OverlayKind") == "heatmap")
    assert heat_sequence.GetNthIndexValue(5) == cine_sequence.GetNthIndexValue(5)
    set_frame(ctx, browser, 17)
    assert np.array_equal(slicer.util.arrayFromVolume(layer), slicer.util.arrayFromVolume(heat_sequence.GetNthDataNode(17)))


def test_review_of_other_folders(tmp_path, run):
    from SpineAILib.workflows.ultrasound.review import CineReview

    assert CineReview.from_folder(tmp_path) is None  # another task's results: no review
    (tmp_path / "frames.tsv").write_text("frame\ttime_ms\n0\t0\n")
    message = one_line_error(CineReview.from_folder, tmp_path)
    assert "not an lp-ultrasound frame table" in message and "p_csf" in message

    # A run without CSF anywhere: Best frame goes to the most usable frame.
    folder, _ = run
    copy = tmp_path / "no-csf"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("*.mrb", "*.nrrd", "*.png"))
    report = json.loads((copy / "report.json").read_text())
    report["results"]["best_frames"] = []
    (copy / "report.json").write_text(json.dumps(report))
    review = CineReview.from_folder(copy)
    index, message = review.next_best(None)
    assert index == int(np.argmin(review.probabilities["bad_quality"]))
    assert message.startswith(f"no frame with CSF called: most usable frame {index + 1}")
    assert review.timeline is None and review.heatmap is None and review.timeline_data_url() == ""


# ---------------------------------------------------------------------------- heat-map grid


def _square_to_frame(square_map, frame_shape, box, pre):
    """Reference mapping: the square resized back over the crop the model saw (0 outside it)."""
    import cv2

    from SpineAILib.workflows.ultrasound.preprocess import centre_crop_box

    r0, r1, c0, c1 = centre_crop_box(box, pre.crop_fraction)
    h, w = r1 - r0, c1 - c0
    out = np.zeros(frame_shape, np.float32)
    if pre.letterbox:
        side = max(h, w)
        big = cv2.resize(square_map, (side, side), interpolation=cv2.INTER_LINEAR)
        top, left = (side - h) // 2, (side - w) // 2
        out[r0:r1, c0:c1] = big[top : top + h, left : left + w]
    else:
        out[r0:r1, c0:c1] = cv2.resize(square_map, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def test_square_to_grid_matches_the_frame_mapping():
    """On the frame's own grid it is the plain resize over the crop; on a coarse grid, its area average."""
    import cv2

    from SpineAILib.workflows.ultrasound.heatmaps import square_to_grid
    from SpineAILib.workflows.ultrasound.preprocess import Preprocessor

    rng = np.random.default_rng(0)
    square = cv2.GaussianBlur(rng.random((128, 128)).astype(np.float32), (0, 0), 6)
    square /= square.max()
    for letterbox in (True, False):
        pre = Preprocessor(size=(128, 128), crop_fraction=0.8, letterbox=letterbox)
        frame_shape, box = (300, 400), (20, 290, 40, 380)
        full = _square_to_frame(square, frame_shape, box, pre)
        own = square_to_grid(square, frame_shape, box, pre, frame_shape)
        assert np.abs(own - full).max() < 0.02
        assert np.array_equal(own > 0, full > 0) or np.mean((own > 0) != (full > 0)) < 0.005
        coarse = square_to_grid(square, frame_shape, box, pre, (60, 80))
        area = cv2.resize(full, (80, 60), interpolation=cv2.INTER_AREA)
        # Away from the crop's edge, where the average mixes in the zeros outside it.
        inner = cv2.resize((full > 0).astype(np.float32), (80, 60), interpolation=cv2.INTER_AREA) == 1
        assert inner.sum() > 1500 and np.abs(coarse[inner] - area[inner]).max() < 0.03


def test_heat_map_budget():
    from SpineAILib.workflows.ultrasound.heatmaps import MAX_SIDE, MIN_SIDE, frames_to_explain, grid_shape

    assert grid_shape((224, 224), 300) == (MAX_SIDE, MAX_SIDE)
    assert grid_shape((480, 640), 300) == (72, 96)  # the frame's aspect
    assert grid_shape((20, 30), 10) == (20, 30)  # never finer than the frame
    long = grid_shape((480, 640), 20000, max_bytes=96 * 1024**2)
    assert MIN_SIDE <= max(long) < MAX_SIDE and 20000 * long[0] * long[1] * 4 <= 96 * 1024**2
    assert grid_shape((480, 640), 10**7) is None
    labels = ["bad_quality", "spinal_cord", "csf"]
    calls = np.zeros((10, 3), int)
    calls[[1, 2, 5, 6, 7], 2] = 1
    calls[0, 0] = 1
    indices, stride = frames_to_explain(calls, labels)
    assert list(indices) == [1, 2, 5, 6, 7] and stride == 1
    indices, stride = frames_to_explain(calls, labels, max_frames=2)
    assert list(indices) == [1, 6] and stride == 3


def test_heat_maps_switched_off(tmp_path):
    """SPINEAI_HEATMAPS=0: no heatmap.seq.nrrd and no heat-map timing; the review still works."""
    if not (BUNDLE / "model.safetensors").is_file():
        pytest.skip(f"bundled model {BUNDLE} is absent")
    from SpineAILib.workflows.ultrasound.review import CineReview
    from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_dicom
    from SpineAILib.tasks import run_task

    path = write_cine_dicom(make_cine_phantom(n_frames=4), tmp_path / "cine.dcm")
    saved = {k: os.environ.get(k) for k in ("SPINEAI_MASKS", "SPINEAI_HEATMAPS")}
    os.environ.update({"SPINEAI_MASKS": "0", "SPINEAI_HEATMAPS": "0"})
    try:
        report = run_task("lp-ultrasound", path, tmp_path / "out", model=BUNDLE, device="cpu")
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    assert not (tmp_path / "out" / "heatmap.seq.nrrd").exists() and "heatmap" not in report["outputs"]
    assert "heatmaps_s" not in report["timings"]
    review = CineReview.from_folder(tmp_path / "out")
    assert review.n_frames == 4 and review.heatmap is None and review.calls_line(3).startswith("frame 4 / 4")
