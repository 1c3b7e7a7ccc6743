"""Shoulder girdle and arm bones of the whole-spine phantom (patient frame, label 0).

Clavicles run from the manubrium to the acromion; each scapula lies on the back of the upper
ribs (T2-T7), a thin plate with its spine and glenoid; the humerus, radius and ulna follow the
arm's path that SpineAITraining.spine_ct.body drew (arms down beside the trunk or up beside
the head).
"""

import numpy as np

from SpineAITraining.cervical.sdf import Capsule, Ellipsoid, Union, box_between


def _cage_back(body, x, z, inset=10.0):
    """A point on the back of the cage at (x, z), ``inset`` mm outside the rib centre line."""
    cx, cyc, w, d = (float(v) for v in body.cage(z))
    t = np.clip((x - cx) / max(w, 1.0), -0.98, 0.98)
    return np.array([x, cyc - d * np.sqrt(1 - t * t) - inset, z])


def scapula(body, side, z_top, z_bottom, scale=1.0):
    """(scapula, acromion point): body plate from the medial border out to the glenoid, its spine and acromion."""
    cx = float(body.cage(z_top)[0])
    _, _, w_top, _ = (float(v) for v in body.cage(z_top))
    medial = cx + side * 65.0 * scale
    lateral = cx + side * min(w_top * 0.95 + 10.0, 125.0 * scale)
    parts = []
    plates = ((medial, medial, z_top, z_bottom), (medial + side * 25.0, lateral, z_bottom + 20.0, z_top))
    for a_x, b_x, za, zb in plates:
        a, b = _cage_back(body, a_x, za), _cage_back(body, b_x, zb)
        normal = np.array([side * 0.35, -1.0, 0.0])  # the plate faces backwards and a little outwards
        parts.append(box_between(a, b, width=42.0 * scale, height=4.0, up=normal, rounding=1.5, extend=6.0))
    spine_a = _cage_back(body, medial, z_top - 12.0, inset=16.0)
    acromion = _cage_back(body, lateral + side * 10.0, z_top + 12.0, inset=4.0)
    parts.append(Capsule(spine_a, acromion, 4.0, 6.0))
    glenoid = _cage_back(body, lateral, z_top - 8.0, inset=-6.0)
    parts.append(Ellipsoid(glenoid, (9.0, 12.0, 16.0)))
    return Union(parts), acromion


def clavicle(notch, acromion, side):
    """An S-shaped clavicle from beside the sternal notch to the acromion."""
    a = notch + np.array([side * 16.0, 0.0, 6.0])
    mid = a + (acromion - a) * 0.45 + np.array([0.0, 14.0, 6.0])
    return Union([Capsule(a, mid, 7.5, 6.0), Capsule(mid, acromion, 6.0, 7.0)])


def arm_bones(shoulder, elbow, wrist, side, scale=1.0):
    """Humerus (head at the shoulder), epicondyles, radius and ulna along an arm's path."""
    along = (elbow - shoulder) / np.linalg.norm(elbow - shoulder)
    head = shoulder + along * 8.0
    fore = (wrist - elbow) / np.linalg.norm(wrist - elbow)
    across = np.cross(fore, [0.0, 0.0, 1.0] if abs(fore[2]) < 0.9 else [1.0, 0.0, 0.0])
    across /= np.linalg.norm(across)
    parts = [Ellipsoid(head, (23.0 * scale,) * 3), Capsule(head, elbow - along * 10.0, 12.0 * scale, 10.0 * scale),
             Ellipsoid(elbow - along * 8.0, (28.0 * scale, 14.0, 14.0)),
             Capsule(elbow + across * 8.0, wrist + across * 10.0, 7.0 * scale, 8.0 * scale),
             Capsule(elbow - across * 8.0 - fore * 10.0, wrist - across * 6.0, 8.0 * scale, 5.5 * scale)]
    return Union(parts)
