"""Fractures of the phantom's vertebrae: what is drawn, and how it changes a shape.

Three mechanisms cover the fracture types seen in cervical trauma CT:

* a **gap** (``line``): a slab 1-2.5 mm wide through the bone, limited to a disc of
  radius R around its centre, so it breaks the cortex partly or right through
  (body, lamina, pedicle/pars, articular pillar, transverse process, C1 ring);
* a **displaced fragment**: the bone on one side of a cut plane, inside a region, is
  moved by a small rigid transform (dens fracture, teardrop, spinous process avulsion,
  retropulsed piece of a burst fracture);
* a **compressed body**: the body's top is lowered anteriorly (wedge) and depressed
  centrally, with denser (impacted) trabecular bone under it.

Each fracture also has a *zone*: where a reader would draw its box. All geometry is in
the vertebra's local frame (SpineAITraining.cervical.anatomy) and JSON-serialisable.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from .sdf import Ellipsoid, EllipticCylinder, HalfSpace, Intersect, Moved, Shape, Subtract, Union

# How often each kind is drawn at a level (RSNA trauma: dens at C2, clay-shoveler at C7).
KINDS = {
    "C1": {"ring_break": 1.0},
    "C2": {"dens": 0.45, "hangman": 0.15, "body_line": 0.13, "teardrop": 0.08, "lamina": 0.07, "spinous": 0.06,
           "pillar": 0.06},
    "sub": {"body_line": 0.22, "compression": 0.2, "teardrop": 0.09, "burst": 0.08, "lamina": 0.12, "spinous": 0.07,
            "pillar": 0.13, "transverse": 0.09},
    "C7": {"body_line": 0.15, "compression": 0.17, "teardrop": 0.05, "burst": 0.05, "lamina": 0.1, "spinous": 0.28,
           "pillar": 0.1, "transverse": 0.1},
}
# Relative frequency of fractured levels in the RSNA 2022 labels (C7 and C2 most often).
LEVEL_WEIGHTS = {"C1": 0.074, "C2": 0.141, "C3": 0.036, "C4": 0.053, "C5": 0.080, "C6": 0.133, "C7": 0.190}


@dataclass
class Fracture:
    vertebra: str
    kind: str
    gaps: list = field(default_factory=list)  # [{"p0", "normal", "width", "radius"}]
    fragment: dict = None  # {"p0", "normal", "width", "centre", "radii", "transform" (4x4)}
    wedge: float = 0.0  # anterior height loss, fraction of the body height
    dip: float = 0.0  # central endplate depression, mm
    impaction: bool = False

    def to_json(self):
        return _rounded(asdict(self))


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_rounded(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return round(float(value), 4)
    return value


def _unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _random_unit(rng):
    return _unit(rng.normal(size=3))


def rigid(p0, axis, degrees, translation):
    """4x4: rotate ``degrees`` about ``axis`` through ``p0``, then translate."""
    a = _unit(axis)
    t = np.radians(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    rot = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)
    m = np.eye(4)
    m[:3, :3] = rot
    p0 = np.asarray(p0, float)
    m[:3, 3] = p0 - rot @ p0 + np.asarray(translation, float)
    return m


def _gap(p0, normal, width, radius):
    return {"p0": list(map(float, p0)), "normal": list(map(float, _unit(normal))), "width": float(width), "radius": float(radius)}


# ---------------------------------------------------------------- drawing


def draw_fractures(rng, spine, names):
    """One Fracture (sometimes two) for each vertebra in ``names``."""
    out = []
    for name in names:
        table = KINDS.get(name, KINDS["C7"] if name == "C7" else KINDS["sub"])
        kinds, weights = zip(*table.items())
        weights = np.asarray(weights) / np.sum(weights)
        n = 1 if rng.random() < 0.75 or name == "C1" else 2
        chosen = rng.choice(len(kinds), size=n, replace=False, p=weights)
        for index in chosen:
            out.append(_draw(rng, spine.levels[name], kinds[index]))
    return out


def _draw(rng, level, kind):
    s = level.sizes
    name = level.name
    u = rng.uniform
    width = lambda: float(u(1.0, 2.4))  # noqa: E731
    if kind == "ring_break":
        a, b = (s["ring_rx"] + s["canal_rx"]) / 2, (s["ring_ry"] + s["canal_ry"]) / 2
        gaps = []
        n_breaks = int(rng.choice([1, 2, 3, 4], p=[0.35, 0.35, 0.15, 0.15]))
        centres = rng.choice([90.0, 270.0], size=n_breaks) + rng.uniform(-45, 45, size=n_breaks)
        for phi in np.radians(centres):
            p0 = (a * np.cos(phi), 4.5 + b * np.sin(phi), float(u(-1.5, 1.5)))
            tangent = (-a * np.sin(phi), b * np.cos(phi), float(u(-0.3, 0.3)) * a)
            gaps.append(_gap(p0, tangent + rng.normal(0, 0.15, 3) * a, width(), float(u(7, 10))))
        return Fracture(name, kind, gaps=gaps)

    cy, hh, rx, ry = level.body_cy, s["body_hh"], s["body_rx"], s["body_ry"]
    cr_x, cr_y = s["canal_rx"], s["canal_ry"]
    if kind == "body_line":
        p0 = (u(-rx / 2, rx / 2), cy + u(-ry / 3, ry / 3), u(-hh / 2, hh / 2))
        radius = float(rng.choice([u(6, 9), u(12, 20)]))  # partial, or right through
        return Fracture(name, kind, gaps=[_gap(p0, _random_unit(rng), width(), radius)])
    if kind == "lamina":
        gaps = []
        sides = [-1, 1] if rng.random() < 0.35 else [int(rng.choice([-1, 1]))]
        for side in sides:
            a = np.array([side * (cr_x + 1.5), -cr_y * 0.6, -1.0])
            b = np.array([0.0, -(cr_y + 3.0), -1.8])
            p0 = a + (b - a) * u(0.3, 0.7)
            gaps.append(_gap(p0, _unit(b - a) + rng.normal(0, 0.3, 3), width(), float(u(5, 8))))
        return Fracture(name, kind, gaps=gaps)
    if kind == "pillar":
        side = int(rng.choice([-1, 1]))
        p0 = (side * (cr_x + 4.3), u(-4, 0), u(-hh / 2, hh / 2))
        normal = np.array([0, 0, 1.0]) + rng.normal(0, 0.6, 3)
        return Fracture(name, kind, gaps=[_gap(p0, normal, width(), float(u(6, 9)))])
    if kind == "transverse":
        side = int(rng.choice([-1, 1]))
        p0 = (side * (cr_x + u(1, 8)), cr_y + 1.2, 0.0)
        normal = np.array([1.0, 0, 0]) + rng.normal(0, 0.35, 3)
        return Fracture(name, kind, gaps=[_gap(p0, normal, width(), float(u(5, 7)))])
    if kind == "hangman":
        gaps = []
        for side in (-1, 1):
            a = np.array([side * 8.0, cr_y + 1.0, 0.0])
            b = np.array([side * (cr_x + 2.5), -2.5, -4.0])
            p0 = a + (b - a) * u(0.35, 0.65)
            gaps.append(_gap(p0, _unit(b - a) + rng.normal(0, 0.3, 3), width(), float(u(5, 7))))
        return Fracture(name, kind, gaps=gaps)
    if kind in ("compression", "burst"):
        wedge = float(u(0.15, 0.42)) if kind == "compression" else float(u(0.12, 0.3))
        dip = float(u(0.0, 1.5)) if kind == "compression" else float(u(1.5, 3.0))
        f = Fracture(name, kind, wedge=wedge, dip=dip, impaction=True)
        if kind == "compression" and rng.random() < 0.5:  # the anterior cortex buckles
            f.gaps.append(_gap((u(-rx / 3, rx / 3), cy + ry * 0.8, hh * 0.2), (0, 0.3, 1.0), width(), float(u(4, 6))))
        if kind == "burst":
            p0 = np.array([0.0, cy - ry * 0.45, hh * 0.2])
            normal = _unit((0.0, -1.0, 0.6))
            f.gaps.append(_gap((u(-2, 2), cy, 0.0), (1.0, u(-0.2, 0.2), 0.0), width(), float(u(8, 12))))
            f.fragment = _fragment(p0, normal, 1.2, p0 + normal * 3, (rx * 0.6, ry * 0.5, hh * 0.7),
                                   rigid(p0, (1, 0, 0), float(u(-8, 8)), (0, -float(u(1.5, 3.0)), 0)))
        return f
    if kind == "teardrop":
        p0 = np.array([0.0, cy + ry * 0.55, -hh * 0.5])
        normal = _unit((0.0, 1.0, -1.2))
        move = rigid(p0, (1, 0, 0), float(u(5, 12)), (0, float(u(1.5, 3.0)), -float(u(0.5, 2.0))))
        return Fracture(name, kind, fragment=_fragment(p0, normal, width(), p0 + normal * 2.5, (rx * 0.8, 5.5, 5.5), move))
    if kind == "dens":
        low = rng.random() < 0.25  # type III: through the top of the body
        p0 = np.array([0.0, cy - 1.2, hh - 3.0 if low else hh + float(u(0.0, 2.0))])
        tilt = np.radians(float(u(-15, 15)))
        normal = np.array([0.0, np.sin(tilt), np.cos(tilt)])
        move = rigid(p0, (1, 0, 0), float(u(-12, 12)), (float(u(-0.5, 0.5)), float(rng.choice([-1, 1]) * u(0.8, 3.5)), 0.0))
        radii = (8.0, 8.0, 12.0) if low else (6.2, 7.0, 11.0)
        return Fracture(name, kind, fragment=_fragment(p0, normal, width(), p0 + np.array([0, 0, 9.0]), radii, move))
    if kind == "spinous":
        length, down = s["sp_len"], np.radians(s["sp_down"])
        y0 = -(cr_y + (4.0 if name == "C2" else 2.2 if name.startswith("C") else 3.0))
        a = np.array([0.0, y0, -2.0])
        direction = np.array([0.0, -np.cos(down), -np.sin(down)])
        f = float(u(0.35, 0.7))
        p0 = a + direction * length * f
        rest = length * (1 - f)
        move = rigid(p0, (1, 0, 0), float(u(-15, -4)), (0, -float(u(0.5, 2.0)), -float(u(1.5, 4.5))))
        return Fracture(name, kind, fragment=_fragment(p0, direction, width(), p0 + direction * (rest / 2 + 2),
                                                       (rest / 2 + 7, rest / 2 + 7, rest / 2 + 7), move))
    raise ValueError(f"unknown fracture kind {kind!r}")


def _fragment(p0, normal, width, centre, radii, transform):
    return {"p0": list(map(float, p0)), "normal": list(map(float, _unit(normal))), "width": float(width),
            "centre": list(map(float, centre)), "radii": list(map(float, radii)),
            "transform": np.asarray(transform, float).tolist()}


def body_mods(fractures):
    """What the fractures change in the vertebra's shape itself (its body's height)."""
    mods = {}
    for f in fractures:
        mods["wedge"] = max(mods.get("wedge", 0.0), f.wedge)
        mods["dip"] = max(mods.get("dip", 0.0), f.dip)
    return mods


# ---------------------------------------------------------------- applying


class Slab(Shape):
    """|(p - p0) . n| <= width / 2 is inside."""

    def __init__(self, p0, normal, width, extent=60.0):
        self.p0 = np.asarray(p0, float)
        self.n = _unit(normal)
        self.half = float(width) / 2
        self.extent = float(extent)

    def bounds(self):
        return self.p0 - self.extent, self.p0 + self.extent

    def distance(self, x, y, z):
        n, p = self.n.astype(np.float32), self.p0.astype(np.float32)
        return np.abs((x - p[0]) * n[0] + (y - p[1]) * n[1] + (z - p[2]) * n[2]) - np.float32(self.half)


def _gap_shape(gap, extra=0.0):
    return Intersect([Slab(gap["p0"], gap["normal"], gap["width"] + extra),
                      Ellipsoid(gap["p0"], (gap["radius"] + extra / 2,) * 3)])


def _fragment_region(frag, side, extra=0.0):
    """Bone on the fragment's side of its cut (side +1) or the cut's whole width (side -1)."""
    n = np.asarray(frag["normal"], float)
    p0 = np.asarray(frag["p0"], float)
    offset = frag["width"] / 2 * side
    return Intersect([HalfSpace(p0 + n * offset, -n),
                      Ellipsoid(frag["centre"], np.asarray(frag["radii"], float) + extra)])


def fractured_shape(shape, fractures):
    """(the fractured shape, the zone shape) for a vertebra ``shape`` and its fractures."""
    if not fractures:
        return shape, None
    out = shape
    zones = []
    for f in fractures:
        if f.fragment:
            frag = f.fragment
            move = np.asarray(frag["transform"], float)
            piece = Intersect([out, _fragment_region(frag, +1)])
            out = Union([Subtract(out, [_fragment_region(frag, -1)]), Moved(piece, move)])
            near = Intersect([Slab(frag["p0"], frag["normal"], frag["width"] + 5.0),
                              Ellipsoid(frag["centre"], np.asarray(frag["radii"], float) + 2.0)])
            zones += [near, Moved(near, move)]
    gaps = [_gap_shape(g) for f in fractures for g in f.gaps]
    if gaps:
        out = Subtract(out, gaps)
    zones += [_gap_shape(g, extra=5.0) for f in fractures for g in f.gaps]
    return out, (Union(zones) if zones else None)


def compression_zone(level, fractures):
    """The top of a compressed body (where its impacted bone and box are), or None."""
    wedge = max((f.wedge for f in fractures), default=0.0)
    if not wedge:
        return None
    s = level.sizes
    top = s["body_hh"] * (1 - 2 * wedge)
    body = EllipticCylinder((0.0, level.body_cy, 0.0), s["body_rx"] + 1.0, s["body_ry"] + 1.0, s["body_hh"] + 1.0)
    return Intersect([body, HalfSpace((0.0, 0.0, top - 4.0), (0.0, 0.0, -1.0))])
