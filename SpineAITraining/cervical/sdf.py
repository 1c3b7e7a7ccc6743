"""Signed distance shapes evaluated on blocks of a voxel grid (numpy only).

The CT phantom draws bones as signed distance fields (negative inside, roughly in mm):
the sign says bone or not, and the depth below the surface says cortex or cancellous
bone. Each primitive knows its bounding box, so it is only evaluated on the voxels
near it; a vertebra with twenty parts costs little more than its body. Distances of
the ellipsoid and ellipse primitives are the usual first-order approximations, exact
on the surface and good to a few tenths of a millimetre in the cortical band.
"""

import numpy as np

FAR = np.float32(1e4)  # "no shape here": larger than any distance inside a block
PAD = 2.5  # mm around every bounding box, so the cortical band near a surface is evaluated


class Block:
    """Local coordinates (x, y, z in mm) of a box of voxels ``[k0:k1, j0:j1, i0:i1]``.

    ``to_index`` maps local homogeneous coordinates to the grid's (i, j, k); evaluating
    a shape on ``moved(T)`` draws that shape moved by the rigid transform T.
    """

    def __init__(self, to_index, lo, hi):
        self.to_index = np.asarray(to_index, dtype=np.float64)
        self.lo = tuple(int(v) for v in lo)  # (k0, j0, i0)
        self.hi = tuple(int(v) for v in hi)
        to_local = np.linalg.inv(self.to_index)
        k = np.arange(self.lo[0], self.hi[0], dtype=np.float32)[:, None, None]
        j = np.arange(self.lo[1], self.hi[1], dtype=np.float32)[None, :, None]
        i = np.arange(self.lo[2], self.hi[2], dtype=np.float32)[None, None, :]
        m = to_local.astype(np.float32)
        self.x = m[0, 0] * i + m[0, 1] * j + m[0, 2] * k + m[0, 3]
        self.y = m[1, 0] * i + m[1, 1] * j + m[1, 2] * k + m[1, 3]
        self.z = m[2, 0] * i + m[2, 1] * j + m[2, 2] * k + m[2, 3]
        self.shape = self.x.shape

    @property
    def empty(self):
        return any(h <= l for l, h in zip(self.lo, self.hi))

    def moved(self, transform):
        """The same voxels, in coordinates where a shape drawn there appears moved by ``transform``."""
        return Block(self.to_index @ np.asarray(transform, dtype=np.float64), self.lo, self.hi)

    def window(self, bounds):
        """Slices of this block covering the local box ``bounds`` = (min xyz, max xyz), or None."""
        lo, hi = np.asarray(bounds[0], float) - PAD, np.asarray(bounds[1], float) + PAD
        corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        ijk = (self.to_index @ corners.T)[:3]
        first = np.floor(ijk.min(axis=1)).astype(int)  # i, j, k
        last = np.ceil(ijk.max(axis=1)).astype(int) + 1
        out = []
        for axis, (a, b) in zip((2, 1, 0), zip(first, last)):
            a, b = max(a, self.lo[axis]) - self.lo[axis], min(b, self.hi[axis]) - self.lo[axis]
            if b <= a:
                return None
            out.append(slice(a, b))
        return (out[2], out[1], out[0])


def block_for(to_index, bounds, grid_shape):
    """The Block of a grid (shape K, J, I) that covers local ``bounds``; None when outside."""
    full = Block.__new__(Block)
    full.to_index = np.asarray(to_index, dtype=np.float64)
    full.lo, full.hi = (0, 0, 0), tuple(int(v) for v in grid_shape)
    window = full.window(bounds)
    if window is None:
        return None
    return Block(to_index, [s.start for s in window], [s.stop for s in window])


class Shape:
    """Something with a signed distance and a bounding box (local mm)."""

    def bounds(self):
        raise NotImplementedError

    def distance(self, x, y, z):
        raise NotImplementedError

    def evaluate(self, block, out=None):
        """Signed distance on ``block`` (FAR where this shape is not near), min-ed into ``out``."""
        out = np.full(block.shape, FAR, np.float32) if out is None else out
        window = block.window(self.bounds())
        if window is not None:
            d = self.distance(block.x[window], block.y[window], block.z[window])
            np.minimum(out[window], d, out=out[window])
        return out


def rotation(axis, degrees):
    """3x3 rotation about 'x', 'y' or 'z' (right-handed)."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _box_bounds(centre, half, rot):
    """AABB of a box with half sizes ``half`` rotated by ``rot`` about ``centre``."""
    extent = np.abs(np.asarray(rot, float)) @ np.asarray(half, float)
    c = np.asarray(centre, float)
    return c - extent, c + extent


class Framed(Shape):
    """A primitive with its own centre and rotation (columns = its axes in the parent frame)."""

    def __init__(self, centre, rot=None):
        self.centre = np.asarray(centre, dtype=np.float64)
        self.rot = np.eye(3) if rot is None else np.asarray(rot, dtype=np.float64)
        self._axis_aligned = np.allclose(self.rot, np.eye(3))

    def _local(self, x, y, z):
        cx, cy, cz = (np.float32(v) for v in self.centre)
        if self._axis_aligned:
            return x - cx, y - cy, z - cz
        dx, dy, dz = x - cx, y - cy, z - cz
        r = self.rot.astype(np.float32)
        return (r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
                r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
                r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz)


class Ellipsoid(Framed):
    def __init__(self, centre, radii, rot=None):
        super().__init__(centre, rot)
        self.radii = np.asarray(radii, dtype=np.float64)

    def bounds(self):
        return _box_bounds(self.centre, self.radii, self.rot)

    def distance(self, x, y, z):
        u, v, w = self._local(x, y, z)
        a, b, c = (np.float32(r) for r in self.radii)
        k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)
        k1 = np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2 + (w / (c * c)) ** 2)
        return k0 * (k0 - 1) / np.maximum(k1, np.float32(1e-6))


def ellipse_distance(u, v, a, b):
    """Approximate signed distance to an axis-aligned ellipse with half axes a, b (2-D)."""
    a, b = np.float32(a), np.float32(b)
    k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    k1 = np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2)
    return k0 * (k0 - 1) / np.maximum(k1, np.float32(1e-6))


class EllipticCylinder(Framed):
    """Elliptic cross-section (half axes rx, ry) between flat ends at w = +-half_height.

    ``power`` > 2 squares the cross-section off (a superellipse, as cervical bodies are);
    ``wedge`` lowers the top end towards +v (a body compressed at the front: the top at
    h - 2h * wedge * (v/ry + 1)/2); ``dip`` depresses the top's centre by that many mm.
    """

    def __init__(self, centre, rx, ry, half_height, rot=None, wedge=0.0, dip=0.0, power=2.0):
        super().__init__(centre, rot)
        self.rx, self.ry, self.h = float(rx), float(ry), float(half_height)
        self.wedge, self.dip, self.power = float(wedge), float(dip), float(power)

    def bounds(self):
        return _box_bounds(self.centre, (self.rx, self.ry, self.h), self.rot)

    def distance(self, x, y, z):
        u, v, w = self._local(x, y, z)
        if self.power == 2.0:
            radial = ellipse_distance(u, v, self.rx, self.ry)
        else:  # first-order distance of the superellipse, scaled by its smaller half axis
            p = np.float32(self.power)
            q = (np.abs(u) / np.float32(self.rx)) ** p + (np.abs(v) / np.float32(self.ry)) ** p
            radial = (q ** (1 / p) - 1) * np.float32(min(self.rx, self.ry))
        h = np.float32(self.h)
        top = h
        if self.wedge:  # anterior (+v) height loss, the whole body lowered to keep the bottom
            t = np.clip((v / np.float32(self.ry) + 1) / 2, 0, 1)
            top = h - np.float32(2 * self.h * self.wedge) * t
        if self.dip:  # central endplate depression
            r2 = (u / np.float32(self.rx)) ** 2 + (v / np.float32(self.ry)) ** 2
            top = top - np.float32(self.dip) * np.clip(1 - r2, 0, 1)
        axial = np.maximum(w - top, -h - w)
        return np.maximum(radial, axial)


class Capsule(Shape):
    """Segment a -> b with radius r0 at a and r1 at b (a rounded cone)."""

    def __init__(self, a, b, r0, r1=None):
        self.a = np.asarray(a, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        self.r0, self.r1 = float(r0), float(r0 if r1 is None else r1)

    def bounds(self):
        r = max(self.r0, self.r1)
        return np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r

    def distance(self, x, y, z):
        ab = (self.b - self.a).astype(np.float32)
        length2 = np.float32(max(float(ab @ ab), 1e-9))
        px, py, pz = x - np.float32(self.a[0]), y - np.float32(self.a[1]), z - np.float32(self.a[2])
        t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / length2, 0, 1)
        dx, dy, dz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
        r = np.float32(self.r0) + t * np.float32(self.r1 - self.r0)
        return np.sqrt(dx * dx + dy * dy + dz * dz) - r


class Box(Framed):
    """Box with half sizes ``half`` and rounded edges (radius ``rounding``, inside the half sizes)."""

    def __init__(self, centre, half, rot=None, rounding=0.0):
        super().__init__(centre, rot)
        self.half = np.asarray(half, dtype=np.float64)
        self.rounding = float(min(rounding, float(np.min(self.half)) * 0.95))

    def bounds(self):
        return _box_bounds(self.centre, self.half, self.rot)

    def distance(self, x, y, z):
        u, v, w = self._local(x, y, z)
        r = np.float32(self.rounding)
        qx = np.abs(u) - np.float32(self.half[0]) + r
        qy = np.abs(v) - np.float32(self.half[1]) + r
        qz = np.abs(w) - np.float32(self.half[2]) + r
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2 + np.maximum(qz, 0) ** 2)
        inside = np.minimum(np.maximum(qx, np.maximum(qy, qz)), 0)
        return outside + inside - r


def box_between(a, b, width, height, up=(0.0, 0.0, 1.0), rounding=1.0, extend=0.0):
    """A box from point a to point b, ``width`` across and ``height`` along ``up`` (a lamina, a process)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    axis = b - a
    length = float(np.linalg.norm(axis))
    u = axis / max(length, 1e-9)
    w = np.asarray(up, float) - u * (u @ np.asarray(up, float))
    w = w / max(float(np.linalg.norm(w)), 1e-9)
    v = np.cross(w, u)
    return Box((a + b) / 2, (length / 2 + extend, width / 2, height / 2), np.stack([u, v, w], axis=1), rounding)


class Union(Shape):
    def __init__(self, parts):
        self.parts = [p for p in parts if p is not None]

    def bounds(self):
        lows, highs = zip(*(p.bounds() for p in self.parts))
        return np.min(lows, axis=0), np.max(highs, axis=0)

    def distance(self, x, y, z):
        out = self.parts[0].distance(x, y, z)
        for part in self.parts[1:]:
            out = np.minimum(out, part.distance(x, y, z))
        return out

    def evaluate(self, block, out=None):
        out = np.full(block.shape, FAR, np.float32) if out is None else out
        for part in self.parts:
            part.evaluate(block, out)
        return out


class Subtract(Shape):
    """``shape`` with the ``holes`` cut out (canals, foramina)."""

    def __init__(self, shape, holes):
        self.shape = shape
        self.holes = [h for h in holes if h is not None]

    def bounds(self):
        return self.shape.bounds()

    def distance(self, x, y, z):
        out = self.shape.distance(x, y, z)
        for hole in self.holes:
            out = np.maximum(out, -hole.distance(x, y, z))
        return out

    def evaluate(self, block, out=None):
        mine = self.shape.evaluate(block)
        for hole in self.holes:
            window = block.window(hole.bounds())
            if window is not None:
                h = hole.distance(block.x[window], block.y[window], block.z[window])
                np.maximum(mine[window], -h, out=mine[window])
        if out is None:
            return mine
        np.minimum(out, mine, out=out)
        return out


class Moved(Shape):
    """``shape`` moved by the 4x4 rigid ``transform`` (a displaced fragment)."""

    def __init__(self, shape, transform):
        self.shape = shape
        self.transform = np.asarray(transform, dtype=np.float64)
        self.inverse = np.linalg.inv(self.transform)

    def bounds(self):
        lo, hi = self.shape.bounds()
        corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        moved = (self.transform @ corners.T)[:3]
        return moved.min(axis=1), moved.max(axis=1)

    def distance(self, x, y, z):
        m = self.inverse.astype(np.float32)
        return self.shape.distance(m[0, 0] * x + m[0, 1] * y + m[0, 2] * z + m[0, 3],
                                   m[1, 0] * x + m[1, 1] * y + m[1, 2] * z + m[1, 3],
                                   m[2, 0] * x + m[2, 1] * y + m[2, 2] * z + m[2, 3])

    def evaluate(self, block, out=None):
        out = np.full(block.shape, FAR, np.float32) if out is None else out
        self.shape.evaluate(block.moved(self.transform), out)
        return out


class HalfSpace(Shape):
    """Points with (p - point) . normal > 0 are outside (distance = that product)."""

    def __init__(self, point, normal, extent=200.0):
        self.point = np.asarray(point, dtype=np.float64)
        n = np.asarray(normal, dtype=np.float64)
        self.normal = n / np.linalg.norm(n)
        self.extent = float(extent)

    def bounds(self):
        return self.point - self.extent, self.point + self.extent

    def distance(self, x, y, z):
        n = self.normal.astype(np.float32)
        p = self.point.astype(np.float32)
        return (x - p[0]) * n[0] + (y - p[1]) * n[1] + (z - p[2]) * n[2]


class Intersect(Shape):
    def __init__(self, parts):
        self.parts = list(parts)

    def bounds(self):
        lows, highs = zip(*(p.bounds() for p in self.parts))
        return np.max(lows, axis=0), np.min(highs, axis=0)

    def distance(self, x, y, z):
        out = self.parts[0].distance(x, y, z)
        for part in self.parts[1:]:
            out = np.maximum(out, part.distance(x, y, z))
        return out

    def evaluate(self, block, out=None):
        out = np.full(block.shape, FAR, np.float32) if out is None else out
        lo, hi = self.bounds()
        if np.any(hi < lo):
            return out
        window = block.window((lo, hi))
        if window is not None:
            sub = _sub_block(block, window)
            d = self.parts[0].evaluate(sub)
            for part in self.parts[1:]:
                np.maximum(d, part.evaluate(sub), out=d)
            np.minimum(out[window], d, out=out[window])
        return out


def _sub_block(block, window):
    """A Block over ``window`` of ``block`` that shares its coordinates (views, no copy)."""
    sub = Block.__new__(Block)
    sub.to_index = block.to_index
    sub.lo = tuple(block.lo[a] + window[a].start for a in range(3))
    sub.hi = tuple(block.lo[a] + window[a].stop for a in range(3))
    sub.x, sub.y, sub.z = block.x[window], block.y[window], block.z[window]
    sub.shape = sub.x.shape
    return sub
