"""The pelvis and hips around the phantom's sacrum: iliac wings, acetabula, pubic and ischial
rami, the femora; all label 0 (only the sacrum is a vertebra label).

Built in a pelvis frame tied to S1: origin at the centre of S1's top endplate, axes those of
S1 turned back by a nominal 40-degree sacral slope, so the whole pelvis tilts with the sacrum
(pelvic incidence fixed per patient, pelvic tilt = incidence - slope). Landmarks are adult
means (mm from S1's endplate centre: iliac crest 30-35 mm above it and 110-125 mm lateral,
hip centres 85-95 mm lateral and about 95 mm below, symphysis about 110 mm in front and
below), scaled per patient and widened for a female pelvis. The iliac wing is a fan of
thin plates from its root (sciatic notch to the anterior inferior spine) up to a thick crest;
the sacroiliac joint is kept open (2.5 mm) by cutting the ilium at the ala's lateral face.
"""

from dataclasses import dataclass

import numpy as np

from SpineAITraining.cervical.anatomy import frame
from SpineAITraining.cervical.sdf import (
    Box,
    Capsule,
    Ellipsoid,
    HalfSpace,
    Intersect,
    Subtract,
    Union,
    box_between,
    rotation,
)

NOMINAL_SLOPE = 40.0
CREST = ((42, -48, -12), (62, -42, 12), (88, -28, 28), (110, -5, 34), (122, 22, 25), (118, 50, 8), (105, 72, -15))
ROOT = ((48, -30, -55), (56, -22, -58), (66, -10, -62), (74, 5, -66), (80, 22, -66), (86, 40, -62), (92, 58, -55))
HIP = (88, 52, -95)  # femoral head centre
SYMPHYSIS = (0, 100, -112)
TUBEROSITY = (58, 25, -150)


@dataclass
class Pelvis:
    to_patient: np.ndarray  # 4x4 pelvis frame -> patient
    scale: np.ndarray  # (x, y, z) scale of the landmark table
    head_radius: float
    sacrum_ala_x: float  # the ala's lateral face (x, mm) in the pelvis frame

    def point(self, local):
        return (self.to_patient @ np.append(np.asarray(local, float) * self.scale, 1.0))[:3]

    def landmarks(self):
        """Patient-frame points the soft tissues follow."""
        out = {"symphysis": self.point(SYMPHYSIS)}
        for side, name in ((1, "right"), (-1, "left")):
            out[f"hip_{name}"] = self.point((side * HIP[0], HIP[1], HIP[2]))
            out[f"tuberosity_{name}"] = self.point((side * TUBEROSITY[0], TUBEROSITY[1], TUBEROSITY[2]))
            out[f"crest_{name}"] = self.point((side * CREST[3][0], CREST[3][1], CREST[3][2]))
            out[f"asis_{name}"] = self.point((side * CREST[-1][0], CREST[-1][1], CREST[-1][2]))
        return out


def draw_pelvis(rng, s1_level, ala_x, scale, female):
    """The pelvis frame and proportions of one patient."""
    cy, hh = s1_level.body_cy, s1_level.sizes["body_hh"]
    local = frame(rotation("x", NOMINAL_SLOPE), (0.0, cy, hh))
    width = 1.07 if female else 1.0
    s = scale * np.array([width * rng.normal(1, 0.04), rng.normal(1, 0.04),
                          (0.95 if female else 1.0) * rng.normal(1, 0.03)])
    head = float(rng.uniform(22, 26)) * scale * (0.92 if female else 1.0)
    return Pelvis(s1_level.to_patient @ local, s, head, float(ala_x))


def _p(pelvis, point, side):
    return np.array([side * point[0], point[1], point[2]], float) * pelvis.scale


def hip_bone(pelvis, side):
    """One hip bone (ilium, acetabulum, pubis, ischium) in the pelvis frame."""
    crest = [_p(pelvis, c, side) for c in CREST]
    root = [_p(pelvis, r, side) for r in ROOT]
    parts = []
    for i in range(len(crest) - 1):  # the wing: a fan of plates between root and crest
        c0, c1, r0, r1 = crest[i], crest[i + 1], root[i], root[i + 1]
        top, bottom = (c0 + c1) / 2, (r0 + r1) / 2
        along = c1 - c0
        normal = np.cross(along, top - bottom)
        parts.append(box_between(bottom, top, width=float(np.linalg.norm(along)) + 8.0, height=6.0, up=normal,
                                 rounding=2.5, extend=3.0))
    parts += [Capsule(a, b, 5.5) for a, b in zip(crest[:-1], crest[1:])]  # the thick crest
    parts.append(Ellipsoid(_p(pelvis, (56, -30, -25), side), (12.0, 20.0, 34.0)))  # posterior ilium
    hip = _p(pelvis, HIP, side)
    r = pelvis.head_radius
    cup = Ellipsoid(hip - np.array([side * 4.0, 0, 2.0]), (r + 9.0, r + 10.0, r + 10.0))
    parts.append(Subtract(cup, [Ellipsoid(hip, (r + 2.5,) * 3),
                                Ellipsoid(hip + np.array([side * (r + 14.0), 0, 0]), (r + 4.0, r + 12.0, r + 12.0))]))
    sym = _p(pelvis, SYMPHYSIS, 1)
    sym_side = sym + np.array([side * 9.0, 0, 0])
    parts.append(Box(sym_side, (7.0, 8.0, 18.0), rounding=3.0))
    parts.append(Capsule(hip + np.array([-side * 20.0, 18.0, 8.0]), sym_side + np.array([side * 3.0, 0, 10.0]),
                         9.0, 8.0))
    tub = _p(pelvis, TUBEROSITY, side)
    parts.append(Capsule(sym_side + np.array([0, -4.0, -14.0]), tub + np.array([-side * 6.0, 8.0, 2.0]), 7.0, 8.0))
    parts.append(Ellipsoid(tub, (13.0, 18.0, 16.0)))
    parts.append(Capsule(tub, hip + np.array([-side * 12.0, -14.0, -18.0]), 12.0, 14.0))
    bone = Union(parts)
    # the sacroiliac joint: nothing of the ilium medial to the ala's face + 2.5 mm
    cut = HalfSpace((side * (pelvis.sacrum_ala_x + 2.5), 0.0, 0.0), (-side, 0.0, 0.0), extent=260.0)
    return Intersect([bone, cut])


def femur(pelvis, side, length=380.0):
    """Femoral head, neck, trochanters and shaft (pelvis frame; the shaft runs along the patient's -z)."""
    hip = _p(pelvis, HIP, side)
    r = pelvis.head_radius
    down = np.linalg.inv(pelvis.to_patient[:3, :3]) @ np.array([0.0, 0.0, -1.0])
    neck_end = hip + np.array([side * 32.0, -6.0, -24.0])
    shaft_top = hip + np.array([side * 40.0, -6.0, -38.0])
    shaft_end = shaft_top + down * length + np.array([-side * 35.0, 8.0, 0.0])
    parts = [Ellipsoid(hip, (r, r, r)), Capsule(hip, neck_end, r * 0.62, r * 0.72),
             Ellipsoid(hip + np.array([side * 46.0, -12.0, -24.0]), (13.0, 18.0, 22.0)),  # greater trochanter
             Ellipsoid(hip + np.array([side * 18.0, -8.0, -62.0]), (7.0, 8.0, 9.0)),  # lesser trochanter
             Capsule(shaft_top, shaft_end, 15.0, 13.0)]
    return Union(parts)
