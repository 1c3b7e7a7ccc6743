"""Vertebrae of the whole-spine phantom as signed distance shapes, in each level's frame.

C1-C7 are the cervical phantom's shapes (SpineAITraining.cervical.anatomy), unchanged.
Thoracic vertebrae (T1-T13) have a heart-shaped body, round canal, pedicles, articular
processes, long posterolateral transverse processes (which the rib tubercles meet) and a
long spinous process, steep mid-thoracic, nearly horizontal at T12. Lumbar vertebrae
(L1-L6) have a kidney-shaped wide body, thick short pedicles, lateral transverse processes
(longest at L3), sagittal articular processes with mammillary bumps and a hatchet-shaped
spinous process. A sacralised L5 has broad transverse processes reaching down to the sacral
ala (a joint, or fused). The sacrum is five fused segments curving backwards (sacral
kyphosis) with alae, a dorsal wall, the sacral canal and anterior foramina; the coccyx is
separate (not a vertebra label).

Every body is a ``VertebralBody``: an elliptic (superelliptic) column whose top and bottom
endplates are surfaces (``body_surfaces``) that a compression lowers, tilts or dents. The
truth heights (``body_heights``) are read off the same surfaces at the measurement's lines:
the mid-sagittal plane, ``DEPTH_FRACTION`` of the half depth in front of and behind the centre
(10 % of the depth in from each wall) and at the centre.
"""

import numpy as np

from SpineAITraining.cervical.anatomy import vertebra_shape as cervical_shape
from SpineAITraining.cervical.sdf import (
    Box,
    Capsule,
    Ellipsoid,
    EllipticCylinder,
    Framed,
    Subtract,
    Union,
    box_between,
    ellipse_distance,
    rotation,
)

DEPTH_FRACTION = 0.8  # the anterior and posterior height lines, as a fraction of the half depth
CONCAVE_REACH = 0.68  # a biconcave endplate's depression ends this fraction of the half axes out


def body_surfaces(u, v, rx, ry, h, mods):
    """(top, bottom) of a body's endplates (mm along its axis, bottom intact at -h) at (u, v).

    mods: ``crush`` (uniform loss, fraction of the height), ``wedge`` (extra loss of the
    anterior height, linear from the posterior line to the anterior line), ``concave_top`` /
    ``concave_bottom`` (central depression of each endplate, mm, none from ``CONCAVE_REACH`` out).
    """
    crush, wedge = mods.get("crush", 0.0), mods.get("wedge", 0.0)
    top = h - 2 * h * crush
    if wedge:
        t = np.clip((v / (DEPTH_FRACTION * ry) + 1) / 2, 0, 1)
        top = top - 2 * h * (1 - crush) * wedge * t
    bottom = -h + 0 * v
    a, b = mods.get("concave_top", 0.0), mods.get("concave_bottom", 0.0)
    if a or b:  # flat again from CONCAVE_REACH of the half axes out, where the anterior and posterior lines are
        p = np.clip(1 - (u / (CONCAVE_REACH * rx)) ** 2 - (v / (CONCAVE_REACH * ry)) ** 2, 0, 1)
        top = top - a * p
        bottom = bottom + b * p
    return top, bottom


def body_heights(sizes, mods):
    """Truth heights (mm) of a body: anterior, middle, posterior (see the module docstring), depth, width."""
    rx, ry, h = sizes["body_rx"], sizes["body_ry"], sizes["body_hh"]
    out = {}
    for name, v in (("anterior", DEPTH_FRACTION * ry), ("middle", 0.0), ("posterior", -DEPTH_FRACTION * ry)):
        top, bottom = body_surfaces(0.0, v, rx, ry, h, mods)
        out[name] = float(top - bottom)
    out.update(depth=2 * ry, width=2 * rx, intact=2 * h)
    return out


class VertebralBody(Framed):
    """A vertebral body: superelliptic cross-section (half axes rx, ry, ``power``) between the
    endplate surfaces of ``body_surfaces`` (first-order distance, exact on the walls)."""

    def __init__(self, centre, rx, ry, half_height, mods=None, power=2.0, rot=None):
        super().__init__(centre, rot)
        self.rx, self.ry, self.h, self.power = float(rx), float(ry), float(half_height), float(power)
        self.mods = dict(mods or {})

    def bounds(self):
        c, e = self.centre, np.abs(self.rot) @ np.array([self.rx, self.ry, self.h])
        return c - e, c + e

    def distance(self, x, y, z):
        u, v, w = self._local(x, y, z)
        if self.power == 2.0:
            radial = ellipse_distance(u, v, self.rx, self.ry)
        else:
            p = np.float32(self.power)
            q = (np.abs(u) / np.float32(self.rx)) ** p + (np.abs(v) / np.float32(self.ry)) ** p
            radial = (q ** (1 / p) - 1) * np.float32(min(self.rx, self.ry))
        top, bottom = body_surfaces(u, v, self.rx, self.ry, self.h, self.mods)
        return np.maximum(radial, np.maximum(w - np.float32(1) * top, bottom - w)).astype(np.float32)


def _body(s, cy, mods):
    """The body with its rim osteophytes (anterior and lateral lips at the endplates)."""
    body = VertebralBody((0.0, cy, 0.0), s["body_rx"], s["body_ry"], s["body_hh"], mods, s.get("body_power", 2.0))
    lips = []
    for key, sign in (("osteo_top", 1.0), ("osteo_bottom", -1.0)):
        size = s.get(key, 0.0)
        if size:
            z = sign * (s["body_hh"] - 0.3)
            lips.append(Ellipsoid((0.0, cy + s["body_ry"] - 1.0, z),
                                  (s["body_rx"] * 0.8, 1.0 + size, 0.8 + size * 0.6)))
            for side in (-1, 1):
                lips.append(Ellipsoid((side * (s["body_rx"] - 1.0), cy + 2.0, z), (1.0 + size * 0.8, s["body_ry"] * 0.6,
                                                                                   0.8 + size * 0.5)))
    return Union([body] + lips) if lips else body


def _spinous(s, y0, z0, r0, r1):
    down = np.radians(s["sp_down"])
    a = np.array([0.0, y0, z0])
    b = a + s["sp_len"] * np.array([0.0, -np.cos(down), -np.sin(down)])
    return [Capsule(a, b, r0, r1), Ellipsoid(b, (r1 + 0.8, r1 + 1.2, r1 + 1.5))]


def thoracic(level, mods):
    """T1-T13: body, pedicles, articular processes, posterolateral transverse processes, laminae,
    long spinous process; pedicles and processes grow with the body."""
    s = level.sizes
    hh, cr_x, cr_y = s["body_hh"], s["canal_rx"], s["canal_ry"]
    k = s["body_rx"] / 14.0  # processes scale with the body
    parts = [_body(s, level.body_cy, mods)]
    for side in (-1, 1):
        parts.append(Capsule((side * cr_x * 0.6, cr_y + 1.5, 1.0), (side * (cr_x + 2.5), -2.0, 1.0), 2.8 + 0.6 * k))
        parts.append(Box((side * (cr_x + 2.5), -3.0, hh * 0.75), (3.0 * k, 3.5, 4.5), rounding=1.5))
        parts.append(Box((side * (cr_x + 1.0), -6.5, -hh * 0.8), (3.0 * k, 3.5, 4.5), rounding=1.5))
        parts.append(Capsule((side * (cr_x + 2.5), -2.0, 1.0), (side * s["tp"], -13.0, 4.0), 4.2, 5.2))
        parts.append(box_between((side * (cr_x + 2.5), -3.0, -1.0), (0.0, -(cr_y + 3.5), -2.0),
                                 width=4.0 + k, height=hh * 1.6, rounding=1.5))
    parts += _spinous(s, -(cr_y + 3.0), -2.0, 3.5 * k, 3.3 * k)
    canal = EllipticCylinder((0.0, 0.0, 0.0), cr_x, cr_y, hh + 12)
    return Subtract(Union(parts), [canal])


def lumbar(level, mods, sacralised=None):
    """L1-L6: wide body, short thick pedicles, lateral transverse processes, sagittal articular
    processes with mammillary bumps, laminae and a hatchet spinous process. ``sacralised``:
    None, or "joint"/"fused": broad transverse processes reaching the sacral ala below."""
    s = level.sizes
    hh, cr_x, cr_y = s["body_hh"], s["canal_rx"], s["canal_ry"]
    parts = [_body(s, level.body_cy, mods)]
    for side in (-1, 1):
        parts.append(box_between((side * cr_x * 0.7, cr_y + 2.5, 0.5), (side * (cr_x + 3.0), -2.0, 0.5),
                                 width=8.5, height=hh * 1.05, rounding=3.0))  # pedicle
        if sacralised:
            reach = -(hh + s["disc"] + (6.0 if sacralised == "fused" else -0.5))
            parts.append(box_between((side * (cr_x + 3.0), -1.0, 2.0), (side * (s["tp"] + 2.0), 4.0, reach),
                                     width=16.0, height=20.0, up=(0, 1, 0), rounding=4.0))
        else:
            parts.append(box_between((side * (cr_x + 3.0), -3.0, 1.0), (side * s["tp"], -5.0, 2.5),
                                     width=7.0, height=8.0, rounding=2.5))  # transverse process
        parts.append(Box((side * (cr_x + 5.0), -8.0, hh * 0.55), (3.5, 6.0, hh * 0.6), rounding=2.0))  # superior AP
        parts.append(Ellipsoid((side * (cr_x + 8.5), -12.0, hh * 0.6), (3.0, 3.5, 4.0)))  # mammillary process
        parts.append(Box((side * (cr_x + 1.5), -14.0, -hh * 0.7), (3.2, 5.0, hh * 0.6), rounding=2.0))  # inferior AP
        parts.append(box_between((side * (cr_x + 3.0), -4.0, 0.0), (0.0, -(cr_y + 5.0), -1.0),
                                 width=6.0, height=hh * 1.3, rounding=2.0))  # lamina
    down = np.radians(s["sp_down"])
    a = np.array([0.0, -(cr_y + 4.0), -2.0])
    b = a + s["sp_len"] * np.array([0.0, -np.cos(down), -np.sin(down)])
    parts.append(box_between(a, b, width=6.0, height=min(22.0, 1.5 * hh), rounding=2.5))  # hatchet
    canal = EllipticCylinder((0.0, 0.0, 0.0), cr_x, cr_y, hh + 12)
    return Subtract(Union(parts), [canal])


# ---------------------------------------------------------------- sacrum and coccyx

SACRAL_SEGMENTS = ((1.0, 1.0, 1.0), (0.8, 0.8, 0.78), (0.64, 0.66, 0.68), (0.5, 0.52, 0.58), (0.38, 0.4, 0.5))


def sacral_segments(sizes, curve_deg):
    """[(centre, rot, rx, ry, hh)] of S1 ... S5 in S1's frame, curving backwards ``curve_deg`` per segment."""
    rx, ry, hh, cy = sizes["body_rx"], sizes["body_ry"], sizes["body_hh"], sizes["canal_ry"] + 0.8 + sizes["body_ry"]
    out = [(np.array([0.0, cy, 0.0]), np.eye(3), rx, ry, hh)]
    angle = 0.0
    for fx, fy, fz in SACRAL_SEGMENTS[1:]:
        prev_centre, _, _, _, prev_h = out[-1]
        angle += curve_deg
        h = hh * fz
        # concave in front: each segment's downward direction turns forwards
        down = np.array([0.0, np.sin(np.radians(angle)), -np.cos(np.radians(angle))])
        out.append((prev_centre + down * (prev_h + h - 0.5), rotation("x", angle), rx * fx, ry * fy, h))
    return out


def sacrum(level, curve_deg, ala_width):
    """The sacrum (S1 ... S5 fused) in S1's frame: bodies, alae and lateral masses, dorsal wall
    with a median crest, S1's superior articular processes; the canal and anterior foramina cut."""
    s = level.sizes
    segments = sacral_segments(s, curve_deg)
    parts, holes, canal_pts = [], [], []
    for i, (centre, rot, rx, ry, hh) in enumerate(segments):
        f = rx / s["body_rx"]
        parts.append(VertebralBody(centre, rx, ry, hh, power=2.2, rot=rot))
        back = rot @ np.array([0.0, -1.0, 0.0])
        canal_c = centre + back * (ry + 0.8 + s["canal_ry"] * f)
        canal_pts.append(canal_c)
        wall = canal_c + back * (s["canal_ry"] * f + 3.0)
        # the dorsal wall: each segment's overlaps the next, so the wall is one
        parts.append(Box(wall, (s["canal_rx"] * f + 7.0, 3.0, hh + 4.0), rot=rot, rounding=1.5))
        parts.append(Ellipsoid(wall + back * 4.0, (3.0, 3.5, hh * 0.7), rot=rot))  # median crest
        wing = ala_width * (1.0, 0.85, 0.6, 0.3, 0.15)[i]
        for side in (-1, 1):
            mass_c = (centre + canal_c) / 2 + rot @ np.array([side * (s["canal_rx"] * f + wing / 2 + 2.0), 0.0,
                                                              -0.5 if i else -3.0])
            half_y = 0.5 * float(np.linalg.norm(centre - wall)) + 2.0
            parts.append(Box(mass_c, (wing / 2 + 6.0, half_y, hh * (0.85 if i == 0 else 1.0)), rot=rot,
                             rounding=4.0))
            if i < len(segments) - 1:  # anterior sacral foramen between this segment and the next
                hole_c = centre + rot @ np.array([side * (rx * 0.85 + 4.0), 0.0, -hh])
                holes.append(Capsule(hole_c + back * 20, hole_c - back * 12, 3.8 * f + 1.0))
    top = segments[0]
    for side in (-1, 1):  # S1 superior articular processes
        parts.append(Box((side * (s["canal_rx"] + 5.0), -6.0, top[4] + 5.0), (4.0, 6.0, 7.0), rounding=2.0))
    holes.append(Union([Capsule(a, b, s["canal_ry"] * 0.9) for a, b in zip(canal_pts[:-1], canal_pts[1:])]))
    return Subtract(Union(parts), holes)


def ala_reach(level, ala_width):
    """x (mm) of the sacral ala's lateral face in S1's frame: where the sacroiliac joint is."""
    return level.sizes["canal_rx"] + ala_width + 8.0


def coccyx(level, curve_deg):
    """Three small coccygeal segments continuing the sacral curve (S1's frame, label 0)."""
    centre, _, rx, ry, hh = sacral_segments(level.sizes, curve_deg)[-1]
    angle = 4 * curve_deg
    parts = []
    for i in range(3):
        angle += curve_deg
        down = np.array([0.0, np.sin(np.radians(angle)), -np.cos(np.radians(angle))])
        centre = centre + down * (hh + 5.0)
        hh = 4.0 - i
        parts.append(Ellipsoid(centre, (rx * 0.8 - 2 * i, ry * 0.8 - i, hh), rot=rotation("x", angle)))
    return Union(parts)


def vertebra_shape(level, mods=None, sacralised=None):
    """The shape of any level C1 ... L6 (S1: see ``sacrum``)."""
    mods = mods or {}
    if level.name.startswith("C"):
        return cervical_shape(level, {})
    if level.name.startswith("T"):
        return thoracic(level, mods)
    if level.name.startswith("L"):
        return lumbar(level, mods, sacralised)
    raise ValueError(f"{level.name}: the sacrum is drawn by sacrum()")
