"""Arrays <-> MRML nodes with slicer-core, saved with Slicer's storage nodes and read back."""

import json
import zipfile

import nibabel as nib
import numpy as np
import pytest
from conftest import require

from SpineAILib import terminology
from SpineAILib.errors import InputError, OutputError
from SpineAILib.images import Cine, VolumeImage
from SpineAILib.scene import (
    LABEL_VALUE_TAG,
    SceneContext,
    add_cine,
    add_points,
    add_roi,
    add_segmentation_from_labelmap,
    add_table,
    add_volume,
    cine_from_sequence,
    labelmap_from_segmentation,
    load_node,
    load_scene_mrb,
    points_from_node,
    right_handed,
    roi_geometry,
    save_node,
    save_scene_mrb,
    set_frame,
    table_to_columns,
    volume_image_from_node,
)
from SpineAILib.scene.segmentations import get_tag

OBLIQUE = np.array(
    [[0.7, 0.1, 0.0, 10.5], [0.0, 0.8, 0.3, -5.25], [0.05, 0.0, 2.5, 3.0], [0.0, 0.0, 0.0, 1.0]]
)  # right-handed (det > 0), non-orthogonal, anisotropic


@pytest.fixture
def ctx():
    return SceneContext.headless()


def synthetic_labels():
    voxels = np.zeros((12, 14, 16), np.int64)  # int64, as NIfTI readers return labels
    voxels[1:5, 2:7, 3:9] = 20  # L1
    voxels[6:10, 2:7, 3:9] = 22  # L3
    voxels[2:4, 9:12, 10:14] = 100  # unknown number
    return VolumeImage(voxels=voxels, ijk_to_ras=OBLIQUE, is_labelmap=True)


def synthetic_cine(color=False, n=8):
    rows, cols = 30, 40
    frames = np.zeros((n, rows, cols), np.uint8)
    for i in range(n):
        frames[i] = 10 * i + 5
        frames[i, 2 + 3 * i : 5 + 3 * i, 4:12] = 255  # a bar moving down, distinct per frame
    if color:
        frames = np.stack([frames, 255 - frames, frames // 2], axis=-1)
    return Cine(frames=frames, frame_times_ms=np.arange(n) * 33.3, pixel_spacing=(0.25, 0.4))


def mri_lumbar(shared_data, case="vb3_01"):
    image = nib.load(require(shared_data / "mri_lumbar" / f"{case}.nii.gz"))
    labels = nib.load(require(shared_data / "mri_lumbar" / f"{case}_labels.nii.gz"))
    volume = VolumeImage(np.asarray(image.dataobj).transpose(2, 1, 0), image.affine, modality="MR")
    labelmap = VolumeImage(np.asarray(labels.dataobj).transpose(2, 1, 0), labels.affine, is_labelmap=True)
    return volume, labelmap


def no_temp_files(folder):
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


# -- terminology ---------------------------------------------------------------


def test_vertebra_numbers_and_names():
    assert [terminology.vertebra_name(n) for n in (1, 7, 8, 19, 20, 24, 25, 26, 28)] == [
        "C1", "C7", "T1", "T12", "L1", "L5", "L6", "S1", "T13"
    ]  # fmt: skip
    assert terminology.vertebra_number("L1") == 20
    assert terminology.vertebra_number("l5 vertebra") == 24
    assert terminology.vertebra_number("vertebrae_T12") == 19
    with pytest.raises(KeyError):
        terminology.vertebra_name(27)
    assert terminology.DISC_LEVELS == ["L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"]


def test_label_info_colours_and_terminology():
    import slicer

    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    colors = set()
    for name in terminology.known_labels():
        info = terminology.label_info(name)
        assert info["name"] == name
        assert len(info["color"]) == 3 and all(0 <= c <= 1 for c in info["color"])
        colors.add(info["color"])
        entry = slicer.vtkSlicerTerminologyEntry()
        assert logic.DeserializeTerminologyEntry(info["terminology"], entry), name
        # Our string is exactly what Slicer itself serialises for that entry.
        assert slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(entry) == info["terminology"]
    assert len(colors) == len(terminology.known_labels())  # every label its own colour
    l1 = terminology.label_info(20)
    assert l1["name"] == "L1" and l1["number"] == 20
    assert "SCT^123037004^Anatomical Structure~SCT^66794005^L1 vertebra" in l1["terminology"]
    assert "SCT^54735007^Sacrum" in terminology.label_info("S1")["terminology"]
    assert "Level of L5/S1 intervertebral disc" in terminology.label_info("L5/S1")["terminology"]
    assert "SCT^2748008^Spinal cord" in terminology.label_info("spinal_cord")["terminology"]
    assert terminology.label_info("something else")["terminology"] is None


# -- volumes -------------------------------------------------------------------


def test_add_volume_is_exactly_invertible(ctx):
    rng = np.random.default_rng(0)
    image = VolumeImage(rng.integers(-1024, 2000, (5, 6, 7)).astype(np.int16), OBLIQUE, modality="CT")
    node = add_volume(ctx, image, name="ct")
    assert node.GetClassName() == "vtkMRMLScalarVolumeNode" and node.GetName() == "ct"
    back = volume_image_from_node(node)
    assert back.voxels.dtype == np.int16 and np.array_equal(back.voxels, image.voxels)
    assert np.array_equal(back.ijk_to_ras, image.ijk_to_ras)
    assert back.modality == "CT" and not back.is_labelmap
    display = node.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (1000.0, 400.0)  # bone preset for HU data

    mr = add_volume(ctx, VolumeImage(rng.random((4, 5, 6)).astype(np.float32), np.eye(4), modality="MR"))
    assert mr.GetDisplayNode().GetAutoWindowLevel()

    labels = add_volume(ctx, synthetic_labels())
    assert labels.GetClassName() == "vtkMRMLLabelMapVolumeNode"
    back = volume_image_from_node(labels)
    assert back.is_labelmap and back.voxels.dtype == np.int32  # VTK cannot show int64; values kept
    assert np.array_equal(back.voxels, synthetic_labels().voxels)


def test_volume_nrrd_save_and_reload(ctx, tmp_path):
    rng = np.random.default_rng(1)
    image = VolumeImage(rng.integers(0, 4000, (6, 7, 8)).astype(np.uint16), OBLIQUE, modality="CT")
    path = save_node(add_volume(ctx, image, name="ct"), tmp_path / "ct.nrrd")
    assert path.is_file() and not no_temp_files(tmp_path)
    back = volume_image_from_node(load_node(SceneContext.headless(), path))
    assert back.voxels.dtype == np.uint16 and np.array_equal(back.voxels, image.voxels)
    np.testing.assert_allclose(back.ijk_to_ras, image.ijk_to_ras, rtol=0, atol=1e-12)

    # Left-handed IJK (as vb3 MRI has): Slicer's reader reverses the slice order; the
    # physical image is the same. (NIfTI keeps orthogonal directions only.)
    c, s = np.cos(0.3), np.sin(0.3)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    left_matrix = np.eye(4)
    left_matrix[:3, :3] = rotation @ np.diag([0.5, 0.75, -2.0])
    left_matrix[:3, 3] = (4.0, -3.0, 12.0)
    left = VolumeImage(image.voxels, left_matrix)
    path = save_node(add_volume(ctx, left, name="left"), tmp_path / "left.nii.gz")
    back = volume_image_from_node(load_node(SceneContext.headless(), path))
    expected = right_handed(left)
    assert np.array_equal(back.voxels, expected.voxels)
    np.testing.assert_allclose(back.ijk_to_ras, expected.ijk_to_ras, atol=1e-5)  # NIfTI stores float32


def test_labelmap_reload_as_labelmap(ctx, tmp_path):
    path = save_node(add_volume(ctx, synthetic_labels(), name="labels"), tmp_path / "labels.nrrd")
    node = load_node(ctx, path, kind="labelmap")
    assert node.GetClassName() == "vtkMRMLLabelMapVolumeNode"
    assert np.array_equal(volume_image_from_node(node).voxels, synthetic_labels().voxels)


# -- segmentations ---------------------------------------------------------------


def segments(node):
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]


def test_segmentation_from_synthetic_labels(ctx, tmp_path):
    labelmap = synthetic_labels()
    reference = add_volume(ctx, VolumeImage(np.zeros(labelmap.voxels.shape, np.int16), OBLIQUE), name="ref")
    before = ctx.scene.GetNumberOfNodes()
    seg = add_segmentation_from_labelmap(ctx, labelmap, label_names={100: "csf"}, reference_node=reference)
    # Only the segmentation and its display node stay (temporary label map removed).
    assert ctx.scene.GetNumberOfNodes() == before + 2
    assert [s.GetName() for s in segments(seg)] == ["L1", "L3", "csf"]
    assert [get_tag(s, LABEL_VALUE_TAG) for s in segments(seg)] == ["20", "22", "100"]
    for segment in segments(seg):
        info = terminology.label_info(segment.GetName())
        np.testing.assert_allclose(segment.GetColor(), info["color"])
        assert segment.GetTerminology() == info["terminology"]
    assert seg.GetSegmentation().ContainsRepresentation("Closed surface")

    back = labelmap_from_segmentation(ctx, seg, labelmap)
    assert np.array_equal(back.voxels, labelmap.voxels) and back.is_labelmap
    assert ctx.scene.GetNumberOfNodes() == before + 2  # export leaves nothing behind

    path = save_node(seg, tmp_path / "labels.seg.nrrd")
    fresh = SceneContext.headless()
    loaded = load_node(fresh, path)
    assert loaded.GetClassName() == "vtkMRMLSegmentationNode"
    assert [s.GetName() for s in segments(loaded)] == ["L1", "L3", "csf"]
    assert np.array_equal(labelmap_from_segmentation(fresh, loaded, labelmap).voxels, labelmap.voxels)


@pytest.mark.realdata
def test_segmentation_of_real_lumbar_labels(shared_data, ctx, tmp_path):
    volume, labelmap = mri_lumbar(shared_data)
    volume_node = add_volume(ctx, volume, name="vb3_01")
    seg = add_segmentation_from_labelmap(ctx, labelmap, reference_node=volume_node, name="vertebrae")
    names = [s.GetName() for s in segments(seg)]
    assert names == ["L1", "L2", "L3", "L4", "L5"]
    for segment in segments(seg):
        info = terminology.label_info(segment.GetName())
        np.testing.assert_allclose(segment.GetColor(), info["color"])
        assert f"{segment.GetName()} vertebra" in segment.GetTerminology()
        assert get_tag(segment, LABEL_VALUE_TAG) == str(info["number"])

    path = save_node(seg, tmp_path / "vertebrae.seg.nrrd")
    assert not no_temp_files(tmp_path)
    header = path.read_bytes()[:20000].decode("latin-1")
    assert "Segment0_Name:=L1" in header and "66794005^L1 vertebra" in header

    fresh = SceneContext.headless()
    loaded = load_node(fresh, path)
    assert [s.GetName() for s in segments(loaded)] == names
    for a, b in zip(segments(seg), segments(loaded)):
        np.testing.assert_allclose(a.GetColor(), b.GetColor(), atol=1e-6)
        assert a.GetTerminology() == b.GetTerminology()
    back = labelmap_from_segmentation(fresh, loaded, volume)
    assert back.voxels.shape == labelmap.voxels.shape
    assert np.array_equal(back.voxels, labelmap.voxels)  # voxel for voxel


# -- markups and tables -------------------------------------------------------------


def test_markups_points_and_roi_roundtrip(ctx, tmp_path):
    discs = [("L1/L2", (1.5, -20.25, 30.125)), ("L2/L3", (2.0, -21.0, 0.0)), ("L5/S1", (0.0, 0.0, -95.5))]
    points = add_points(ctx, "discs", discs, locked=True)
    assert points.GetClassName() == "vtkMRMLMarkupsFiducialNode"
    assert points_from_node(points) == discs
    axes = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    roi = add_roi(ctx, "canal box", (10.0, 20.0, 30.0), (40.0, 50.0, 60.0), label="canal", axes=axes)
    assert roi.GetClassName() == "vtkMRMLMarkupsROINode"

    points_path = save_node(points, tmp_path / "discs.mrk.json")
    roi_path = save_node(roi, tmp_path / "roi.mrk.json")
    assert json.loads(points_path.read_text())["markups"][0]["controlPoints"][0]["label"] == "L1/L2"

    fresh = SceneContext.headless()
    loaded = load_node(fresh, points_path)
    assert loaded.GetClassName() == "vtkMRMLMarkupsFiducialNode" and loaded.GetLocked()
    got = points_from_node(loaded)
    assert [label for label, _ in got] == [label for label, _ in discs]
    np.testing.assert_allclose([xyz for _, xyz in got], [xyz for _, xyz in discs], atol=1e-9)

    loaded_roi = load_node(fresh, roi_path)
    assert loaded_roi.GetClassName() == "vtkMRMLMarkupsROINode"
    geometry = roi_geometry(loaded_roi)
    np.testing.assert_allclose(geometry["center"], (10.0, 20.0, 30.0), atol=1e-9)
    np.testing.assert_allclose(geometry["size"], (40.0, 50.0, 60.0), atol=1e-9)
    np.testing.assert_allclose(geometry["axes"], axes, atol=1e-9)
    assert points_from_node(loaded_roi)[0][0] == "canal"


def test_table_roundtrip_keeps_types(ctx, tmp_path):
    columns = {
        "level": ["L1/L2", "L2/L3", "L3/L4"],
        "index": [1, 2, 3],
        "big": [2**40, 0, -1],
        "height_mm": [10.5, None, 7.25],
        "narrow": [True, False, True],
    }
    node = add_table(ctx, "measurements", columns)
    path = save_node(node, tmp_path / "measurements.tsv")
    assert (tmp_path / "measurements.schema.tsv").is_file() and not no_temp_files(tmp_path)
    back = table_to_columns(load_node(SceneContext.headless(), path))
    assert list(back) == list(columns)
    assert back["level"] == columns["level"] and back["index"] == [1, 2, 3] and back["big"] == columns["big"]
    assert all(type(v) is int for v in back["index"]) and back["narrow"] == [True, False, True]
    assert back["height_mm"][0] == 10.5 and np.isnan(back["height_mm"][1]) and back["height_mm"][2] == 7.25
    with pytest.raises(ValueError):
        add_table(ctx, "bad", {"a": [1, 2], "b": [1]})


# -- cines ---------------------------------------------------------------------------


@pytest.mark.parametrize("color", [False, True])
def test_cine_sequence_browser_and_proxy(ctx, tmp_path, color):
    cine = synthetic_cine(color=color)
    sequence, browser, proxy = add_cine(ctx, cine, name="cine")
    assert sequence.GetNumberOfDataNodes() == 8
    assert (sequence.GetIndexName(), sequence.GetIndexUnit()) == ("time", "ms")
    assert [float(sequence.GetNthIndexValue(i)) for i in range(8)] == pytest.approx(list(cine.frame_times_ms))
    assert browser.GetPlaybackRateFps() == pytest.approx(1000 / 33.3)
    assert proxy.GetClassName() == ("vtkMRMLVectorVolumeNode" if color else "vtkMRMLScalarVolumeNode")
    import slicer

    for index in (0, 5, 2, 7):
        shown = set_frame(ctx, browser, index)
        assert shown is proxy  # one proxy node, its content replaced
        assert np.array_equal(slicer.util.arrayFromVolume(proxy)[0], cine.frames[index])
    with pytest.raises(IndexError):
        set_frame(ctx, browser, 8)
    # Pixel spacing on the frame geometry: columns along I, rows along J.
    np.testing.assert_allclose(proxy.GetSpacing(), (0.4, 0.25, 1.0))

    back = cine_from_sequence(sequence)
    assert np.array_equal(back.frames, cine.frames)
    np.testing.assert_allclose(back.frame_times_ms, cine.frame_times_ms, atol=1e-4)
    assert back.pixel_spacing == pytest.approx(cine.pixel_spacing)

    path = save_node(sequence, tmp_path / "cine.seq.nrrd")
    reread = cine_from_sequence(load_node(SceneContext.headless(), path))
    assert np.array_equal(reread.frames, cine.frames)
    np.testing.assert_allclose(reread.frame_times_ms, cine.frame_times_ms, atol=1e-4)
    assert reread.pixel_spacing == pytest.approx(cine.pixel_spacing)  # from the frame geometry


# -- whole scene -------------------------------------------------------------------------


def test_scene_mrb_roundtrip(ctx, tmp_path):
    volume = VolumeImage(np.random.default_rng(2).integers(0, 255, (12, 14, 16)).astype(np.uint8), OBLIQUE, modality="MR")
    labelmap = synthetic_labels()
    volume_node = add_volume(ctx, volume, name="mri")
    add_segmentation_from_labelmap(ctx, labelmap, reference_node=volume_node, name="vertebrae")
    add_points(ctx, "discs", [("L1/L2", (1.0, 2.0, 3.0))])
    add_roi(ctx, "box", (0.0, 0.0, 0.0), (10.0, 10.0, 10.0))
    add_table(ctx, "measurements", {"level": ["L1"], "value": [1.5]})
    cine = synthetic_cine()
    add_cine(ctx, cine, name="cine")

    path = save_scene_mrb(ctx, tmp_path / "scene.mrb")
    assert path.is_file() and not no_temp_files(tmp_path) and [p.name for p in tmp_path.iterdir()] == ["scene.mrb"]
    names = zipfile.ZipFile(path).namelist()
    assert "scene/scene.mrml" in names
    assert {"scene/Data/cine.seq.nrrd", "scene/Data/vertebrae.seg.nrrd", "scene/Data/discs.mrk.json",
            "scene/Data/measurements.tsv", "scene/Data/mri.nrrd"} <= set(names)  # fmt: skip

    def data_nodes(context):
        return sorted(
            (n.GetClassName(), n.GetName())
            for n in context.nodes()
            if n.IsA("vtkMRMLStorableNode") and not n.IsA("vtkMRMLColorNode") or n.IsA("vtkMRMLSequenceBrowserNode")
        )

    fresh = SceneContext.headless()
    added = load_scene_mrb(fresh, path)
    assert added and data_nodes(fresh) == data_nodes(ctx)

    mri = fresh.scene.GetFirstNodeByName("mri")
    assert np.array_equal(volume_image_from_node(mri).voxels, volume.voxels)
    np.testing.assert_allclose(volume_image_from_node(mri).ijk_to_ras, volume.ijk_to_ras, atol=1e-12)
    assert volume_image_from_node(mri).modality == "MR"  # node attributes travel in the .mrml
    seg = fresh.scene.GetFirstNodeByName("vertebrae")
    assert np.array_equal(labelmap_from_segmentation(fresh, seg, labelmap).voxels, labelmap.voxels)
    sequence = fresh.scene.GetFirstNodeByName("cine")
    if not sequence.IsA("vtkMRMLSequenceNode"):
        sequence = fresh.nodes("vtkMRMLSequenceNode")[0]
    assert np.array_equal(cine_from_sequence(sequence).frames, cine.frames)
    browser = fresh.nodes("vtkMRMLSequenceBrowserNode")[0]
    proxy = set_frame(fresh, browser, 3)
    import slicer

    assert np.array_equal(slicer.util.arrayFromVolume(proxy)[0], cine.frames[3])


# -- errors and other contexts --------------------------------------------------------


def test_save_and_load_errors_are_one_line(ctx, tmp_path):
    node = add_volume(ctx, VolumeImage(np.zeros((2, 3, 4), np.uint8), np.eye(4)), name="v")
    with pytest.raises(OutputError, match=r"saved as \.nrrd") as error:
        save_node(node, tmp_path / "v.mrk.json")
    assert "\n" not in str(error.value)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputError) as error:
        save_node(node, blocker / "sub" / "v.nrrd")
    assert "\n" not in str(error.value) and str(blocker) in str(error.value)
    with pytest.raises(OutputError):
        save_scene_mrb(ctx, tmp_path / "scene.zip")
    with pytest.raises(InputError, match="no such file"):
        load_node(ctx, tmp_path / "missing.nrrd")
    (tmp_path / "x.xyz").write_text("x")
    with pytest.raises(InputError, match="unknown file type"):
        load_node(ctx, tmp_path / "x.xyz")
    (tmp_path / "bad.mrk.json").write_text("{}")
    with pytest.raises(InputError, match="markups"):
        load_node(ctx, tmp_path / "bad.mrk.json")


def test_clear_keeps_a_working_scene(ctx):
    add_volume(ctx, synthetic_labels())
    ctx.clear()
    assert not ctx.nodes("vtkMRMLVolumeNode")
    node = add_volume(ctx, synthetic_labels())  # label colours still there after the clear
    assert node.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeLabels"


def test_from_trame_app_adds_missing_logics():
    from trame_slicer.core import SlicerApp

    app = SlicerApp()
    context = SceneContext.from_trame_app(app)
    assert context.scene is app.scene and context.volumes_logic is app.volumes_logic
    assert context.sequences_logic is not None and context.sequences_logic.GetMRMLScene() is app.scene
    _, browser, proxy = add_cine(context, synthetic_cine(n=3))
    import slicer

    set_frame(context, browser, 2)
    assert np.array_equal(slicer.util.arrayFromVolume(proxy)[0], synthetic_cine(n=3).frames[2])


def test_empty_labelmap_gives_empty_segmentation(ctx):
    empty = VolumeImage(np.zeros((3, 4, 5), np.uint8), OBLIQUE, is_labelmap=True)
    seg = add_segmentation_from_labelmap(ctx, empty)
    assert seg.GetSegmentation().GetNumberOfSegments() == 0
    back = labelmap_from_segmentation(ctx, seg, empty)
    assert back.voxels.shape == (3, 4, 5) and not back.voxels.any()


def test_float_labels_are_accepted_when_whole(ctx):
    labels = synthetic_labels()
    as_float = VolumeImage(labels.voxels.astype(np.float64), labels.ijk_to_ras, is_labelmap=True)
    seg = add_segmentation_from_labelmap(ctx, as_float, closed_surface=False)
    assert np.array_equal(labelmap_from_segmentation(ctx, seg, labels).voxels, labels.voxels)
    with pytest.raises(ValueError, match="non-integer"):
        add_segmentation_from_labelmap(ctx, VolumeImage(as_float.voxels + 0.5, OBLIQUE, is_labelmap=True))
