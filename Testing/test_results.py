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
