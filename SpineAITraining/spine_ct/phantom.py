"""A CT phantom of the whole spine, C1 to the sacrum, on any field of view, with level labels,
rib labels and the truth a naming and measurement model is checked against.

``make_spine_ct(seed, field_of_view, spacing, size_mm, variants)`` draws a patient (age, sex,
size, fat, bone density, degeneration, scoliosis, curves; SpineAITraining.spine_ct.spine), the
variants that make naming hard (11 or 13 rib pairs, T13 or lumbar ribs, L6 or a sacralised
L5, a cervical rib), planted compressions with known Genant grade and heights, contrast
(arterial or portal venous, oral), metal (pedicle screws and rods, a hip prosthesis), the arms
(up beside the head or down beside the trunk), a reconstruction kernel and noise; then what the
scan covers ("neck": skull base to T1-T4; "chest": C5-C7 to T12-L2; "abdomen": the domes of
the diaphragm (about T9-T12) to the symphysis or the sacrum; "pelvis": L3-L5 to below the
ischial tuberosities; "whole": skull base to the thighs; "random": one of these or a slab of
6-26 cm anywhere along the spine, which may hold no anatomical anchor at all) and its grid
(0.5-5 mm slices; in-plane the field over 512 pixels, or a spine-targeted reconstruction).

Only the field of view is rendered: the tissue canvas covers the output grid (plus the slice
profile's margin) and every shape is evaluated only where its box meets it. Rendering:

1. soft tissues from tables along the body (SpineAITraining.spine_ct.body), then organs,
   vessels, arms, costal cartilage and discs as signed distance shapes;
2. bones as signed distances into one canvas (the smallest distance wins, with its owner:
   which bone, hence its cortex thickness and HU); vertebra and rib labels where a bone's
   distance is negative at the voxel centre;
3. HU with partial volume from the distances (bone fraction and cortex fraction of each voxel
   from the distance and the voxel size, so thin cortex and ribs read right at 5 mm too), per
   vertebra planted trabecular HU (``truth["levels"][name]["trabecular_hu"]``), metal, trabecular
   and lung mottle;
4. the reconstruction kernel (in-plane blur, edge enhancement for a bone kernel), the slice
   sensitivity profile, noise growing with the patient's cross-section and the arms, streaks
   through arms held down (the HU they add at each body's centre is in the truth) and from metal,
   padding outside the reconstruction circle; int16.

Speed (this 2-core machine, shared, one process): a whole-body field at 3 mm about 1 s, at
2 mm about 3 s; neck, chest, abdomen or pelvis at 2 mm 0.5-1 s, at 1 mm 5-13 s (about
1.8 GB at most for a 1 mm abdomen); with the spacing drawn (16 M voxels at most) 2-7 s.

Intensities: only the intensity ranges of the real abdominal CT in
../shared/data/ct_thoracolumbar were looked at (fat about -100 HU, muscle and organs 20-60 HU,
HU inside its vertebra labels: median 140-190, 95th percentile about 520 at 3 mm). A first
draft's bone read brighter than that; bone HU were then redrawn from literature values (an age
trend of trabecular HU, a thin cortical shell; SpineAITraining.spine_ct.tissues), not fitted to
it. That CT and its labels are the test of the models trained on these phantoms: nothing here is
fitted or tuned to them.
"""

import time
from dataclasses import dataclass, field

import numpy as np
from SpineAILib.images import VolumeImage

from SpineAITraining.cervical import artefacts as A
from SpineAITraining.cervical.anatomy import frame
from SpineAITraining.cervical.phantom import jsonable_seed
from SpineAITraining.cervical.sdf import (
    FAR,
    Block,
    Capsule,
    Ellipsoid,
    Subtract,
    Union,
    block_for,
    rotation,
)
from SpineAITraining.cervical.surroundings import (
    mandible_shape,
    skull_shape,
    teeth_shape,
)

from . import imaging as I
from . import tissues as T
from .body import Body
from .limbs import arm_bones, clavicle, scapula
from .pelvis import draw_pelvis, femur, hip_bone
from .ribs import (
    cervical_rib,
    costal_cartilages,
    describe_rib_label,
    rib_bearing,
    rib_label,
    rib_path,
    rib_shape,
)
from .ribs import sternum as sternum_shape
from .shapes import ala_reach, body_heights, coccyx, sacrum, vertebra_shape
from .spine import VERSE, draw_whole_spine

FIELDS_OF_VIEW = ("neck", "chest", "abdomen", "pelvis", "whole", "random")
RANDOM_FIELDS = {"neck": 0.15, "chest": 0.2, "abdomen": 0.22, "pelvis": 0.08, "whole": 0.15, "slab": 0.2}
DEFAULT_MAX_VOXELS = 16_000_000  # a drawn spacing coarsens beyond this many output voxels
HARD_MAX_VOXELS = 200_000_000  # a given spacing over a field this big is refused
AXIAL = ((-1, 0, 0), (0, -1, 0), (0, 0, 1))  # RAS direction of I, J, K: as DICOM stores axial CT
VARIANT_KEYS = ("rib_pairs", "thoracic", "cervical_rib", "transitional", "sacral_contact", "compressions",
                "osteoporotic", "contrast", "oral_contrast", "metal", "arms", "kernel", "age", "sex", "size", "fat_mm",
                "degeneration", "scoliosis_deg", "targeted")
KERNELS = {"soft": (0.6, 1.0, 0.0, 0.7), "standard": (0.35, 0.6, 0.0, 1.0), "bone": (0.2, 0.35, 0.6, 1.6)}
# (blur sigma mm from, to, edge enhancement, noise factor)
FINE_K_MM = 1.0  # the canvas' slices are at most about this far apart (or 1.5 x the in-plane spacing)


@dataclass
class SpineCTCase:
    ct: VolumeImage  # int16 HU, voxels (K, J, I), axial (K inferior -> superior)
    vertebrae: VolumeImage  # uint8 VerSe numbers (C1-C7 1-7, T1-T12 8-19, L1-L5 20-24, L6 25, sacrum 26, T13 28)
    ribs: VolumeImage  # uint8 rib labels: 100 + VerSe number of the rib's vertebra (left), 200 + (right)
    truth: dict  # what was planted and what is in view (JSON-ready)
    timings: dict = field(default_factory=dict)

    @property
    def affine(self):
        """The 4x4 IJK -> RAS matrix of all three images."""
        return self.ct.ijk_to_ras


# ---------------------------------------------------------------- the patient


def _choice(rng, options, p):
    return options[int(rng.choice(len(options), p=p))]


def _variants(rng, given, fov):
    """Every variant drawn (always in the same order, so a given one does not shift the others' draws),
    then the given ones put over them."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(VARIANT_KEYS))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {', '.join(VARIANT_KEYS)}")
    u = rng.uniform
    v = {"age": float(u(20, 90)), "sex": _choice(rng, ("female", "male"), (0.5, 0.5))}
    kind = _choice(rng, ("normal", "11 ribs", "T13", "lumbar ribs"), (0.88, 0.04, 0.04, 0.04))
    v["thoracic"] = 13 if kind == "T13" else 12
    v["rib_pairs"] = {"normal": 12, "11 ribs": 11, "T13": 13, "lumbar ribs": 13}[kind]
    v["cervical_rib"] = bool(rng.random() < 0.01)
    v["transitional"] = _choice(rng, (None, "L6", "sacralised_L5"), (0.9, 0.05, 0.05))
    v["sacral_contact"] = _choice(rng, ("joint", "fused"), (0.5, 0.5))
    v["contrast"] = _choice(rng, T.CONTRAST_PHASES, (0.45, 0.15, 0.4))
    v["oral_contrast"] = bool(rng.random() < 0.15)
    v["metal"] = _choice(rng, (None, "pedicle_screws", "hip_prosthesis"), (0.9, 0.07, 0.03))
    up_first = fov in ("chest", "abdomen", "pelvis")
    v["arms"] = _choice(rng, ("up", "down"), (0.8, 0.2) if up_first else (0.2, 0.8))
    v["kernel"] = _choice(rng, tuple(KERNELS), (0.35, 0.45, 0.2))
    v["size"] = float(u(0.88, 1.15))
    v["fat_mm"] = float(5.0 + 35.0 * rng.beta(2, 4))
    v["scoliosis_deg"] = float(u(8, 35)) if rng.random() < 0.15 else 0.0
    v["targeted"] = bool(rng.random() < 0.15)
    p_osteo = float(np.clip((v["age"] - 50) / 40, 0, 1)) * (0.6 if v["sex"] == "female" else 0.35)
    v["osteoporotic"] = bool(rng.random() < p_osteo)
    v["degeneration"] = float(np.clip((v["age"] - 25) / 55, 0, 1) * u(0.4, 1.0))
    v["compressions"] = None
    if "rib_pairs" in given and "thoracic" not in given:  # 13 pairs: on T13 or on L1, drawn
        v["thoracic"] = 13 if given["rib_pairs"] == 13 and rng.random() < 0.5 else 12
    if "thoracic" in given and "rib_pairs" not in given:
        v["rib_pairs"] = int(given["thoracic"])
    v.update(given)
    for key, options in (("arms", ("up", "down")), ("kernel", tuple(KERNELS)), ("sex", ("female", "male")),
                         ("transitional", (None, "L6", "sacralised_L5")), ("sacral_contact", ("joint", "fused")),
                         ("metal", (None, "pedicle_screws", "hip_prosthesis")), ("thoracic", (12, 13))):
        if v[key] not in options:
            raise ValueError(f"variant {key} must be one of {options}, got {v[key]!r}")
    return v


# ---------------------------------------------------------------- bones


@dataclass
class _Owner:
    name: str
    cortex_mm: float
    cortex_hu: float
    trabecular_hu: float
    vertebra: int = 0
    rib: int = 0


def _skeleton(rng, spine, body, pelvis, v, hu):
    """[(Owner, shape, to_patient)] of every bone, the metal [(name, shape, to_patient)], the
    costal cartilage shapes (patient frame) and the rib truth."""
    l1 = hu["l1_trabecular"]
    trab = hu["vertebrae"]
    cortex = hu["cortex"]
    c_mm = float(rng.uniform(0.3, 0.5) if v["osteoporotic"] else rng.uniform(0.4, 0.8))  # vertebral cortical shell
    out = []
    sacralised = v["sacral_contact"] if v["transitional"] == "sacralised_L5" else None
    for name in spine.names[:-1]:
        level = spine.levels[name]
        shape = vertebra_shape(level, spine.mods[name], sacralised if name == "L5" else None)
        out.append((_Owner(name, c_mm, cortex, trab[name], vertebra=VERSE[name]), shape, level.to_patient))
    s1 = spine.levels["S1"]
    curve, ala = spine.params["sacral_curve_deg"], spine.params["ala_width"]
    out.append((_Owner("S1", c_mm, cortex, trab["S1"], vertebra=VERSE["S1"]), sacrum(s1, curve, ala), s1.to_patient))
    out.append((_Owner("coccyx", c_mm, cortex, l1 * 0.8), coccyx(s1, curve), s1.to_patient))
    # ribs, sternum, cartilage
    bearing = rib_bearing(spine, v["rib_pairs"], v["cervical_rib"])
    count = len([b for b in bearing if b[1] >= 0])
    rib_truth, cartilage = [], []
    stern, attach = sternum_shape(spine, body, body.size)
    rib_mm = float(rng.uniform(0.7, 1.1))
    for side in (1, -1):
        ends = {}
        for name, ordinal in bearing:
            if ordinal < 0:
                points, radius = cervical_rib(spine, side, rng)
            else:
                points, radius = rib_path(spine, body, name, ordinal, count, side, body.size)
            label = rib_label(side, VERSE[name])
            ends[ordinal] = (points[-1], radius)
            out.append((_Owner(f"rib {label}", rib_mm, cortex * 0.9, l1 * 1.05, rib=label), rib_shape(points, radius),
                        np.eye(4)))
            rib_truth.append({"label": label, "side": "right" if side > 0 else "left", "vertebra": name,
                              "number": ordinal + 1 if ordinal >= 0 else 0})
        cartilage += costal_cartilages(ends, attach, side)
    out.append((_Owner("sternum", 1.0, cortex * 0.8, l1 * 1.1), stern, np.eye(4)))
    # pelvis and femora
    p_mm = float(rng.uniform(0.9, 1.6))
    for side in (1, -1):
        out.append((_Owner("hip bone", p_mm, cortex, l1 * 0.95), hip_bone(pelvis, side), pelvis.to_patient))
        out.append((_Owner("femur", 3.0, cortex * 1.1, l1 * 1.1), femur(pelvis, side), pelvis.to_patient))
    # skull base, mandible, teeth (the cervical phantom's, in the skull frame)
    out.append((_Owner("skull", 1.6, cortex * 1.1, l1 * 1.6), skull_shape(float(rng.uniform(4.5, 8.0))), spine.skull))
    out.append((_Owner("mandible", 1.5, cortex, l1 * 1.4), mandible_shape(rng), spine.skull))
    out.append((_Owner("teeth", 10.0, hu["tooth"], hu["tooth"]), teeth_shape(rng), spine.skull))
    # shoulder girdle and arms
    th = [n for n in spine.names if n.startswith("T")]
    z_of = {n: float(spine.levels[n].to_patient[2, 3]) for n in th}
    notch = attach[0] + np.array([0.0, 0.0, 22.0])
    for side, shoulder, elbow, wrist in body.arm_paths:
        shape, acromion = scapula(body, side, z_of["T2"] + 5.0, z_of[th[6]], body.size)
        out.append((_Owner("scapula", 1.0, cortex, l1), shape, np.eye(4)))
        out.append((_Owner("clavicle", 1.5, cortex, l1), clavicle(notch, acromion, side), np.eye(4)))
        arm = arm_bones(shoulder, elbow, wrist, side, body.size)
        out.append((_Owner("arm", 2.5, cortex * 1.1, l1), arm, np.eye(4)))
    metal = _metal(rng, spine, pelvis, v["metal"])
    return out, metal, cartilage, rib_truth


def _metal(rng, spine, pelvis, kind):
    """[(name, shape, to_patient)]: pedicle screws with rods over 2-4 levels, or a hip prosthesis."""
    if kind == "pedicle_screws":
        movable = [n for n in spine.names if n[0] in "TL" and n not in ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8")]
        count = int(rng.integers(2, 5))
        start = int(rng.integers(0, max(1, len(movable) - count + 1)))
        names = movable[start:start + count]
        parts, heads = [], {1: [], -1: []}
        for name in names:
            lv = spine.levels[name]
            s = lv.sizes
            for side in (-1, 1):
                entry = lv.point((side * (s["canal_rx"] + 6.0), -6.0, 1.0))
                target = lv.point((side * s["body_rx"] * 0.3, lv.body_cy + s["body_ry"] * 0.55, 0.0))
                d = (target - entry) / np.linalg.norm(target - entry)
                head = entry - d * 9.0
                parts += [Capsule(entry - d * 4.0, target, 3.2, 2.6), Ellipsoid(head, (6.0, 6.0, 6.0))]
                heads[side].append(head)
        for side in (-1, 1):
            top = heads[side][0] + (heads[side][0] - heads[side][-1]) * 0.12
            bottom = heads[side][-1] - (heads[side][0] - heads[side][-1]) * 0.12
            parts.append(Capsule(top, bottom, 2.8))
        return [(f"pedicle screws {names[0]}-{names[-1]}", Union(parts), np.eye(4))]
    if kind == "hip_prosthesis":
        side = int(rng.choice([-1, 1]))
        hip = np.array([side * 88.0, 52.0, -95.0]) * pelvis.scale
        r = pelvis.head_radius
        down = np.linalg.inv(pelvis.to_patient[:3, :3]) @ np.array([0.0, 0.0, -1.0])
        stem_top = hip + np.array([side * 30.0, -6.0, -30.0])
        parts = [Ellipsoid(hip, (r - 2.0,) * 3), Capsule(hip, stem_top, 6.0),
                 Capsule(stem_top, stem_top + down * 140.0, 8.0, 5.0),
                 Subtract(Ellipsoid(hip, (r + 3.0,) * 3),  # the cup, open laterally
                          [Ellipsoid(hip, (r + 0.5,) * 3),
                           Ellipsoid(hip + np.array([side * (r + 8), 0, 0]), (r + 6,) * 3)])]
        return [(f"hip prosthesis {'right' if side > 0 else 'left'}", Union(parts), pelvis.to_patient)]
    return []


# ---------------------------------------------------------------- planning


def _ras(to_ras, point):
    return (to_ras @ np.append(np.asarray(point, float), 1.0))[:3]


def _landmarks(spine, body, pelvis, to_ras):
    """RAS z of what fields of view are planned from: each body's lower and upper end, the
    foramen magnum, the right dome, the symphysis, the ischial tuberosities, the sacrum's middle."""
    bodies = {}
    for name in spine.names:
        level = spine.levels[name]
        hh = level.sizes.get("body_hh", level.sizes.get("mass_hh", 6.0))
        cy = level.body_cy if name != "C1" else 4.5
        zs = [_ras(to_ras, level.point((0, cy, sign * hh)))[2] for sign in (-1, 1)]
        bodies[name] = (min(zs), max(zs))
    marks = pelvis.landmarks()
    return {"bodies": bodies, "fm": _ras(to_ras, spine.skull[:3, 3])[2],
            "dome": _ras(to_ras, (float(body.cx[body.rows(body.dome_right)]), 0.0, body.dome_right))[2],
            "symphysis": _ras(to_ras, marks["symphysis"])[2],
            "tuberosity": min(_ras(to_ras, marks["tuberosity_right"])[2], _ras(to_ras, marks["tuberosity_left"])[2]),
            "sacrum_mid": _ras(to_ras, spine.levels["S1"].point((0, 20.0, -40.0)))[2]}


def _plan_z(rng, kind, marks, names):
    """(z_lo, z_hi) in RAS of a field of view ``kind`` (see the module docstring)."""
    u = rng.uniform
    b = marks["bodies"]
    thoracic = [n for n in names if n.startswith("T")]
    if kind == "neck":
        top = marks["fm"] + u(-5, 70) if rng.random() < 0.8 else b["C1"][1] + u(3, 10)
        bottom = b[_choice(rng, ("T1", "T2", "T3", "T4"), (0.3, 0.35, 0.2, 0.15))][0] - u(0, 15)
    elif kind == "chest":
        top = b[_choice(rng, ("C5", "C6", "C7"), (0.3, 0.4, 0.3))][1] + u(0, 15)
        bottom = b[_choice(rng, (thoracic[-1], "L1", "L2"), (0.3, 0.4, 0.3))][0] - u(0, 20)
    elif kind == "abdomen":
        top = marks["dome"] + u(-45, 10)
        bottom = marks["symphysis"] - u(5, 45) if rng.random() < 0.75 else marks["sacrum_mid"] + u(-25, 15)
    elif kind == "pelvis":
        top = b[_choice(rng, ("L3", "L4", "L5"), (0.3, 0.4, 0.3))][1] + u(0, 20)
        bottom = marks["tuberosity"] - u(10, 60)
    elif kind == "whole":
        top = marks["fm"] + u(0, 90)
        bottom = marks["tuberosity"] - u(20, 150)
    else:  # a slab anywhere along the spine
        centre = u(marks["sacrum_mid"], b["C2"][0])
        length = u(60, 260)
        top, bottom = centre + length / 2, centre - length / 2
    return float(bottom), float(top)


def _plan_xy(rng, body, to_ras, z_lo, z_hi, targeted):
    """(centre x, centre y, side) of the square in-plane field in RAS: the body's outline (with the
    arms where they are in the slices) and a margin, or a spine-targeted field."""
    inv = np.linalg.inv(to_ras)
    zs = np.linspace(z_lo, z_hi, 24)
    pts = []
    for z in zs:
        zp = _ras(inv, (0.0, 0.0, z))[2]
        r = body.rows(zp)
        cx, cy, ax, ay, off = (float(t[r]) for t in (body.cx, body.cy, body.ax, body.ay, body.off))
        if body.legs[r]:
            ax = body.leg_x + body.leg_r
        pts += [(cx - ax, cy + off - ay, zp), (cx + ax, cy + off + ay, zp)]
    for side, shoulder, elbow, wrist in body.arm_paths:
        for a, b in ((shoulder, elbow), (elbow, wrist)):
            for t in np.linspace(0, 1, 8):
                p = a + (b - a) * t
                if z_lo - 40 < _ras(to_ras, p)[2] < z_hi + 40:
                    pts += [p + [side * 55.0, 0, 0], p - [0, 55.0, 0], p + [0, 55.0, 0]]
    ras = np.array([_ras(to_ras, p) for p in pts])
    lo, hi = ras[:, :2].min(axis=0), ras[:, :2].max(axis=0)
    if targeted:
        zp = _ras(inv, (0.0, 0.0, (z_lo + z_hi) / 2))[2]
        r = body.rows(zp)
        canal = _ras(to_ras, (float(body.cx[r]), float(body.cy[r]), zp))
        return (canal[0] + float(rng.uniform(-10, 10)), canal[1] + float(rng.uniform(10, 40)),
                float(rng.uniform(140, 260)))
    side = float(min(max(hi - lo) + 2 * rng.uniform(8, 40), 520.0))
    return float((lo[0] + hi[0]) / 2), float((lo[1] + hi[1]) / 2), side


def _plan_spacing(rng, spacing, side, length, max_voxels):
    """(I, J, K) mm and notes: the given spacing, or drawn (in-plane: the field over 512 pixels;
    slices 0.5-5 mm) and coarsened until the grid has at most ``max_voxels`` voxels."""
    if spacing is not None:
        sp = [float(spacing)] * 3 if np.ndim(spacing) == 0 else [float(s) for s in spacing]
        if len(sp) != 3 or min(sp) <= 0:
            raise ValueError(f"spacing must be a positive number or three (I, J, K) in mm, got {spacing!r}")
        return sp, []
    in_plane = side / 512.0
    slice_mm = float(_choice(rng, (rng.uniform(0.5, 1.0), rng.uniform(1.0, 2.0), rng.uniform(2.0, 3.0),
                                   rng.uniform(3.0, 5.0)), (0.35, 0.25, 0.2, 0.2)))
    notes = []
    ratio = (side / in_plane) ** 2 * (length / slice_mm) / max_voxels
    if ratio > 1:  # coarsen in plane first (up to the slice spacing), then all three alike
        before = (in_plane, slice_mm)
        grow = min(ratio ** 0.5, max(slice_mm / in_plane, 1.0))
        in_plane *= grow
        ratio /= grow ** 2
        if ratio > 1:
            in_plane *= ratio ** (1 / 3)
            slice_mm *= ratio ** (1 / 3)
        notes.append(f"spacing coarsened from {before[0]:.2f}/{before[1]:.2f} mm to {in_plane:.2f}/{slice_mm:.2f} mm "
                     f"(in-plane/slices, max_voxels {max_voxels})")
    return [in_plane, in_plane, slice_mm], notes


def _grid(centre, side_xy, z_lo, z_hi, sp):
    """(K, J, I) and the IJK -> RAS matrix of an axial grid centred on ``centre``."""
    n_i = max(8, int(round(side_xy[0] / sp[0])))
    n_j = max(8, int(round(side_xy[1] / sp[1])))
    n_k = max(2, int(round((z_hi - z_lo) / sp[2])) + 1)
    matrix = np.eye(4)
    for a in range(3):
        matrix[:3, a] = np.array(AXIAL[a], float) * sp[a]
    matrix[:3, 3] = np.asarray(centre, float) - matrix[:3, :3] @ ((np.array([n_i, n_j, n_k], float) - 1) / 2)
    return (n_k, n_j, n_i), matrix


# ---------------------------------------------------------------- the canvas


class _Canvas:
    """Soft tissue codes, the bones' smallest signed distance and its owner, vertebra and rib
    labels, and the metal's distance, on the fine grid."""

    def __init__(self, shape, to_grid, voxel_mm):
        self.shape, self.to_grid, self.voxel_mm = shape, to_grid, voxel_mm
        self.tissue = np.zeros(shape, np.uint8)
        self.best = np.full(shape, FAR, np.float32)
        self.owner = np.zeros(shape, np.uint8)
        self.vertebra = np.zeros(shape, np.uint8)
        self.rib = np.zeros(shape, np.uint8)
        self.metal = None

    def block(self, to_ras, bounds):
        return block_for(self.to_grid @ to_ras, bounds, self.shape)

    @staticmethod
    def window(block):
        return tuple(slice(lo, hi) for lo, hi in zip(block.lo, block.hi))

    def soft(self, shape, to_ras, code):
        block = self.block(to_ras, shape.bounds())
        if block is not None:
            d = shape.evaluate(block)
            self.tissue[self.window(block)][d < 0] = code

    def bone(self, shape, to_ras, owner, vertebra=0, rib=0):
        """Paint a bone: where it is the nearest bone (within half a voxel outside it too, for partial volume)."""
        block = self.block(to_ras, shape.bounds())
        if block is None:
            return
        d = shape.evaluate(block)
        w = self.window(block)
        best = self.best[w]
        closer = d < best
        if not closer.any():
            return
        best[closer] = d[closer]
        self.owner[w][closer] = owner
        inside = closer & (d < 0)
        self.vertebra[w][inside] = vertebra
        self.rib[w][inside] = rib

    def add_metal(self, shape, to_ras):
        block = self.block(to_ras, shape.bounds())
        if block is None:
            return False
        if self.metal is None:
            self.metal = np.full(self.shape, FAR, np.float32)
        d = shape.evaluate(block)
        np.minimum(self.metal[self.window(block)], d, out=self.metal[self.window(block)])
        return bool((d < 0).any())


def _paint_soft(canvas, body, to_ras, slab=16):
    """Soft tissues slab by slab, in patient coordinates of the fine grid."""
    to_grid_p = canvas.to_grid @ to_ras
    k_total, j_total, i_total = canvas.shape
    for k0 in range(0, k_total, slab):
        k1 = min(k0 + slab, k_total)
        canvas.tissue[k0:k1] = body.soft_tissue(Block(to_grid_p, (k0, 0, 0), (k1, j_total, i_total)))


def _partial_volume(canvas, soft_hu, owners):
    """HU with partial volume: each voxel's bone and cortex fractions from its signed distance
    and the voxel size (a linear ramp over one voxel), over the soft tissue under it; then metal."""
    h = np.float32(canvas.voxel_mm)
    cortex_mm = np.array([0.0] + [o.cortex_mm for o in owners], np.float32)
    cortex_hu = np.array([0.0] + [o.cortex_hu for o in owners], np.float32)
    trab_hu = np.array([0.0] + [o.trabecular_hu for o in owners], np.float32)
    values = soft_hu[canvas.tissue]
    near = canvas.best < h  # only voxels near or inside a bone change
    d = canvas.best[near]
    own = canvas.owner[near]
    phi = np.clip(0.5 - d / h, 0, 1)
    phi_in = np.clip(0.5 - (d + cortex_mm[own]) / h, 0, 1)
    values[near] = values[near] * (1 - phi) + phi_in * trab_hu[own] + (phi - phi_in) * cortex_hu[own]
    trabecular = np.zeros(canvas.shape, np.float32)
    trabecular[near] = phi_in
    if canvas.metal is not None:
        m = canvas.metal < h
        phi_m = np.clip(0.5 - canvas.metal[m] / h, 0, 1)
        values[m] = values[m] * (1 - phi_m) + phi_m * np.float32(3071.0)
        trabecular[m] *= 1 - phi_m
    return values, trabecular


def _texture(rng, values, trabecular, canvas, amplitude):
    """Trabecular mottle (``amplitude`` HU at 1 mm, less in larger voxels, which average it) in the
    bone's trabecular fraction, and the lungs' mottle: independent per fine voxel, so the kernel
    and the slice profile give it its grain (and a vertebra's mean stays at its planted HU)."""
    amp = np.float32(amplitude * min(1.0, 1.0 / canvas.voxel_mm ** 1.5))
    idx = np.flatnonzero(trabecular)
    flat = values.reshape(-1)
    flat[idx] += amp * trabecular.reshape(-1)[idx] * rng.standard_normal(idx.size, dtype=np.float32)
    lung = np.flatnonzero(canvas.tissue == T.LUNG)
    flat[lung] += np.float32(25.0) * rng.standard_normal(lung.size, dtype=np.float32)


# ---------------------------------------------------------------- the case


def make_spine_ct(seed, field_of_view="random", spacing=None, size_mm=None, variants=None, *,
                  max_voxels=DEFAULT_MAX_VOXELS, artefacts=True):
    """Draw and render one whole-spine CT phantom case (see the module docstring).

    seed: int (or numpy SeedSequence entropy); the same arguments give the same case, voxel for
    voxel. field_of_view: "neck", "chest", "abdomen", "pelvis", "whole" or "random".
    spacing: None (drawn), one number (isotropic mm) or (I, J, K) mm, honoured exactly.
    size_mm: None, or (left-right, anterior-posterior, superior-inferior) mm of the field,
    centred where the drawn one was. variants: dict over the drawn ones (``VARIANT_KEYS``):
    rib_pairs 11/12/13, thoracic 12/13, cervical_rib, transitional None/"L6"/"sacralised_L5",
    sacral_contact "joint"/"fused", compressions (None drawn, [] none, or a list of level names,
    (level, morphology, grade) or dicts), osteoporotic, contrast None/"arterial"/"portal",
    oral_contrast, metal None/"pedicle_screws"/"hip_prosthesis", arms "up"/"down", kernel
    "soft"/"standard"/"bone", age, sex, size, fat_mm, degeneration (0-1), scoliosis_deg,
    targeted (a spine-targeted in-plane field). max_voxels: a drawn spacing coarsens to stay
    under it. artefacts: False leaves out streaks, padding and metal artefacts (noise stays).
    """
    t0 = time.perf_counter()
    if field_of_view not in FIELDS_OF_VIEW:
        raise ValueError(f"field_of_view must be one of {', '.join(FIELDS_OF_VIEW)}, got {field_of_view!r}")
    rng = np.random.default_rng(seed)
    kind = field_of_view
    if kind == "random":
        kind = _choice(rng, tuple(RANDOM_FIELDS), tuple(RANDOM_FIELDS.values()))
    v = _variants(rng, variants, kind)
    female = v["sex"] == "female"

    # 1. The patient: spine, pelvis, body, bones; how they lie in the scanner.
    scale = float(np.clip(rng.normal(1.0, 0.05), 0.88, 1.14)) * (0.95 if female else 1.0)
    spine = draw_whole_spine(rng, v, scale=scale, degeneration=v["degeneration"], cobb=v["scoliosis_deg"],
                             osteoporotic=v["osteoporotic"])
    s1 = spine.levels["S1"]
    pelvis = draw_pelvis(rng, s1, ala_reach(s1, spine.params["ala_width"]), scale * v["size"] ** 0.5, female)
    body = Body(rng, spine, pelvis, size=v["size"], fat_mm=v["fat_mm"], arms=v["arms"], female=female, age=v["age"])
    bone_hu = T.draw_bone_hu(rng, osteoporotic=v["osteoporotic"], age=v["age"])
    bone_hu["vertebrae"] = T.planted_trabecular_hu(rng, spine.names, bone_hu["l1_trabecular"], v["contrast"])
    bones, metal, cartilage, rib_truth = _skeleton(rng, spine, body, pelvis, v, bone_hu)
    pose = {"pitch": float(rng.normal(0, 2.5)), "roll": float(rng.normal(0, 2.0)), "yaw": float(rng.normal(0, 2.0))}
    pivot = spine.canal(spine.names[len(spine.names) // 2])
    table = np.array([rng.uniform(-20, 20), rng.uniform(-30, 30), rng.uniform(-500, 300)])
    rot = rotation("z", pose["yaw"]) @ rotation("y", pose["roll"]) @ rotation("x", pose["pitch"])
    to_ras = frame(rot, table - rot @ pivot)

    # 2. What the scan covers and its grid.
    marks = _landmarks(spine, body, pelvis, to_ras)
    z_lo, z_hi = _plan_z(rng, kind, marks, spine.names)
    cx, cy, side = _plan_xy(rng, body, to_ras, z_lo, z_hi, v["targeted"] and kind != "whole")
    sides = [side, side]
    if size_mm is not None:
        size = [float(s) for s in size_mm]
        if len(size) != 3 or min(size) <= 0:
            raise ValueError(f"size_mm must be three positive numbers (left-right, anterior-posterior, "
                             f"superior-inferior), got {size_mm!r}")
        centre_z = (z_lo + z_hi) / 2
        sides, (z_lo, z_hi) = size[:2], (centre_z - size[2] / 2, centre_z + size[2] / 2)
    sp, notes = _plan_spacing(rng, spacing, max(sides), z_hi - z_lo, max_voxels)
    thickness = sp[2] if (spacing is not None or rng.random() < 0.75) else sp[2] * float(rng.uniform(1.2, 2.0))
    shape, matrix = _grid((cx, cy, (z_lo + z_hi) / 2), sides, z_lo, z_hi, sp)
    if np.prod(shape) > HARD_MAX_VOXELS:
        raise ValueError(f"a {shape[2]} x {shape[1]} x {shape[0]} grid is too large: use a coarser spacing or size_mm")

    # Fine slices (<= FINE_K_MM or 1.5x the in-plane spacing apart) with a margin for the slice profile.
    n_sub = max(1, int(round(sp[2] / max(1.5 * min(sp[0], sp[1]), FINE_K_MM))))
    fine_mm = sp[2] / n_sub
    margin = int(np.ceil(thickness / fine_mm)) if thickness > fine_mm else 0
    fine_shape = (n_sub * (shape[0] - 1) + 1 + 2 * margin, shape[1], shape[2])
    fine = matrix.copy()
    fine[:3, 2] = matrix[:3, 2] / n_sub
    fine[:3, 3] = matrix[:3, 3] - margin * fine[:3, 2]
    canvas = _Canvas(fine_shape, np.linalg.inv(fine), float((sp[0] * sp[1] * fine_mm) ** (1 / 3)))
    timings = {"plan": time.perf_counter() - t0}

    # 3. Soft tissues, organs, cartilage, discs; the couch.
    _paint_soft(canvas, body, to_ras)
    for name, shape_o, code, to_patient in body.organs:
        canvas.soft(shape_o, to_ras @ to_patient, code)
    for part in cartilage:
        canvas.soft(part, to_ras, T.CARTILAGE)
    for upper, lower, disc, gas in spine.discs:
        canvas.soft(disc, to_ras, T.DISC)
        if gas is not None:
            canvas.soft(gas, to_ras, T.AIR)
    couch = None
    if rng.random() < 0.8:  # the couch under the patient's back (body.couch_y, in RAS at the field's centre)
        mid = _ras(np.linalg.inv(to_ras), (cx, cy, (z_lo + z_hi) / 2))
        couch = _ras(to_ras, (mid[0], body.couch_y, mid[2]))[1]
        couch -= float(rng.uniform(1, 8))
        ras_y = fine[1, 1] * np.arange(fine_shape[1]) + fine[1, 3]  # axial grid: y depends on J only
        rows = (ras_y < couch) & (ras_y > couch - float(rng.uniform(6, 14)))
        canvas.tissue[:, rows, :] = np.where(canvas.tissue[:, rows, :] == T.AIR, T.TABLE, canvas.tissue[:, rows, :])
    timings["soft"] = time.perf_counter() - t0

    # 4. Bones (labels where a vertebra or rib is the nearest bone and inside it), metal.
    owners = []
    for owner, shape_b, to_patient in bones:
        owners.append(owner)
        canvas.bone(shape_b, to_ras @ to_patient, len(owners), owner.vertebra, owner.rib)
    metal_in_view = []
    for name, shape_m, to_patient in metal:
        if canvas.add_metal(shape_m, to_ras @ to_patient):
            lo, hi = shape_m.bounds()
            corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
            pts = np.array([_ras(to_ras @ to_patient, c) for c in corners])
            metal_in_view.append((name, pts.mean(axis=0), pts[:, 2].min(), pts[:, 2].max()))
    timings["bones"] = time.perf_counter() - t0

    # 5. Hounsfield units: partial volume, texture, kernel, slice profile.
    soft_hu = T.draw_hu(rng, contrast=v["contrast"], oral_contrast=v["oral_contrast"])
    values, trabecular = _partial_volume(canvas, soft_hu, owners)
    _texture(rng, values, trabecular, canvas, float(rng.uniform(25, 60)))
    del trabecular
    lo_blur, hi_blur, edge, noise_factor = KERNELS[v["kernel"]]
    blur_mm = float(rng.uniform(lo_blur, hi_blur))
    blurred = I.blur_in_plane(values, blur_mm / min(sp[0], sp[1]))
    if edge:  # a bone kernel enhances edges: overshoot beside them
        wide = I.blur_in_plane(blurred, 1.0 / min(sp[0], sp[1]) + 0.5)
        blurred = blurred + np.float32(edge) * (blurred - wide)
    values = blurred
    del blurred
    out = A.slice_profile(values, shape, n_sub, margin, thickness / 2.3548 / fine_mm)
    centre = slice(margin, margin + n_sub * (shape[0] - 1) + 1, n_sub)
    vertebrae = np.ascontiguousarray(canvas.vertebra[centre])
    ribs = np.ascontiguousarray(canvas.rib[centre])
    del values, canvas
    timings["render"] = time.perf_counter() - t0

    # 6. Noise and artefacts.
    slice_z = matrix[2, 2] * np.arange(shape[0]) + matrix[2, 3] + matrix[2, 1] * (shape[1] - 1) / 2
    inv = np.linalg.inv(to_ras)
    zp = np.array([_ras(inv, (cx, cy, z))[2] for z in slice_z])
    arms_in = np.zeros(shape[0], bool)
    for _, shoulder, elbow, wrist in body.arm_paths:
        z_arm = sorted([shoulder[2], wrist[2]])
        arms_in |= (zp > z_arm[0]) & (zp < z_arm[1])
    noise_hu = float(rng.uniform(8, 22)) * noise_factor  # at a 0.75 x 0.75 x 2.5 mm voxel and an average trunk
    voxel = float(np.clip(np.sqrt(0.75 * 0.75 * 2.5 / (sp[0] * sp[1] * thickness)), 0.3, 2.5))
    size = np.sqrt(body.outline_area(zp) / (np.pi * 150.0 * 105.0))  # noise grows with the cross-section
    per_slice = noise_hu * voxel * size * np.where(arms_in, 1.3, 1.0)
    out += I.correlated_noise(rng, shape, per_slice.astype(np.float32)[:, None, None])
    applied, streak_field = [], None
    if artefacts and arms_in.any() and v["arms"] == "down":
        record, streak_field = _arm_streaks(rng, out, arms_in)
        applied.append(record)
    if artefacts:
        for name, centre_ras, mz0, mz1 in metal_in_view:
            applied += _metal_streaks(rng, out, matrix, slice_z, centre_ras, mz0, mz1, sp, name)
    padding = outside = None
    if artefacts and rng.random() < 0.5:
        padding = float(_choice(rng, (-2000.0, -3024.0, -1024.0), (0.6, 0.2, 0.2)))
        outside = A.outside_reconstruction_circle(shape, sp, float(rng.uniform(0.95, 1.1)))
        record = A.pad_outside(out, (vertebrae, ribs), outside, padding)
        if record:
            applied.append(record)
        else:
            padding = outside = None
    voxels = np.clip(np.rint(out), -3024, 3071).astype(np.int16)
    del out
    timings["artefacts"] = time.perf_counter() - t0

    # 7. Truth.
    truth = _truth(spine, body, v, kind, vertebrae, ribs, rib_truth, bone_hu, to_ras, matrix, sp, thickness, outside,
                   notes, pose, z_lo, z_hi, marks, streak_field)
    truth.update(seed=jsonable_seed(seed), artefacts=applied, padding_value=padding,
                 metal_in_view=[m[0] for m in metal_in_view],
                 kernel={"name": v["kernel"], "blur_mm": round(blur_mm, 3)}, noise_hu=round(noise_hu, 2),
                 soft_hu={T.NAMES[c]: round(float(soft_hu[c]), 1) for c in range(len(T.NAMES))},
                 couch=couch is not None)
    description = f"SpineAI whole-spine CT phantom (seed {truth['seed']}, {kind})"
    meta = {"phantom": "SpineAITraining.spine_ct.phantom", "seed": truth["seed"], "field_of_view": kind}
    ct = VolumeImage(voxels, matrix, modality="CT", description=description, source="phantom", metadata=dict(meta))
    vert_names = {VERSE[n]: n for n in spine.names}
    vert_image = VolumeImage(vertebrae, matrix.copy(), modality="CT", description=description + " vertebrae",
                             source="phantom", is_labelmap=True, metadata={**meta, "label_names": vert_names})
    rib_names = {r["label"]: f"{r['side']} rib of {r['vertebra']}" for r in rib_truth}
    rib_image = VolumeImage(ribs, matrix.copy(), modality="CT", description=description + " ribs", source="phantom",
                            is_labelmap=True, metadata={**meta, "label_names": rib_names})
    timings["total"] = time.perf_counter() - t0  # kept out of the truth, which is a pure function of the arguments
    return SpineCTCase(ct, vert_image, rib_image, truth, {k: round(t, 3) for k, t in timings.items()})


def _arm_streaks(rng, out, arms_in):
    """Dark (and some bright) bands across the slices where the arms hang beside the trunk: the
    same few rows in every such slice (the arms lie still), their strength varying slowly.
    Returns the record and (strength per slice, profile per row): the HU added at (k, j, any i)."""
    amp = float(rng.uniform(15, 45))
    rows = np.arange(out.shape[1], dtype=np.float32)
    profile = np.zeros(out.shape[1], np.float32)
    for _ in range(3):
        row, width = rng.uniform(out.shape[1] * 0.35, out.shape[1] * 0.65), rng.uniform(1.0, 4.0)
        profile += float(rng.choice([-1.0, -1.0, 1.0])) * np.exp(-0.5 * ((rows - row) / width) ** 2)
    ks = np.nonzero(arms_in)[0]
    strength = np.zeros(out.shape[0], np.float32)
    strength[ks] = amp * (0.6 + 0.4 * np.sin(np.linspace(0, np.pi * rng.uniform(1, 4), ks.size) + rng.uniform(0, 6)))
    for k in ks:
        out[k] += strength[k] * profile[:, None]
    return {"kind": "streaks through the arms", "amplitude": round(amp, 1)}, (strength, profile)


def _metal_streaks(rng, out, matrix, slice_z, centre_ras, mz0, mz1, sp, name):
    """Bright and dark streaks radiating from metal in the axial slices that cross it."""
    ks = np.nonzero((slice_z >= mz0 - sp[2]) & (slice_z <= mz1 + sp[2]))[0]
    if not ks.size:
        return []
    n_lines = int(rng.integers(8, 17))
    angles = rng.uniform(0, np.pi, n_lines)
    amps = rng.uniform(150, 600, n_lines)
    signs = rng.choice([-1.0, 1.0], n_lines)
    width = float(rng.uniform(0.8, 2.0))
    ii = np.arange(out.shape[2], dtype=np.float32)[None, :]
    jj = np.arange(out.shape[1], dtype=np.float32)[:, None]
    x = (matrix[0, 0] * ii + matrix[0, 1] * jj + matrix[0, 3] - centre_ras[0]).astype(np.float32)
    y = (matrix[1, 0] * ii + matrix[1, 1] * jj + matrix[1, 3] - centre_ras[1]).astype(np.float32)
    streaks = A.metal_streaks((x, y), angles, amps, width, signs)
    for k in ks:
        out[k] += streaks
    return [{"kind": "metal streaks", "object": name, "slices": [int(ks[0]) + 1, int(ks[-1]) + 1]}]


# ---------------------------------------------------------------- truth


def _touching(labels, outside):
    """Label values on the grid's faces or beside the padding outside the reconstruction circle
    (``outside``: a (J, I) mask or None): cut by the field of view."""
    faces = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
    out = set()
    for f in faces:
        out |= set(np.unique(f).tolist())
    if outside is not None:  # the circle's rim: in-plane neighbours of a padded pixel
        rim = np.zeros_like(outside)
        rim[1:, :] |= outside[:-1, :]
        rim[:-1, :] |= outside[1:, :]
        rim[:, 1:] |= outside[:, :-1]
        rim[:, :-1] |= outside[:, 1:]
        rim &= ~outside
        if rim.any():
            out |= set(np.unique(labels[:, rim]).tolist())
    return out - {0}


def _streak_at(streak_field, matrix, ras):
    """HU the arm streaks added at a RAS point (0 where there are none or it is outside the grid)."""
    if streak_field is None:
        return 0.0
    strength, profile = streak_field
    i, j, k = np.rint((np.linalg.inv(matrix) @ np.append(ras, 1.0))[:3]).astype(int)
    if not (0 <= k < strength.size and 0 <= j < profile.size):
        return 0.0
    return round(float(strength[k] * profile[j]), 1)


def _truth(spine, body, v, kind, vertebrae, ribs, rib_truth, bone_hu, to_ras, matrix, sp, thickness, outside, notes,
           pose, z_lo, z_hi, marks, streak_field):
    counts = np.bincount(vertebrae.ravel(), minlength=256)
    rib_counts = np.bincount(ribs.ravel(), minlength=256)
    cut = _touching(vertebrae, outside)
    rib_cut = _touching(ribs, outside)
    compressed = {c.level: c for c in spine.compressions}
    bearing = {}
    for r in rib_truth:
        bearing.setdefault(r["vertebra"], []).append(r["side"])
    levels = {}
    for name in spine.names:
        number = VERSE[name]
        level = spine.levels[name]
        cy = level.body_cy if name != "C1" else 4.5
        centre = _ras(to_ras, level.point((0, cy, 0)))
        entry = {"label": number, "voxels": int(counts[number]), "in_view": bool(counts[number] > 0),
                 "partial": bool(number in cut), "body_centre_ras": [round(float(c), 2) for c in centre],
                 "streak_hu_at_centre": _streak_at(streak_field, matrix, centre),
                 "superior_axis_ras": [round(float(c), 4) for c in (to_ras[:3, :3] @ level.to_patient[:3, :3])[:, 2]],
                 "trabecular_hu": bone_hu["vertebrae"][name], "osteophyte_mm": round(spine.osteophytes[name], 2),
                 "rib_sides": sorted(bearing.get(name, []))}
        if name[0] in "TL":
            heights = body_heights(level.sizes, spine.mods[name])
            entry["heights_mm"] = {k: round(heights[k], 2) for k in ("anterior", "middle", "posterior")}
            entry.update(depth_mm=round(heights["depth"], 2), width_mm=round(heights["width"], 2),
                         intact_height_mm=round(heights["intact"], 2))
            c = compressed.get(name)
            entry.update(genant_grade=c.grade if c else 0, morphology=c.morphology if c else None,
                         planted_height_loss=round(c.loss, 4) if c else 0.0)
        levels[name] = entry
    in_view = [n for n in spine.names if levels[n]["in_view"]]
    ribs_in_view = sorted(int(x) for x in np.nonzero(rib_counts)[0] if x > 0)
    thoracic = [n for n in spine.names if n.startswith("T")]
    lumbar = [n for n in spine.names if n.startswith("L")]
    rib_vertebrae = [r["vertebra"] for r in rib_truth if r["number"] > 0]
    order = {n: i for i, n in enumerate(spine.names)}
    first = min(rib_vertebrae, key=order.get)
    last = max(rib_vertebrae, key=order.get)
    anchors = {
        "skull_base": bool(z_hi > marks["fm"] + 2.0),
        "dens": bool(levels["C2"]["in_view"] and not levels["C2"]["partial"]),
        "first_rib": bool(any(describe_rib_label(x)[1] == VERSE[first] for x in ribs_in_view)),
        "last_rib": bool(any(describe_rib_label(x)[1] == VERSE[last] for x in ribs_in_view)),
        "sacrum": bool(levels["S1"]["in_view"]),
    }
    return {
        "field_of_view": kind, "shape_kji": list(vertebrae.shape), "spacing_ijk": [round(s, 4) for s in sp],
        "slice_thickness": round(thickness, 4), "z_range_ras": [round(z_lo, 1), round(z_hi, 1)],
        "levels_in_view": in_view, "levels_partial": [n for n in in_view if levels[n]["partial"]],
        "levels": levels, "compressions": [c.to_json() for c in spine.compressions],
        "rib_pairs": int(v["rib_pairs"]), "ribs": rib_truth, "ribs_in_view": ribs_in_view,
        "ribs_partial": sorted(int(x) for x in rib_cut),
        "first_rib_vertebra": first, "last_rib_vertebra": last, "cervical_rib": bool(v["cervical_rib"]),
        "thoracic_count": len(thoracic), "lumbar_count": len(lumbar),
        "lumbar_mobile": len(lumbar) - (1 if v["transitional"] == "sacralised_L5" else 0),
        "transitional": v["transitional"],
        "sacral_contact": v["sacral_contact"] if v["transitional"] == "sacralised_L5" else None,
        "anchors_in_view": anchors, "contrast": v["contrast"], "oral_contrast": bool(v["oral_contrast"]),
        "osteoporotic": bool(v["osteoporotic"]), "l1_trabecular_hu": round(bone_hu["l1_trabecular"], 1),
        "cortex_hu": round(bone_hu["cortex"], 1), "metal": v["metal"], "arms": v["arms"],
        "patient": {"age": round(v["age"], 1), "sex": v["sex"], "size": round(v["size"], 3),
                    "fat_mm": round(v["fat_mm"], 1), "degeneration": round(v["degeneration"], 3),
                    "scoliosis_deg": round(v["scoliosis_deg"], 1)},
        "spine": spine.params, "pose_deg": {k: round(x, 2) for k, x in pose.items()}, "notes": notes,
        "label_ranges": {"vertebrae": "VerSe: C1-C7 1-7, T1-T12 8-19, L1-L5 20-24, L6 25, sacrum 26, T13 28",
                         "ribs": "100 + VerSe number of the rib's vertebra (left), 200 + (right)"},
    }


__all__ = ["FIELDS_OF_VIEW", "VARIANT_KEYS", "SpineCTCase", "make_spine_ct"]
