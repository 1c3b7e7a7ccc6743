"""Distances, angles and the Cobb angle (SpineAILib.measure): the geometry the web app's rulers and
the desktop module share, checked on shapes whose answer is known."""

import math

import numpy as np
import pytest
from SpineAILib.measure import (
    angle,
    cobb_angle,
    cobb_angle_of_points,
    distance,
    orientation_letter,
    plane_normal,
    view_letters,
)


def _line(centre, degrees, half_length=20.0, plane="coronal"):
    """Two points of a line through ``centre`` tilted by ``degrees`` from the horizontal of a view."""
    c = np.asarray(centre, float)
    t = math.radians(degrees)
    across, up = ((1, 0, 0), (0, 0, 1)) if plane == "coronal" else ((0, 1, 0), (0, 0, 1))
    d = half_length * (math.cos(t) * np.asarray(across, float) + math.sin(t) * np.asarray(up, float))
    return c - d, c + d


def test_distance_and_angle():
    assert distance((0, 0, 0), (3, 4, 12)) == pytest.approx(13.0)
    assert angle((1, 0, 0), (0, 0, 0), (0, 1, 0)) == pytest.approx(90.0)
    assert angle((1, 0, 0), (0, 0, 0), (-1, 1e-12, 0)) == pytest.approx(180.0)
    assert angle((2, 2, 5), (1, 1, 5), (2, 1, 5)) == pytest.approx(45.0)
    with pytest.raises(ValueError):
        angle((0, 0, 0), (0, 0, 0), (1, 0, 0))


@pytest.mark.parametrize("upper,lower", [(12.0, -18.0), (-5.0, 5.0), (0.0, 0.0), (40.0, -35.0), (70.0, -45.0)])
def test_cobb_angle_of_a_curve_on_a_coronal_view(upper, lower):
    a = _line((0, 0, 60), upper)
    b = _line((15, 0, -60), lower)
    # Along the view's horizontal (R): past 90 degrees reads past 90 degrees.
    assert cobb_angle(a, b, normal=(0, 1, 0), across=(1, 0, 0)) == pytest.approx(abs(upper - lower), abs=1e-6)
    folded = min(abs(upper - lower), 180 - abs(upper - lower))
    assert cobb_angle(a, b) == pytest.approx(folded, abs=1e-6)  # plane from the points themselves
    # Drawn right to left instead: the same angle.
    assert cobb_angle(a[::-1], b, normal=(0, 1, 0), across=(1, 0, 0)) == pytest.approx(abs(upper - lower), abs=1e-6)
    assert cobb_angle_of_points([*a, *b], normal=(0, 1, 0), across=(1, 0, 0)) == pytest.approx(abs(upper - lower))


def test_cobb_angle_ignores_points_off_the_slice():
    a = _line((0, 0, 50), 10.0, plane="sagittal")
    b = _line((0, 10, -50), -20.0, plane="sagittal")
    # Points a few mm either side of the sagittal slice (x): the in-plane angle is unchanged.
    a = (a[0] + (3, 0, 0), a[1] - (2, 0, 0))
    assert cobb_angle(a, b, normal=(1, 0, 0), across=(0, 1, 0)) == pytest.approx(30.0, abs=1e-6)


def test_cobb_angle_rejects_bad_input():
    with pytest.raises(ValueError):
        cobb_angle_of_points([(0, 0, 0)] * 3)
    with pytest.raises(ValueError):  # a line seen end-on in the view plane
        cobb_angle(((0, 0, 0), (0, 5, 0)), ((0, 0, 0), (1, 0, 1)), normal=(0, 1, 0))
    assert cobb_angle(((0, 0, 0), (1, 0, 0)), ((2, 0, 0), (3, 0, 0))) == 0.0  # one line


def test_plane_normal():
    n = plane_normal([(0, 0, 0), (1, 0, 0), (0, 0, 1), (1, 0, 1)])
    assert abs(n[1]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        plane_normal([(0, 0, 0), (1, 1, 1), (2, 2, 2)])


def test_orientation_letters():
    assert orientation_letter((1, 0, 0)) == "R"
    assert orientation_letter((0, -1, 0)) == "P"
    assert orientation_letter((0.1, 0.2, -1)) == "I"
    assert orientation_letter((1, 1, 0.1)) in ("RA", "AR")
    # Slicer's axial view: screen right is patient left, screen up is anterior.
    assert view_letters((-1, 0, 0), (0, 1, 0)) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    # Sagittal: screen right is anterior; coronal: screen right is patient left, up superior.
    assert view_letters((0, 1, 0), (0, 0, 1)) == {"left": "P", "right": "A", "top": "S", "bottom": "I"}
    assert view_letters((-1, 0, 0), (0, 0, 1)) == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
