"""A cine saved from the scene as a Slicer .seq.nrrd reads back as the same Cine.

This is the path the desktop module uses to hand a cine to the command line.
"""

import numpy as np
import pytest

from SpineAILib.io import input_kind, load
from SpineAILib.samples.cine_phantom import make_cine_phantom


@pytest.mark.parametrize("color", [False, True])
def test_sequence_file_round_trip(tmp_path, color):
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.sequences import add_cine
    from SpineAILib.scene.storage import save_node

    cine = make_cine_phantom(n_frames=6, rows=40, cols=56, color=color, frame_time_ms=40.0, pixel_spacing=(0.25, 0.3))
    ctx = SceneContext.headless()  # keep the scene alive while its nodes are used
    sequence, _, _ = add_cine(ctx, cine, name="cine")
    path = save_node(sequence, tmp_path / "cine.seq.nrrd") or tmp_path / "cine.seq.nrrd"
    assert input_kind(path) == "sequence"
    back = load(path)
    assert back.n_frames == 6 and back.is_color == cine.is_color
    np.testing.assert_array_equal(back.frames, cine.frames)
    np.testing.assert_allclose(back.frame_times_ms, cine.frame_times_ms, atol=1e-3)
    np.testing.assert_allclose(back.pixel_spacing, (0.25, 0.3), atol=1e-9)
    assert back.warnings == []
