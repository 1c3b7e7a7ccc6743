"""Reading a run's output folder back into a scene (web app and desktop module share this)."""

import json

import pytest

from SpineAILib.errors import InputError
from SpineAILib.results import load_results, report_input_path, result_files
from SpineAILib.samples.spine_phantom import disc_centres_ras, make_phantom


def test_results_folder_round_trip(tmp_path):
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.markups import add_points, points_from_node
    from SpineAILib.scene.segmentations import add_segmentation_from_labelmap
    from SpineAILib.scene.storage import save_node
    from SpineAILib.scene.tables import add_table, table_to_columns
    from SpineAILib.terminology import DISC_LEVELS

    _, labels = make_phantom("CT", shape_kji=(20, 32, 32), spacing=(4.0, 4.0, 9.0))
    ctx = SceneContext.headless()
    save_node(add_segmentation_from_labelmap(ctx, labels, name="Vertebrae"), tmp_path / "vertebrae.seg.nrrd")
    save_node(add_points(ctx, "Discs", list(zip(DISC_LEVELS, disc_centres_ras()))), tmp_path / "discs.mrk.json")
    save_node(add_table(ctx, "Levels", {"level": DISC_LEVELS, "p": [0.1] * 5}), tmp_path / "levels.tsv")
    (tmp_path / "report.json").write_text(json.dumps({"input": {"path": str(tmp_path / "gone.nii.gz")}}))

    names = [p.name for p in result_files(tmp_path)]
    assert names == ["vertebrae.seg.nrrd", "discs.mrk.json", "levels.tsv"]  # no .schema.tsv
    assert report_input_path(tmp_path) is None  # the input no longer exists

    fresh = SceneContext.headless()
    nodes = load_results(fresh, tmp_path)
    seg, points, table = nodes
    assert sorted(seg.GetSegmentation().GetNthSegment(i).GetName() for i in range(5)) == ["L1", "L2", "L3", "L4", "L5"]
    assert [label for label, _ in points_from_node(points)] == DISC_LEVELS
    assert table_to_columns(table)["level"] == DISC_LEVELS


def test_folder_without_results_is_refused(tmp_path):
    from SpineAILib.scene.context import SceneContext

    with pytest.raises(InputError, match="no .seg.nrrd"):
        load_results(SceneContext.headless(), tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        load_results(SceneContext.headless(), tmp_path / "missing")


def test_heat_map_files_load_as_hidden_layers_over_their_image(tmp_path):
    """*heatmap.nrrd (a volume, e.g. severity_heatmap.nrrd) and *heatmap.seq.nrrd (per cine frame)
    are heat-map layers: coloured, hidden until toggled, shown over the image they explain."""
    import numpy as np
    import slicer

    from SpineAILib.explain import heatmap_volume
    from SpineAILib.results import heatmap_layers, is_heatmap_file, is_heatmap_layer
    from SpineAILib.samples.cine_phantom import make_cine_phantom
    from SpineAILib.scene.cine_overlays import add_heatmap_sequence
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.overlays import set_heatmap_visible
    from SpineAILib.scene.sequences import add_cine
    from SpineAILib.scene.storage import save_node
    from SpineAILib.scene.tables import add_table
    from SpineAILib.scene.volumes import add_volume

    mri, _ = make_phantom("MR", shape_kji=(12, 30, 24), spacing=(1.0, 1.0, 3.0), plane="sagittal")
    heat = heatmap_volume(np.random.default_rng(0).random((6, 15, 12)), mri)
    made = SceneContext.headless()
    save_node(add_volume(made, heat, name="severity heat"), tmp_path / "severity_heatmap.nrrd")
    save_node(add_table(made, "levels", {"level": ["L4/L5"], "grade": ["Moderate"]}), tmp_path / "levels.tsv")
    cine = make_cine_phantom(n_frames=4, rows=40, cols=50)
    _, browser, _ = add_cine(made, cine, "US")
    sequence, _ = add_heatmap_sequence(made, browser, np.random.default_rng(1).random((4, 8, 10)), show=False, own_grid=True)
    save_node(sequence, tmp_path / "heatmap.seq.nrrd")
    (tmp_path / "ct.nrrd").write_bytes(b"not a result")  # other .nrrd files are inputs, not results

    assert [is_heatmap_file(tmp_path / n) for n in ("severity_heatmap.nrrd", "heatmap.seq.nrrd", "ct.nrrd")] == [True, True, False]
    assert [p.name for p in result_files(tmp_path)] == ["levels.tsv", "heatmap.seq.nrrd", "severity_heatmap.nrrd"]

    # The image and the cine are in the scene already (the front ends load the input first).
    ctx = SceneContext.headless()
    composite = ctx.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    image = add_volume(ctx, mri, name="MRI")
    _, cine_browser, cine_proxy = add_cine(ctx, cine, "US again")
    table, seq_layer, volume_layer = load_results(ctx, tmp_path)
    assert table.IsA("vtkMRMLTableNode")
    assert [n.GetID() for n in heatmap_layers(ctx, [table, seq_layer, volume_layer])] == [seq_layer.GetID(), volume_layer.GetID()]
    assert is_heatmap_layer(ctx, volume_layer) and not is_heatmap_layer(ctx, image)
    assert np.allclose(slicer.util.arrayFromVolume(volume_layer), heat.voxels, atol=1e-6)
    assert composite.GetForegroundVolumeID() is None, "heat maps must load hidden"

    set_heatmap_visible(ctx, volume_layer, True)
    assert composite.GetForegroundVolumeID() == volume_layer.GetID()
    assert composite.GetBackgroundVolumeID() == image.GetID()  # found by its voxel grid
    set_heatmap_visible(ctx, seq_layer, True)
    assert composite.GetForegroundVolumeID() == seq_layer.GetID()
    assert composite.GetBackgroundVolumeID() == cine_proxy.GetID()
    set_heatmap_visible(ctx, seq_layer, False)
    assert composite.GetForegroundVolumeID() is None
    display = volume_layer.GetDisplayNode()
    assert display.GetApplyThreshold() and display.GetColorNode().GetNumberOfColors() >= 256

    # Without its cine in the scene the heat sequence cannot play: it comes back as the bare sequence.
    alone = SceneContext.headless()
    nodes = load_results(alone, tmp_path)
    assert nodes[1].IsA("vtkMRMLSequenceNode") and heatmap_layers(alone, nodes) == [nodes[2]]


def test_report_summary_puts_the_warnings_beside_the_message(tmp_path):
    from SpineAILib.results import report_summary

    assert report_summary(tmp_path) == ""  # no report.json
    (tmp_path / "report.json").write_text("{not json")
    assert report_summary(tmp_path) == ""
    report = {"results": {"message": "5 lumbar vertebra(e) found"},
              "warnings": ["L5/S1 is estimated,\n not measured", "severity grades come from a synthetic model"]}
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert report_summary(tmp_path) == ("5 lumbar vertebra(e) found — 2 warnings: L5/S1 is estimated, not measured | "
                                        "severity grades come from a synthetic model")
    (tmp_path / "report.json").write_text(json.dumps({"results": {}, "warnings": ["thick slices"]}))
    assert report_summary(tmp_path) == "1 warning: thick slices"
