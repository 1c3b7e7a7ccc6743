"""The whole spine, C1 to the sacrum, stacked into a patient: level sizes, curves, variants,
degeneration and planted compressions.

Each vertebra lives in its own frame as in SpineAITraining.cervical.anatomy (origin on the
canal axis at mid-height of the body, x to the patient's right, y anterior, z superior, mm)
and is a ``cervical.anatomy.Level``, so the cervical shapes (C1-C7) are reused unchanged.
Sizes are adult means: C2-T5 from the cervical phantom's table, T6-L5 from Panjabi's
morphometry (thoracic 1991, lumbar 1992: bodies about 19 mm tall at T6, 24 mm at T12,
26-27 mm at L1-L5; 28 mm wide at T6, 40 mm at T12, 42-50 mm in the lumbar spine; discs
5 mm mid-thoracic, 8 mm at T12/L1, 9-12 mm lumbar), scaled per patient and jittered per level.

The spine is stacked bottom-up from S1 (the sacrum's top segment, its frame tilted by the
sacral slope) along sagittal angles drawn per patient (lumbar lordosis, thoracic kyphosis,
cervical lordosis, sometimes a scoliosis with its axial rotation), then turned so that the
line S1-T1 is vertical: that frame is the patient frame.

Variants (for naming): 11 or 13 rib pairs (no ribs on T12; a thirteenth thoracic vertebra
T13 or ribs on L1), a lumbosacral transitional vertebra (a sixth lumbar vertebra L6, or a
sacralised L5 with its transverse processes on or fused to the sacral ala and a rudimentary
disc), a cervical rib on C7.

Planted compressions (Genant 1993 grades): ``Compression``'s height loss is relative to the
body's own intact height; a wedge lowers the anterior top, a biconcave body has both endplates
depressed centrally, a crush lowers the whole body (and a little more in front). The truth
heights are read off the same surfaces the renderer draws (``body_heights``).
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from SpineAITraining.cervical.anatomy import SIZE_KEYS, Level, frame
from SpineAITraining.cervical.anatomy import SIZES as CERVICAL_SIZES
from SpineAITraining.cervical.sdf import (
    Ellipsoid,
    EllipticCylinder,
    HalfSpace,
    Intersect,
    rotation,
)

from .shapes import DEPTH_FRACTION

# body_rx body_ry body_hh canal_rx canal_ry disc tp sp_len sp_down (as the cervical table)
TRUNK_SIZES = {
    "T6": (14.5, 13.3, 9.8, 8.0, 7.5, 4.8, 34.0, 42.0, 60.0),
    "T7": (15.0, 13.8, 10.0, 8.0, 7.5, 5.0, 33.0, 42.0, 60.0),
    "T8": (15.6, 14.3, 10.3, 8.0, 7.5, 5.2, 32.0, 40.0, 58.0),
    "T9": (16.3, 14.8, 10.6, 8.2, 7.5, 5.5, 31.0, 38.0, 52.0),
    "T10": (17.2, 15.3, 11.0, 8.5, 7.5, 6.0, 29.0, 36.0, 45.0),
    "T11": (18.3, 15.8, 11.5, 9.0, 7.8, 6.8, 24.0, 33.0, 35.0),
    "T12": (19.5, 16.3, 12.0, 9.5, 8.0, 8.0, 20.0, 30.0, 22.0),
    "L1": (21.0, 16.8, 12.8, 10.5, 8.2, 9.0, 28.0, 30.0, 8.0),
    "L2": (22.0, 17.2, 13.2, 11.0, 8.2, 10.0, 36.0, 31.0, 5.0),
    "L3": (23.2, 17.6, 13.5, 11.5, 8.0, 11.0, 42.0, 31.0, 3.0),
    "L4": (24.0, 17.8, 13.5, 12.0, 8.0, 11.5, 38.0, 29.0, 3.0),
    "L5": (25.0, 17.5, 13.2, 13.0, 8.0, 10.5, 40.0, 24.0, 5.0),
    "S1": (25.0, 18.0, 14.0, 13.0, 7.0, 0.0, 0.0, 0.0, 0.0),
}
VERSE = {f"C{i}": i for i in range(1, 8)}
VERSE.update({f"T{i}": 7 + i for i in range(1, 13)})
VERSE.update({f"L{i}": 19 + i for i in range(1, 6)})
VERSE.update({"L6": 25, "S1": 26, "T13": 28})  # as SpineAILib.terminology
GENANT_LOSS = {1: (0.21, 0.24), 2: (0.28, 0.37), 3: (0.44, 0.58)}  # planted losses, inside each grade's band
COMPRESSIBLE = tuple(f"T{i}" for i in range(4, 14)) + tuple(f"L{i}" for i in range(1, 7))


@dataclass
class Compression:
    """A planted vertebral compression: height loss against the body's own intact height."""

    level: str
    morphology: str  # "wedge", "biconcave" or "crush"
    grade: int  # Genant grade 1-3 the loss was drawn in
    loss: float  # planted loss of the lowest height (anterior for a wedge, middle for a biconcave body)
    crush: float = 0.0  # a crush: uniform loss of the whole body (posterior too)

    def mods(self, half_height):
        """Parameters of ``shapes.body_surfaces`` for this compression."""
        if self.morphology == "wedge":
            return {"wedge": self.loss}
        if self.morphology == "biconcave":
            return {"concave_top": self.loss * half_height, "concave_bottom": self.loss * half_height}
        wedge = 1.0 - (1.0 - self.loss) / (1.0 - self.crush)
        return {"crush": self.crush, "wedge": wedge}

    def to_json(self):
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class WholeSpine:
    levels: dict  # name -> Level, cranial to caudal (C1 ... S1), in the patient frame
    discs: list  # (upper name, lower name, disc Shape in the patient frame, vacuum Shape or None)
    skull: np.ndarray  # 4x4: skull frame (origin at the foramen magnum) -> patient
    names: list  # C1 ... S1 as drawn (with T13 / L6 where the variant has them)
    verse: dict  # name -> VerSe number
    mods: dict  # name -> body_surfaces parameters (compressions, physiological wedging)
    compressions: list  # [Compression]
    osteophytes: dict  # name -> mm of the largest rim osteophyte (0: none)
    variants: dict
    params: dict = field(default_factory=dict)

    def canal(self, name):
        return self.levels[name].to_patient[:3, 3].copy()


def level_names(variants):
    """C1 ... S1 for the variants: T13 after T12, L6 after L5."""
    names = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)]
    if variants.get("thoracic", 12) == 13:
        names.append("T13")
    names += [f"L{i}" for i in range(1, 6)]
    if variants.get("transitional") == "L6":
        names.append("L6")
    return names + ["S1"]


def _mean_sizes(name, names):
    """The table's sizes of a level; T13 sits between T12 and L1, L6 copies L5 (L5 then a shade smaller)."""
    if name in CERVICAL_SIZES:
        return dict(zip(SIZE_KEYS, CERVICAL_SIZES[name]))
    if name in TRUNK_SIZES:
        values = TRUNK_SIZES[name]
        if name == "L5" and "L6" in names:
            values = tuple(0.5 * (a + b) for a, b in zip(TRUNK_SIZES["L4"], values))
        return dict(zip(SIZE_KEYS, values))
    if name == "T13":
        t12, l1 = TRUNK_SIZES["T12"], TRUNK_SIZES["L1"]
        s = dict(zip(SIZE_KEYS, (0.5 * (a + b) for a, b in zip(t12, l1))))
        s.update(tp=18.0, sp_down=15.0)
        return s
    if name == "L6":
        return dict(zip(SIZE_KEYS, TRUNK_SIZES["L5"]))
    raise KeyError(name)


def draw_sizes(rng, names, scale, variants):
    """Per-level sizes: the mean table x the patient's scale x a small per-level jitter."""
    jitter = lambda: float(rng.normal(1.0, 0.03))
    sizes = {}
    for name in names:
        if name == "C1":
            continue
        s = _mean_sizes(name, names)
        for key in ("body_rx", "body_ry", "body_hh", "disc", "canal_rx", "canal_ry", "tp", "sp_len"):
            s[key] *= scale * jitter()
        s["sp_down"] += float(rng.normal(0, 4))
        s["osteo_top"] = s["osteo_bottom"] = 0.0
        s["body_power"] = float(rng.uniform(2.4, 3.0)) if name.startswith("C") else float(rng.uniform(2.0, 2.5))
        sizes[name] = s
    if variants.get("transitional") == "sacralised_L5":
        sizes["L5"]["disc"] *= float(rng.uniform(0.15, 0.35))  # a rudimentary L5/S1 disc
    sizes["C1"] = {"canal_rx": 14.5, "canal_ry": 17.0, "body_hh": 4.5 * scale, "mass_hh": 8.5 * scale,
                   "ring_rx": 23.0 * scale, "ring_ry": 22.5 * scale, "tp": 37.0 * scale * jitter()}
    return sizes


def _degenerate(rng, names, sizes, degeneration, protected):
    """Narrowed discs with rim osteophytes on both neighbours, sometimes gas (vacuum); most
    often at C5-C7, mid-thoracic and L4-S1. Returns {upper name: vacuum?} and {name: osteophyte mm}."""
    weight = {"C": 0.6, "T": 0.35, "L": 0.8}
    vacuum, osteo = {}, {n: 0.0 for n in names}
    for upper, lower in zip(names[1:-1], names[2:]):
        if upper == "C1" or upper == "C2":
            continue
        w = weight[upper[0]] * (1.4 if upper in ("C5", "C6", "L4", "L5", "L6") else 1.0)
        if rng.random() >= degeneration * w:
            continue
        sizes[upper]["disc"] *= float(rng.uniform(0.4, 0.85))
        vacuum[upper] = bool(rng.random() < 0.2)
        for name, key in ((upper, "osteo_bottom"), (lower, "osteo_top")):
            if name in protected or name == "S1":
                continue  # planted compressions keep clean rims: their heights are the truth
            size = float(rng.uniform(1.0, 3.0 if upper.startswith("C") else 5.0))
            sizes[name][key] = size
            osteo[name] = max(osteo[name], size)
    return vacuum, osteo


def _sagittal_angles(rng, names, kyphosis_extra=0.0):
    """{name: degrees the level's axis leans forward (+) from vertical}, before straightening."""
    theta = {}
    slope = float(rng.uniform(30, 50))  # sacral slope
    lordosis = float(rng.uniform(35, 65))
    kyphosis = float(rng.uniform(25, 50)) + kyphosis_extra
    cervical = float(rng.choice([rng.uniform(10, 35), rng.uniform(-8, 10)], p=[0.75, 0.25]))
    theta["S1"] = slope
    lumbar = [n for n in reversed(names) if n.startswith("L")]
    share = np.array([0.35, 0.25, 0.18, 0.12, 0.10, 0.08][:len(lumbar)])
    share /= share.sum()
    below = "S1"
    for name, w in zip(lumbar, share):
        theta[name] = theta[below] - lordosis * float(w) + float(rng.normal(0, 1.0))
        below = name
    thoracic = [n for n in reversed(names) if n.startswith("T")]
    for i, name in enumerate(thoracic):
        theta[name] = theta[below] + kyphosis / len(thoracic) * (0.4 if i == 0 else 1.0) + float(rng.normal(0, 0.8))
        below = name
    for name in ("C7", "C6", "C5", "C4", "C3", "C2"):
        theta[name] = theta[below] - cervical / 6 + float(rng.normal(0, 1.5))
        below = name
    theta["C1"] = theta["C2"] - float(rng.uniform(-4, 10))
    params = {"sacral_slope_deg": slope, "lumbar_lordosis_deg": lordosis, "thoracic_kyphosis_deg": kyphosis,
              "cervical_lordosis_deg": cervical}
    return theta, params


def _coronal_angles(rng, names, cobb):
    """({name: roll deg}, {name: yaw deg}): a scoliosis of ``cobb`` degrees (0: none) with its
    apex's axial rotation, and small per-level jitter."""
    roll = {n: float(rng.normal(0, 1.0)) for n in names}
    yaw = {n: float(rng.normal(0, 1.5)) for n in names}
    apex_name = None
    if cobb > 0:
        movable = [i for i, n in enumerate(names) if n[0] in "TL"]
        apex = int(rng.choice(movable[4:-2]))
        span = float(rng.uniform(3.5, 6.0))
        direction = float(rng.choice([-1.0, 1.0]))
        for i, n in enumerate(names):
            if n == "S1":
                continue
            t = float(np.clip((i - apex) / span, -1, 1))
            roll[n] += direction * cobb / 2 * t
            yaw[n] += direction * 0.3 * cobb * max(0.0, 1 - abs(i - apex) / span)
        apex_name = names[apex]
    return roll, yaw, apex_name


def draw_compressions(rng, names, spec, osteoporotic):
    """[Compression] from ``spec`` (None: drawn; a list of names, (name, morphology, grade)
    tuples or dicts with level / morphology / grade / loss)."""
    candidates = [n for n in names if n in COMPRESSIBLE]
    if spec is None:
        if rng.random() >= (0.4 if osteoporotic else 0.1):
            return []
        weights = np.array([1.6 if n in ("T7", "T8", "T11", "T12", "L1", "L2") else 1.0 for n in candidates])
        count = int(rng.choice([1, 2, 3], p=[0.6, 0.28, 0.12]))
        spec = list(rng.choice(candidates, size=count, replace=False, p=weights / weights.sum()))
    out = []
    for item in spec:
        if isinstance(item, str):
            item = {"level": item}
        elif not isinstance(item, dict):
            item = dict(zip(("level", "morphology", "grade"), item))
        level = str(item["level"])
        if level not in candidates:
            raise ValueError(f"a compression must be planted in one of {', '.join(candidates)}, got {level!r}")
        grade = int(item.get("grade") or rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))
        if grade not in GENANT_LOSS:
            raise ValueError(f"Genant grade must be 1, 2 or 3, got {grade}")
        morphology = item.get("morphology") or str(rng.choice(["wedge", "biconcave", "crush"], p=[0.55, 0.3, 0.15]))
        if morphology not in ("wedge", "biconcave", "crush"):
            raise ValueError(f"morphology must be wedge, biconcave or crush, got {morphology!r}")
        if morphology == "crush" and grade == 1:
            morphology = "wedge"  # a crush lowers the posterior wall >= 20 %: grade 2 at least
        loss = float(item.get("loss") or rng.uniform(*GENANT_LOSS[grade]))
        crush = float(loss * rng.uniform(0.75, 0.9)) if morphology == "crush" else 0.0
        out.append(Compression(level, morphology, grade, loss, crush))
    return out


def _top_rim(sizes, mods):
    """(height of the top rim plane at the body's mid-depth above its centre, the plane's forward tilt in deg)."""
    h, ry = sizes["body_hh"], sizes["body_ry"]
    crush, wedge = mods.get("crush", 0.0), mods.get("wedge", 0.0)
    drop = 2 * h * (1 - crush) * wedge
    tilt = float(np.degrees(np.arctan2(drop, 2 * DEPTH_FRACTION * ry)))
    return h - 2 * h * crush - drop / 2, tilt


def _disc(lower, upper, rx, ry, height, sink_lower, sink_upper, vacuum, rng):
    """The disc between two stacked levels (patient frame): an elliptic column cut by the lower
    body's top and the upper body's bottom planes, each moved into the bone by ``sink`` mm so a
    depressed endplate fills with disc; the vacuum gas cleft, when drawn."""
    lo_axis = lower.to_patient[:3, :3] @ [0, 0, 1.0]
    up_axis = upper.to_patient[:3, :3] @ [0, 0, 1.0]
    bottom = upper.point((0, upper.body_cy, -upper.sizes["body_hh"]))
    top = lower.point((0, lower.body_cy, lower.sizes["body_hh"]))
    mid = (bottom + top) / 2
    axis = (lo_axis + up_axis) / np.linalg.norm(lo_axis + up_axis)
    rot = _rotation_to(axis)
    column = EllipticCylinder(mid, rx, ry, height / 2 + max(sink_lower, sink_upper) + 14.0, rot=rot)
    shape = Intersect([column, HalfSpace(bottom + up_axis * sink_upper, up_axis, extent=80.0),
                       HalfSpace(top - lo_axis * sink_lower, -lo_axis, extent=80.0)])
    gas = None
    if vacuum:
        gas = Ellipsoid(mid + rot @ [float(rng.uniform(-3, 3)), ry * 0.1, 0.0],
                        (rx * 0.45, ry * 0.35, max(height / 2 - 1.0, 0.5)), rot=rot)
    return shape, gas


def _discs(rng, names, levels, mods, vacuum):
    """[(upper, lower, disc shape, gas shape or None)] from C2/C3 down to the disc above S1;
    the lower plane sinks to the compressed endplate's lowest point (the disc fills it)."""
    out = []
    for upper_name, lower_name in zip(names[1:-1], names[2:]):
        upper, lower = levels[upper_name], levels[lower_name]
        h, m = lower.sizes["body_hh"], mods[lower_name]
        sink_lo = 0.6 + 2 * h * m.get("crush", 0.0) + 2 * h * (1 - m.get("crush", 0.0)) * m.get("wedge", 0.0) \
            + m.get("concave_top", 0.0)
        sink_up = 0.6 + mods[upper_name].get("concave_bottom", 0.0)
        rx = 0.97 * (upper.sizes["body_rx"] + lower.sizes["body_rx"]) / 2
        ry = 0.97 * (upper.sizes["body_ry"] + lower.sizes["body_ry"]) / 2
        shape, gas = _disc(lower, upper, rx, ry, upper.sizes["disc"], sink_lo, sink_up,
                           vacuum.get(upper_name, False), rng)
        out.append((upper_name, lower_name, shape, gas))
    return out


def _rotation_to(axis):
    """A rotation whose z column is ``axis`` and whose x column stays close to the patient's x."""
    z = np.asarray(axis, float) / np.linalg.norm(axis)
    x = np.array([1.0, 0.0, 0.0]) - z[0] * z
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def draw_whole_spine(rng, variants, scale=1.0, degeneration=0.3, cobb=0.0, osteoporotic=False):
    """A patient's spine in the patient frame (x right, y anterior, z superior, mm); see the module docstring."""
    names = level_names(variants)
    sizes = draw_sizes(rng, names, scale, variants)
    compressions = draw_compressions(rng, names, variants.get("compressions"), osteoporotic)
    protected = {c.level for c in compressions}
    vacuum, osteophytes = _degenerate(rng, names, sizes, degeneration, protected)
    theta, curve = _sagittal_angles(rng, names, kyphosis_extra=10.0 if osteoporotic else 0.0)
    roll, yaw, apex = _coronal_angles(rng, names, cobb)

    mods = {n: {} for n in names}
    for n in names:  # physiological wedging of the mid-thoracic bodies (kyphosis), not a fracture
        if n in ("T5", "T6", "T7", "T8", "T9", "T10"):
            mods[n] = {"wedge": float(rng.uniform(0.0, 0.08))}
    for c in compressions:
        mods[c.level] = c.mods(sizes[c.level]["body_hh"])
    # A wedge or crush kinks the spine forward above it: every level above leans by its tilt.
    order_up = list(reversed(names))  # S1 ... C1
    kink = 0.0
    for n in order_up:
        theta[n] += kink
        if n in protected:
            kink += _top_rim(sizes[n], mods[n])[1]

    def rot(n):
        return rotation("x", -theta[n]) @ rotation("y", roll[n]) @ rotation("z", yaw[n])

    levels = {"S1": Level("S1", sizes["S1"], frame(rot("S1"), np.zeros(3)))}
    for lower_name, upper_name in zip(order_up[:-2], order_up[1:-1]):  # up to C2
        lower, up = levels[lower_name], sizes[upper_name]
        rim, tilt = _top_rim(lower.sizes, mods[lower_name])
        top_lo = lower.point((0, lower.body_cy, rim))
        lo_axis = lower.to_patient[:3, :3] @ rotation("x", -tilt) @ [0, 0, 1.0]
        r_up = rot(upper_name)
        axis = lo_axis + r_up @ [0, 0, 1.0]
        axis /= np.linalg.norm(axis)
        gap = up["disc"] if upper_name != "S1" else 0.0
        bottom_up = top_lo + axis * gap
        body_cy_up = up["canal_ry"] + 0.8 + up["body_ry"]
        centre_up = bottom_up - r_up @ np.array([0.0, body_cy_up, -up["body_hh"]])
        levels[upper_name] = Level(upper_name, up, frame(r_up, centre_up))
    # the C2/C3 disc was stacked above; C1 rests on C2's lateral masses, the skull on C1 (cervical phantom).
    c2, c1s = levels["C2"], sizes["C1"]
    c1_centre = c2.point((0, 0, c2.sizes["body_hh"] + 3.5 + 2.0 + c1s["mass_hh"]))
    levels["C1"] = Level("C1", c1s, frame(rot("C1"), c1_centre))
    nod = float(rng.uniform(-8, 12))
    fm = levels["C1"].point((0, 4.0, c1s["mass_hh"] + 2.0 + 9.0))
    skull = frame(rotation("x", -(theta["C1"] + nod)), fm)

    # Straighten: the line from S1's canal to T1's canal becomes the patient's z axis.
    line = levels["T1"].to_patient[:3, 3] - levels["S1"].to_patient[:3, 3]
    pitch = np.degrees(np.arctan2(line[1], line[2]))
    tilt = np.degrees(np.arctan2(line[0], np.hypot(line[1], line[2])))
    straighten = frame(rotation("y", -tilt) @ rotation("x", pitch), np.zeros(3))
    for level in levels.values():
        level.to_patient = straighten @ level.to_patient
    skull = straighten @ skull
    discs = _discs(rng, names, levels, mods, vacuum)

    ordered = {n: levels[n] for n in names}
    params = {**{k: round(v, 2) for k, v in curve.items()}, "scale": round(float(scale), 4),
              "scoliosis_cobb_deg": round(float(cobb), 1), "scoliosis_apex": apex,
              "degenerated_discs": [f"{u}/{names[names.index(u) + 1]}" for u in vacuum],
              "vacuum_discs": [f"{u}/{names[names.index(u) + 1]}" for u, v in vacuum.items() if v],
              "head_nod_deg": round(nod, 2), "sacral_curve_deg": round(float(rng.uniform(10, 18)), 2),
              "ala_width": round(float(rng.uniform(22, 30) * scale), 2)}
    return WholeSpine(ordered, discs, skull, names, {n: VERSE[n] for n in names}, mods, compressions,
                      osteophytes, dict(variants), params)
