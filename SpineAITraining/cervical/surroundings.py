"""Everything around the spine: the neck's soft tissues, airway, vessels, thyroid, lung
apices, spinal canal and cord, the skull base with mandible and teeth, hyoid, ribs,
clavicles and sternum, and the CT table.

Soft tissues are cross-sections that follow the spine: their centres, sizes and what
is present are tabulated along the patient's z axis every 0.5 mm from the vertebrae's
positions (neck narrow between C2 and C7, widening into the shoulders below and the
head above), so a voxel only needs a table lookup and a few ellipse tests. Bones other
than the vertebrae are signed distance shapes (label 0) rendered like the vertebrae.
"""

import numpy as np

from . import tissues as T
from .sdf import Box, Capsule, Ellipsoid, EllipticCylinder, Subtract, Union, box_between

STEP = 0.5  # mm between table rows


class Surroundings:
    def __init__(self, rng, spine, body_scale=1.0, fat_mm=6.0):
        self.spine = spine
        lv = spine.levels
        self.skull_frame = spine.skull
        z_of = {n: float(l.to_patient[2, 3]) for n, l in lv.items()}
        fm = spine.skull[:3, 3]
        self.z_fm = float(fm[2])
        self.z0 = z_of["T5"] - 120.0
        self.z1 = self.z_fm + 160.0
        zs = np.arange(self.z0, self.z1 + STEP, STEP)
        self.zs = zs

        # Canal centre (x, y), body front (y), canal half sizes along z.
        names = list(lv)[::-1]  # T5 ... C1, rising z
        zc = np.array([z_of[n] for n in names] + [self.z_fm])
        xc = np.array([lv[n].to_patient[0, 3] for n in names] + [fm[0]])
        yc = np.array([lv[n].to_patient[1, 3] for n in names] + [fm[1] - 3.0])
        front = []
        for n in names:
            level = lv[n]
            if n == "C1":
                front.append(level.point((0, 4.5 + level.sizes["ring_ry"] + 2.5, 0))[1])
            else:
                front.append(level.point((0, level.body_cy + level.sizes["body_ry"], 0))[1])
        front.append(front[-1] + 4.0)
        self.cx = np.interp(zs, zc, xc)
        self.cy = np.interp(zs, zc, yc)
        self.front = np.interp(zs, zc, np.array(front))
        canal_rx = [min(lv[n].sizes["canal_rx"], 12.5) if n != "C1" else 13.0 for n in names] + [15.0]
        canal_ry = [lv[n].sizes["canal_ry"] if n != "C1" else 9.0 for n in names] + [13.0]
        self.canal_rx = np.interp(zs, zc, canal_rx)
        self.canal_ry = np.interp(zs, zc, canal_ry)
        cervical = zs > z_of["T1"]
        self.cord_rx = np.where(cervical, 6.3, 5.0)
        self.cord_ry = np.where(cervical, 4.3, 4.0)

        # Outline of the body: (half width, half depth, centre ahead of the canal) at landmarks.
        marks = [
            (z_of["T5"] - 30, 175, 110, 48), (z_of["T3"], 165, 105, 46), (z_of["T1"], 125, 88, 36),
            (z_of["C7"], 70, 63, 16), (z_of["C5"], 60, 58, 14), (z_of["C3"], 62, 66, 20), (z_of["C2"], 66, 82, 32),
            (z_of["C1"], 70, 92, 32), (self.z_fm + 20, 73, 96, 28), (self.z_fm + 160, 73, 96, 28),
        ]
        mz, ax, ay, off = (np.array(v, float) for v in zip(*marks))
        self.ax = np.interp(zs, mz, ax) * body_scale
        self.ay = np.interp(zs, mz, ay) * body_scale
        self.offset = np.interp(zs, mz, off)
        self.fat = np.full(zs.shape, fat_mm * body_scale ** 2)

        # Airway: trachea below C6, larynx C6-C3 (closing at the cords near C5), pharynx above.
        seg = [(self.z0, 16, 9, 8), (z_of["C6"] - 4, 16, 9, 8), (z_of["C6"] + 2, 19, 7, 9), (z_of["C5"], 19, 2.5, 7),
               (z_of["C4"], 18, 8, 9), (z_of["C3"], 10, 13, 6), (z_of["C1"], 9, 13, 6), (self.z_fm - 4, 12, 11, 8),
               (self.z_fm + 2, 12, 0.0, 0.0)]
        sz, d, rx, ry = (np.array(v, float) for v in zip(*seg))
        collapse = rng.uniform(0.6, 1.1)
        self.air_d = np.interp(zs, sz, d)
        self.air_rx = np.interp(zs, sz, rx) * collapse
        self.air_ry = np.interp(zs, sz, ry) * collapse
        self.trachea = zs < z_of["C6"] + 2
        self.esophagus = (zs < z_of["C6"]) & (zs > self.z0)

        # Thyroid lobes around C6-C7; lung apices from just above T1 down.
        self.thyroid = np.clip(1 - ((zs - (z_of["C7"] + 4)) / 20.0) ** 2, 0, None) ** 0.5
        self.z_apex = z_of["T1"] + rng.uniform(8, 22)
        depth = np.clip(self.z_apex - zs, 0, None)
        self.lung_rx = np.minimum(40.0, 1.1 * depth) * body_scale
        self.lung_ry = np.minimum(48.0, 1.3 * depth) * body_scale
        self.vessels = (zs > z_of["T2"]) & (zs < z_of["C1"])
        self.post_fat = rng.uniform(0, 12)
        self.skull_thickness = float(rng.uniform(4.5, 8.0))  # the brain fills the skull's inner table
        # Fat between the muscles: a dozen ellipsoids at random places inside the neck.
        self.blobs = []
        for _ in range(int(rng.integers(6, 16))):
            zc = float(rng.uniform(z_of["T2"], z_of["C1"]))
            row = int((zc - self.z0) / STEP)
            centre = (float(self.cx[row] + rng.uniform(-0.75, 0.75) * self.ax[row]),
                      float(self.cy[row] + self.offset[row] + rng.uniform(-0.75, 0.75) * self.ay[row]), zc)
            self.blobs.append((centre, (float(rng.uniform(3, 10)), float(rng.uniform(2.5, 7)), float(rng.uniform(8, 30)))))
        for key, value in list(vars(self).items()):  # float32 tables: lookups stay float32
            if isinstance(value, np.ndarray) and value.dtype == np.float64 and key != "skull_frame":
                setattr(self, key, value.astype(np.float32))

    def _rows(self, z):
        return np.clip(((z - self.z0) / STEP).astype(np.int32), 0, len(self.zs) - 1)

    def soft_tissue(self, block):
        """Tissue codes on a Block in patient coordinates; no bones.

        Structures other than the body outline are only tested inside their own window of
        the block (their extent over the block's z rows), which keeps this fast.
        """
        x, y, z = block.x, block.y, block.z
        r = self._rows(z)
        rows = slice(int(r.min()), int(r.max()) + 1)
        z_span = (float(self.zs[rows][0]) - 1, float(self.zs[rows][-1]) + 1)
        dx = x - self.cx[r]
        dy = y - self.cy[r]
        ax, ay = self.ax[r], self.ay[r]
        oy = dy - self.offset[r]
        outline = (dx / ax) ** 2 + (oy / ay) ** 2
        out = np.full(x.shape, T.AIR, np.uint8)
        inside = outline < 1
        out[inside] = T.FAT
        depth = (1 - np.sqrt(np.minimum(outline, 1))) * np.minimum(ax, ay)  # ~mm below the skin
        fat = self.fat[r] + np.where(oy < -0.3 * ay, np.float32(self.post_fat), np.float32(0))
        out[inside & (depth > fat)] = T.MUSCLE
        del depth, fat, outline, oy, ax, ay

        cx, cy, front = self.cx[rows], self.cy[rows], self.front[rows]

        def window(x0, x1, y0, y1):
            return block.window(((x0, y0, z_span[0]), (x1, y1, z_span[1])))

        def paint(w, mask, code):
            view = out[w]
            view[mask] = code

        for (bx, by, bz), (rx, ry, rz) in self.blobs:
            w = block.window(((bx - rx, by - ry, bz - rz), (bx + rx, by + ry, bz + rz)))
            if w is not None:
                blob = ((x[w] - bx) / rx) ** 2 + ((y[w] - by) / ry) ** 2 + ((z[w] - bz) / rz) ** 2 < 1
                paint(w, blob & (out[w] == T.MUSCLE), T.FAT)
        # Fat planes: beside the nuchal midline, and in the lateral neck around the vessels.
        w = window(cx.min() - 34, cx.max() + 34, cy.min() - 33, cy.max() - 19)
        if w is not None:
            for sx in (-1, 1):
                paint(w, inside[w] & (((dx[w] - sx * 24) / 9) ** 2 + ((dy[w] + 26) / 6) ** 2 < 1), T.FAT)
        ves_rows = self.vessels[rows]
        if ves_rows.any():
            w = window(cx.min() - 47, cx.max() + 47, front.min() - 6, front.max() + 23)
            if w is not None:
                fy = y[w] - self.front[r[w]]
                ves = self.vessels[r[w]]
                d = dx[w]
                for sx in (-1, 1):
                    paint(w, ves & inside[w] & (((d - sx * 36) / 10) ** 2 + ((fy - 14) / 8) ** 2 < 1), T.FAT)
                for sx in (-1, 1):
                    paint(w, ves & (((d - sx * 21) ** 2 + (fy - 6) ** 2) < 3.4 ** 2), T.VESSEL)
                    paint(w, ves & ((((d - sx * 30) / 6.5) ** 2 + ((fy - 3) / 5) ** 2) < 1), T.VESSEL)
        # Thyroid, esophagus, airway (air with a cartilage wall in the trachea).
        air_d, air_rx, air_ry = self.air_d[rows], self.air_rx[rows], self.air_ry[rows]
        w = window(cx.min() - max(25, air_rx.max() + 3), cx.max() + max(25, air_rx.max() + 3),
                   front.min() - 2, front.max() + air_d.max() + air_ry.max() + 14)
        if w is not None:
            rw = r[w]
            d = dx[w]
            fy = y[w] - self.front[rw]
            th = self.thyroid[rw]
            ad = self.air_d[rw]
            if self.thyroid[rows].any():
                for sx in (-1, 1):
                    paint(w, (th > 0) & ((((d - sx * 14) / (7 * th + 1e-3)) ** 2 + ((fy - ad - 3) / (9 * th + 1e-3)) ** 2) < 1),
                          T.GLAND)
            if self.esophagus[rows].any():
                paint(w, self.esophagus[rw] & ((((d + 3) / 8) ** 2 + ((fy - 4.5) / 3.8) ** 2) < 1), T.MUSCLE)
            arx, ary = self.air_rx[rw], self.air_ry[rw]
            if self.trachea[rows].any():
                wall = self.trachea[rw] & (arx > 1) & (((d / (arx + 1.6)) ** 2 + ((fy - ad) / (ary + 1.6)) ** 2) < 1)
                paint(w, wall, T.CARTILAGE)
            paint(w, (arx > 0.5) & ((d / np.maximum(arx, 0.1)) ** 2 + ((fy - ad) / np.maximum(ary, 0.1)) ** 2 < 1), T.AIR)
        # Lung apices, lateral to the spine and trachea.
        lrx_max, lry_max = float(self.lung_rx[rows].max()), float(self.lung_ry[rows].max())
        if lrx_max > 0.5:
            w = window(cx.min() - 2 * lrx_max - 24, cx.max() + 2 * lrx_max + 24, cy.min() + 6 - lry_max,
                       cy.max() + 10 + lry_max)
            if w is not None:
                rw = r[w]
                lrx, lry = np.maximum(self.lung_rx[rw], 0.5), np.maximum(self.lung_ry[rw], 0.5)
                for sx in (-1, 1):
                    lung = ((((dx[w] - sx * (lrx + 22)) / lrx) ** 2 + ((dy[w] - 8) / lry) ** 2) < 1) & (lrx > 0.6)
                    paint(w, lung & inside[w], T.LUNG)
        # Spinal canal: CSF around the cord.
        w = window(cx.min() - 16, cx.max() + 16, cy.min() - 15, cy.max() + 15)
        if w is not None:
            rw = r[w]
            d, e = dx[w], dy[w]
            canal = ((d / self.canal_rx[rw]) ** 2 + (e / self.canal_ry[rw]) ** 2) < 1
            paint(w, canal, T.CSF)
            paint(w, canal & (((d / self.cord_rx[rw]) ** 2 + ((e + 0.5) / self.cord_ry[rw]) ** 2) < 1), T.CORD)
        # Brain inside the skull (its inner table), above the foramen magnum.
        if z_span[1] > self.z_fm - 30:
            fm = self.skull_frame[:3, 3]
            w = block.window(((fm[0] - 80, fm[1] - 100, max(z_span[0], self.z_fm - 30)), (fm[0] + 80, fm[1] + 110, z_span[1])))
            if w is not None:
                inv = np.linalg.inv(self.skull_frame).astype(np.float32)
                xs, ys, zs = x[w], y[w], z[w]
                c, radii = SKULL_CENTRE, SKULL_RADII - self.skull_thickness
                u = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2] * zs + inv[0, 3] - np.float32(c[0])
                v = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2] * zs + inv[1, 3] - np.float32(c[1])
                t = inv[2, 0] * xs + inv[2, 1] * ys + inv[2, 2] * zs + inv[2, 3] - np.float32(c[2])
                paint(w, (u / radii[0]) ** 2 + (v / radii[1]) ** 2 + (t / radii[2]) ** 2 < 1, T.BRAIN)
        return out

    def bones(self, rng):
        """[(name, shape, local->patient 4x4, tissue or None (bone), cortex mm)] around the spine."""
        lv = self.spine.levels
        out = []
        out.append(("skull", skull_shape(self.skull_thickness), self.skull_frame, None, 1.6))
        if rng.random() < 0.85:
            out.append(("mandible", mandible_shape(rng), self.skull_frame, None, 2.0))
            out.append(("teeth", teeth_shape(rng), self.skull_frame, T.TOOTH, 0.0))
        c3 = lv["C3"]
        r = self._rows(np.array([c3.to_patient[2, 3]]))[0]
        hy = np.array([self.cx[r], self.front[r] + 24.0, c3.to_patient[2, 3] - 2.0])
        arc = [hy + np.array([17 * np.sin(a), 14 * np.cos(a) - 10, 0]) for a in np.radians(np.linspace(-95, 95, 7))]
        out.append(("hyoid", Union([Capsule(a, b, 2.2) for a, b in zip(arc[:-1], arc[1:])]), np.eye(4), None, 1.0))
        ribs = rib_shapes(self.spine)
        out += [(f"rib {n}", shape, np.eye(4), None, 1.2) for n, shape in ribs]
        out += shoulder_girdle(self.spine)
        return out


SKULL_CENTRE = np.array([0.0, 6.0, 42.0])
SKULL_RADII = np.array([68.0, 88.0, 50.0])


def skull_shape(thickness):
    """Skull frame (origin at the foramen magnum): the vault's lower half as a shell with
    the foramen magnum, occipital condyles, mastoids, clivus and hard palate."""
    inner = Ellipsoid(SKULL_CENTRE, SKULL_RADII - thickness)
    shell = Subtract(Ellipsoid(SKULL_CENTRE, SKULL_RADII),
                     [inner, EllipticCylinder((0.0, 0.0, 0.0), 15.5, 18.5, 25.0)])
    parts = [shell,
             box_between((0.0, 21.0, 2.0), (0.0, 38.0, 38.0), width=10.0, height=24.0, up=(1, 0, 0), rounding=3.0),
             Box((0.0, 66.0, -9.0), (22.0, 22.0, 3.5), rounding=2.0)]
    for side in (-1, 1):
        parts.append(Ellipsoid((side * 13.0, 7.0, -3.5), (5.5, 10.0, 5.5)))
        parts.append(Ellipsoid((side * 48.0, -4.0, -4.0), (8.0, 10.0, 14.0)))
    return Union(parts)


def _arch(half_width, y_back, depth, z, n=9, angles=(-85, 85)):
    return [np.array([half_width * np.sin(a), y_back + depth * np.cos(a), z]) for a in np.radians(np.linspace(*angles, n))]


def mandible_shape(rng):
    """Skull frame: U-shaped body of the mandible and its rami up to the jaw joints."""
    z = float(rng.uniform(-42, -34))
    path = _arch(44.0, 22.0, 60.0, z)
    parts = [box_between(a, b, width=6.0, height=24.0, rounding=2.5, extend=1.5) for a, b in zip(path[:-1], path[1:])]
    for side in (-1, 1):
        parts.append(box_between((side * 45.0, 20.0, z - 8), (side * 50.0, 14.0, 2.0), width=6.0, height=26.0,
                                 up=(0, 1, 0), rounding=2.5))
    return Union(parts)


def teeth_shape(rng):
    """Skull frame: lower and upper dental arches (enamel-dense blobs)."""
    parts = []
    for z in (-21.0, -12.0):
        for p in _arch(23.0, 48.0, 36.0, z, n=14, angles=(-80, 80)):
            parts.append(Ellipsoid(p, (3.2, 3.6, 4.2)))
    return Union(parts)


def rib_shapes(spine):
    """Patient frame: ribs of T1 ... T5 from the costovertebral joint around the thorax."""
    width = {"T1": 55, "T2": 72, "T3": 86, "T4": 96, "T5": 104}
    depth = {"T1": 40, "T2": 55, "T3": 66, "T4": 74, "T5": 80}
    drop = {"T1": 22, "T2": 36, "T3": 46, "T4": 52, "T5": 58}
    out = []
    for name in width:
        level = spine.levels[name]
        s = level.sizes
        for side in (-1, 1):
            head = level.point((side * (s["body_rx"] + 1.0), level.body_cy - s["body_ry"] * 0.5, s["body_hh"] * 0.6))
            tubercle = level.point((side * (s["tp"] - 3.0), -12.0, 4.0))
            centre = level.point((0.0, 30.0, 0.0))
            w, d = width[name], depth[name]
            # Angle on the thorax ellipse: 0 lateral right, +90 anterior; the rib runs from
            # its tubercle (posterolateral) round the side to the front (70 deg from lateral).
            start = np.arctan2((tubercle[1] - centre[1]) / d, (tubercle[0] - centre[0]) / w)
            end = np.radians(70.0) if side > 0 else np.radians(110.0) - 2 * np.pi
            if side < 0 and start > 0:
                start -= 2 * np.pi
            angles = np.linspace(start, end, 10)
            pts = [head, tubercle]
            for i, a in enumerate(angles[1:], 1):
                pts.append(np.array([centre[0] + w * np.cos(a), centre[1] + d * np.sin(a), tubercle[2] - drop[name] * i / 9]))
            r = 3.3 if name == "T1" else 3.8
            out.append((f"{name} {'right' if side > 0 else 'left'}", Union([Capsule(a, b, r) for a, b in zip(pts[:-1], pts[1:])])))
    return out


def shoulder_girdle(spine):
    """Patient frame: manubrium and clavicles in front of the upper thorax."""
    t2, t1 = spine.levels["T2"], spine.levels["T1"]
    front = t2.point((0.0, t2.body_cy + t2.sizes["body_ry"] + 58.0, -t2.sizes["body_hh"]))
    parts = [("manubrium", Box(front, (22.0, 6.0, 20.0), rounding=3.0), np.eye(4), None, 1.2)]
    top = t1.point((0.0, 0.0, t1.sizes["body_hh"] + 12.0))
    for side in (-1, 1):
        a = front + np.array([side * 16.0, 0.0, 16.0])
        b = np.array([a[0] + side * 60.0, a[1] - 25.0, top[2] + 4.0])
        c = np.array([a[0] + side * 130.0, top[1] + 0.0, top[2] + 14.0])
        parts.append((f"clavicle {'right' if side > 0 else 'left'}", Union([Capsule(a, b, 7.0, 6.0), Capsule(b, c, 6.0, 7.5)]),
                      np.eye(4), None, 1.5))
    return parts

