"""Cervical and upper thoracic vertebrae as signed distance shapes, stacked into a spine.

Each vertebra lives in its own frame: origin on the canal axis at mid-height of the
body, x to the patient's right, y anterior, z superior (mm). Sizes are adult means
from the anatomy literature (bodies widen and deepen from C3 down to T5, the cervical
canal is wide and triangular, the thoracic canal small and round), scaled per patient
and jittered per level. The spine is stacked bottom-up from its discs with a cervical
lordosis and a thoracic kyphosis drawn per patient; C1 sits on C2's lateral masses with
the dens rising into its ring, the occipital condyles sit on C1.

Shapes are built by ``vertebra_shape(level, mods)``; ``mods`` carries what a fracture
changes in the shape itself (a compressed body). Gaps and displaced fragments are cut
from the finished shape by SpineAITraining.cervical.fractures.
"""

from dataclasses import dataclass, field

import numpy as np

from .sdf import Box, Capsule, Ellipsoid, EllipticCylinder, HalfSpace, Intersect, Subtract, Union, box_between, rotation

NAMES = ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "T1", "T2", "T3", "T4", "T5")
VERSE = {name: i + 1 for i, name in enumerate(NAMES)}  # C1..C7 = 1..7, T1.. = 8..
CERVICAL = NAMES[:7]

# Mean sizes (mm): body half width / half depth / half height, canal half width / half
# depth, disc below, transverse process reach from the midline, spinous process length
# and its downward angle (degrees).
SIZES = {
    #      body_rx body_ry body_hh canal_rx canal_ry disc  tp    sp_len sp_down
    "C2": (8.5, 7.6, 8.5, 11.5, 8.0, 4.5, 23.0, 22.0, 20.0),
    "C3": (8.0, 7.3, 6.3, 12.3, 7.0, 5.0, 25.0, 15.0, 15.0),
    "C4": (8.3, 7.5, 6.3, 12.5, 7.0, 5.5, 26.0, 16.0, 16.0),
    "C5": (8.6, 7.8, 6.4, 12.6, 7.0, 5.5, 27.0, 18.0, 18.0),
    "C6": (9.2, 8.0, 6.6, 12.6, 7.0, 5.0, 28.0, 23.0, 22.0),
    "C7": (10.0, 8.4, 7.0, 12.0, 7.0, 4.5, 34.0, 32.0, 28.0),
    "T1": (12.0, 9.2, 7.8, 9.0, 7.5, 4.0, 38.0, 38.0, 38.0),
    "T2": (12.5, 10.2, 8.3, 8.5, 7.5, 4.0, 38.0, 40.0, 45.0),
    "T3": (13.0, 11.0, 8.8, 8.0, 7.5, 4.2, 37.0, 42.0, 50.0),
    "T4": (13.5, 12.0, 9.2, 8.0, 7.5, 4.4, 36.0, 42.0, 55.0),
    "T5": (14.0, 12.8, 9.6, 8.0, 7.5, 4.6, 35.0, 42.0, 58.0),
}
SIZE_KEYS = ("body_rx", "body_ry", "body_hh", "canal_rx", "canal_ry", "disc", "tp", "sp_len", "sp_down")
BIFID = {"C2", "C3", "C4", "C5", "C6"}
CHILD = dict(zip(NAMES[:-1], NAMES[1:]))  # the level below each level


def frame(rot, centre):
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = centre
    return m


@dataclass
class Level:
    name: str
    sizes: dict
    to_patient: np.ndarray  # 4x4: local frame -> patient frame (mm)

    @property
    def number(self):
        return VERSE[self.name]

    @property
    def body_cy(self):
        s = self.sizes
        return s["canal_ry"] + 0.8 + s["body_ry"]

    def point(self, local):
        return (self.to_patient @ np.append(np.asarray(local, float), 1.0))[:3]


@dataclass
class Spine:
    levels: dict  # name -> Level (C1 ... T5)
    discs: list  # (upper name, lower name, to_patient 4x4, rx, ry, half height)
    skull: np.ndarray  # 4x4: skull frame (origin at the foramen magnum centre) -> patient
    params: dict = field(default_factory=dict)


def draw_spine(rng, scale=1.0):
    """A patient's spine in the patient frame (x right, y anterior, z superior, mm)."""
    jitter = lambda: float(rng.normal(1.0, 0.035))  # noqa: E731 - per-level size jitter
    sizes = {}
    for name, values in SIZES.items():
        s = dict(zip(SIZE_KEYS, values))
        for key in ("body_rx", "body_ry", "body_hh", "disc"):
            s[key] *= scale * jitter()
        for key in ("canal_rx", "canal_ry", "tp", "sp_len"):
            s[key] *= scale * jitter()
        s["sp_down"] += float(rng.normal(0, 4))
        s["osteo_top"] = s["osteo_bottom"] = 0.0
        s["body_power"] = float(rng.uniform(2.4, 3.0)) if name.startswith("C") else float(rng.uniform(2.0, 2.4))
        sizes[name] = s
    # Degenerated discs (older trauma patients): narrowed, anterior osteophytes on both
    # neighbouring rims, sometimes gas in the disc (vacuum phenomenon). Not fractures.
    degeneration = float(rng.uniform(0.0, 0.5))
    vacuum = {}
    order_down = list(SIZES)  # C2 ... T5
    for upper, lower in zip(order_down[:-1], order_down[1:]):
        if upper.startswith("C") and upper != "C2" and rng.random() < degeneration:
            sizes[upper]["disc"] *= float(rng.uniform(0.4, 0.8))
            sizes[upper]["osteo_bottom"] = float(rng.uniform(1.0, 3.0))
            sizes[lower]["osteo_top"] = float(rng.uniform(1.0, 3.0))
            vacuum[upper] = bool(rng.random() < 0.25)

    # Sagittal angle of each level's axis (degrees, + leans the top forward): a thoracic
    # kyphosis below T1 and a cervical lordosis above it; sometimes straight or reversed
    # (trauma patients in a collar).
    lordosis = float(rng.choice([rng.uniform(15, 40), rng.uniform(-8, 12)], p=[0.75, 0.25]))
    kyphosis = float(rng.uniform(5, 20))
    theta = {}
    below = ["T5", "T4", "T3", "T2", "T1"]
    for i, name in enumerate(below):
        theta[name] = 18.0 - kyphosis * (1 - i / 4)
    cervical = ["C7", "C6", "C5", "C4", "C3", "C2"]
    for i, name in enumerate(cervical):
        theta[name] = 18.0 - lordosis * (i / 5) ** 1.2 + float(rng.normal(0, 1.5))
    theta["C1"] = theta["C2"] - float(rng.uniform(-4, 10))
    roll = {name: float(rng.normal(0, 1.2)) for name in NAMES}
    yaw = {name: float(rng.normal(0, 1.5)) for name in NAMES}

    def rot(name):
        return rotation("x", -theta[name]) @ rotation("y", roll[name]) @ rotation("z", yaw[name])

    # Stack from T5 upwards along the levels' axes; T5's canal centre at the origin.
    levels = {}
    order = list(reversed(NAMES[1:]))  # T5 ... C2
    centre = np.zeros(3)
    levels["T5"] = Level("T5", sizes["T5"], frame(rot("T5"), centre))
    discs = []
    for lower, upper in zip(order[:-1], order[1:]):
        lo, up = levels[lower], sizes[upper]
        r_up = rot(upper)
        top_lo = lo.point((0, lo.body_cy, lo.sizes["body_hh"]))  # lower body's top centre
        axis = (lo.to_patient[:3, :3] @ [0, 0, 1] + r_up @ [0, 0, 1]) / 2
        axis /= np.linalg.norm(axis)
        bottom_up = top_lo + axis * up["disc"]  # "disc" is the disc below a level
        body_cy_up = up["canal_ry"] + 0.8 + up["body_ry"]
        centre_up = bottom_up - r_up @ np.array([0.0, body_cy_up, -up["body_hh"]])
        levels[upper] = Level(upper, up, frame(r_up, centre_up))
        disc_rot = rotation("x", -(theta[lower] + theta[upper]) / 2)
        rx = 0.97 * (up["body_rx"] + lo.sizes["body_rx"]) / 2
        ry = 0.97 * (up["body_ry"] + lo.sizes["body_ry"]) / 2
        discs.append((upper, lower, frame(disc_rot, (top_lo + bottom_up) / 2), rx, ry, up["disc"] / 2 + 0.6,
                      vacuum.get(upper, False)))

    # C1: its lateral masses (8.5 mm half height) rest 2 mm above C2's superior facets.
    c2 = levels["C2"]
    c1_sizes = {"canal_rx": 14.5, "canal_ry": 17.0, "body_hh": 4.5 * scale, "mass_hh": 8.5 * scale,
                "ring_rx": 23.0 * scale, "ring_ry": 22.5 * scale, "tp": 37.0 * scale * jitter()}
    c1_centre = c2.point((0, 0, c2.sizes["body_hh"] + 3.5 + 2.0 + c1_sizes["mass_hh"]))
    levels["C1"] = Level("C1", c1_sizes, frame(rot("C1"), c1_centre))

    # Skull frame: origin at the foramen magnum's centre, above the dens; head nodding.
    c1 = levels["C1"]
    nod = float(rng.uniform(-8, 12))
    skull_rot = rotation("x", -(theta["C1"] + nod))
    fm = c1.point((0, 4.0, c1_sizes["mass_hh"] + 2.0 + 9.0))
    skull = frame(skull_rot, fm)
    params = {"lordosis_deg": round(lordosis, 2), "kyphosis_deg": round(kyphosis, 2), "head_nod_deg": round(nod, 2),
              "scale": round(float(scale), 4), "degenerated_discs": [f"{u}/{CHILD[u]}" for u in vacuum],
              "vacuum_discs": [f"{u}/{CHILD[u]}" for u, v in vacuum.items() if v]}
    ordered = {name: levels[name] for name in NAMES}
    return Spine(ordered, discs, skull, params)


# ---------------------------------------------------------------- shapes per level


def _pillar(x, y, top, half_width=4.5, half_depth=5.8, tilt_deg=45.0):
    """An articular pillar whose upper and lower ends are facets tilted ``tilt_deg``
    from the axial plane (rising anteriorly, as in the cervical spine)."""
    s, c = np.sin(np.radians(tilt_deg)), np.cos(np.radians(tilt_deg))
    column = Box((x, y, 0.0), (half_width, half_depth, top + 9.0), rounding=1.5)
    upper = HalfSpace((x, y, top), (0.0, -s, c), extent=top + 20)
    lower = HalfSpace((x, y, -top), (0.0, s, -c), extent=top + 20)
    return Intersect([column, upper, lower])


def _spinous(s, y0, z0, r0, r1, bifid):
    length, down = s["sp_len"], np.radians(s["sp_down"])
    a = np.array([0.0, y0, z0])
    b = a + length * np.array([0.0, -np.cos(down), -np.sin(down)])
    parts = [Capsule(a, b, r0, r1)]
    if bifid:
        for side in (-1, 1):
            parts.append(Capsule(b, b + np.array([side * 3.5, -2.5, -1.5]), r1 * 0.85, r1 * 0.7))
    else:
        parts.append(Ellipsoid(b, (r1 + 0.8, r1 + 1.2, r1 + 1.5)))
    return parts


def _transverse(s, side, y, z, foramen_r, tip_tubercles=True):
    x0 = side * (s["body_rx"] - 1.0)
    x1 = side * s["tp"]
    bar = box_between((x0, y, z), (x1, y - 1.0, z - 1.5), width=7.5, height=5.0, rounding=1.5)
    parts = [bar]
    if tip_tubercles:
        parts += [Ellipsoid((x1, y + 2.8, z - 1.5), (3.0, 2.5, 3.5)), Ellipsoid((x1, y - 3.2, z - 1.8), (3.0, 2.5, 3.5))]
    holes = []
    if foramen_r:
        fx = side * (s["canal_rx"] + 2.6)
        holes.append(Capsule((fx, y, z - 12), (fx, y, z + 12), foramen_r))
    return Subtract(Union(parts), holes)


def _body(s, mods):
    """The body (compressed when ``mods`` say so) with any anterior osteophytes on its rims."""
    cy = s["canal_ry"] + 0.8 + s["body_ry"]
    body = EllipticCylinder((0.0, cy, 0.0), s["body_rx"], s["body_ry"], s["body_hh"],
                            wedge=mods.get("wedge", 0.0), dip=mods.get("dip", 0.0), power=s.get("body_power", 2.0))
    lips = []
    for key, sign in (("osteo_top", 1.0), ("osteo_bottom", -1.0)):
        size = s.get(key, 0.0)
        if size:
            lips.append(Ellipsoid((0.0, cy + s["body_ry"] - 1.0, sign * (s["body_hh"] - 0.3)),
                                  (s["body_rx"] * 0.75, 1.0 + size, 0.8 + size * 0.6)))
    return Union([body] + lips) if lips else body


def subaxial(level, mods):
    """C3 ... C7: body with uncinate processes, pedicles, articular pillars, transverse
    processes with foramina, laminae and a (bifid, C3-C6) spinous process."""
    s = level.sizes
    cy = level.body_cy
    hh, rx, ry = s["body_hh"], s["body_rx"], s["body_ry"]
    parts = [_body(s, mods)]
    top = hh + s["disc"] / 2 - 0.8
    for side in (-1, 1):
        parts.append(Box((side * (rx - 1.4), cy - ry * 0.35, hh + 1.0), (1.4, ry * 0.45, 1.8), rounding=1.0))  # uncinate
        parts.append(Capsule((side * s["canal_rx"] * 0.55, s["canal_ry"] + 1.5, 0.6),
                             (side * (s["canal_rx"] + 2.5), -0.5, 0.6), 2.6))  # pedicle
        parts.append(Capsule((side * s["canal_rx"] * 0.55, s["canal_ry"] + 1.5, -1.2),
                             (side * (s["canal_rx"] + 2.5), -0.5, -1.2), 2.4))
        parts.append(_pillar(side * (s["canal_rx"] + 4.3), -2.0, top))
        foramen = 1.6 if level.name == "C7" else 2.9
        parts.append(_transverse(s, side, s["canal_ry"] + 1.2, 0.0, foramen))
        parts.append(box_between((side * (s["canal_rx"] + 1.5), -s["canal_ry"] * 0.6, -1.0),
                                 (0.0, -(s["canal_ry"] + 3.0), -1.8), width=2.8, height=hh * 1.35, rounding=1.2))
    parts += _spinous(s, -(s["canal_ry"] + 2.2), -1.8, 3.0, 2.4, level.name in BIFID)
    canal = EllipticCylinder((0.0, 0.0, 0.0), s["canal_rx"], s["canal_ry"], hh + 12)
    return Subtract(Union(parts), [canal])


def axis_c2(level, mods):
    """C2: body and dens, broad superior facets, thick pars, small transverse processes,
    thick laminae and a big bifid spinous process."""
    s = level.sizes
    cy, hh = level.body_cy, s["body_hh"]
    dens_len = mods.get("dens_len", 15.0)
    lean = mods.get("dens_lean", -1.5)
    parts = [_body(s, mods),
             Capsule((0.0, cy - 1.2, hh - 2.0), (0.0, cy - 1.2 + lean, hh + dens_len - 3.5), 5.0, 3.8),
             Ellipsoid((0.0, cy - 0.5, -hh + 0.5), (s["body_rx"] * 0.6, 2.5, 2.0))]
    for side in (-1, 1):
        parts.append(Ellipsoid((side * 13.0, cy - 4.0, hh - 2.0), (6.5, 8.0, 5.5)))  # superior facet mass
        parts.append(Capsule((side * 8.0, s["canal_ry"] + 1.0, 0.0), (side * (s["canal_rx"] + 2.5), -2.5, -4.0), 3.6))
        parts.append(_pillar(side * (s["canal_rx"] + 4.0), -4.0, hh * 0.55, half_depth=5.0))
        parts.append(_transverse(s, side, s["canal_ry"] + 0.5, -2.5, 2.8, tip_tubercles=False))
        parts.append(box_between((side * (s["canal_rx"] + 2.0), -s["canal_ry"] * 0.6, -2.0),
                                 (0.0, -(s["canal_ry"] + 4.0), -3.0), width=4.5, height=11.0, rounding=1.8))
    parts += _spinous(s, -(s["canal_ry"] + 4.0), -3.0, 4.5, 3.4, True)
    canal = EllipticCylinder((0.0, 0.0, 0.0), s["canal_rx"], s["canal_ry"], hh + 12)
    return Subtract(Union(parts), [canal])


def atlas_c1(level, mods):
    """C1: a ring without a body; thick lateral masses with concave superior facets,
    anterior and posterior tubercles, wide transverse processes with foramina."""
    s = level.sizes
    ring = Subtract(EllipticCylinder((0.0, 4.5, 0.0), s["ring_rx"], s["ring_ry"], s["body_hh"]),
                    [EllipticCylinder((0.0, 5.0, 0.0), s["canal_rx"], s["canal_ry"], 20.0)])
    m = s["mass_hh"]
    parts = [ring, Ellipsoid((0.0, 4.5 + s["ring_ry"] - 0.5, 0.0), (5.0, 3.0, 5.5)),
             Ellipsoid((0.0, 4.5 - s["ring_ry"] + 0.5, -0.5), (5.0, 3.5, 5.0))]
    holes = []
    for side in (-1, 1):
        parts.append(Box((side * 17.5, 6.0, 0.0), (5.5, 8.0, m), rounding=2.5))
        holes.append(Ellipsoid((side * 17.0, 7.0, m + 3.2), (5.0, 7.0, 4.5)))  # socket for the condyle
        tp = s["tp"]
        bar = box_between((side * 20.0, 5.0, 0.0), (side * tp, 4.0, -1.0), width=8.0, height=7.5, rounding=2.0)
        parts.append(Subtract(Union([bar, Ellipsoid((side * tp, 4.0, -1.0), (4.0, 4.5, 5.0))]),
                              [Capsule((side * 27.0, 5.0, -12), (side * 27.0, 5.0, 12), 3.2)]))
    return Subtract(Union(parts), holes)


def thoracic(level, mods):
    """T1 ... T5: larger body, round canal, long posterolateral transverse processes,
    articular processes and a long, steep spinous process."""
    s = level.sizes
    hh = s["body_hh"]
    parts = [_body(s, mods)]
    for side in (-1, 1):
        parts.append(Capsule((side * s["canal_rx"] * 0.6, s["canal_ry"] + 1.5, 1.0),
                             (side * (s["canal_rx"] + 2.5), -2.0, 1.0), 3.4))  # pedicle
        parts.append(Box((side * (s["canal_rx"] + 2.5), -3.0, hh * 0.75), (3.0, 3.5, 4.5), rounding=1.5))
        parts.append(Box((side * (s["canal_rx"] + 1.0), -6.5, -hh * 0.8), (3.0, 3.5, 4.5), rounding=1.5))
        parts.append(Capsule((side * (s["canal_rx"] + 2.5), -2.0, 1.0), (side * s["tp"], -13.0, 4.0), 4.2, 5.2))
        parts.append(box_between((side * (s["canal_rx"] + 2.5), -3.0, -1.0), (0.0, -(s["canal_ry"] + 3.5), -2.0),
                                 width=4.0, height=hh * 1.6, rounding=1.5))
    parts += _spinous(s, -(s["canal_ry"] + 3.0), -2.0, 3.5, 3.3, False)
    canal = EllipticCylinder((0.0, 0.0, 0.0), s["canal_rx"], s["canal_ry"], hh + 12)
    return Subtract(Union(parts), [canal])


def vertebra_shape(level, mods=None):
    mods = mods or {}
    if level.name == "C1":
        return atlas_c1(level, mods)
    if level.name == "C2":
        return axis_c2(level, mods)
    if level.name.startswith("C"):
        return subaxial(level, mods)
    return thoracic(level, mods)


def disc_shape(rx, ry, half_height):
    return EllipticCylinder((0.0, 0.0, 0.0), rx, ry, half_height)
