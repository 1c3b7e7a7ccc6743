"""Ribs, costal cartilages and sternum of the whole-spine phantom, with their labels.

Rib labels (a separate label map, uint8): ``100 + n`` for a LEFT rib and ``200 + n`` for a
RIGHT rib, where n is the VerSe number of the vertebra the rib articulates with: T1's ribs
are 108 / 208, T12's 119 / 219, a thirteenth thoracic vertebra's 128 / 228 (VerSe T13 = 28),
ribs on L1 ("lumbar ribs") 120 / 220, a cervical rib on C7 107 / 207. So a rib label names its
level directly, and "the first rib" / "the last rib-bearing vertebra" are the smallest /
largest n present on a side. (Left / right are the patient's: RAS x > 0 is right.)

Each rib starts at its head beside the body (ribs 2-9 at the top of their body, where the
disc is; the others at mid-height), runs in front of its transverse process to the tubercle
(the costotransverse joint, 2 mm open; the floating ribs pass beside a short process), then
back out to the rib angle and round the cage ellipse (``Body.cage``, the same ellipse that
bounds the lungs) to its end, falling on the way: true ribs (1-7) end near the sternum and
reach it through their costal cartilage, false ribs (8-10) end anterolaterally and join the
cartilage above, the last two float (the 11th ends at the side, the 12th behind it). A
cervical rib is a short stub off C7's transverse process; lumbar ribs are short floating ribs.
"""

import numpy as np

from SpineAITraining.cervical.sdf import Box, Capsule, Union, box_between

LEFT, RIGHT = 100, 200
DROP = (20, 45, 55, 62, 68, 72, 75, 75, 72, 65, 35, 20, 15)  # mm the bony end lies below the tubercle
CARTILAGE = (10, 18, 25, 30, 35, 40, 45)  # lateral reach of the true ribs' cartilages beyond the sternum's edge
STERNUM_HALF = 13.0


def rib_label(side, vertebra_number):
    """The rib label of a rib on ``side`` (+1 right, -1 left) articulating with VerSe ``vertebra_number``."""
    return (RIGHT if side > 0 else LEFT) + int(vertebra_number)


def describe_rib_label(label):
    """(side name, VerSe number of its vertebra) of a rib label."""
    side = "right" if label >= RIGHT else "left"
    return side, int(label) - (RIGHT if label >= RIGHT else LEFT)


def rib_bearing(spine, rib_pairs, cervical_rib=False):
    """[(vertebra name, rib ordinal 0..)] of the levels that carry ribs: the thoracic levels,
    minus the last one (one pair fewer) or plus L1 (one pair more than thoracic levels)."""
    thoracic = [n for n in spine.names if n.startswith("T")]
    bearing = list(thoracic)
    if rib_pairs == len(thoracic) - 1:
        bearing = thoracic[:-1]
    elif rib_pairs == len(thoracic) + 1:
        bearing = thoracic + ["L1"]
    elif rib_pairs != len(thoracic):
        raise ValueError(f"{rib_pairs} rib pairs cannot be drawn on {len(thoracic)} thoracic vertebrae "
                         f"(use {len(thoracic) - 1}, {len(thoracic)} or {len(thoracic) + 1})")
    out = [(n, i) for i, n in enumerate(bearing)]
    if cervical_rib:
        out.insert(0, ("C7", -1))
    return out


def _end_angle(ordinal, count, width, x_end):
    """Where on the cage ellipse (radians, 0 lateral, +pi/2 in front) a rib's bone ends."""
    if ordinal >= count - 2:  # floating ribs: the second last ends at the side, the last behind it
        return np.radians(5.0 if ordinal == count - 2 else -25.0)
    if ordinal >= 7:  # false ribs end anterolaterally, each a little further back
        return np.radians(55.0 - 10.0 * (ordinal - 7))
    return float(np.arccos(np.clip(x_end / width, 0.05, 0.95)))


def rib_path(spine, body, name, ordinal, count, side, scale=1.0):
    """Centre line points of one rib (patient frame) and its radius."""
    level = spine.levels[name]
    s = level.sizes
    mid_rib = 0 < ordinal < 9
    head = level.point((side * (0.92 * s["body_rx"] + 7.0), level.body_cy - 0.45 * s["body_ry"],
                        s["body_hh"] + 1.5 if mid_rib else 0.3 * s["body_hh"]))
    floating = ordinal >= count - 2 or name.startswith("L")
    if floating:
        tubercle = level.point((side * (max(s["tp"], 18.0) + 6.0), -8.0, 2.0))
    else:
        tubercle = level.point((side * (s["tp"] - 1.0), -2.0, 4.0))
    drop = DROP[min(max(ordinal, 0), len(DROP) - 1)] * scale
    if name.startswith("L"):
        drop *= 0.5
    cx, _, w0, _ = body.cage(tubercle[2])
    start = -float(np.arccos(np.clip((abs(tubercle[0] - cx) + 15.0) / max(float(w0), 1.0), 0.05, 0.99)))
    _, _, w_end, _ = body.cage(tubercle[2] - drop)
    x_end = STERNUM_HALF + CARTILAGE[min(max(ordinal, 0), 6)] * scale
    end = _end_angle(ordinal, count, float(w_end), x_end)
    if name.startswith("L"):
        end = np.radians(-30.0)
    points = [head, tubercle]
    n = 12
    for i in range(1, n):
        t = i / (n - 1)
        z = tubercle[2] - drop * t ** 1.3
        cx, cyc, w, d = (float(v) for v in body.cage(z))
        a = start + (end - start) * t
        points.append(np.array([cx + side * w * np.cos(a), cyc + d * np.sin(a), z]))
    radius = (4.6 if ordinal == 0 else 3.5 if floating else 4.0) * scale ** 0.5
    return points, radius


def rib_shape(points, radius):
    """A rib: capsules along its centre line, thinner towards the end."""
    radii = np.linspace(radius, radius * 0.8, len(points))
    return Union([Capsule(a, b, ra, rb) for a, b, ra, rb in zip(points[:-1], points[1:], radii[:-1], radii[1:])])


def cervical_rib(spine, side, rng):
    """A short rib off C7's transverse process (a variant that can pass for a first rib)."""
    level = spine.levels["C7"]
    s = level.sizes
    start = level.point((side * (s["tp"] - 2.0), 2.0, 0.0))
    length = float(rng.uniform(25, 60))
    mid = level.point((side * (s["tp"] + length * 0.6), 10.0 + length * 0.3, -6.0))
    end = level.point((side * (s["tp"] + length * 0.8), 18.0 + length * 0.6, -14.0))
    return [start, mid, end], 3.2


def sternum(spine, body, scale=1.0):
    """(bone Shape, {true rib ordinal: attachment point}): manubrium, body and xiphoid in front of the cage."""
    th = [n for n in spine.names if n.startswith("T")]
    z_of = {n: float(spine.levels[n].to_patient[2, 3]) for n in th}

    def front(z, ahead=4.0):
        cx, cyc, _, d = (float(v) for v in body.cage(z))
        return np.array([cx, cyc + d + ahead, z])

    z_notch = z_of["T2"] - 8.0
    z_angle = z_of["T4"] - 14.0
    z_xs = z_of[th[8]] + 4.0
    manubrium = Box(front(z_notch - 24.0, 6.0), (25.0 * scale, 6.0, 23.0), rounding=3.0)
    body_ = box_between(front(z_angle), front(z_xs), width=10.0, height=28.0 * scale, up=(1, 0, 0), rounding=3.0)
    xiphoid = Union([box_between(front(z_xs, 2.0), front(z_xs - 40.0, -2.0), width=6.0, height=14.0, up=(1, 0, 0),
                                 rounding=2.0)])
    attach = {0: front(z_notch - 18.0, 2.0), 1: front(z_angle, 2.0)}
    for k in range(2, 7):
        attach[k] = front(z_angle + (z_xs - z_angle) * (k - 1) / 5.0, 2.0)
    return Union([manubrium, body_, xiphoid]), attach


def costal_cartilages(rib_ends, attach, side):
    """Cartilage capsules: true ribs to the sternum, false ribs to the cartilage above (the costal margin)."""
    parts = []
    joins = {}
    for ordinal in sorted(rib_ends):
        end, radius = rib_ends[ordinal]
        if ordinal < 0:
            continue
        if ordinal < 7 and ordinal in attach:
            target = attach[ordinal] + np.array([side * STERNUM_HALF, 0.0, 0.0])
        elif ordinal - 1 in joins and ordinal <= 9:
            target = joins[ordinal - 1]
        else:
            continue
        mid = (end + target) / 2 + np.array([0.0, 6.0, 0.0])
        parts += [Capsule(end, mid, radius * 0.9), Capsule(mid, target, radius * 0.85)]
        joins[ordinal] = (end + 2 * mid) / 3
    return parts
