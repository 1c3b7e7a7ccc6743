"""Annotation logic (SpineAILib.annotation): edits, autosave, reopening after a crash, undo/redo,
prefill never replacing a user's edits, the Segment Editor operations on label maps, who/when,
and the case files read back by 3D Slicer's own readers."""

import json
import subprocess
import sys
import textwrap
from datetime import datetime

import numpy as np
import pytest

from conftest import REPO, one_line_error

SPACING = (0.2, 0.25)  # row, col mm


def _cine(n=6, rows=40, cols=60, seed=0):
    from SpineAILib.images import Cine

    rng = np.random.default_rng(seed)
    frames = (rng.random((n, rows, cols)) * 120).astype(np.uint8)
    frames[:, 10:20, 20:40] = 230  # a bright band: what a threshold of 200..255 must find
    return Cine(frames=frames, frame_times_ms=np.arange(n) * 33.3, pixel_spacing=SPACING, modality="US")


def _volume(shape=(12, 20, 24)):
    from SpineAILib.images import VolumeImage

    voxels = np.zeros(shape, np.int16)
    voxels[3:9, 5:15, 6:18] = 500
    m = np.array([[-0.8, 0, 0, 10.0], [0, -0.8, 0, 20.0], [0, 0, 2.0, -30.0], [0, 0, 0, 1]])
    return VolumeImage(voxels=voxels, ijk_to_ras=m, modality="MR")


def _open_cine(tmp_path, **kwargs):
    from SpineAILib.annotation.session import AnnotationSession

    return AnnotationSession.open(tmp_path / "case", image_path=tmp_path / "cine.dcm", task="lp-ultrasound",
                                  image=_cine(), **kwargs)


def _ras(session, i, j, k=0):
    return (session.case.ijk_to_ras @ [i, j, k, 1.0])[:3]


# -- label-map operations ----------------------------------------------------------------------


def test_brush_disk_stroke_sphere_and_tiny_radius():
    from SpineAILib.annotation.labelmap import brush_mask

    m = np.diag([-0.5, -0.5, 3.0, 1.0])
    shape = (5, 80, 80)
    centre = m @ [40, 40, 2, 1]
    region, mask = brush_mask(shape, m, [centre[:3]], 5.0)
    # A disk of radius 5 mm = 10 voxels on the slice of the point, nothing on the others.
    full = np.zeros(shape, bool)
    full[region.slices] = mask
    assert full[2].sum() == pytest.approx(np.pi * 10**2, rel=0.05)
    assert full[[0, 1, 3, 4]].sum() == 0
    # A stroke is a capsule: the two end disks plus the band between them.
    end = m @ [60, 40, 2, 1]
    region, mask = brush_mask(shape, m, [centre[:3], end[:3]], 5.0)
    full[:] = False
    full[region.slices] = mask
    assert full[2].sum() == pytest.approx(np.pi * 100 + 20 * 20, rel=0.05)
    assert full[2, 40, 50] and full[2, 49, 50] and not full[2, 52, 50]
    # A sphere reaches the neighbouring slices (3 mm away: inside a 5 mm radius, 6 mm is not).
    region, mask = brush_mask(shape, m, [centre[:3]], 5.0, sphere=True)
    full[:] = False
    full[region.slices] = mask
    assert full[1].any() and full[3].any() and not full[0].any() and not full[4].any()
    # However small the brush, the voxel under the pointer is painted.
    region, mask = brush_mask(shape, m, [centre[:3]], 0.01)
    assert mask.sum() == 1


def test_threshold_and_islands_on_label_maps():
    from SpineAILib.annotation.labelmap import Region, islands_mask, threshold_mask
    from SpineAILib.morphology import connected_components

    intensity = np.arange(4 * 6 * 8).reshape(4, 6, 8)
    region, inside = threshold_mask(intensity, 50, 60, Region(0, 4, 1, 5, 2, 7))
    expected = (intensity >= 50) & (intensity <= 60)
    assert np.array_equal(inside, expected[region.slices])

    mask = np.zeros((4, 20, 20), bool)
    mask[0, 0:2, 0:2] = True  # 4 voxels
    mask[1, 5:10, 5:9] = True  # 20 voxels ...
    mask[2, 8:9, 8:9] = True  # ... joined through the face below: one island of 21
    mask[0, 15:17, 15:17] = True  # 4 voxels ...
    mask[1, 17:19, 17:19] = True  # ... only a corner away in the next slice: separate islands
    mask[3, 10:20, 0:10] = True  # 100 voxels, the largest
    labels, sizes = connected_components(mask)
    assert sorted(sizes.tolist()) == [4, 4, 4, 21, 100] and labels.max() == 5
    kept = islands_mask(mask, min_voxels=10)
    assert kept.sum() == 121 and kept[2, 8, 8] and not kept[0, 0, 0]
    assert islands_mask(mask, keep_largest=True).sum() == 100


def test_boxes_cover_whole_pixels_like_the_cine_overlays():
    from SpineAILib.images import frame_ijk_to_ras
    from SpineAILib.annotation.labelmap import box_from_corners, box_to_ras, ras_to_box
    from SpineAILib.scene.cine_overlays import box_to_ras as overlay_box_to_ras

    m = frame_ijk_to_ras(SPACING)
    box = box_from_corners((1, 40, 60), m, (m @ [12, 30, 0, 1])[:3], (m @ [5, 8, 0, 1])[:3])
    assert box == (5, 8, 0, 13, 31, 1)
    center, size, axes = box_to_ras(box, m)
    center2, size2 = overlay_box_to_ras((5, 8, 13, 31), m)
    assert np.allclose(center, center2) and np.allclose(size[:2], size2[:2])
    assert ras_to_box(center, size, axes, m) == box
    assert box_from_corners((1, 40, 60), m, (m @ [-20, -5, 0, 1])[:3], (m @ [-2, -1, 0, 1])[:3]) is None


# -- editing a cine --------------------------------------------------------------------------------


def test_frame_labels_masks_boxes_are_saved_after_every_edit(tmp_path, monkeypatch):
    from SpineAILib.annotation.case import load_case

    monkeypatch.setenv("SPINEAI_USER", "alice")
    with _open_cine(tmp_path) as session:
        case = tmp_path / "case"
        session.toggle_label(2, "csf")
        assert "2\t66.6\t0\t0\t1\tuser" in (case / "frames.tsv").read_text()
        session.toggle_label(2, "spinal_cord")
        session.copy_previous_labels(3)
        # Bad quality clears cord and CSF; cord clears bad quality again.
        session.toggle_label(4, "csf")
        session.toggle_label(4, "bad_quality")
        assert session.case.frame_labels(4) == {"bad_quality": 1, "spinal_cord": 0, "csf": 0}
        session.toggle_label(5, "bad_quality")
        session.toggle_label(5, "spinal_cord")
        assert session.case.frame_labels(5) == {"bad_quality": 0, "spinal_cord": 1, "csf": 0}

        session.paint([_ras(session, 30, 20), _ras(session, 40, 22)], "csf", 1.0, frame=2)
        session.paint([_ras(session, 10, 5)], "spinal_cord", 0.6, frame=2)
        session.paint([_ras(session, 10, 5)], "csf", 0.3, frame=2, erase=True)  # erase touches CSF only
        session.set_box(_ras(session, 5, 5), _ras(session, 10, 12), "csf", frame=2)
        session.threshold("spinal_cord", 200, 255, frame=1)
        painted = session.case.mask_of(2).copy()
        assert (painted == 1).sum() > 0 and (painted == 2).sum() > 100

        # Everything is on disk already: a fresh read of the folder (no close, no save call) has it.
        on_disk = load_case(case)
        assert on_disk.frame_labels(2) == {"bad_quality": 0, "spinal_cord": 1, "csf": 1}
        assert on_disk.frame_labels(3) == on_disk.frame_labels(2)
        assert np.array_equal(on_disk.mask_of(2), painted)
        assert np.array_equal(on_disk.mask_of(1)[0], np.where(_cine().frames[1] >= 200, 1, 0))
        assert on_disk.pixel_box(2, "csf") == (5, 5, 11, 13)
        assert sorted(p.name for p in (case / "masks").iterdir()) == ["frame_0001.seg.nrrd", "frame_0002.seg.nrrd"]
        assert on_disk.sources["labels/2"] == "user" and on_disk.sources["mask/2"] == "user"

        # Who / when: every edit logged with the user, an ISO time and the action.
        log = json.loads((case / "annotation.json").read_text())["edits"]
        assert [e["action"] for e in log[:3]] == ["toggle", "toggle", "copy previous"]
        assert all(e["user"] == "alice" for e in log)
        assert all(datetime.fromisoformat(e["time"]).tzinfo is not None for e in log)
        assert log[-1]["action"] == "threshold" and log[-1]["items"] == ["mask/1"]
        assert session.last_edit("labels/3")["action"] == "copy previous"
        assert session.status()["saved"]

        # Wrong calls are refused with one line.
        one_line_error(session.toggle_label, 99, "csf")
        one_line_error(session.toggle_label, 1, "fluid")
        one_line_error(session.copy_previous_labels, 0)
        one_line_error(session.set_point, "L4/L5", (0, 0, 0))


def test_undo_redo_restore_memory_and_files(tmp_path):
    from SpineAILib.annotation.case import load_case
    from SpineAILib.annotation.history import History

    with _open_cine(tmp_path, history=History(max_edits=3)) as session:
        session.toggle_label(1, "csf")
        session.paint([_ras(session, 30, 20)], "csf", 1.0, frame=1)
        session.set_box(_ras(session, 5, 5), _ras(session, 10, 12), "spinal_cord", frame=1)
        assert session.undo() == "box" and session.case.pixel_box(1, "spinal_cord") is None
        assert load_case(session.case.folder).boxes == {}
        assert session.undo() == "paint"
        assert not session.case.mask_of(1).any() and not (session.case.folder / "masks" / "frame_0001.seg.nrrd").exists()
        assert "mask/1" not in session.case.sources  # the item is unset again
        assert session.redo() == "paint" and (session.case.mask_of(1) == 2).sum() > 10
        assert load_case(session.case.folder).masks[1].sum() == session.case.masks[1].sum()
        session.toggle_label(2, "bad_quality")  # a new edit: nothing left to redo
        assert not session.can_redo and session.redo() is None
        session.toggle_label(3, "csf")
        # Bounded: three edits kept, the oldest (frame 1's toggle) cannot be undone any more.
        for _ in range(3):
            assert session.undo() is not None
        assert session.undo() is None and session.case.frame_labels(1)["csf"] == 1
        actions = [e["action"] for e in json.loads((session.case.folder / "annotation.json").read_text())["edits"]]
        assert actions.count("undo") == 5 and actions.count("redo") == 1
        assert not session.case.mask_of(1).any() and session.case.frame_labels(3)["csf"] == 0


def test_undo_keeps_the_last_100_edits_by_default(tmp_path):
    """The README's limit at its real value: a session opened without a history keeps 100 edits."""
    with _open_cine(tmp_path) as session:
        for i in range(101):
            session.toggle_label(i % 6, "csf")  # frame 0's first toggle is edit 1, the one that falls out
        undone = 0
        while session.undo() is not None:
            undone += 1
        assert undone == 100 and not session.can_undo
        # 101 toggles, 100 undone: frame 0 keeps the first toggle only
        assert session.case.frame_labels(0)["csf"] == 1
        assert all(session.case.frame_labels(f)["csf"] == 0 for f in range(1, 6))


def test_undo_keeps_at_most_512_mb_of_mask_blocks_by_default():
    """The 512 MB limit at its real value. The blocks are broadcast arrays: they report their full
    size (what the history counts) without this test allocating it."""
    from SpineAILib.annotation.history import Edit, History, Step

    history = History()  # the default the sessions use
    mb = 1024**2

    def block(megabytes):
        return np.broadcast_to(np.zeros(1, np.uint8), (megabytes * mb,))

    for n in range(3):  # 200 MB each (before + after): the third passes 512 MB, the first goes
        history.push(Edit("paint", [f"mask/{n}"], [Step("mask", (n, None), block(100), block(100))]))
    assert history.nbytes == 400 * mb
    assert [history.take_undo().items for _ in range(2)] == [["mask/2"], ["mask/1"]]
    assert history.take_undo() is None
    # exactly at the limit both edits stay; one byte over, the older one goes
    for extra, kept in ((0, 2), (1, 1)):
        history = History()
        history.push(Edit("paint", ["mask/a"], [Step("mask", (0, None), block(128), block(128))]))
        over = np.broadcast_to(np.zeros(1, np.uint8), (256 * mb + extra,))
        history.push(Edit("paint", ["mask/b"], [Step("mask", (1, None), over, None)]))
        assert history.nbytes == 512 * mb + extra if kept == 2 else history.nbytes == 256 * mb + extra
        assert sum(1 for _ in iter(history.take_undo, None)) == kept
    # a single edit over the limit is still kept (the last edit can always be undone)
    history = History()
    history.push(Edit("paint", ["mask/huge"], [Step("mask", (0, None), block(600), block(600))]))
    assert history.can_undo


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {lib!r})
    import numpy as np
    from SpineAILib.images import Cine
    from SpineAILib.annotation.session import AnnotationSession
    rng = np.random.default_rng(0)
    cine = Cine(frames=(rng.random((6, 40, 60)) * 120).astype(np.uint8), frame_times_ms=np.arange(6) * 33.3,
                pixel_spacing=(0.2, 0.25))
    session = AnnotationSession.open({folder!r}, image_path={image!r}, task="lp-ultrasound", image=cine)
    session.toggle_label(3, "spinal_cord")
    m = session.case.ijk_to_ras
    session.paint([(m @ [20, 20, 0, 1])[:3], (m @ [30, 25, 0, 1])[:3]], "spinal_cord", 1.0, frame=3)
    session.set_box((m @ [1, 2, 0, 1])[:3], (m @ [8, 9, 0, 1])[:3], "csf", frame=3)
    print("edited", flush=True)
    time.sleep(60)  # killed here, mid-session, without close()
""")


def test_reopen_after_a_crash_restores_everything(tmp_path):
    from SpineAILib.annotation.session import AnnotationSession

    folder, image = tmp_path / "case", tmp_path / "cine.dcm"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(lib=str(REPO / "SpineAI"), folder=str(folder),
                                                                 image=str(image))],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "edited"
        # While the child lives the case is its own: a second opener is refused with one line.
        message = one_line_error(AnnotationSession.open, folder)
        assert f"process {child.pid}" in message
    finally:
        child.kill()
        child.wait()
    assert (folder / "annotation.lock").exists()  # left behind by the killed process
    with AnnotationSession.open(folder, image_path=image) as session:  # the stale lock is taken over
        assert session.case.frame_labels(3) == {"bad_quality": 0, "spinal_cord": 1, "csf": 0}
        assert (session.case.mask_of(3) == 1).sum() > 20
        assert session.case.pixel_box(3, "csf") == (1, 2, 9, 10)
        assert [e["action"] for e in session.case.edits] == ["toggle", "paint", "box"]
        session.toggle_label(4, "csf")  # and editing goes on
    assert not (folder / "annotation.lock").exists()


def test_a_folder_is_never_taken_over(tmp_path):
    from SpineAILib.annotation.session import AnnotationSession
    from SpineAILib.errors import OutputError

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    one_line_error(AnnotationSession.open, other, image_path=tmp_path / "cine.dcm", task="lp-ultrasound",
                   image=_cine(), error=OutputError)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    with _open_cine(tmp_path):
        pass
    message = one_line_error(AnnotationSession.open, tmp_path / "case", image_path=tmp_path / "another.dcm")
    assert "annotates" in message
    one_line_error(AnnotationSession.open, tmp_path / "new", image_path=tmp_path / "cine.dcm", task="lumbar-mri",
                   image=_cine())


# -- prefill from a model run ----------------------------------------------------------------------


def _cine_run(folder, calls, masks=None):
    """A fake lp-ultrasound run folder: frames.tsv (+ scene.mrb with mask and box sequences)."""
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"task": "lp-ultrasound"}))
    lines = ["frame\ttime_ms\tp_bad_quality\tp_spinal_cord\tp_csf\tbad_quality\tspinal_cord\tcsf"]
    lines += [f"{i}\t{i * 33.3:.1f}\t0.1\t0.9\t0.9\t{a}\t{b}\t{c}" for i, (a, b, c) in enumerate(calls)]
    (folder / "frames.tsv").write_text("\n".join(lines) + "\n")
    if masks is not None:
        from SpineAILib.scene import SceneContext, add_cine, save_scene_mrb
        from SpineAILib.scene.cine_overlays import add_localisation_overlays

        ctx = SceneContext.headless()
        _, browser, _ = add_cine(ctx, _cine(), "cine")
        add_localisation_overlays(ctx, browser, masks)
        save_scene_mrb(ctx, folder / "scene.mrb")
    return folder


def test_prefill_from_a_run_never_replaces_user_edits(tmp_path):
    from SpineAILib.annotation.case import load_case

    n, shape = 6, (6, 40, 60)
    cord = np.zeros(shape, bool)
    cord[:, 5:10, 5:15] = True
    csf = np.zeros(shape, bool)
    csf[:, 20:25, 30:40] = True
    boxes = {"spinal_cord": np.tile(np.array([[5, 5, 15, 10]], np.float32), (n, 1)),
             "csf": np.full((n, 4), np.nan, np.float32)}
    run = _cine_run(tmp_path / "run1", [(0, 1, 1)] * n, {"cord_masks": cord, "csf_masks": csf, "boxes": boxes})
    with _open_cine(tmp_path) as session:
        session.toggle_label(2, "bad_quality")  # the user's frame 2
        session.paint([_ras(session, 50, 35)], "csf", 0.5, frame=3)  # the user's mask on frame 3
        users_mask = session.case.mask_of(3).copy()
        summary = session.prefill(run)
        assert summary["kept"] == 2 and not summary["warnings"], summary
        case = load_case(session.case.folder)
        assert case.frame_labels(2) == {"bad_quality": 1, "spinal_cord": 0, "csf": 0}
        assert case.frame_labels(0) == {"bad_quality": 0, "spinal_cord": 1, "csf": 1}
        assert case.sources["labels/0"] == "model" and case.sources["labels/2"] == "user"
        assert np.array_equal(case.mask_of(3), users_mask)
        expected = np.zeros((1, 40, 60), np.uint8)
        expected[0][cord[0]] = 1
        expected[0][csf[0]] = 2
        assert np.array_equal(case.mask_of(0), expected)
        assert case.pixel_box(1, "spinal_cord") == (5, 5, 15, 10) and case.pixel_box(1, "csf") is None

        # A later run replaces the model's items, still not the user's; the user confirming
        # a model frame (C copies, or a toggle) makes it theirs.
        session.copy_previous_labels(1)
        run2 = _cine_run(tmp_path / "run2", [(1, 0, 0)] * n)
        summary = session.prefill(run2)
        assert summary["kept"] == 2  # frames 1 and 2 (run2 proposes labels only)
        assert session.case.frame_labels(0)["bad_quality"] == 1
        assert session.case.frame_labels(1) == {"bad_quality": 0, "spinal_cord": 1, "csf": 1}
        assert session.case.frame_labels(2)["bad_quality"] == 1
        # One undo takes a whole prefill back.
        assert session.undo() == "prefill" and session.case.frame_labels(0)["bad_quality"] == 0
        prefills = json.loads((session.case.folder / "annotation.json").read_text())["prefills"]
        assert [p["folder"] for p in prefills] == [str(run), str(run2)]
        # A run of another task is refused.
        (run2 / "report.json").write_text(json.dumps({"task": "lumbar-mri"}))
        one_line_error(session.prefill, run2)


def test_mri_points_masks_severity_and_prefill(tmp_path):
    from SpineAILib.annotation.case import load_case
    from SpineAILib.annotation.session import AnnotationSession
    from SpineAILib.scene import SceneContext, add_points, add_segmentation_from_labelmap, save_node

    image = _volume()
    # The run's files written by Slicer's own writers (cropped .seg.nrrd, markups JSON).
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"task": "lumbar-mri"}))
    labels = np.zeros(image.voxels.shape, np.uint8)
    labels[3:6, 5:15, 6:18] = 23  # L4
    labels[6:9, 5:15, 6:18] = 24  # L5
    ctx = SceneContext.headless()
    from SpineAILib.images import VolumeImage

    seg = add_segmentation_from_labelmap(ctx, VolumeImage(voxels=labels, ijk_to_ras=image.ijk_to_ras, is_labelmap=True),
                                         closed_surface=False)
    save_node(seg, run / "vertebrae.seg.nrrd")
    save_node(add_points(ctx, "discs", [("L3/L4", (1.0, 2.0, 3.0)), ("L4/L5", (4.0, 5.0, 6.0))]), run / "discs.mrk.json")
    (run / "severity.tsv").write_text("level\tcondition\tgrade\tassessed\n"
                                      "L4/L5\tspinal_canal_stenosis\tModerate\t1\n"
                                      "L3/L4\tspinal_canal_stenosis\tSevere\t1\n"
                                      "L5/S1\tspinal_canal_stenosis\tnot assessed\t0\n")

    with AnnotationSession.open(tmp_path / "case", image_path=tmp_path / "t2.nii.gz", task="lumbar-mri",
                                image=image) as session:
        session.set_point("L4/L5", (9.0, 9.0, 9.0))
        session.set_severity("L3/L4", "spinal_canal_stenosis", "Normal/Mild")
        summary = session.prefill(run)
        assert summary["kept"] == 2
        case = load_case(session.case.folder)
        assert np.array_equal(case.mask, labels)
        assert case.points == {"L3/L4": (1.0, 2.0, 3.0), "L4/L5": (9.0, 9.0, 9.0)}
        assert case.severity == {("L4/L5", "spinal_canal_stenosis"): "Moderate",
                                 ("L3/L4", "spinal_canal_stenosis"): "Normal/Mild"}
        # Correcting the masks: erase part of L5 on one sagittal... here axial slice, paint L3.
        centre = image.ras_of_ijk([12, 10, 7])
        session.paint([centre], "L5", 2.0, erase=True)
        session.paint([image.ras_of_ijk([12, 10, 1])], "L3", 1.0)
        case = load_case(session.case.folder)
        assert (case.mask == 22).sum() > 0 and (case.mask == 24).sum() < (labels == 24).sum()
        assert case.sources["mask"] == "user"
        # Now the user's masks are theirs: a prefill leaves them alone.
        session.prefill(run)
        assert np.array_equal(load_case(session.case.folder).mask, case.mask)
        rows = (session.case.folder / "severity.tsv").read_text().splitlines()
        assert len(rows) == 26 and "L3/L4\tspinal_canal_stenosis\tNormal/Mild\tuser" in rows


def test_ct_fractures_and_boxes(tmp_path):
    from SpineAILib.annotation.case import load_case
    from SpineAILib.annotation.session import AnnotationSession

    image = _volume()
    with AnnotationSession.open(tmp_path / "case", image_path=tmp_path / "ct.nii.gz", task="cervical-ct",
                                image=image) as session:
        session.set_fracture("C3", True)
        session.set_fracture("C5", False)
        session.set_box(image.ras_of_ijk([4, 5, 6]), image.ras_of_ijk([10, 12, 6]), "C3")
        session.paint([image.ras_of_ijk([12, 10, 4])], "C3", 1.5)
        case = load_case(session.case.folder)
        assert case.fractures == {"C3": 1, "C5": 0}
        assert case.boxes == {(None, "C3"): (4, 5, 6, 11, 13, 7)}
        table = (session.case.folder / "fractures.tsv").read_text().splitlines()
        assert table[0] == "vertebra\tfractured\tsource" and "C3\t1\tuser" in table and "C1\t\t" in table
        assert table[-1] == "patient_overall\t1\t"
        one_line_error(session.set_fracture, "X9", True)


# -- the files in 3D Slicer --------------------------------------------------------------------------


def test_case_files_open_in_slicer_and_segment_editor_round_trip(tmp_path):
    from SpineAILib.annotation.scene_view import CaseLayers, editable_segmentation, segmentation_labels
    from SpineAILib.scene import SceneContext, load_node, roi_geometry
    from SpineAILib.scene.segmentations import LABEL_VALUE_TAG, get_tag

    with _open_cine(tmp_path) as session:
        session.paint([_ras(session, 30, 20), _ras(session, 40, 22)], "csf", 1.0, frame=2)
        session.paint([_ras(session, 10, 5)], "spinal_cord", 0.6, frame=2)
        session.set_box(_ras(session, 5, 5), _ras(session, 10, 12), "csf", frame=2)
        ctx = SceneContext.headless()
        seg = load_node(ctx, session.case.folder / "masks" / "frame_0002.seg.nrrd")
        segmentation = seg.GetSegmentation()
        names = {segmentation.GetNthSegment(i).GetName(): get_tag(segmentation.GetNthSegment(i), LABEL_VALUE_TAG)
                 for i in range(segmentation.GetNumberOfSegments())}
        assert names == {"spinal_cord": "1", "csf": "2"}
        roi = load_node(ctx, session.case.folder / "boxes.mrk.json")
        geometry = roi_geometry(roi)
        center, size, _ = session.case.box_geometry(2, "csf")
        assert np.allclose(geometry["center"], center) and np.allclose(geometry["size"], size)
        assert roi.GetNthControlPointLabel(0) == "csf" and roi.GetNthControlPointDescription(0) == "frame 2"

        # What the desktop module does: Segment Editor on a segmentation, read back into the session.
        edited = editable_segmentation(ctx, session.case, frame=4)  # an empty frame still offers both segments
        assert edited.GetSegmentation().GetNumberOfSegments() == 2
        edited = editable_segmentation(ctx, session.case, frame=2, node=edited)
        labels = segmentation_labels(ctx, edited, session.case)
        assert np.array_equal(labels, session.case.mask_of(2))
        labels[0, 30:35, 50:55] = 1
        session.set_mask(labels, frame=2)
        assert (session.case.mask_of(2)[0, 30:35, 50:55] == 1).all()
        assert session.last_edit()["action"] == "segment editor"

        # The web app's layers: the label map shows exactly the frame's mask; boxes as ROIs.
        layers = CaseLayers(ctx, session.case)
        layers.show(frame=2)
        import slicer

        assert np.array_equal(slicer.util.arrayFromVolume(layers.label_node), session.case.mask_of(2))
        assert set(layers.box_nodes) == {"csf"}
        layers.show(frame=3)
        assert not layers.box_nodes and not slicer.util.arrayFromVolume(layers.label_node).any()
        layers.remove()
        assert not [n for n in ctx.nodes("vtkMRMLNode") if n.GetAttribute("SpineAI.Annotation")]


def test_keymap():
    from SpineAILib.annotation.keys import action_for

    assert action_for("ArrowRight") == ("frame", 1) and action_for("ArrowLeft") == ("frame", -1)
    assert action_for("1") == action_for("q") == action_for("Q") == ("toggle", "bad_quality")
    assert action_for("w") == ("toggle", "spinal_cord") and action_for("3") == ("toggle", "csf")
    assert action_for("c") == ("copy_previous", None)
    assert action_for("z", ctrl=True) == ("undo", None)
    assert action_for("y", ctrl=True) == action_for("Z", ctrl=True, shift=True) == ("redo", None)
    assert action_for("z") is None and action_for("x") is None
