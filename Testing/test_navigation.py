"""A clicked result row finds its place in the scene."""

import numpy as np

from SpineAILib.navigation import locate_row, normalise_level
from SpineAILib.samples.spine_phantom import disc_centres_ras, make_phantom, vertebra_centres_s


def test_level_names_are_normalised():
    assert normalise_level("l4_l5") == "L4/L5"
    assert normalise_level("L5-S1") == "L5/S1"
    assert normalise_level("C2/C3") == "C2/C3"
    assert normalise_level("spinal_canal_stenosis") is None


def test_rows_locate_levels_vertebrae_and_frames():
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.markups import add_points
    from SpineAILib.scene.segmentations import add_segmentation_from_labelmap
    from SpineAILib.terminology import DISC_LEVELS

    ctx = SceneContext.headless()
    _, labels = make_phantom("CT", shape_kji=(48, 64, 64), spacing=(2.0, 2.0, 4.0))
    add_segmentation_from_labelmap(ctx, labels, name="Vertebrae")
    add_points(ctx, "Discs", list(zip(DISC_LEVELS, disc_centres_ras())))

    kind, where = locate_row(ctx, {"level": "l3_l4", "condition": "spinal_canal_stenosis"})
    assert kind == "ras"
    np.testing.assert_allclose(where, disc_centres_ras()[2], atol=1e-6)

    kind, where = locate_row(ctx, {"vertebra": "L2", "p_fracture": "0.1"})
    assert kind == "ras"
    # The L2 body is centred on its S coordinate; the bounds include the spinous process (posterior, lower).
    assert abs(where[2] - vertebra_centres_s()[1]) < 6 and abs(where[0]) < 3

    assert locate_row(ctx, {"frame": "17", "time_ms": "566.7"}) == ("frame", 17)
    assert locate_row(ctx, {"vertebra": "C1"}) is None  # not in this scene
    assert locate_row(ctx, {"note": "nothing to find"}) is None
