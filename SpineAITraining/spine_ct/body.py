"""Soft tissues of the whole-spine phantom, from the skull to the thighs.

Like the cervical phantom's surroundings (SpineAITraining.cervical.surroundings), the body
is tabulated along the patient's z axis (every ``STEP`` mm) from the spine's positions: the
canal centre, the front of the vertebral bodies, the skin outline (a superellipse whose
half width, half depth and forward offset are adult means at landmarks, the neck's taken
from the cervical phantom, grown by the patient's size and subcutaneous fat), and the
cavity: the rib cage (whose ellipse the ribs follow, see SpineAITraining.spine_ct.ribs)
with the lungs above the diaphragm's domes, the abdominal and pelvic cavity below.
A voxel then needs a table lookup and a few ellipse tests: skin fat, muscle (the body
wall, the back's paraspinal muscles), lung or visceral fat, the spinal canal (CSF, the cord
down to L1), the thighs below the buttocks.

Organs and vessels are signed distance shapes (``Body.organs``) painted over that in order:
bowel loops (gas, fluid, faeces), colon, stomach with its gas cap, spleen, liver under the
right dome, kidneys in perirenal fat, psoas muscles, bladder, rectum, heart with its blood
pool, aorta (arch, descending, bifurcation into the iliacs; sometimes an aneurysm or wall
calcification), inferior vena cava, trachea, oesophagus, neck vessels, thyroid, the brain
inside the skull, and the arms (up beside the head, or down beside the trunk).
"""

import numpy as np

from SpineAITraining.cervical.sdf import Capsule, Ellipsoid, Union
from SpineAITraining.cervical.surroundings import SKULL_CENTRE, SKULL_RADII

from . import tissues as T

STEP = 1.0  # mm between table rows
# Thoracic cage (the ribs' centre line) per rib-bearing level, T1 first: half width, half depth.
CAGE_W = (55, 75, 92, 105, 115, 122, 127, 130, 131, 130, 128, 125, 122)
CAGE_D = (40, 52, 62, 70, 77, 82, 86, 89, 90, 90, 88, 85, 82)
CAGE_BACK = 28.0  # the cage's posterior extreme, behind the canal centre (mm)
# Skin outline at trunk landmarks: half width, half depth, outline centre ahead of the canal (mm).
TRUNK_OUTLINE = {"T1": (135, 85, 38), "T3": (150, 100, 48), "T6": (155, 112, 58), "T9": (160, 118, 62),
                 "T12": (155, 112, 58), "L2": (150, 106, 52), "L4": (152, 102, 46), "S1": (160, 104, 44)}
NECK_OUTLINE = {"C7": (70, 63, 16), "C5": (60, 58, 14), "C3": (62, 66, 20), "C2": (66, 82, 32), "C1": (70, 92, 32)}
FAT_REF = 12.0  # the subcutaneous fat the outline table includes


class Body:
    """Tables and organ shapes of one patient (patient frame, mm)."""

    def __init__(self, rng, spine, pelvis, *, size=1.0, fat_mm=12.0, arms="down", female=False, age=50.0):
        self.spine, self.pelvis, self.size, self.arms = spine, pelvis, float(size), arms
        self.shoulders = 1.2 if arms == "down" else 1.05  # arms down: the deltoids widen the shoulders
        lv = spine.levels
        self.z_of = {n: float(lv[n].to_patient[2, 3]) for n in spine.names}
        self.thoracic = [n for n in spine.names if n.startswith("T")]
        self.lumbar = [n for n in spine.names if n.startswith("L")]
        self.marks = pelvis.landmarks()
        self.z_fm = float(spine.skull[2, 3])
        hip_z = 0.5 * (self.marks["hip_right"][2] + self.marks["hip_left"][2])
        self.z_split = float(min(self.marks["tuberosity_right"][2], self.marks["tuberosity_left"][2]) - 15.0)
        self.z0 = self.z_split - 450.0
        self.z1 = self.z_fm + 200.0
        self.zs = np.arange(self.z0, self.z1 + STEP, STEP)
        self._canal_tables()
        self._outline_tables(rng, fat_mm, female, hip_z)
        self._cavity_tables(rng, hip_z)
        self.organs = []  # (name, shape, tissue, to_patient 4x4)
        self._draw_organs(rng, age)
        self._draw_arms(rng)
        for key, value in list(vars(self).items()):  # float32 tables: lookups stay float32
            table = isinstance(value, np.ndarray) and value.ndim == 1 and len(value) == len(self.zs)
            if table and value.dtype == np.float64:
                setattr(self, key, value.astype(np.float32))

    # ------------------------------------------------------------ tables

    def _canal_tables(self):
        """Canal centre, vertebral body front and canal size along z (the sacral canal below S1)."""
        from .shapes import sacral_segments

        lv = self.spine.levels
        pts, front, crx, cry = [], [], [], []
        for n in self.spine.names[:-1]:
            level = lv[n]
            pts.append(level.to_patient[:3, 3])
            reach = level.sizes["ring_ry"] + 7.0 if n == "C1" else level.body_cy + level.sizes["body_ry"]
            front.append(level.point((0, reach, 0))[1])
            crx.append(min(level.sizes["canal_rx"], 12.5))
            cry.append(level.sizes["canal_ry"] if n != "C1" else 9.0)
        s1 = lv["S1"]
        for centre, rot, rx, ry, hh in sacral_segments(s1.sizes, self.spine.params["sacral_curve_deg"]):
            back = rot @ np.array([0.0, -1.0, 0.0])
            canal = centre + back * (ry + 0.8 + s1.sizes["canal_ry"] * rx / s1.sizes["body_rx"])
            pts.append(s1.point(canal))
            front.append(s1.point(centre - back * ry)[1])
            crx.append(s1.sizes["canal_rx"] * rx / s1.sizes["body_rx"])
            cry.append(s1.sizes["canal_ry"] * 0.8 * rx / s1.sizes["body_rx"])
        fm = self.spine.skull[:3, 3]
        pts.insert(0, fm + np.array([0.0, -3.0, 0.0]))
        front.insert(0, front[0] + 4.0)
        crx.insert(0, 15.0)
        cry.insert(0, 13.0)
        pts = np.array(pts)
        order = np.argsort(pts[:, 2])
        zc = pts[order, 2]
        zs = self.zs
        self.cx = np.interp(zs, zc, pts[order, 0])
        self.cy = np.interp(zs, zc, pts[order, 1])
        self.front = np.interp(zs, zc, np.array(front)[order])
        self.canal_rx = np.interp(zs, zc, np.array(crx)[order])
        self.canal_ry = np.interp(zs, zc, np.array(cry)[order])
        self.canal_on = (zs > zc[0] + 5)
        self.cord_on = zs > self.z_of[self.lumbar[0]] - 10.0
        rx_lv = [lv[n].sizes.get("body_rx", 14.0) for n in self.spine.names]
        tp_lv = [lv[n].sizes.get("tp", 30.0) for n in self.spine.names]
        zl = np.array([self.z_of[n] for n in self.spine.names])
        o = np.argsort(zl)
        self.body_rx = np.interp(zs, zl[o], np.array(rx_lv)[o])
        self.tp = np.maximum(np.interp(zs, zl[o], np.array(tp_lv)[o]), 30.0)

    def _row_z(self, table):
        """Landmark name -> z, for the names of a table that this spine has."""
        out = []
        for name, value in table.items():
            if name in self.z_of:
                out.append((self.z_of[name], value))
        return out

    def _outline_tables(self, rng, fat_mm, female, hip_z):
        """Skin outline (half width, half depth, offset, superellipse power) and fat thickness along z."""
        s = self.size
        marks = [(z, (ax * s * (self.shoulders if z == self.z_of["T1"] else 1.0), ay * s, off * s))
                 for z, (ax, ay, off) in self._row_z(TRUNK_OUTLINE)]
        hips = 1.08 if female else 1.0
        marks.append((hip_z, (170 * s * hips, 102 * s, 48 * s)))
        marks.append((self.z_split, (168 * s * hips, 96 * s, 50 * s)))
        neck = [(z, (ax * s ** 0.5, ay * s ** 0.5, off)) for z, (ax, ay, off) in self._row_z(NECK_OUTLINE)]
        marks += neck
        marks.append((self.z_fm + 20, (73.0, 96.0, 28.0)))
        marks.append((self.z_fm + 200, (73.0, 96.0, 28.0)))
        marks.sort(key=lambda m: m[0])
        mz = np.array([m[0] for m in marks])
        values = np.array([m[1] for m in marks])
        zs = self.zs
        self.ax = np.interp(zs, mz, values[:, 0])
        self.ay = np.interp(zs, mz, values[:, 1])
        self.off = np.interp(zs, mz, values[:, 2])
        trunk = (zs < self.z_of["C7"]) & (zs > self.z_split)
        # fat: thin on the neck and head, thicker on the trunk, most on the abdomen and hips
        belly = np.exp(-0.5 * ((zs - self.z_of[self.lumbar[2]]) / 90.0) ** 2)
        fat = np.where(trunk, fat_mm * (0.8 + 0.6 * belly), np.clip(fat_mm * 0.4, 2.5, 12.0))
        self.fat = fat
        extra = np.where(trunk, fat - FAT_REF, 0.0)
        self.ax = self.ax + extra
        self.ay = self.ay + extra
        self.square = np.where(trunk, 0.4, 0.0)  # the trunk's outline is squarer than an ellipse
        # Lying on the couch: the most posterior parts of the back (thoracic kyphosis, buttocks)
        # are flattened onto one plane; the lumbar lordosis stays clear of it.
        back = self.cy + self.off - self.ay
        self.couch_y = float(np.percentile(back[trunk], 12)) if trunk.any() else float(back.min())
        press = np.where(trunk, np.clip(self.couch_y - back, 0, None), 0.0)
        self.ay = self.ay - press / 2
        self.off = self.off + press / 2
        self.cyo = self.cy + self.off  # the outline's centre
        self.post_fat = float(rng.uniform(0, 8))
        self.legs = zs < self.z_split
        self.leg_x = 0.5 * abs(self.marks["hip_right"][0] - self.marks["hip_left"][0]) + 5.0
        self.leg_r = 78.0 * s + max(fat_mm - FAT_REF, 0.0)

    def _cavity_tables(self, rng, hip_z):
        """The rib cage / abdominal cavity ellipse along z, the diaphragm's domes and the lungs' apex."""
        th = self.thoracic
        cs = self.size * float(rng.normal(1.0, 0.04))
        marks = [(self.z_of[n], CAGE_W[min(i, 12)] * cs, CAGE_D[min(i, 12)] * cs) for i, n in enumerate(th)]
        if len(th) == 12:
            marks[-1] = (marks[-1][0], CAGE_W[11] * cs, CAGE_D[11] * cs)
        z_t1 = self.z_of["T1"]
        marks.append((z_t1 + 20.0, 28.0 * cs, 22.0 * cs))
        marks.append((z_t1 + 34.0, 1.0, 1.0))
        lum = self.lumbar
        marks += [(self.z_of[lum[0]], 124 * cs, 84 * cs), (self.z_of[lum[2]], 122 * cs, 80 * cs),
                  (self.z_of[lum[-1]], 120 * cs, 75 * cs), (self.z_of["S1"], 115 * cs, 75 * cs),
                  (hip_z, 62 * cs, 58 * cs), (self.z_split + 10, 1.0, 1.0)]
        marks.sort(key=lambda m: m[0])
        mz = np.array([m[0] for m in marks])
        self.cav_w = np.interp(self.zs, mz, [m[1] for m in marks])
        self.cav_d = np.interp(self.zs, mz, [m[2] for m in marks])
        self.cav_on = (self.zs > self.z_split + 10) & (self.zs < z_t1 + 34.0)
        self.cage_back = CAGE_BACK * cs
        self.cav_cy = self.cy + self.cav_d - self.cage_back
        # Domes: the right one at about T9-T10 (breath hold varies it), the left about 12 mm lower.
        level = th[min(8, len(th) - 1)]
        self.dome_right = self.z_of[level] - float(rng.uniform(-15, 20))
        self.dome_left = self.dome_right - float(rng.uniform(5, 20))
        self.thorax = self.zs > self.dome_right - 110.0  # rows where lungs may be (below: abdomen)
        self.med_half = np.interp(self.zs, [self.z_of[th[4]], z_t1], [22.0, 16.0]) * self.size

    def cage(self, z):
        """(canal x, cavity centre y, half width, half depth) of the cage ellipse at patient z (arrays ok)."""
        r = self.rows(z)
        return self.cx[r], self.cav_cy[r], self.cav_w[r], self.cav_d[r]

    def rows(self, z):
        return np.clip(((np.asarray(z) - self.z0) / STEP).astype(np.int32), 0, len(self.zs) - 1)

    def diaphragm(self, dx, y, r):
        """z of the diaphragm under (dx from the canal, y) on rows ``r``: two domes (the right one
        higher), each falling towards the sides and, most, towards the back (the recesses)."""
        w, d, cyc = self.cav_w[r], self.cav_d[r], self.cav_cy[r]
        post = np.clip((cyc - y) / d, 0, 1)
        domes = []
        for side, top in ((1.0, self.dome_right), (-1.0, self.dome_left)):
            q = ((dx - side * 0.45 * w) / (0.6 * w)) ** 2 + ((y - cyc - 0.1 * d) / (0.9 * d)) ** 2
            domes.append(np.float32(top) - 30.0 * q - 45.0 * post)
        return np.maximum(domes[0], domes[1])

    # ------------------------------------------------------------ per voxel

    def soft_tissue(self, block):
        """Tissue codes on a Block in patient coordinates; organs, discs and bones come later.

        The skin outline is tested on every voxel; everything else only on the voxels inside it
        (gathered into flat arrays), which keeps a field with much air around the body fast.
        """
        r = self.rows(block.z)
        dx = block.x - self.cx[r]
        oy = block.y - self.cyo[r]
        q = self._outline(dx, oy, r)
        out = np.full(dx.shape, T.AIR, np.uint8)
        idx = np.flatnonzero(q < 1)
        if not idx.size:
            return out
        r, dx, oy, q = r.ravel()[idx], dx.ravel()[idx], oy.ravel()[idx], q.ravel()[idx]
        y, z = block.y.ravel()[idx], block.z.ravel()[idx]
        out.ravel()[idx] = self._inside(r, dx, oy, q, y, z)
        return out

    def _outline(self, dx, oy, r):
        """Outline measure (< 1 inside): an ellipse squared off on the trunk (``square`` > 0), or the thighs."""
        ax, ay = self.ax[r], self.ay[r]
        x2, y2 = (dx / ax) ** 2, (oy / ay) ** 2
        q = x2 + y2 - self.square[r] * np.minimum(x2, 1) * np.minimum(y2, 1)  # still >= 1 wherever x2 or y2 is
        legs = self.legs[r]
        if legs.any():
            leg = np.sqrt((np.abs(dx) - np.float32(self.leg_x)) ** 2 + (oy + 10.0) ** 2) / np.float32(self.leg_r)
            q = np.where(legs, leg * leg, q)
        return q

    def _inside(self, r, dx, oy, q, y, z):
        """Tissue codes of voxels inside the outline (flat arrays): fat, muscle, cavity, lungs, canal."""
        out = np.full(dx.shape, T.FAT, np.uint8)
        legs = self.legs[r]
        half = np.where(legs, np.float32(self.leg_r), np.minimum(self.ax[r], self.ay[r]))
        depth = (1 - np.sqrt(q)) * half  # about the mm below the skin
        ay = np.where(legs, np.float32(self.leg_r), self.ay[r])
        fat = self.fat[r] * (1 + 0.5 * np.clip(oy / ay, 0, 1)) + np.where(oy < -0.3 * ay, np.float32(self.post_fat), 0)
        out[depth > fat] = T.MUSCLE
        dy = y - self.cy[r]
        # cavity: lungs above the diaphragm, visceral fat below; never in the spine's own column
        cav = self.cav_on[r]
        if cav.any():
            w, d = self.cav_w[r], self.cav_d[r]
            ey = y - self.cav_cy[r]
            e = (dx / w) ** 2 + (ey / d) ** 2
            # the spine's own column: an ellipse round the body, another round the arch and processes
            body_half = self.front[r] - self.cy[r]
            spine_col = ((dx / (self.body_rx[r] + 9.0)) ** 2 + ((dy - 0.6 * body_half) / (0.55 * body_half + 9.0)) ** 2
                         < 1) | ((dx / (self.tp[r] + 12.0)) ** 2 + ((dy + 6.0) / 26.0) ** 2 < 1)
            cavity = cav & (e < 1) & ~spine_col
            chest = cavity & self.thorax[r]
            if chest.any():
                c = np.flatnonzero(chest)
                rc, dxc, yc = r[c], dx[c], y[c]
                wc, dc, eyc = w[c], d[c], ey[c]
                rim = (dxc / np.maximum(wc - 9.0, 1.0)) ** 2 + (eyc / np.maximum(dc - 9.0, 1.0)) ** 2 < 1
                above = z[c] > self.diaphragm(dxc, yc, rc)
                medi = (np.abs(dxc + 4.0) < self.med_half[rc]) & (yc > self.front[rc] - 6.0)
                out[cavity] = T.FAT
                out[c[rim & above & ~medi]] = T.LUNG
            else:
                out[cavity] = T.FAT
        # spinal canal: CSF, the cord down to about L1
        ce = (dx / self.canal_rx[r]) ** 2 + (dy / self.canal_ry[r]) ** 2
        canal = self.canal_on[r] & (ce < 1)
        out[canal] = T.CSF
        out[canal & self.cord_on[r] & (((dx / 5.5) ** 2 + ((dy + 0.5) / 4.2) ** 2) < 1)] = T.CORD
        return out

    # ------------------------------------------------------------ organs

    def _at(self, name, local):
        return self.spine.levels[name].point(local)

    def _front(self, name, dx=0.0, ahead=0.0):
        """A point ``ahead`` mm in front of a level's body, ``dx`` to the right."""
        lv = self.spine.levels[name]
        return lv.point((dx, lv.body_cy + lv.sizes["body_ry"] + ahead, 0.0))

    def _add(self, name, shape, tissue, to_patient=None):
        self.organs.append((name, shape, tissue, np.eye(4) if to_patient is None else to_patient))

    def _draw_organs(self, rng, age):
        s = self.size
        th, lum = self.thoracic, self.lumbar
        u = rng.uniform
        # bowel loops in the abdomen and pelvis, then the colon
        z_top, z_bottom = self.dome_right - 95.0, self.marks["symphysis"][2] + 25.0
        for _ in range(int(rng.integers(18, 34))):
            zc = float(u(z_bottom, z_top))
            r = int(self.rows(zc))
            if not self.cav_on[r]:
                continue
            a = float(u(0, 2 * np.pi))
            rad = float(u(0.15, 0.8))
            c = np.array([self.cx[r] + rad * self.cav_w[r] * np.cos(a), self.cav_cy[r] + 0.6 * rad * self.cav_d[r]
                          * np.sin(a) + 0.3 * self.cav_d[r], zc])
            kind = rng.choice([T.AIR, T.FLUID, T.BOWEL], p=[0.3, 0.4, 0.3])
            radii = (u(12, 28), u(10, 24), u(12, 30))
            self._add("bowel", Ellipsoid(c, [v + 3.0 for v in radii]), T.BOWEL)
            self._add("bowel", Ellipsoid(c, radii), int(kind))
        for side in (1, -1):  # ascending (right) and descending (left) colon
            a = self._front(lum[-1], side * 85 * s, -10)
            b = self._front(th[-1], side * 90 * s, 5)
            kind = int(rng.choice([T.AIR, T.BOWEL], p=[0.6, 0.4]))
            self._add("colon", Capsule(a, b, 22.0 * s), T.BOWEL)
            self._add("colon", Capsule(a, b, 18.0 * s), kind)
        rect_a, rect_b = self._sacral_front(2, 22.0), self._sacral_front(4, 26.0) - np.array([0, 0, 35.0])
        self._add("rectum", Capsule(rect_a, rect_b, 20.0 * s), T.BOWEL)
        self._add("rectum", Capsule(rect_a, rect_b, 14.0 * s), int(rng.choice([T.AIR, T.BOWEL])))
        # bladder behind the symphysis, its filling varies
        sym = self.marks["symphysis"]
        fill = float(u(0.5, 1.25))
        bladder = Ellipsoid(sym + np.array([0, -38.0, 38.0 * fill]), np.array([45, 38, 36]) * fill * s)
        self._add("bladder", bladder, T.FLUID)
        # stomach (left upper, gas cap in front), spleen, liver under the right dome
        stom = np.array([self.cx[self.rows(self.dome_left)] - 55 * s, self._front(th[-2], 0, 60 * s)[1],
                         self.dome_left - 45])
        self._add("stomach", Ellipsoid(stom, np.array([50, 42, 55]) * s), T.BOWEL)
        self._add("stomach", Ellipsoid(stom + [0, 12, 28], np.array([38, 22, 20]) * s), T.AIR)
        r_l = self.rows(self.dome_left - 60)
        spleen = np.array([self.cx[r_l] - 0.72 * self.cav_w[r_l], self.cav_cy[r_l] - 0.3 * self.cav_d[r_l],
                           self.dome_left - 62])
        self._add("spleen", Ellipsoid(spleen, np.array([26, 48, 55]) * s * u(0.8, 1.2)), T.ORGAN)
        r_r = self.rows(self.dome_right - 80)
        liver_c = np.array([self.cx[r_r] + 0.38 * self.cav_w[r_r], self.cav_cy[r_r] + 0.12 * self.cav_d[r_r],
                            self.dome_right - 80])
        liver_r = np.array([0.62 * self.cav_w[r_r], 0.78 * self.cav_d[r_r], 78.0 * s])
        self._add("liver", Ellipsoid(liver_c, liver_r), T.ORGAN)
        # kidneys in perirenal fat beside L1-L2 (the right one lower); psoas muscles from T12 down
        for side, drop in ((1, -15.0), (-1, 0.0)):
            c = self._at(lum[0], (side * 62 * s, 18.0, drop - 12.0))
            rot = _tilted(side)
            self._add("perirenal fat", Ellipsoid(c, np.array([38, 34, 66]) * s, rot), T.FAT)
            self._add("kidney", Ellipsoid(c, np.array([27, 23, 55]) * s, rot), T.KIDNEY)
            pts = [self._front(n, side * (self.spine.levels[n].sizes["body_rx"] + 4.0 + 14.0 * i / len(lum)) ,
                               -8.0 - 4.0 * i) for i, n in enumerate([th[-1]] + lum)]
            radii = np.linspace(6.0, 24.0, len(pts)) * s
            for (a, b), (ra, rb) in zip(zip(pts[:-1], pts[1:]), zip(radii[:-1], radii[1:])):
                self._add("psoas", Capsule(a, b, ra, rb), T.MUSCLE)
            hip = self.marks["hip_right" if side > 0 else "hip_left"]
            self._add("iliopsoas", Capsule(pts[-1], hip + np.array([-side * 12.0, 28.0, 10.0]), radii[-1], 20.0 * s),
                      T.MUSCLE)
        self._vessels(rng, age)
        # heart with its blood pool, anterior and to the left, resting on the diaphragm
        t7 = th[6]
        heart_c = self._front(t7, -22.0 * s, 52.0 * s)
        heart_c[2] = max(heart_c[2] - 5.0, self.dome_left + 40.0)
        rot = _heart_rotation()
        self._add("heart", Ellipsoid(heart_c, np.array([62, 48, 56]) * s, rot), T.HEART)
        self._add("heart blood", Ellipsoid(heart_c, np.array([44, 32, 40]) * s, rot), T.VESSEL)
        self._neck(rng)
        inner = Ellipsoid(SKULL_CENTRE, SKULL_RADII - 6.0)
        self._add("brain", inner, T.BRAIN, self.spine.skull)

    def _sacral_front(self, segment, ahead):
        from .shapes import sacral_segments

        s1 = self.spine.levels["S1"]
        centre, rot, _, ry, _ = sacral_segments(s1.sizes, self.spine.params["sacral_curve_deg"])[segment]
        return s1.point(centre + rot @ np.array([0.0, ry + ahead, 0.0]))

    def _vessels(self, rng, age):
        """Aorta (arch, descending on the left of the bodies, bifurcation at L4), the iliac
        arteries, the inferior vena cava on the right; wall calcification with age."""
        s = self.size
        th, lum = self.thoracic, self.lumbar
        u = rng.uniform
        r_thor, r_abd = float(u(11, 15)) * s, float(u(8.5, 11)) * s
        aneurysm = rng.random() < 0.03
        t4 = th[3]
        arch_top = self._front(t4, -4.0, 28.0 * s) + np.array([0, 0, 30.0])
        ascending = self._front(th[5], 10.0, 55.0 * s)
        path = [ascending, arch_top, self._front(t4, -22.0, 2.0)]
        for n in th[4:]:
            lv = self.spine.levels[n]
            path.append(self._front(n, -(0.5 * lv.sizes["body_rx"] + 4.0), r_thor * 0.6))
        for n in lum[:-1]:
            lv = self.spine.levels[n]
            path.append(self._front(n, -0.3 * lv.sizes["body_rx"], r_abd + 2.0))
        radii = [r_thor] * (len(path) - len(lum) + 1) + [r_abd] * (len(lum) - 1)
        if aneurysm:
            radii[-2] = radii[-3] = float(u(22, 32)) * s
        for (a, b), (ra, rb) in zip(zip(path[:-1], path[1:]), zip(radii[:-1], radii[1:])):
            self._add("aorta", Capsule(a, b, ra, rb), T.VESSEL)
        bif = path[-1]
        for side in (1, -1):
            hip = self.marks["hip_right" if side > 0 else "hip_left"]
            mid = self._sacral_front(0, 18.0) + np.array([side * 40.0 * s, 0, -10.0])
            iliac = Union([Capsule(bif, mid, r_abd * 0.7), Capsule(mid, hip + [0, 25.0, 0], r_abd * 0.6)])
            self._add("iliac artery", iliac, T.VESSEL)
        ivc = [self._front(n, 0.35 * self.spine.levels[n].sizes["body_rx"] + 14.0, 12.0 * s) for n in [th[-2]] + lum]
        for a, b in zip(ivc[:-1], ivc[1:]):
            self._add("vena cava", Capsule(a, b, 11.0 * s), T.VESSEL)
        if rng.random() < np.clip((age - 40) / 40, 0, 0.9):  # calcified plaques on the abdominal aorta's wall
            for _ in range(int(rng.integers(2, 12))):
                i = int(rng.integers(len(path) - len(lum), len(path) - 1))
                p = path[i] + (path[i + 1] - path[i]) * u(0, 1)
                a = u(0, 2 * np.pi)
                self._add("calcification", Ellipsoid(p + np.array([np.cos(a), np.sin(a), 0]) * radii[i],
                                                     (u(1, 2.5), u(1, 2.5), u(2, 5))), T.CALCIUM)

    def _neck(self, rng):
        """Airway (pharynx to the carina, cartilage wall in the trachea), oesophagus, carotids and
        jugular veins, thyroid lobes."""
        th = self.thoracic
        c2, c6, t4 = self._front("C2", 0, 12.0), self._front("C6", 0, 16.0), self._front(th[3], 0, 18.0)
        self._add("trachea wall", Capsule(c6, t4, 10.0), T.CARTILAGE)
        self._add("airway", Union([Capsule(c2, c6, 9.0), Capsule(c6, t4, 8.0)]), T.AIR)
        for side in (1, -1):
            carina = t4 + np.array([side * 40.0, 10.0, -30.0])
            self._add("bronchus", Capsule(t4, carina, 6.0), T.AIR)
        self._add("oesophagus", Capsule(self._front("C6", -3.0, 4.0), self._front(th[8], -12.0, 6.0), 7.0), T.MUSCLE)
        for side in (1, -1):
            low, high = self._front(th[1], side * 22.0, 8.0), self._front("C2", side * 21.0, 6.0) + [0, 0, 25.0]
            self._add("carotid", Capsule(low, high, 3.4), T.VESSEL)
            self._add("jugular", Capsule(low + [side * 9.0, -3.0, 0], high + [side * 9.0, -3.0, 0], 5.5), T.VESSEL)
            lobe = Ellipsoid(self._front("C7", side * 15.0, 22.0) + [0, 0, 4.0], (7.0, 9.0, 20.0))
            self._add("thyroid", lobe, T.GLAND)

    def _draw_arms(self, rng):
        """Arms beside the trunk (down) or beside the head (up): skin fat, muscle; the bones are in limbs."""
        self.arm_paths = []
        s = self.size
        z_t1 = self.z_of["T1"]
        r_t1 = self.rows(z_t1)
        half = float(self.ax[r_t1])
        for side in (1, -1):
            if self.arms == "down":
                z_el = self.z_of[self.lumbar[0]] - 10.0
                x_sh = side * (half - 25.0)  # the shoulder inside the trunk's outline: the arm hangs from it
                r_el = self.rows(z_el)
                x_el = side * (float(self.ax[r_el]) + float(rng.uniform(25, 50)) * s)
                y0 = float(self.cy[r_t1] + self.off[r_t1])
                shoulder = np.array([self.cx[r_t1] + x_sh, y0, z_t1 - 30.0])  # its top about level with T1
                elbow = np.array([self.cx[r_el] + x_el, y0 + 5.0, z_el])
                wrist = elbow + np.array([side * 8.0, 25.0, -250.0 * s])
            else:
                r_fm = self.rows(self.z_fm + 40)
                shoulder = np.array([self.cx[r_t1] + side * (half - 30.0), self.cy[r_t1] + self.off[r_t1] - 10,
                                     z_t1 + 10.0])
                elbow = np.array([self.cx[r_fm] + side * (float(self.ax[r_fm]) + 55.0), self.cy[r_fm] - 10.0,
                                  self.z_fm + 60.0])
                wrist = elbow + np.array([-side * 60.0, 20.0, 180.0])
            self.arm_paths.append((side, shoulder, elbow, wrist))
            fat = 6.0 + 0.5 * self.fat[r_t1]
            self._add("arm", Union([Capsule(shoulder, elbow, 46.0 * s + fat, 38.0 * s + fat),
                                    Capsule(elbow, wrist, 38.0 * s + fat, 26.0 * s + fat)]), T.FAT)
            muscle = Union([Capsule(shoulder, elbow, 46.0 * s, 38.0 * s), Capsule(elbow, wrist, 38.0 * s, 26.0 * s)])
            self._add("arm", muscle, T.MUSCLE)

    def outline_area(self, z):
        """Cross-section area (mm^2) of the trunk at z: CT noise grows with it."""
        r = self.rows(z)
        return np.pi * self.ax[r] * self.ay[r]


def _tilted(side):
    """Kidneys: upper poles medial and back."""
    from SpineAITraining.cervical.sdf import rotation

    return rotation("y", side * 12.0) @ rotation("x", -10.0)


def _heart_rotation():
    from SpineAITraining.cervical.sdf import rotation

    return rotation("z", 35.0) @ rotation("y", -25.0)
