"""The synthetic infant lumbar-spine ultrasound generator and the seeds' dataset adapter."""

import csv

import cv2
import numpy as np
import pytest

from conftest import one_line_error
from SpineAITraining.ultrasound.dataset import layout_videos, load_seed_layout, split_frames, split_videos
from SpineAITraining.ultrasound.generator import LABELS, MIN_VISIBLE_MM2, VIEWS, generate_cine, write_seed_layout
from SpineAITraining.ultrasound.machines import MACHINES

SMALL = (160, 160)


@pytest.fixture(scope="module")
def cines():
    """One short cine per machine and view (seeded), shared by the checks below."""
    return {(m, v): generate_cine(11 + k, machine=m, view=v, n_frames=10, size=SMALL)
            for k, (m, v) in enumerate((m, v) for m in MACHINES for v in VIEWS)}


def test_api_shapes(cines):
    assert LABELS == ("bad_quality", "spinal_cord", "csf")
    assert len(MACHINES) >= 4 and {"linear_hf", "linear_lf", "curvilinear_a", "curvilinear_b"} <= set(MACHINES)
    assert any(p.is_color for p in MACHINES.values())
    for (m, v), c in cines.items():
        n = c.n_frames
        assert c.machine == m and c.view == v
        assert c.frames.dtype == np.uint8
        assert c.frames.shape == ((n,) + SMALL + (3,) if MACHINES[m].is_color else (n,) + SMALL)
        assert c.labels.shape == (n, 3) and c.labels.dtype == np.uint8
        assert c.cord_masks.shape == c.csf_masks.shape == (n,) + SMALL
        assert c.boxes["spinal_cord"].shape == c.boxes["csf"].shape == (n, 4)
        assert np.all(np.diff(c.frame_times_ms) > 0) and c.frame_times_ms[0] == 0
        assert c.pixel_spacing[0] == pytest.approx(c.pixel_spacing[1]) and 0.05 < c.pixel_spacing[0] < 1.0
        cine = c.to_cine()
        assert cine.n_frames == n and cine.is_color == MACHINES[m].is_color
        assert cine.metadata["machine"] == m


def test_labels_masks_and_boxes_agree(cines):
    for c in cines.values():
        bad = c.labels[:, 0] == 1
        assert not c.labels[bad, 1:].any(), "a bad-quality frame cannot show cord or CSF"
        area = c.pixel_spacing[0] * c.pixel_spacing[1]
        for k, (name, masks) in enumerate((("spinal_cord", c.cord_masks), ("csf", c.csf_masks)), start=1):
            has = masks.reshape(c.n_frames, -1).any(axis=1)
            np.testing.assert_array_equal(has, c.labels[:, k] == 1)
            assert np.all(masks[c.labels[:, k] == 1].reshape(-1, masks[0].size).sum(axis=1) * area >= MIN_VISIBLE_MM2[name] * 0.999)
            boxes = c.boxes[name]
            np.testing.assert_array_equal(np.isnan(boxes).all(axis=1), ~has)
            for i in np.flatnonzero(has):
                rows, cols = np.nonzero(masks[i])
                np.testing.assert_allclose(boxes[i], (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1))
        # cord and CSF never overlap, and lie where the image is drawn
        assert not (c.cord_masks & c.csf_masks).any()
        drawn = (c.frames.max(axis=0) > 0) if c.frames.ndim == 3 else (c.frames.max(axis=(0, 3)) > 0)
        assert not (c.csf_masks.any(axis=0) & ~cv2.dilate(drawn.astype(np.uint8), np.ones((3, 3))).astype(bool)).any()


def test_determinism_by_seed():
    a = generate_cine(5, "curvilinear_a", "transverse", n_frames=6, size=SMALL)
    b = generate_cine(5, "curvilinear_a", "transverse", n_frames=6, size=SMALL)
    c = generate_cine(6, "curvilinear_a", "transverse", n_frames=6, size=SMALL)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.csf_masks, b.csf_masks)
    assert not np.array_equal(a.frames, c.frames)
    assert generate_cine(5, "linear_hf", n_frames=3, size=SMALL).view == generate_cine(5, "linear_hf", n_frames=3, size=SMALL).view


def test_geometry_fan_and_rectangle(cines):
    for (m, v), c in cines.items():
        grey = c.frames if c.frames.ndim == 3 else c.frames.max(axis=3)
        h, w = SMALL
        k = 6
        corners = [grey[:, -k:, :k], grey[:, -k:, -k:], grey[:, :k, :k], grey[:, :k, -k:]]
        if MACHINES[m].geometry == "curvilinear":
            assert all(int(x.max()) == 0 for x in corners), f"{m}: fan corners must be black"
            # the bottom corners of the fan's bounding box are outside the sector too
            rows = np.flatnonzero(grey.max(axis=(0, 2)) > 0)
            cols = np.flatnonzero(grey.max(axis=(0, 1)) > 0)
            bottom = rows.max()
            assert grey[:, bottom - 3:bottom + 1, cols.min() + 8].max() == 0
            # the sector's upper centre holds tissue
            assert grey[:, int(0.2 * h):int(0.3 * h), w // 2 - 5:w // 2 + 5].mean() > 10
        else:
            # the rectangle is filled edge to edge just below the skin
            good = np.flatnonzero(c.labels[:, 0] == 0)
            if len(good):
                band = grey[good][:, int(0.2 * h):int(0.25 * h), :]
                cols = np.flatnonzero(band.mean(axis=(0, 1)) > 8)
                assert cols.max() - cols.min() > 0.8 * w


def test_bad_quality_frames_look_bad():
    c = generate_cine(3, "linear_hf", "sagittal_midline", n_frames=48, size=SMALL)
    kinds = np.array(c.bad_kinds)
    assert set(kinds) - {""} <= {"air", "partial_contact", "motion_blur", "gain_high", "gain_low"}
    for seed in range(40):
        c = generate_cine(seed, "linear_hf", "sagittal_midline", n_frames=16, size=(96, 96))
        kinds = np.array(c.bad_kinds)
        if (kinds == "air").any() and (kinds == "").any():
            break
    means = c.frames.reshape(c.n_frames, -1).mean(axis=1)
    assert means[kinds == "air"].max() < means[kinds == ""].min(), "probe-in-air frames are dark"
    np.testing.assert_array_equal(c.labels[kinds != "", 0], 1)
    np.testing.assert_array_equal(c.labels[kinds == "", 0], 0)


def test_every_label_occurs_across_a_small_set():
    labels = np.concatenate([generate_cine(s, m, n_frames=16, size=(96, 96)).labels
                             for s, m in enumerate(["linear_hf", "curvilinear_b", "linear_lf", "curvilinear_a"] * 2)])
    freq = labels.mean(axis=0)
    assert np.all(freq > 0.05) and np.all(freq < 0.95), freq


def test_unknown_machine_or_view():
    one_line_error(generate_cine, 0, machine="nope")
    one_line_error(generate_cine, 0, view="coronal")


# ---------------------------------------------------------------------------- dataset adapter


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("us") / "ds"
    write_seed_layout(root, n_videos=5, seed=3, frames_per_video=8, size=(96, 96))
    return root


def test_write_load_round_trip(layout):
    with open(layout / "labels.csv") as fh:
        header = next(csv.reader(fh))
    assert header == ["video", "frame_file", "bad_quality", "spinal_cord", "fluid"]
    records = load_seed_layout(layout)
    assert [r.video_id for r in records] == [f"US{i:04d}" for i in range(5)]
    machines = list(MACHINES)
    for i, r in enumerate(records):
        cine = generate_cine(3 * 100003 + i, machine=machines[i % len(machines)], n_frames=8, size=(96, 96))
        assert r.machine == cine.machine and r.view == cine.view
        assert [p.name for p in r.frame_paths] == [f"frame_{k:04d}.png" for k in range(1, 9)]
        np.testing.assert_array_equal(r.labels, cine.labels)
        for k in range(r.n_frames):  # the masks the layout names for each frame
            for paths, truth in ((r.cord_mask_paths, cine.cord_masks[k]), (r.csf_mask_paths, cine.csf_masks[k])):
                mask = cv2.imread(str(paths[k]), cv2.IMREAD_GRAYSCALE) if paths[k] is not None else np.zeros(truth.shape, np.uint8)
                np.testing.assert_array_equal(mask > 0, truth)
    videos = layout_videos(layout)  # what the classifier trains on: the frames as generated
    assert [v.name for v in videos] == [r.video_id for r in records]
    for i, v in enumerate(videos):
        cine = generate_cine(3 * 100003 + i, machine=machines[i % len(machines)], n_frames=8, size=(96, 96))
        np.testing.assert_array_equal(v.frames, cine.frames)
        assert v.labels.dtype == np.uint8 and v.machine == cine.machine and v.split is None
    assert sum(v.n for v in videos) == 40


def _plain_seeds(tmp_path, header, rows, videos=("LPILOT LAT1", "AM12")):
    root = tmp_path / "seeds"
    for v in videos:
        (root / v).mkdir(parents=True)
        for k in (1, 2, 10):  # natural order: 1, 2, 10
            cv2.imwrite(str(root / v / f"{v.replace(' ', '_')}_frame{k}.jpg"), np.full((40, 50, 3), 20 * k, np.uint8))
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return root


def _rows(videos=("LPILOT LAT1", "AM12"), with_video=True, with_folder=False):
    rows = []
    for v in videos:
        for k, lab in zip((10, 1, 2), ((0, 1, 1), (1, 0, 0), (0, 0, 1))):
            name = f"{v.replace(' ', '_')}_frame{k}.jpg"
            name = f"{v}/{name}" if with_folder else name
            rows.append(([v] if with_video else []) + [name, *lab])
    return rows


def test_plain_seeds_csv_loads(tmp_path):
    root = _plain_seeds(tmp_path, ["Video", "Frame File", "Bad Quality", "Spinal Cord", "Fluid"], _rows())
    records = load_seed_layout(root)
    assert [r.video_id for r in records] == ["AM12", "LPILOT LAT1"]
    r = records[1]
    assert [p.name for p in r.frame_paths] == ["LPILOT_LAT1_frame1.jpg", "LPILOT_LAT1_frame2.jpg", "LPILOT_LAT1_frame10.jpg"]
    np.testing.assert_array_equal(r.labels, [[1, 0, 0], [0, 0, 1], [0, 1, 1]])
    assert r.machine is None and not r.has_masks
    am12 = layout_videos(root)[0]  # grey-looking colour frames are read as grey, 30 frames/s without times
    assert am12.name == "AM12" and am12.frames.shape == (3, 40, 50) and am12.labels[0].tolist() == [1, 0, 0]
    np.testing.assert_allclose(am12.times_ms, [0.0, 1000 / 30, 2000 / 30])


@pytest.mark.parametrize("header,with_video,with_folder", [
    (["frame", "bad_quality", "spinal_cord", "csf"], False, False),  # unique names found in the video folders
    (["Image", "BAD QUALITY", "cord", "Spinal Fluid"], False, True),  # video/file paths
])
def test_plain_seeds_other_column_names(tmp_path, header, with_video, with_folder):
    root = _plain_seeds(tmp_path, header, _rows(with_video=with_video, with_folder=with_folder))
    records = load_seed_layout(root)
    assert {r.video_id for r in records} == {"AM12", "LPILOT LAT1"}
    assert all(r.labels.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 1]] for r in records)


def test_dataset_errors(tmp_path):
    root = _plain_seeds(tmp_path, ["video", "frame_file", "bad_quality", "fluid"], [r[:4] for r in _rows()])
    assert "spinal cord" in one_line_error(load_seed_layout, root)
    rows = _rows()
    rows[0][1] = "missing_frame.jpg"
    (root / "labels.csv").unlink()
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video", "frame_file", "bad_quality", "spinal_cord", "fluid"])
        w.writerows(rows)
    assert "missing_frame.jpg" in one_line_error(load_seed_layout, root)
    assert "absent" in one_line_error(load_seed_layout, root)
    one_line_error(load_seed_layout, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    one_line_error(load_seed_layout, tmp_path / "empty")


def _fake_videos(n=12):
    from SpineAITraining.ultrasound.dataset import Video

    rng = np.random.default_rng(0)
    machines = list(MACHINES)
    return [Video(f"v{i}", np.zeros((20 + i, 4, 4), np.uint8), rng.integers(0, 2, (20 + i, 3)).astype(np.uint8),
                  np.arange(20 + i) * 40.0, machines[i % len(machines)]) for i in range(n)]


def test_split_videos_never_shares_a_video():
    videos = _fake_videos()
    split = split_videos(videos, (0.7, 0.15, 0.15), seed=1)
    sets = [{v.name for v in split[k]} for k in ("train", "val", "test")]
    assert all(sets) and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) == {v.name for v in videos}
    assert {k: [v.name for v in vs] for k, vs in split.items()} == {
        k: [v.name for v in vs] for k, vs in split_videos(videos, (0.7, 0.15, 0.15), seed=1).items()}
    by_machine = split_videos(_fake_videos(3 * len(MACHINES)), (0.7, 0.15, 0.15), seed=1)
    for machine in MACHINES:  # stratified: with three videos of each machine, every machine on each side
        assert all(any(v.machine == machine for v in by_machine[k]) for k in ("train", "val", "test"))


def test_split_frames_leaks_videos():
    videos = _fake_videos()
    split = split_frames(videos, (0.7, 0.15, 0.15), seed=0)
    sources = {k: {v.name.split("[")[0] for v in split[k]} for k in split}
    assert sources["train"] & sources["test"], "the frame split puts one video on both sides"
    assert sum(v.n for part in split.values() for v in part) == sum(v.n for v in videos)
    assert all(np.all(np.diff(v.times_ms) > 0) for part in split.values() for v in part)  # time order kept


def test_split_column_is_used_as_given():
    from SpineAITraining.ultrasound.dataset import given_split

    videos = _fake_videos(4)
    assert given_split(videos) is None
    for v, part in zip(videos, ("train", "train", "val", "test")):
        v.split = part
    assert {k: [v.name for v in vs] for k, vs in given_split(videos).items()} == {"train": ["v0", "v1"], "val": ["v2"], "test": ["v3"]}
    videos[3].split = "val"
    assert "no test videos" in one_line_error(given_split, videos)
    videos[3].split = None
    assert "some videos only" in one_line_error(given_split, videos)
