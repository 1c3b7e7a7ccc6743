"""An analytic infant lumbar spine in 3-D, sampled on an ultrasound image plane.

Coordinates in mm: ``S`` along the spine (cranial negative, the conus medullaris
tip at S = 0), ``L`` left-right (0 = midline), ``Z`` depth below the skin. Every
structure is an implicit shape, so any plane (midline or paramedian-oblique
sagittal, transverse) cuts the same patient consistently as the probe moves.

What it holds, from the skin down (neonate/infant sizes, scaled per patient):
skin and subcutaneous fat with septa; paraspinal muscle with fibre texture and the
midline interspinous ligament; the posterior arch of each vertebra (spinous process,
laminae shingled like roof tiles, articular/transverse processes) partly ossified;
the spinal canal, an ellipse lined by the bright posterior complex (ligamentum flavum
+ dura) and anterior complex (dura + posterior longitudinal ligament), filled with
anechoic CSF; the spinal cord (hypoechoic, bright pial borders, bright central echo)
tapering to the conus, then the filum and cauda equina roots; the ossification
centres of the vertebral bodies with cartilage/discs between them.

``evaluate`` returns per sample: diffuse scattering strength ``sigma`` (speckle
power), coherent specular reflection ``rho`` (bone surfaces, membranes), absorption
``mu`` (per mm; bone absorbs -> acoustic shadow), and masks of cord and CSF.
"""

from dataclasses import dataclass

import cv2
import numpy as np

TEXEL_MM = 0.1  # world texture resolution
TEX_S = (-110.0, 110.0)  # texture extent along the spine / left-right, mm
TEX_Z = (-5.0, 80.0)


@dataclass
class Subject:
    scale: float
    period: float  # vertebral segment length (body + disc), mm
    phase: float  # where vertebra centres sit relative to the conus tip
    skin: float
    fat: float
    canal_depth: float  # depth of the canal centre at S = 0
    canal_slope: float  # mm depth per mm along the spine
    canal_curve: float  # mm of extra depth at |S| = 20 mm (lordosis/kyphosis)
    canal_az: float  # canal semi-axis in depth
    canal_al: float  # canal semi-axis left-right
    cord_rz: float
    cord_rl: float
    cord_dz: float  # cord position within the canal (dependent side)
    cord_dl: float
    conus_taper: float  # length over which the cord tapers to the conus tip
    ossification: float  # laminae: 0 = cartilaginous (little shadow) .. 1 = bone
    sp_ossification: float  # size of the ossified core of each spinous process (0 = all cartilage)
    sac_end: float  # caudal end of the thecal sac (CSF), mm below the conus tip
    body_ossification: float
    root_l: np.ndarray  # cauda equina roots: left-right position at the conus
    root_z: np.ndarray  # and depth offset from the canal centre
    root_spread: np.ndarray  # how fast each root moves laterally going caudally
    muscle_tex: np.ndarray  # (Zt, St) fibre texture along the spine (sagittal planes)
    muscle_tex_t: np.ndarray  # (Zt, Lt) blotchy texture for transverse planes
    fat_tex: np.ndarray  # (Zt, St) septa of the subcutaneous fat

    @classmethod
    def sample(cls, rng):
        scale = float(rng.uniform(0.85, 1.25))
        az = float(rng.uniform(3.0, 4.0) * scale)
        al = float(rng.uniform(4.5, 5.8) * scale)
        cord_rz = float(rng.uniform(1.8, 2.3) * scale)
        cord_rl = float(rng.uniform(2.6, 3.3) * scale)
        room = az - cord_rz - 0.6
        side = rng.choice([-1.0, 1.0])  # cord falls to the dependent side
        cord_dz = float(side * rng.uniform(0.1, 1.0) * max(room, 0.05))
        n_roots = int(rng.integers(8, 13))
        root_l = rng.uniform(-0.75, 0.75, n_roots) * al
        root_z = (side * rng.uniform(0.15, 0.75, n_roots)) * az
        shapes = cls._textures(rng)
        return cls(
            scale=scale,
            period=float(rng.uniform(8.0, 10.0) * scale),
            phase=float(rng.uniform(0.0, 1.0)),
            skin=float(rng.uniform(0.6, 1.0)),
            fat=float(rng.uniform(1.5, 4.0) * scale),
            canal_depth=float(rng.uniform(11.0, 14.5) * scale),
            canal_slope=float(rng.uniform(-0.08, 0.08)),
            canal_curve=float(rng.uniform(-1.5, 1.5)),
            canal_az=az,
            canal_al=al,
            cord_rz=cord_rz,
            cord_rl=cord_rl,
            cord_dz=cord_dz,
            cord_dl=float(rng.uniform(-0.6, 0.6)),
            conus_taper=float(rng.uniform(8.0, 14.0)),
            ossification=float(rng.uniform(0.4, 1.0)),
            sp_ossification=float(rng.choice([0.0, rng.uniform(0.3, 0.85)], p=[0.3, 0.7])),
            sac_end=float(rng.uniform(32.0, 45.0) * scale),
            body_ossification=float(rng.uniform(0.6, 1.0)),
            root_l=root_l.astype(np.float32),
            root_z=root_z.astype(np.float32),
            root_spread=rng.uniform(0.01, 0.04, n_roots).astype(np.float32),
            **shapes,
        )

    @staticmethod
    def _textures(rng):
        ns = int((TEX_S[1] - TEX_S[0]) / TEXEL_MM)
        nz = int((TEX_Z[1] - TEX_Z[0]) / TEXEL_MM)

        def norm(a):
            a = a - a.mean()
            return (a / (a.std() + 1e-6)).astype(np.float32)

        # muscle fibres: long along the spine, thin in depth; a second, coarser layer of fascicles
        base = rng.standard_normal((nz // 2, ns // 2)).astype(np.float32)
        fib = cv2.GaussianBlur(base, (0, 0), sigmaX=12.0, sigmaY=0.9)
        fib = cv2.resize(norm(fib), (ns, nz), interpolation=cv2.INTER_LINEAR)
        # transverse: blotchy fascicle bundles with thin septa
        base_t = rng.standard_normal((nz // 2, ns // 2)).astype(np.float32)
        tr = cv2.GaussianBlur(base_t, (0, 0), sigmaX=2.5, sigmaY=1.5)
        tr = cv2.resize(norm(tr), (ns, nz), interpolation=cv2.INTER_LINEAR)
        # fat septa: thin wavy lines roughly parallel to the skin
        base_f = rng.standard_normal((nz // 2, ns // 2)).astype(np.float32)
        fat = cv2.GaussianBlur(base_f, (0, 0), sigmaX=20.0, sigmaY=1.2)
        fat = cv2.resize(norm(fat), (ns, nz), interpolation=cv2.INTER_LINEAR)
        return {"muscle_tex": fib, "muscle_tex_t": tr, "fat_tex": fat}

    # ------------------------------------------------------------------ geometry helpers

    def canal_centre(self, S):
        return self.canal_depth + self.canal_slope * S + self.canal_curve * (S / 20.0) ** 2

    def cord_factor(self, S):
        """Cord radius factor along the spine: 1 cranially, 0 at and below the conus tip."""
        t = np.clip(-S / self.conus_taper, 0.0, 1.0)
        return np.sqrt(t)


def _sample_texture(tex, A, Z):
    """Bilinear lookup of a world texture at (A along its columns, Z depth)."""
    mx = ((A - TEX_S[0]) / TEXEL_MM).astype(np.float32)
    my = ((Z - TEX_Z[0]) / TEXEL_MM).astype(np.float32)
    return cv2.remap(tex, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def evaluate(subj, S, L, Z, D, transverse):
    """Acoustic properties of the patient at world points (S, L, Z) on a beam grid.

    Arrays are (depth samples, beams); ``D`` (distance from the probe face along the
    beam) is constant along a row. Each structure is computed only on the rows whose
    depth range can hold it (the speed of the generator rests on this).
    Returns dict with float32 ``sigma``, ``rho``, ``mu`` and bool ``cord``, ``csf``, ``canal``.
    """
    f32 = np.float32
    S = S.astype(f32, copy=False)
    L = L.astype(f32, copy=False)
    Z = Z.astype(f32, copy=False)
    aL = np.abs(L)
    P = subj.period
    d = D[:, 0]
    zmin_row, zmax_row = Z.min(axis=1), Z.max(axis=1)

    def band(lo, hi):
        idx = np.flatnonzero((zmax_row >= lo) & (zmin_row <= hi))
        return slice(int(idx[0]), int(idx[-1]) + 1) if len(idx) else slice(0, 0)

    # ---------------------------------------------------------------- soft tissue layers
    tex_m = _sample_texture(subj.muscle_tex_t if transverse else subj.muscle_tex, L if transverse else S, Z)
    pos = np.maximum(tex_m, 0.0)
    # muscle: hypoechoic fibres with bright perimysium streaks
    sigma = (0.06 + 0.2 * pos * np.sqrt(pos)).astype(f32)
    skin_end = subj.skin
    fat_end = subj.skin + subj.fat
    # midline supraspinous/interspinous ligament: brighter, fibrillar
    sigma = np.where(aL < 1.6 * subj.scale, 0.15 + 0.2 * pos, sigma)
    # fat: dark with thin bright septa; skin: bright entry band
    nf = int(np.searchsorted(d, fat_end))
    if nf:
        tex_f = _sample_texture(subj.fat_tex, (L if transverse else S)[:nf], Z[:nf])
        sigma[:nf] = 0.03 + 0.5 * np.exp(-0.5 * (tex_f / 0.18) ** 2)
    sigma[: int(np.searchsorted(d, skin_end))] = 0.9
    # specular skin line and thoracolumbar fascia at the fat/muscle border: row profiles
    prof = 0.9 * np.exp(-0.5 * ((d - 0.15) / 0.12) ** 2) + 0.35 * np.exp(-0.5 * ((d - fat_end) / 0.15) ** 2)
    rho = np.empty(S.shape, f32)
    rho[:] = prof[:, None]
    mu = np.zeros(S.shape, f32)
    canal = np.zeros(S.shape, bool)
    cord = np.zeros(S.shape, bool)
    csf = np.zeros(S.shape, bool)

    zc = subj.canal_centre(S)
    zc_lo, zc_hi = float(zc.min()), float(zc.max())
    az, al = subj.canal_az, subj.canal_al

    # ---------------------------------------------------------------- spinal canal
    r = band(zc_lo - az - 2.2, zc_hi + az + 1.2)
    Sr, Lr, Zr, zcr = S[r], L[r], Z[r], zc[r]
    sg, rh, mr = sigma[r], rho[r], mu[r]
    dz = Zr - zcr
    rc = np.sqrt((Lr / al) ** 2 + (dz / az) ** 2)
    can = rc < 1.0
    shell = rc - 1.0  # ~ distance outside the canal in units of az (top and bottom)
    # posterior complex (ligamentum flavum + dura), anterior complex (dura + PLL); epidural fat
    post = (dz < 0) & (shell >= -0.02) & (shell < 1.1 / az)
    ant = (dz > 0) & (shell >= -0.02) & (shell < 0.9 / az)
    epi = (dz < 0) & (shell >= 1.1 / az) & (shell < 2.0 / az)
    sg[epi] = 0.28
    # specular echoes are strong where the membrane faces the probe, weak where the beam grazes it
    gl, gz = Lr / (al * al), dz / (az * az)
    facing = gz * gz / (gl * gl + gz * gz + 1e-9)
    sg[post] = 0.1 + 0.4 * facing[post]
    sg[ant] = 0.1 + 0.35 * facing[ant]
    sh = shell * az
    rh += np.where(post, 0.7 * facing ** 2 * np.exp(-0.5 * ((sh - 0.3) / 0.3) ** 2), 0.0)
    rh += np.where(ant, 0.8 * facing ** 2 * np.exp(-0.5 * ((sh - 0.25) / 0.25) ** 2), 0.0)
    sg[can] = 0.0015  # anechoic CSF
    mr[can] = -0.02  # fluid attenuates less: mild enhancement behind it

    # cord and conus
    cf = subj.cord_factor(Sr)
    cd = np.zeros(Sr.shape, bool)
    cz = zcr + subj.cord_dz
    cl = subj.cord_dl
    if (can & (cf > 0.05)).any():
        rz = subj.cord_rz * cf + 1e-3
        rl = subj.cord_rl * cf + 1e-3
        rr = np.sqrt(((Lr - cl) / rl) ** 2 + ((Zr - cz) / rz) ** 2)
        has = can & (cf > 0.05)
        cd = has & (rr < 1.0)
        sg[cd] = 0.02 + 0.015 * np.maximum(tex_m[r][cd], 0)
        # pial borders: bright where they face the probe (top and bottom of the cord)
        cgl, cgz = (Lr - cl) / (rl * rl), (Zr - cz) / (rz * rz)
        cfacing = cgz * cgz / (cgl * cgl + cgz * cgz + 1e-9)
        border = has & (np.abs(rr - 1.0) < np.maximum(0.22 / rz, 0.08))
        rh[border] += 0.1 + 0.3 * cfacing[border]
        # central echo (central canal): a bright line in sagittal, a dot in transverse
        central = cd & (np.abs(Zr - cz) < 0.15) & (np.abs(Lr - cl) < 0.3 * rl)
        rh[central] += 0.4
    # filum terminale, continuing the cord below the conus
    fil = can & (Sr > -3.0) & (np.abs(Zr - cz) < 0.25) & (np.abs(Lr - cl) < 0.4)
    rh[fil] += 0.25
    # cauda equina roots (from alongside the conus downwards): faint linear echoes
    below = can & (Sr > -subj.conus_taper - 4.0) & ~cd
    if below.any():
        Sb, Lb, dzb = Sr[below], Lr[below], dz[below]
        drift = np.maximum(Sb + subj.conus_taper, 0.0)[:, None]
        rl_i = subj.root_l[None, :] * (1.0 + subj.root_spread[None, :] * drift)
        # roots run nearly along the spine: a sagittal plane shows the ones within ~1 mm of it as lines
        lat = 0.3 if transverse else 0.8
        d2 = ((Lb[:, None] - rl_i) / lat) ** 2 + ((dzb[:, None] - subj.root_z[None, :]) / 0.2) ** 2
        near = np.exp(-0.5 * d2.min(axis=1))
        rh[below] += (0.3 if transverse else 0.16) * near
        sg[below] += 0.03 * near
    # below the thecal sac: the canal holds fat and the filum, no CSF
    sac = can & (Sr > subj.sac_end)
    sg[sac] = 0.3 + 0.15 * np.maximum(tex_m[r][sac], 0)
    canal[r] = can
    cord[r] = cd
    csf[r] = can & ~cd & ~sac

    # ---------------------------------------------------------------- vertebral bodies
    bh = 0.33 * P
    body_all = np.zeros(S.shape, bool)
    r = band(zc_lo + az + 0.9, np.inf)
    if r.stop > r.start:
        Sr, Lr, Zr, zcr = S[r], L[r], Z[r], zc[r]
        k = np.round((Sr - subj.phase * P) / P)
        qb = Sr - (k * P + subj.phase * P)  # position within the segment, body centred
        zb = zcr + az + 1.0 + bh
        qn = (qb / (0.36 * P)) ** 2
        e_body = qn * qn + (Lr / (5.5 * subj.scale + al)) ** 2 + ((Zr - zb) / bh) ** 2  # box-like
        body = e_body < 1.0
        ob = subj.body_ossification
        deep = (Zr > zb + bh) & ~body  # retroperitoneum under the bodies
        cart = ~body & ~deep & (Zr > zcr + az + 0.9) & (aL[r] < 9.0 * subj.scale)  # cartilage / disc
        sg, rh, mr = sigma[r], rho[r], mu[r]
        sg[cart] = 0.05
        mr[cart] = 0.09
        sg[deep] = 0.05 + 0.07 * np.maximum(tex_m[r][deep], 0)
        mr[deep] = np.maximum(mr[deep], 0.02)
        sg[body] = 1.5 * ob
        rh[body] += 2.6 * ob
        mr[body] = 1.6 * ob
        body_all[r] = body

    # ---------------------------------------------------------------- posterior arch
    tip = fat_end + 1.0 + 0.8 * subj.scale
    r = band(tip - 0.5, zc_hi + 5.0)
    bone_all = np.zeros(S.shape, bool)
    if r.stop > r.start:
        Sr, Lr, Zr, zcr, aLr = S[r], L[r], Z[r], zc[r], aL[r]
        shift = 0.12 * P  # arches sit a little caudal to their bodies
        ka = np.round((Sr - subj.phase * P - shift) / P)
        qa = Sr - (ka * P + subj.phase * P + shift)
        post_top = zcr - az  # depth of the canal roof at this S
        osf = subj.ossification
        sacral = Sr > subj.sac_end - 4.0  # fused sacral arches: a continuous bony roof
        # spinous process: cartilage from under the muscle down to the laminae, an ossified core
        base = post_top - 1.2
        mid = (tip + base) / 2.0
        hsp = np.maximum((base - tip) / 2.0, 0.5)
        e_sp = (qa / (0.2 * P)) ** 2 + (Lr / (1.3 * subj.scale)) ** 2 + ((Zr - mid) / hsp) ** 2
        sp_cart = e_sp < 1.0
        sg, rh, mr = sigma[r], rho[r], mu[r]
        sg[sp_cart] = 0.045
        mr[sp_cart] = 0.05
        o = subj.sp_ossification
        sp_bone = (e_sp < o * o) if o > 0 else np.zeros_like(sp_cart)
        # laminae: plates running laterally and down from the spinous base, shingled along S
        lam_top = post_top - 1.5 + 0.22 * np.maximum(aLr - 1.6, 0.0) + 0.22 * qa
        lam_len = 0.25 * P * (0.6 + 0.4 * osf)
        lam = (aLr > 1.6 * subj.scale) & (aLr < al + 3.5 * subj.scale) & ((np.abs(qa) < lam_len) | sacral) & (Zr > lam_top) & (Zr < lam_top + 1.4)
        # articular + transverse processes, lateral to the canal
        tp_top = zcr - 1.0 + 0.12 * np.maximum(aLr - al - 3.0, 0.0) + 0.15 * qa
        tproc = (aLr >= al + 3.0 * subj.scale) & (aLr < al + 12.0 * subj.scale) & (np.abs(qa) < 0.26 * P) & (Zr > tp_top) & (Zr < tp_top + 2.0)
        bone = sp_bone | lam | tproc
        strength = np.where(sp_bone, 1.0, 0.45 + 0.55 * osf).astype(f32)[bone]
        sg[bone] = 1.5 * strength
        rh[bone] += 2.6 * strength
        mr[bone] = 1.6 * strength
        bone_all[r] = bone
    # bone never holds CSF or cord
    hard = bone_all | body_all
    csf &= ~hard
    cord &= ~hard
    return {"sigma": sigma, "rho": rho, "mu": mu, "cord": cord, "csf": csf, "canal": canal}
