"""Measurements on images, in millimetres and degrees: distance, angle, Cobb angle; orientation letters.

Pure numpy (no VTK, no Slicer): the web app's rulers and the desktop module call the same
functions. Points are RAS positions in mm (any 3-vector will do).

The Cobb angle is the angle between two lines (the endplate lines of the two end vertebrae of
a curve), measured in the plane of the view they were drawn in (coronal for scoliosis,
sagittal for kyphosis / lordosis): each line is projected into that plane first, so a point a
little off the slice does not change the angle.
"""

import numpy as np

AXIS_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))  # (negative, positive) along R, A, S


def _vector(p):
    v = np.asarray(p, dtype=float).reshape(-1)
    if v.shape != (3,):
        raise ValueError(f"expected a 3-D point, got {p!r}")
    return v


def _unit(v, what="vector"):
    norm = float(np.linalg.norm(v))
    if norm < 1e-9:
        raise ValueError(f"{what} has no length")
    return v / norm


def distance(p, q):
    """Distance between two points (mm)."""
    return float(np.linalg.norm(_vector(q) - _vector(p)))


def angle(p, vertex, q):
    """Angle p-vertex-q in degrees (0 to 180)."""
    u = _unit(_vector(p) - _vector(vertex), "first arm")
    v = _unit(_vector(q) - _vector(vertex), "second arm")
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v), -1.0, 1.0))))


def plane_normal(points):
    """Unit normal of the best-fitting plane through ``points`` (at least 3, not all on one line)."""
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    if len(pts) < 3:
        raise ValueError("a plane needs at least three points")
    _, s, vt = np.linalg.svd(pts - pts.mean(axis=0))
    if s[1] < 1e-9:
        raise ValueError("the points lie on one line: no plane")
    return vt[2]


def project_to_plane(vector, normal):
    """``vector`` without its component along ``normal``."""
    n = _unit(_vector(normal), "normal")
    v = _vector(vector)
    return v - np.dot(v, n) * n


def cobb_angle(line_a, line_b, normal=None, across=None):
    """Cobb angle in degrees between two lines, each ``(p, q)``, in the plane with ``normal``.

    ``normal``: the view's normal (default: the plane through the four points; when they lie on
    one line the angle is 0). ``across``: the view's horizontal direction; both lines are
    turned to point along it before the angle is taken, so a curve past 90° reads past 90°
    (0 to 180). Without ``across`` the angle between the two lines is 0 to 90.
    """
    a0, a1 = _vector(line_a[0]), _vector(line_a[1])
    b0, b1 = _vector(line_b[0]), _vector(line_b[1])
    da, db = a1 - a0, b1 - b0
    if normal is None:
        try:
            normal = plane_normal([a0, a1, b0, b1])
        except ValueError:
            return 0.0  # all four on one line
    da = _unit(project_to_plane(da, normal), "first line (in the view plane)")
    db = _unit(project_to_plane(db, normal), "second line (in the view plane)")
    if across is None:
        return float(np.degrees(np.arccos(np.clip(abs(np.dot(da, db)), 0.0, 1.0))))
    across = project_to_plane(across, normal)
    if np.dot(da, across) < 0:
        da = -da
    if np.dot(db, across) < 0:
        db = -db
    return float(np.degrees(np.arccos(np.clip(np.dot(da, db), -1.0, 1.0))))


def cobb_angle_of_points(points, normal=None, across=None):
    """Cobb angle from four points: the first two on one endplate, the last two on the other."""
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    if len(pts) != 4:
        raise ValueError(f"a Cobb angle needs four points, got {len(pts)}")
    return cobb_angle(pts[:2], pts[2:], normal=normal, across=across)


def orientation_letter(direction, min_share=0.5):
    """The anatomical letter(s) a direction points to: 'R', 'A', 'S', ... or two letters ('RA')
    for an oblique direction (each axis over ``min_share`` of the strongest one, strongest first)."""
    d = _unit(_vector(direction), "direction")
    order = np.argsort(-np.abs(d))
    strongest = abs(d[order[0]])
    letters = [AXIS_LETTERS[axis][int(d[axis] > 0)] for axis in order if abs(d[axis]) >= min_share * strongest]
    return "".join(letters[:2])


def ras_text(ras, digits=1):
    """A position as Slicer writes it: '(L 12.3, A 4.0, S 100.2)' (a letter per axis, no sign)."""
    r = _vector(ras)
    return "(" + ", ".join(f"{AXIS_LETTERS[axis][int(r[axis] >= 0)]} {abs(r[axis]):.{digits}f}"
                           for axis in range(3)) + ")"


def view_letters(right, up):
    """{'left', 'right', 'top', 'bottom'}: the letters at a view's edges, from the RAS directions
    of its screen right and screen up."""
    right, up = _vector(right), _vector(up)
    return {"left": orientation_letter(-right), "right": orientation_letter(right),
            "top": orientation_letter(up), "bottom": orientation_letter(-up)}
