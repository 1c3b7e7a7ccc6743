"""The disc-point tool's choice of level (``annotate_logic.nearest_disc_level``): a click within
10 mm of another level's point moves that point (the nearest one), not the selected level's; a
click that moves the selected level's point by more than 20 mm says so (Ctrl+Z takes it back)."""

import numpy as np
import pytest

from SpineAILib.web.logic.annotate_logic import POINT_SNAP_MM, nearest_disc_level


def _at(mm_along_s):
    """A point on a vertical line through the spine, ``mm_along_s`` up (S) from the origin."""
    return (0.0, 0.0, float(mm_along_s))


def test_snap_distance_is_ten_millimetres():
    assert POINT_SNAP_MM == 10.0


def test_nothing_placed_places_the_selected_level():
    assert nearest_disc_level({}, "L4/L5", _at(0)) == ("L4/L5", "")


def test_click_near_another_levels_point_moves_that_point():
    placed = {"L3/L4": _at(40), "L4/L5": _at(0)}
    level, note = nearest_disc_level(placed, "L4/L5", _at(35))  # 5 mm from L3/L4, 35 from L4/L5
    assert level == "L3/L4"
    assert "nearest point" in note and "L4/L5 stays where it was" in note


def test_click_near_another_level_when_the_selected_one_is_not_placed_yet():
    level, note = nearest_disc_level({"L3/L4": _at(40)}, "L4/L5", _at(33))
    assert level == "L3/L4" and "L4/L5 stays" in note


def test_click_just_beyond_ten_millimetres_places_the_selected_level():
    assert nearest_disc_level({"L3/L4": _at(40)}, "L4/L5", _at(29.5)) == ("L4/L5", "")


def test_ten_millimetres_exactly_still_snaps():
    assert nearest_disc_level({"L3/L4": _at(40)}, "L4/L5", _at(30))[0] == "L3/L4"


def test_the_nearest_of_two_near_points_wins():
    placed = {"L2/L3": _at(8), "L3/L4": _at(-6)}  # both within 10 mm of the click; L3/L4 nearer
    level, note = nearest_disc_level(placed, "L5/S1", _at(0))
    assert level == "L3/L4" and "L5/S1 stays" in note
    placed = {"L2/L3": _at(3), "L3/L4": _at(-6)}
    assert nearest_disc_level(placed, "L5/S1", _at(0))[0] == "L2/L3"


def test_the_selected_level_wins_when_its_point_is_nearest():
    placed = {"L3/L4": _at(7), "L4/L5": _at(-2)}
    assert nearest_disc_level(placed, "L4/L5", _at(0)) == ("L4/L5", "")


def test_another_level_nearer_than_the_selected_ones_point_wins():
    placed = {"L3/L4": _at(4), "L4/L5": _at(-8)}  # both near; the other level is nearer
    assert nearest_disc_level(placed, "L4/L5", _at(0))[0] == "L3/L4"


def test_a_tie_goes_to_the_selected_level():
    placed = {"L3/L4": _at(5), "L4/L5": _at(-5)}
    assert nearest_disc_level(placed, "L4/L5", _at(0)) == ("L4/L5", "")
    assert nearest_disc_level(placed, "L3/L4", _at(0)) == ("L3/L4", "")


def test_a_move_over_twenty_millimetres_is_reported():
    level, note = nearest_disc_level({"L4/L5": _at(0)}, "L4/L5", _at(25))
    assert level == "L4/L5"
    assert "moved 25 mm" in note and "Ctrl+Z" in note


def test_a_move_of_twenty_millimetres_or_less_is_not_reported():
    assert nearest_disc_level({"L4/L5": _at(0)}, "L4/L5", _at(15)) == ("L4/L5", "")
    assert nearest_disc_level({"L4/L5": _at(0)}, "L4/L5", _at(20)) == ("L4/L5", "")


def test_a_far_move_of_the_selected_level_beside_far_points_of_others():
    placed = {"L3/L4": _at(80), "L4/L5": _at(0), "L5/S1": _at(-40)}
    level, note = nearest_disc_level(placed, "L4/L5", _at(-25))  # 15 mm from L5/S1: not near
    assert level == "L4/L5" and "moved 25 mm" in note


def test_distance_is_three_dimensional():
    # 6 mm right, 6 mm anterior, 6 mm up: 10.4 mm away, so no snap although each axis is within 10.
    assert nearest_disc_level({"L3/L4": (6.0, 6.0, 6.0)}, "L4/L5", (0.0, 0.0, 0.0)) == ("L4/L5", "")
    assert nearest_disc_level({"L3/L4": (5.0, 5.0, 5.0)}, "L4/L5", (0.0, 0.0, 0.0))[0] == "L3/L4"


@pytest.mark.parametrize("ras", [[0.0, 0.0, 33.0], np.array([0.0, 0.0, 33.0]), (0, 0, 33)])
def test_points_may_be_lists_tuples_or_arrays(ras):
    placed = {"L3/L4": np.array([0.0, 0.0, 40.0]), "L4/L5": [0, 0, 0]}
    assert nearest_disc_level(placed, "L4/L5", ras)[0] == "L3/L4"
