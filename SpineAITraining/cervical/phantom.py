"""A CT phantom of the cervical and upper thoracic spine with labelled fractures.

``make_case(seed)`` draws a patient (vertebra sizes, lordosis, head and body size, fat,
bone density), how they lie in the scanner (tilt), what the scan covers (from the skull
base or C1 down to T1...T4, sometimes cutting a vertebra), its grid (in-plane 0.4-1 mm,
slices 0.6-3 mm, sometimes 5 mm, overlapping thick slices), fractures (cortical breaks,
displaced fragments, compressed bodies, dens fractures) and artefacts (noise that grows
at the shoulders, shoulder streaks, metal with streaks, motion, padding outside the
reconstruction circle), then renders it:

1. tissues on a grid finer than the slices (<= 1 mm along them): soft tissues from
   tables along the spine (SpineAITraining.cervical.surroundings), discs, then every
   bone as a signed distance field (cortex = the outer 0.8-1.6 mm), vertebrae labelled
   with their VerSe numbers, fractures cut into them with their zones recorded;
2. Hounsfield units per tissue drawn per case, trabecular texture;
3. in-plane blur (reconstruction kernel), the slice sensitivity profile (a Gaussian of
   the slice thickness across the fine slices), noise and artefacts; int16 HU.

Labels and fracture zones are taken at the slice centres, so they line up with the CT
voxel for voxel. Speed (one core of this machine, see the README): a typical
0.8 x 0.8 x 1.0 mm case of about 160 x 160 x 200 voxels takes about 1.3 s; with everything
drawn (up to 256 x 192 x 192 voxels) 0.7-3 s.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from SpineAILib.images import VolumeImage

from . import artefacts as A
from . import tissues as T
from .anatomy import CERVICAL, NAMES, VERSE, disc_shape, draw_spine, frame, vertebra_shape
from .fractures import LEVEL_WEIGHTS, body_mods, compression_zone, draw_fractures, fractured_shape
from .sdf import FAR, Block, Capsule, Ellipsoid, Union, block_for, box_between, rotation
from .surroundings import Surroundings

DEFAULT_SHAPE_LIMIT = (256, 192, 192)  # (K, J, I) voxels: beyond it drawn spacing coarsens, given spacing crops
ORIENTATIONS = {  # RAS direction of the grid's I, J, K axes
    "axial": ((-1, 0, 0), (0, -1, 0), (0, 0, 1)),  # as DICOM stores axial CT; K inferior -> superior
    "sagittal": ((0, -1, 0), (0, 0, -1), (1, 0, 0)),
    "coronal": ((-1, 0, 0), (0, 0, -1), (0, 1, 0)),
}
LABEL_NAMES = {VERSE[n]: n for n in NAMES}
MIN_ZONE_VOXELS = 20  # a fracture with fewer zone voxels in view is not labelled


@dataclass
class CervicalCase:
    ct: VolumeImage  # int16 HU, voxels (K, J, I)
    labels: VolumeImage  # uint8 VerSe numbers on the same grid (C1..C7 = 1..7, T1.. = 8..), is_labelmap
    fractured: dict  # {"C1": 0/1, ..., "C7": 0/1}
    boxes: list  # [{"vertebra", "slice_number" (k + 1), "x", "y", "width", "height"}] in-slice pixel boxes
    meta: dict  # what was drawn
    fracture_zone: VolumeImage = None  # uint8: VerSe number of the fractured vertebra where its fracture is
    timings: dict = field(default_factory=dict)

    @property
    def patient_overall(self):
        return int(any(self.fractured.values()))


# ---------------------------------------------------------------- planning


def _z_extent(to_ras, bounds):
    lo, hi = bounds
    corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    z = (to_ras @ corners.T)[2]
    return float(z.min()), float(z.max())


def _ras(to_ras, point):
    return (to_ras @ np.append(np.asarray(point, float), 1.0))[:3]


def _plan_z(rng, spine, extents, levels, to_ras):
    """(z_lo, z_hi) in RAS and a description of what the scan was meant to cover."""
    if levels:
        unknown = [n for n in levels if n not in VERSE]
        if unknown:
            raise ValueError(f"unknown levels {unknown}; expected names among {', '.join(NAMES[:-1])}")
        lo = min(extents[n][0] for n in levels) - float(rng.uniform(1, 12))
        hi = max(extents[n][1] for n in levels) + float(rng.uniform(1, 12))
        return lo, hi, {"top": "requested", "bottom": "requested"}
    top = str(rng.choice(["skull", "C1", "cut"], p=[0.75, 0.15, 0.10]))
    fm = _ras(to_ras, spine.skull[:3, 3])
    c1 = _ras(to_ras, spine.levels["C1"].to_patient[:3, 3])
    if top == "skull":
        hi = fm[2] + float(rng.uniform(5, 45))
    elif top == "C1":
        hi = extents["C1"][1] + float(rng.uniform(0.5, 5))
    else:
        hi = c1[2] + float(rng.uniform(-4, 4))
    bottom = str(rng.choice(["T1", "T2", "T3", "T4"], p=[0.35, 0.3, 0.2, 0.15]))
    cut = rng.random() < 0.12
    if cut:
        level = spine.levels[bottom]
        lo = _ras(to_ras, level.point((0, level.body_cy, 0)))[2] + float(rng.uniform(-4, 4))
    else:
        lo = extents[bottom][0] - float(rng.uniform(1, 12))
    return lo, hi, {"top": top, "bottom": bottom + (" (cut)" if cut else "")}


def _draw_spacing(rng):
    in_plane = float(rng.choice([rng.uniform(0.4, 0.6), rng.uniform(0.6, 1.0)], p=[0.3, 0.7]))
    kind = rng.choice(4, p=[0.45, 0.3, 0.17, 0.08])
    slice_mm = float([rng.uniform(0.6, 1.0), rng.uniform(1.0, 2.0), rng.uniform(2.0, 3.0), 5.0][kind])
    return in_plane, slice_mm


def _plan_grid(rng, spacing, orientation, shape_limit, z_lo, z_hi, centre_xy):
    """(K, J, I), 4x4 IJK->RAS, spacing (I, J, K), notes."""
    dirs = np.array(ORIENTATIONS[orientation], dtype=float)  # rows: I, J, K directions
    limit = DEFAULT_SHAPE_LIMIT if shape_limit is None else tuple(int(v) for v in shape_limit)
    limit_ijk = (limit[2], limit[1], limit[0])
    fov = float(rng.uniform(110, 200))
    depth = float(rng.uniform(70, 110))  # across sagittal / coronal slabs
    extent_ras = {0: fov, 1: fov, 2: z_hi - z_lo}
    if orientation != "axial":
        extent_ras[int(np.argmax(np.abs(dirs[2])))] = depth
    if spacing is None:
        in_plane, slice_mm = _draw_spacing(rng)
        sp = [in_plane, in_plane, slice_mm]
        given = False
    else:
        sp = [float(v) for v in spacing]
        if len(sp) != 3 or min(sp) <= 0:
            raise ValueError(f"spacing must be three positive numbers (I, J, K) in mm, got {spacing!r}")
        given = True
    n, notes = [], []
    for a in range(3):
        extent = extent_ras[int(np.argmax(np.abs(dirs[a])))]
        count = max(8, int(round(extent / sp[a])) + (1 if a == 2 else 0))
        if count > limit_ijk[a]:
            if given:
                notes.append(f"axis {'IJK'[a]} cropped from {count} to {limit_ijk[a]} voxels (shape_limit)")
            else:
                sp[a] = extent / limit_ijk[a]
                notes.append(f"axis {'IJK'[a]} spacing coarsened to {sp[a]:.3f} mm (shape_limit)")
            count = limit_ijk[a]
        n.append(count)
    matrix = np.eye(4)
    for a in range(3):
        matrix[:3, a] = dirs[a] * sp[a]
    centre = np.array([centre_xy[0], centre_xy[1], (z_lo + z_hi) / 2])
    matrix[:3, 3] = centre - matrix[:3, :3] @ ((np.array(n, float) - 1) / 2)
    return (n[2], n[1], n[0]), matrix, tuple(sp), notes


# ---------------------------------------------------------------- painting


class _Canvas:
    """Tissue, label and fracture-zone codes on the fine grid, with a bone depth buffer."""

    def __init__(self, shape, to_grid):
        self.shape = shape
        self.to_grid = to_grid  # RAS -> fine grid (i, j, k)
        self.tissue = np.zeros(shape, np.uint8)
        self.label = np.zeros(shape, np.uint8)
        self.zone = np.zeros(shape, np.uint8)
        self.best = np.full(shape, FAR, np.float32)

    def block(self, to_ras, bounds):
        return block_for(self.to_grid @ to_ras, bounds, self.shape)

    @staticmethod
    def window(block):
        return tuple(slice(lo, hi) for lo, hi in zip(block.lo, block.hi))

    def paint(self, block, d, label, cortex_mm, tissue=None):
        w = self.window(block)
        best = self.best[w]
        inside = (d < 0) & (d < best)
        best[inside] = d[inside]
        tissues = self.tissue[w]
        if tissue is None:
            tissues[inside] = np.where(d[inside] > -cortex_mm, T.CORTEX, T.CANCELLOUS)
        else:
            tissues[inside] = tissue
        self.label[w][inside] = label
        return inside


def _paint_soft(canvas, sur, to_ras, table_y, slab=24):
    """Soft tissues slab by slab (patient coordinates from the fine grid)."""
    to_grid_p = canvas.to_grid @ to_ras
    k_total, j_total, i_total = canvas.shape
    ras_to_grid = canvas.to_grid
    for k0 in range(0, k_total, slab):
        k1 = min(k0 + slab, k_total)
        block = Block(to_grid_p, (k0, 0, 0), (k1, j_total, i_total))
        tissue = sur.soft_tissue(block)
        if table_y is not None:
            ras = Block(ras_to_grid, (k0, 0, 0), (k1, j_total, i_total))
            tissue[(ras.y < table_y) & (ras.y > table_y - 6.0)] = T.TABLE
        canvas.tissue[k0:k1] = tissue


def _implants(rng, spine, artefacts):
    """Metal: an anterior cervical plate with screws, and/or dental fillings. [(name, shape, frame)]"""
    out = []
    if not artefacts:
        return out
    if rng.random() < 0.07:
        upper = str(rng.choice(["C3", "C4", "C5", "C6"]))
        lower = CERVICAL[CERVICAL.index(upper) + 1]
        parts = []
        points = []
        for name in (upper, lower):
            level = spine.levels[name]
            front = level.body_cy + level.sizes["body_ry"]
            points.append(level.point((0.0, front + 1.5, 0.0)))
            for sx in (-4.5, 4.5):
                parts.append(Capsule(level.point((sx, front + 1.0, 0.0)), level.point((sx * 0.6, front - 13.0, 0.0)), 1.8))
        parts.append(box_between(points[0] + [0, 0, 6], points[1] - [0, 0, 6], width=2.2, height=15.0, up=(1, 0, 0),
                                 rounding=0.8))
        out.append((f"anterior plate {upper}-{lower}", Union(parts), np.eye(4)))
    if rng.random() < 0.3:
        fillings = []
        for _ in range(int(rng.integers(1, 5))):
            a = np.radians(rng.uniform(-80, 80))
            z = float(rng.choice([-21.0, -12.0]))
            fillings.append(Ellipsoid((23 * np.sin(a), 48 + 36 * np.cos(a), z), (2.2, 2.6, 1.8)))
        out.append(("dental fillings", Union(fillings), spine.skull))
    return out


def _boxes(zone, labels, names):
    """RSNA-style boxes: per slice and fractured vertebra, the zone's pixel bounding box
    (only on slices where that vertebra itself shows inside the box)."""
    out = []
    for k in range(zone.shape[0]):
        plane = zone[k]
        if not plane.any():
            continue
        for number in np.unique(plane[plane > 0]):
            rows, cols = np.nonzero(plane == number)
            if rows.size < 3:
                continue
            r0, r1 = max(int(rows.min()) - 2, 0), min(int(rows.max()) + 2, plane.shape[0] - 1)
            c0, c1 = max(int(cols.min()) - 2, 0), min(int(cols.max()) + 2, plane.shape[1] - 1)
            if np.count_nonzero(labels[k, r0:r1 + 1, c0:c1 + 1] == number) < 3:
                continue
            out.append({"vertebra": names[int(number)], "slice_number": k + 1, "x": float(c0), "y": float(r0),
                        "width": float(c1 - c0 + 1), "height": float(r1 - r0 + 1)})
    return out


# ---------------------------------------------------------------- the case


def make_case(seed, *, spacing=None, levels=None, fracture_rate=0.3, artefacts=True, orientation="axial",
              shape_limit=None, fracture_levels=None):
    """Draw and render one case.

    seed: int (or numpy SeedSequence entropy). spacing: (I, J, K) mm, honoured exactly (a
    grid over ``shape_limit`` is then cropped); None draws it. levels: vertebra names the
    scan must cover completely, e.g. ("C1", ..., "T1"); None draws the coverage.
    fracture_rate: chance that the patient has any fracture. fracture_levels: fracture
    exactly these vertebrae (C1...C7) instead. orientation: "axial" (slices along the
    patient's z, K inferior -> superior, as RSNA's stacks sorted by position), "sagittal" or
    "coronal". shape_limit: (K, J, I) most voxels, default DEFAULT_SHAPE_LIMIT.
    """
    t0 = time.perf_counter()
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {', '.join(ORIENTATIONS)}, got {orientation!r}")
    rng = np.random.default_rng(seed)
    spine = draw_spine(rng, scale=float(np.clip(rng.normal(1.0, 0.06), 0.86, 1.15)))
    body_scale = float(rng.uniform(0.85, 1.2))
    sur = Surroundings(rng, spine, body_scale=body_scale, fat_mm=float(rng.uniform(2.5, 11)))

    # How the patient lies: the neck (C7 -> C2) tilted by "pitch" from the scanner's z axis
    # (+ = top forward), rolled and turned; rotated about the C4 canal; the table's position.
    pose = {"pitch": float(np.clip(rng.normal(0, 6), -15, 15)), "roll": float(np.clip(rng.normal(0, 3), -8, 8)),
            "yaw": float(np.clip(rng.normal(0, 4), -10, 10))}
    neck = spine.levels["C2"].to_patient[:3, 3] - spine.levels["C7"].to_patient[:3, 3]
    lean = float(np.degrees(np.arctan2(neck[1], neck[2])))
    rot = rotation("z", pose["yaw"]) @ rotation("y", pose["roll"]) @ rotation("x", lean - pose["pitch"])
    pivot = spine.levels["C4"].to_patient[:3, 3]
    table = np.array([rng.uniform(-15, 15), rng.uniform(-40, 40), rng.uniform(-300, 150)])
    to_ras = frame(rot, table - rot @ pivot)  # patient -> RAS

    shapes = {n: vertebra_shape(level) for n, level in spine.levels.items()}
    extents = {n: _z_extent(to_ras @ spine.levels[n].to_patient, shapes[n].bounds()) for n in NAMES}
    z_lo, z_hi, coverage = _plan_z(rng, spine, extents, levels, to_ras)
    in_z = [n for n in NAMES if extents[n][1] > z_lo and extents[n][0] < z_hi]
    canal = np.array([_ras(to_ras, spine.levels[n].to_patient[:3, 3]) for n in in_z] or [_ras(to_ras, pivot)])
    centre_xy = canal[:, :2].mean(axis=0) + np.array([rng.uniform(-8, 8), rng.uniform(0, 22)])
    shape, matrix, sp, notes = _plan_grid(rng, spacing, orientation, shape_limit, z_lo, z_hi, centre_xy)

    # Fractures: only vertebrae wholly inside the scan can carry a label.
    complete_z = [n for n in CERVICAL if extents[n][0] > z_lo + 1 and extents[n][1] < z_hi - 1]
    if fracture_levels is not None:
        chosen = [str(n) for n in fracture_levels]
        bad = [n for n in chosen if n not in CERVICAL]
        if bad:
            raise ValueError(f"fracture_levels must be among C1...C7, got {bad}")
    elif complete_z and rng.random() < fracture_rate:
        count = min(len(complete_z), int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15])))
        w = np.array([LEVEL_WEIGHTS[n] for n in complete_z])
        chosen = [complete_z[i] for i in rng.choice(len(complete_z), size=count, replace=False, p=w / w.sum())]
    else:
        chosen = []
    fractures = draw_fractures(rng, spine, chosen)

    # Fine grid along K: odd number of sub-slices per slice (<= 1 mm apart) plus a margin
    # for the slice profile; labels come from the sub-slice at each slice centre.
    k_axis_mm = sp[2]
    thickness = k_axis_mm if (spacing is not None or rng.random() < 0.7) else k_axis_mm * float(rng.uniform(1.2, 2.0))
    n_sub = 1 if k_axis_mm <= 1.6 else 3 if k_axis_mm <= 4.0 else 5  # fine slices <= ~1.6 mm apart
    fine_mm = k_axis_mm / n_sub
    margin = int(np.ceil(thickness / fine_mm))
    fine_shape = (n_sub * (shape[0] - 1) + 1 + 2 * margin, shape[1], shape[2])
    fine = matrix.copy()
    fine[:3, 2] = matrix[:3, 2] / n_sub
    fine[:3, 3] = matrix[:3, 3] - margin * fine[:3, 2]
    canvas = _Canvas(fine_shape, np.linalg.inv(fine))
    timings = {"plan": time.perf_counter() - t0}

    # 1. Soft tissues, the table under the patient, discs.
    table_y = None
    if rng.random() < 0.6:
        back = min(_ras(to_ras, spine.levels[n].point((0, -60.0, 0)))[1] for n in ("C4", "T1"))
        table_y = back - float(rng.uniform(2, 25))
    _paint_soft(canvas, sur, to_ras, table_y)
    for upper, lower, disc_frame, rx, ry, hh, vacuum in spine.discs:
        d_shape = disc_shape(rx, ry, hh)
        block = canvas.block(to_ras @ disc_frame, d_shape.bounds())
        if block is not None:
            d = d_shape.evaluate(block)
            canvas.tissue[canvas.window(block)][d < 0] = T.DISC
            if vacuum:  # gas in a degenerated disc
                gas = Ellipsoid((float(rng.uniform(-3, 3)), rx * 0.1, 0.0), (rx * 0.45, ry * 0.35, max(hh - 1.2, 0.4)))
                canvas.tissue[canvas.window(block)][gas.evaluate(block) < 0] = T.AIR
    timings["soft"] = time.perf_counter() - t0

    # 2. Bones: vertebrae (labelled, fractured), then everything else (label 0).
    cortex = {"vertebra": float(rng.uniform(0.6, 1.1))}
    fractured_zone = {}
    for name, level in spine.levels.items():
        mine = [f for f in fractures if f.vertebra == name]
        shape_v = vertebra_shape(level, body_mods(mine)) if mine else shapes[name]
        broken, zone_shape = fractured_shape(shape_v, mine)
        bounds = broken.bounds()
        block = canvas.block(to_ras @ level.to_patient, bounds)
        if block is None:
            continue
        d = broken.evaluate(block)
        inside = canvas.paint(block, d, VERSE[name], cortex["vertebra"])
        if not mine:
            continue
        w = canvas.window(block)
        d_whole = shape_v.evaluate(block)
        gap = (d_whole < 0) & (d >= 0) & (canvas.best[w] >= 0)
        canvas.tissue[w][gap] = T.HEMATOMA
        zone = np.zeros(d.shape, bool)
        if zone_shape is not None:
            zone |= (zone_shape.evaluate(block) < 0) & ((d_whole < 0.5) | (d < 0.5))
        squashed = compression_zone(level, mine)
        if squashed is not None:
            top = (squashed.evaluate(block) < 0) & inside
            zone |= top
            canvas.tissue[w][top & (canvas.tissue[w] == T.CANCELLOUS)] = T.IMPACTED
        canvas.zone[w][zone] = VERSE[name]
        fractured_zone[name] = int(zone.sum())
    for name, shape_b, to_patient, tissue, cortex_mm in sur.bones(rng):
        block = canvas.block(to_ras @ to_patient, shape_b.bounds())
        if block is not None:
            canvas.paint(block, shape_b.evaluate(block), 0, cortex_mm, tissue)
    implants = _implants(rng, spine, artefacts)
    metal_centres = []
    for name, shape_m, to_patient in implants:
        block = canvas.block(to_ras @ to_patient, shape_m.bounds())
        if block is None:
            continue
        d = shape_m.evaluate(block)
        canvas.tissue[canvas.window(block)][d < 0] = T.METAL
        if np.any(d < 0):
            lo, hi = shape_m.bounds()
            corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
            ras = np.array([_ras(to_ras @ to_patient, c) for c in corners])
            metal_centres.append((name, ras.mean(axis=0), ras[:, 2].min(), ras[:, 2].max()))
    timings["bones"] = time.perf_counter() - t0

    # 3. Hounsfield units, texture, blur, slice profile.
    osteoporotic = rng.random() < 0.2
    contrast = rng.random() < 0.15
    hu = T.draw_hu(rng, contrast=contrast, osteoporotic=osteoporotic)
    texture_amp = np.zeros(len(T.NAMES), np.float32)
    texture_amp[[T.FAT, T.MUSCLE, T.GLAND, T.BRAIN, T.DISC, T.VESSEL, T.HEMATOMA]] = 5.0
    texture_amp[[T.CANCELLOUS, T.IMPACTED]] = float(rng.uniform(35, 80))
    texture_amp[T.CORTEX] = float(rng.uniform(40, 120))
    texture_amp[T.LUNG] = 25.0
    values = hu[canvas.tissue]
    values += A.smooth_texture(rng, fine_shape, cell=2) * texture_amp[canvas.tissue]
    blur_mm = float(rng.uniform(0.25, 0.6))
    values = A.blur_in_plane(values, blur_mm / min(sp[0], sp[1]))
    out = A.slice_profile(values, shape, n_sub, margin, thickness / 2.3548 / fine_mm)  # sigma in fine slices
    stop = n_sub * (shape[0] - 1) + 1
    del values
    centre = slice(margin, margin + stop, n_sub)
    labels = np.ascontiguousarray(canvas.label[centre])
    zone = np.ascontiguousarray(canvas.zone[centre])
    timings["render"] = time.perf_counter() - t0

    # 4. Artefacts and noise.
    applied = []
    k_idx = np.arange(shape[0], dtype=np.float64)
    slice_z = matrix[2, 2] * k_idx + matrix[2, 3] + matrix[2, 0] * (shape[2] - 1) / 2 + matrix[2, 1] * (shape[1] - 1) / 2
    z_t1 = _ras(to_ras, spine.levels["T1"].to_patient[:3, 3])[2]
    if artefacts and orientation == "axial" and rng.random() < 0.12 and shape[0] > 12:
        k0 = int(rng.integers(shape[0] // 4, 3 * shape[0] // 4))
        shift = (int(rng.integers(-3, 4)), int(rng.integers(-3, 4)))
        if shift != (0, 0):
            A.shift_from([out, labels, zone], k0, shift, (float(hu[T.AIR]), 0, 0))
            applied.append({"kind": "motion step", "from_slice": k0 + 1, "shift_px": list(shift)})
    if artefacts and rng.random() < 0.15 and shape[0] > 12:
        k0 = int(rng.integers(0, shape[0] - 6))
        k1 = min(shape[0], k0 + int(rng.integers(4, 20)))
        shift = (int(rng.integers(-4, 5)), int(rng.integers(-4, 5)))
        weight = float(rng.uniform(0.15, 0.4))
        A.motion_ghost(out, k0, k1, shift, weight)
        applied.append({"kind": "motion ghost", "slices": [k0 + 1, k1], "shift_px": list(shift), "weight": round(weight, 3)})
    noise_sigma = float(rng.uniform(6, 35))
    shoulder = 1 + 1.2 * np.clip((z_t1 - slice_z) / 50.0, 0, 1) if orientation == "axial" else np.ones(shape[0])
    out += A.correlated_noise(rng, shape, noise_sigma) * shoulder.astype(np.float32)[:, None, None]
    if artefacts and orientation == "axial" and np.any(slice_z < z_t1 + 10) and rng.random() < 0.6:
        amp = float(rng.uniform(20, 90))
        rows = np.arange(shape[1], dtype=np.float32)
        for k in np.nonzero(slice_z < z_t1 + 10)[0]:
            ramp = float(np.clip((z_t1 + 10 - slice_z[k]) / 40.0, 0, 1))
            profile = np.zeros(shape[1], np.float32)
            for _ in range(3):
                centre_row, width = rng.uniform(0, shape[1]), rng.uniform(1.0, 4.0)
                profile += float(rng.choice([-1, -1, 1])) * amp * ramp * np.exp(-0.5 * ((rows - centre_row) / width) ** 2)
            out[k] += profile[:, None]
        applied.append({"kind": "shoulder streaks", "amplitude": round(amp, 1)})
    if orientation == "axial":
        for name, centre_ras, mz0, mz1 in metal_centres:
            ks = np.nonzero((slice_z >= mz0 - sp[2]) & (slice_z <= mz1 + sp[2]))[0]
            if not ks.size:
                continue
            n_lines = int(rng.integers(8, 17))
            angles = rng.uniform(0, np.pi, n_lines)
            amps = rng.uniform(150, 600, n_lines)
            signs = rng.choice([-1.0, 1.0], n_lines)
            width = float(rng.uniform(0.8, 2.0))
            ii = np.arange(shape[2], dtype=np.float32)[None, :]
            jj = np.arange(shape[1], dtype=np.float32)[:, None]
            for k in ks:
                x = matrix[0, 0] * ii + matrix[0, 1] * jj + (matrix[0, 2] * k + matrix[0, 3] - centre_ras[0])
                y = matrix[1, 0] * ii + matrix[1, 1] * jj + (matrix[1, 2] * k + matrix[1, 3] - centre_ras[1])
                out[k] += A.metal_streaks((x.astype(np.float32), y.astype(np.float32)), angles, amps, width, signs)
            applied.append({"kind": "metal", "object": name, "slices": [int(ks[0]) + 1, int(ks[-1]) + 1]})
    padding = None
    if artefacts and orientation == "axial" and rng.random() < 0.5:
        padding = float(rng.choice([-2000.0, -3024.0, -1024.0], p=[0.6, 0.2, 0.2]))
        outside = A.outside_reconstruction_circle(shape, sp, float(rng.uniform(0.92, 1.1)))
        record = A.pad_outside(out, (labels, zone), outside, padding)
        if record:
            applied.append(record)
        else:
            padding = None
    voxels = np.clip(np.rint(out), -3024, 3071).astype(np.int16)
    timings["artefacts"] = time.perf_counter() - t0

    # 5. What is in view, what is fractured, boxes.
    present = set(np.unique(labels).tolist()) - {0}
    z_axis = int(np.argmax(np.abs(matrix[2, :3])))  # grid axis closest to the patient's z
    ends = [np.take(labels, 0, axis=2 - z_axis), np.take(labels, -1, axis=2 - z_axis)]
    touching = set(np.unique(np.concatenate([e.ravel() for e in ends])).tolist())
    in_view = [n for n in NAMES if VERSE[n] in present]
    complete = [n for n in in_view if VERSE[n] not in touching]
    zone_counts = {n: int(np.count_nonzero(zone == VERSE[n])) for n in CERVICAL}
    fractured = {n: int(zone_counts[n] >= MIN_ZONE_VOXELS) for n in CERVICAL}
    for n in CERVICAL:
        if not fractured[n]:
            zone[zone == VERSE[n]] = 0
    dropped = [n for n in chosen if not fractured[n]]
    boxes = _boxes(zone, labels, LABEL_NAMES)

    meta = {
        "generator": "SpineAITraining.cervical.phantom", "seed": jsonable_seed(seed),
        "orientation": orientation, "shape_kji": list(shape), "spacing_ijk": [round(v, 4) for v in sp],
        "slice_thickness": round(thickness, 4), "fov_mm": [round(shape[2] * sp[0], 1), round(shape[1] * sp[1], 1)],
        "coverage": coverage, "levels_in_view": in_view, "levels_complete": complete,
        "fractures": [f.to_json() for f in fractures], "fracture_zone_voxels": {n: zone_counts[n] for n in chosen},
        "fractures_out_of_view": dropped, "patient_pose_deg": {k: round(v, 2) for k, v in pose.items()},
        "spine": spine.params, "body_scale": round(body_scale, 3), "osteoporotic": osteoporotic,
        "contrast": contrast, "noise_sigma_hu": round(noise_sigma, 2), "blur_mm": round(blur_mm, 3),
        "hu": {T.NAMES[c]: round(float(hu[c]), 1) for c in range(len(T.NAMES))}, "artefacts": applied,
        "implants": [m[0] for m in metal_centres], "padding_value": padding, "table": table_y is not None,
        "notes": notes,
    }
    description = f"SpineAI cervical CT phantom (seed {meta['seed']})"
    ct = VolumeImage(voxels, matrix, modality="CT", description=description, source="phantom",
                     metadata={"phantom": meta["generator"], "seed": meta["seed"]})
    label_image = VolumeImage(labels, matrix.copy(), modality="CT", description=description + " vertebrae",
                              source="phantom", is_labelmap=True, metadata={"label_names": dict(LABEL_NAMES)})
    zone_image = VolumeImage(zone, matrix.copy(), modality="CT", description=description + " fracture zones",
                             source="phantom", is_labelmap=True, metadata={"label_names": dict(LABEL_NAMES)})
    timings["total"] = time.perf_counter() - t0  # kept out of meta, which is a pure function of the seed
    return CervicalCase(ct, label_image, fractured, boxes, meta, zone_image, {k: round(v, 3) for k, v in timings.items()})


def jsonable_seed(seed):
    if isinstance(seed, (int, np.integer)):
        return int(seed)
    if isinstance(seed, (list, tuple)):
        return [int(s) for s in seed]
    return str(seed)


__all__ = ["CervicalCase", "DEFAULT_SHAPE_LIMIT", "LABEL_NAMES", "make_case"]
