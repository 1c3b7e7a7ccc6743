"""Where the spinal column runs on a CT, slice by slice, and where its discs are.

Works on the canonical coarse grid (SpineAILib.ct_grid: [inferior, posterior, left], about
3 mm). No model: Hounsfield units are physical, so bone, soft tissue and the spinal canal are
told apart by their density and shape the same way on any scanner.

1. Track: in every axial slice, how much a spinal canal fits at each point: soft tissue (not
   fat, not bone) enclosed by cortical bone in most directions, a bone-dense body in front of
   it, near the left-right middle of the trunk; averaged along the column (the canal's ring is
   open at disc levels). Dynamic programming links one candidate per slice into the strongest
   unbroken, smooth path: the column.
2. Strip: the straightened mid-sagittal strip in front of the canal. Disc evidence per slice: a
   dark line across the body (at the tilt that fits best) between two bright ones, the endplates.
3. Discs: the strongest chain of evidence peaks whose spacing is regular (neighbouring levels
   differ by less than MAX_HEIGHT_RATIO) and about the body's own depth (LEVEL_PER_DEPTH): a dark
   vein or an osteoporotic middle inside a body makes two half-height levels, which the chain refuses.
"""

from dataclasses import dataclass

import numpy as np

from SpineAILib.workflows.spine_ct.filters import box_mean, disk_kernel, filter_slices

BONEISH_HU = (80.0, 200.0)  # ramp: trabecular bone of an osteoporotic body is ~100 HU, healthy 150-250
CORTEX_HU = 150.0  # cortical bone at 3 mm partial volume reads 150-300
SOFT_HU = (-60.0, 90.0)  # CSF, cord, disc
CANAL_RADIUS_MM = 3.0
CANAL_RING_MM = (4.0, 16.0)  # the canal's bony wall lies this far from its centre (cervical to lumbar)
RAYS = 12
BODY_HU = -300.0  # the body outline: denser than lung and air
TRUNK_SIDE_SHARE = 0.25
BODY_PROBE_MM = 6.0
BODY_IN_FRONT_MM = (12.0, 30.0)  # body centre in front of the canal centre
CANDIDATES = 8
SCORE_SMOOTH_MM = 9.0
MOVE_PENALTY = 0.005  # score per mm^2 of sideways move between 3 mm slices
MIN_SCORE = 0.12  # a slice whose best point scores less has no vertebra
STRIP_MM = (0.0, 60.0)
STRIP_HALF_WIDTH_MM = 4.0
DEPTH_SMOOTH_MM = 12.0
BODY_DEPTH_HU = 70.0  # the body's depth: the run of the strip denser than this from the canal forward
BODY_STRIP_MM = (6.0, 26.0)  # the strip's part that crosses the body (cervical bodies are about 15 mm deep)
MAX_TILT_DEG, TILT_STEP_DEG = 40.0, 5.0  # discs tilt against the axial plane where the spine curves (L5/S1 most)
DISC_HALF_MM = (4.0, 6.5)  # endplates this far above and below a disc's middle (thoracic/cervical, lumbar)
PROFILE_HU = (-50.0, 500.0)  # the strip's densities are clipped to this (metal and air)
TRACK_SMOOTH_MM = 15.0  # the column bends slowly: the canal's path is a running median over +-15 mm
MIN_DIP = 0.06  # disc evidence: the dark line is at least this share darker than the endplates beside it
DIP_COST = 0.05  # a peak adds to the chain only what it has above this: faint ones inside bodies stay out
MIN_LEVEL_MM, MAX_LEVEL_MM = 12.0, 55.0  # disc to disc: a cervical vertebra ~15 mm, a lumbar ~40 mm
MAX_HEIGHT_RATIO = 1.6  # neighbouring levels (disc to disc) differ by less than this (a missed disc doubles one)
LEVEL_PER_DEPTH = (0.5, 1.3)  # a level (disc to disc) against the body's depth in front of the canal


@dataclass
class Column:
    track: np.ndarray  # (Z, 2) posterior, left index per slice (NaN: no column)
    score: np.ndarray  # (Z,) track score
    present: np.ndarray  # (Z,) bool
    profile: np.ndarray  # (Z,) disc evidence along the track (body_profile)
    discs: list  # slice indices (float) of the discs found, top to bottom
    depth: np.ndarray  # (Z,) body depth in front of the canal (mm), NaN where unknown
    tilt_profile: np.ndarray  # (Z,) the best-fitting disc line's tilt at each slice (radians; + = its front lower)

    @property
    def tilts(self):
        """Per disc: its tilt from axial (radians; + = its front lower), measured on the strip."""
        return [float(self.tilt_profile[int(round(k))]) for k in self.discs]


def boneish(hu):
    lo, hi = BONEISH_HU
    return np.clip((hu - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _shifted(mask, dy, dx):
    """mask moved by (dy, dx) voxels within each slice (outside = False)."""
    out = np.zeros_like(mask)
    ny, nx = mask.shape[1:]
    ys, yd = (slice(dy, ny), slice(0, ny - dy)) if dy >= 0 else (slice(0, ny + dy), slice(-dy, ny))
    xs, xd = (slice(dx, nx), slice(0, nx - dx)) if dx >= 0 else (slice(0, nx + dx), slice(-dx, nx))
    out[:, yd, xd] = mask[:, ys, xs]
    return out


def enclosure(cortex, spacing):
    """Per voxel: the share of RAYS directions in which cortical bone lies within CANAL_RING_MM."""
    total = np.zeros(cortex.shape, np.float32)
    for angle in np.arange(RAYS) * 2 * np.pi / RAYS:
        hit = np.zeros(cortex.shape, bool)
        for r in np.arange(CANAL_RING_MM[0], CANAL_RING_MM[1] + 0.1, min(spacing[1:])):
            hit |= _shifted(cortex, int(round(r * np.sin(angle) / spacing[1])), int(round(r * np.cos(angle) / spacing[2])))
        total += hit
    return total / RAYS


def canal_score(hu, spacing):
    """Per voxel: how much a spinal canal centred there fits: soft tissue (not fat, not bone) enclosed
    by cortical bone on most sides, with a bone-dense body in front of it."""
    soft = ((hu > SOFT_HU[0]) & (hu < SOFT_HU[1])).astype(np.float32)
    centre = filter_slices(soft, disk_kernel(spacing, 0.0, CANAL_RADIUS_MM))
    enclosed = np.clip((enclosure(hu > CORTEX_HU, spacing) - 0.4) / 0.5, 0.0, 1.0)
    body = filter_slices(boneish(hu), disk_kernel(spacing, 0.0, BODY_PROBE_MM))
    front = np.zeros_like(body)  # the body's centre lies 10-25 mm in front of the canal's (lower posterior index)
    for d in range(max(1, int(round(BODY_IN_FRONT_MM[0] / spacing[1]))), int(round(BODY_IN_FRONT_MM[1] / spacing[1])) + 1):
        front[:, d:] = np.maximum(front[:, d:], body[:, :-d])
    return centre * enclosed * front * trunk_prior(hu, spacing)


def trunk_prior(hu, spacing):
    """1 near the left-right middle of each slice's largest body part (the trunk or the neck),
    falling to 0 at TRUNK_SIDE_SHARE of its width: arms beside the body and the legs are not the spine."""
    import cv2

    out = np.zeros(hu.shape, np.float32)
    xs = np.arange(hu.shape[2])
    for k in range(hu.shape[0]):
        n, labels, stats, centroids = cv2.connectedComponentsWithStats((hu[k] > BODY_HU).astype(np.uint8), connectivity=4)
        if n < 2:
            continue
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        centre_x = centroids[largest][0]
        width = max(stats[largest, cv2.CC_STAT_WIDTH], 1) * spacing[2]
        side = np.abs(xs - centre_x) * spacing[2] / (TRUNK_SIDE_SHARE * width)
        out[k] = (labels == largest) * np.clip(1.5 - side, 0.0, 1.0)[None, :]
    return out


def _candidates(score_slice):
    import cv2

    peaks_mask = (score_slice >= cv2.dilate(score_slice, np.ones((5, 5), np.uint8))) & (score_slice > MIN_SCORE / 2)
    peaks = np.argwhere(peaks_mask)
    values = score_slice[peaks[:, 0], peaks[:, 1]]
    order = np.argsort(-values)[:CANDIDATES]
    return peaks[order], values[order]


def find_track(hu, spacing):
    """(track (Z, 2), score (Z,)): the strongest smooth path of body candidates from top to bottom."""
    score = canal_score(hu, spacing)
    # the canal runs on through disc levels, where its bony ring is open: average along the column first
    score = box_mean(score, (max(1, int(round(SCORE_SMOOTH_MM / spacing[0]))), 0, 0))
    mm = np.array(spacing[1:])
    z_scale = spacing[0] / 3.0
    cands = [_candidates(s) for s in score]
    total, back = [], []
    for k, (points, values) in enumerate(cands):
        if k == 0 or not len(points) or not len(cands[k - 1][0]):
            total.append(values.astype(np.float64))
            back.append(None)
            continue
        d2 = (((points[:, None, :] - cands[k - 1][0][None, :, :]) * mm) ** 2).sum(-1)
        # a slice may also start a new path (after a gap): never worse than its own value
        joined = total[-1][None, :] - MOVE_PENALTY * d2 / z_scale
        j = joined.argmax(1)
        best = joined[np.arange(len(points)), j]
        total.append(values + np.maximum(best, 0.0))
        back.append(np.where(best > 0.0, j, -1))
    # the column is the strongest unbroken path: the (slice, candidate) whose path total is highest,
    # followed up to where that path started (a restart is a jump no body makes: pelvis, femur, skull)
    nz = hu.shape[0]
    track = np.full((nz, 2), np.nan)
    track_score = np.zeros(nz)
    ends = [(float(t.max()), k, int(t.argmax())) for k, t in enumerate(total) if len(t)]
    if not ends:
        return track, track_score
    _, k, i = max(ends)
    while k >= 0 and i is not None and i >= 0:
        track[k] = cands[k][0][i]
        track_score[k] = cands[k][1][i]
        i = int(back[k][i]) if back[k] is not None else None
        k -= 1
    return track, track_score


def running_median(values, half):
    out = np.array(values, dtype=float)
    for k in range(len(values)):
        window = values[max(0, k - half) : k + half + 1]
        window = window[np.isfinite(window)]
        out[k] = np.median(window) if len(window) else np.nan
    return out


def strip(hu, spacing, track):
    """The straightened mid-sagittal strip in front of the canal: (Z, D) mean HU (clipped) over
    +-STRIP_HALF_WIDTH_MM left-right, at 1..D voxels in front of the canal centre (NaN off the column)."""
    fill = np.clip(hu, *PROFILE_HU).astype(np.float32)
    nz = hu.shape[0]
    depth = int(round(STRIP_MM[1] / spacing[1]))
    out = np.full((nz, depth), np.nan, np.float32)
    hx = max(1, int(round(STRIP_HALF_WIDTH_MM / spacing[2])))
    for k in np.nonzero(np.isfinite(track[:, 0]))[0]:
        y, x = int(round(track[k, 0])), int(round(track[k, 1]))
        rows = y - np.arange(1, depth + 1)
        keep = rows >= 0
        cols = slice(max(0, x - hx), min(hu.shape[2], x + hx + 1))
        out[k, keep] = fill[k, rows[keep], cols].mean(axis=1)
    return out


def body_depth(values, spacing):
    """Per slice: the depth (mm) of the body in front of the canal, from the strip smoothed over
    +-DEPTH_SMOOTH_MM: the front edge of the bone-dense run that starts within 15 mm of the canal."""
    smooth = box_mean(np.nan_to_num(values, nan=PROFILE_HU[0])[:, :, None],
                      (max(1, int(round(DEPTH_SMOOTH_MM / spacing[0]))), 0, 0))[:, :, 0]
    dense = smooth > BODY_DEPTH_HU
    out = np.full(values.shape[0], np.nan)
    start_max = int(round(15.0 / spacing[1]))
    for k in range(values.shape[0]):
        if not np.isfinite(values[k]).any():
            continue
        hits = np.nonzero(dense[k])[0]
        if not len(hits) or hits[0] > start_max:
            continue
        run_end = hits[0]
        while run_end + 1 < dense.shape[1] and dense[k, run_end + 1]:
            run_end += 1
        out[k] = (run_end + 1) * spacing[1] - hits[0] * spacing[1]
    return out


def _line_means(values, spacing, z, angles, d_lo, d_hi, min_inside=0.7, edge=0):
    """Mean of the strip along straight lines through slice ``z`` (float) at each of ``angles`` (radians,
    tilt of the line from axial), over strip columns d_lo..d_hi: (len(angles),); NaN for a line with less
    than ``min_inside`` of it in the image (``edge``: less its first and last ``edge`` slices)."""
    nz = values.shape[0]
    d = np.arange(d_lo, d_hi)
    mid = 0.5 * (d_lo + d_hi - 1)
    out = []
    for angle in angles:
        zz = z + np.tan(angle) * (d - mid) * spacing[1] / spacing[0]
        inside = (zz >= edge) & (zz <= nz - 1 - edge)
        if inside.sum() < min_inside * len(d):
            out.append(np.nan)
            continue
        z0 = np.floor(zz[inside]).astype(int)
        z1 = np.minimum(z0 + 1, nz - 1)
        w = zz[inside] - z0
        line = values[z0, d[inside]] * (1 - w) + values[z1, d[inside]] * w
        out.append(np.nanmean(line) if np.isfinite(line).any() else np.nan)
    return np.array(out)


def body_profile(values, spacing):
    """(evidence, tilt) per slice of the strip ``values``: how much a disc fits there: a dark line across the
    body (at the tilt that fits best) between two bright lines (the endplates) DISC_HALF_MM above and below,
    as a share of them."""
    nz = values.shape[0]
    angles = np.radians(np.arange(-MAX_TILT_DEG, MAX_TILT_DEG + 0.1, TILT_STEP_DEG))
    d_lo, d_hi = (int(round(m / spacing[1])) for m in BODY_STRIP_MM)
    out = np.zeros(nz)
    tilt = np.zeros(nz)  # radians: the tilt of the best-fitting disc line
    for k in range(nz):
        if not np.isfinite(values[k]).any():
            continue
        centre = _line_means(values, spacing, k, angles, d_lo, d_hi)
        best = 0.0
        for half in DISC_HALF_MM:
            step = half / spacing[0]
            # both endplates wholly inside the image, off its outermost slices: there a cut body ends in
            # an edge that looks like an endplate
            above = _line_means(values, spacing, k - step, angles, d_lo, d_hi, min_inside=1.0, edge=1)
            below = _line_means(values, spacing, k + step, angles, d_lo, d_hi, min_inside=1.0, edge=1)
            flank = np.minimum(above, below)  # NaN where either endplate is out of view
            contrast = (flank - centre) / np.maximum(flank - PROFILE_HU[0], 1.0)
            if np.isfinite(contrast).any() and float(np.nanmax(contrast)) > best:
                best = float(np.nanmax(contrast))
                tilt[k] = float(angles[int(np.nanargmax(contrast))])
        out[k] = best
    return out, tilt


def _dips(profile):
    """(index, strength) of the local maxima of the disc evidence above MIN_DIP."""
    out = []
    for k in range(1, len(profile) - 1):
        if profile[k] >= profile[k - 1] and profile[k] > profile[k + 1] and profile[k] > MIN_DIP:
            out.append((k, float(profile[k])))
    return out


def find_discs(profile, spacing, present, depth=None):
    """Disc slice indices (top to bottom): the strongest chain of dips with regular spacing, each
    level (disc to disc) LEVEL_PER_DEPTH times the body's depth there (a vertebra is about as tall
    as it is deep, neck to sacrum: a dip inside a body makes two levels half that)."""
    dips = [(k, d) for k, d in _dips(profile) if present[k]]
    if not dips:
        return []
    z = np.array([k for k, _ in dips], float) * spacing[0]
    strength = np.array([d for _, d in dips]) - DIP_COST
    n = len(dips)
    # best[i][j]: best chain ending with dips j -> i (j above i), so the last interval is known
    best = {}
    for i in range(n):
        best[(i, -1)] = (strength[i], None)
    for i in range(n):
        for j in range(i):
            gap = z[i] - z[j]
            if not (MIN_LEVEL_MM <= gap <= MAX_LEVEL_MM):
                continue
            if depth is not None:
                local = depth[dips[j][0] : dips[i][0] + 1]
                local = local[np.isfinite(local)]
                if len(local) and not (LEVEL_PER_DEPTH[0] <= gap / np.median(local) <= LEVEL_PER_DEPTH[1]):
                    continue
            options = [(best[(j, -1)][0] + strength[i], (j, -1))]
            for (jj, kk), (value, _) in list(best.items()):
                if jj != j or kk < 0:
                    continue
                prev = z[j] - z[kk]
                ratio = max(gap, prev) / min(gap, prev)
                if ratio <= MAX_HEIGHT_RATIO:
                    options.append((value + strength[i], (j, kk)))
            best[(i, j)] = max(options, key=lambda o: o[0])
    end = max(best, key=lambda key: best[key][0])
    chain = []
    key = end
    while key is not None:
        chain.append(key[0])
        key = best[key][1]
    return sorted(dips[i][0] for i in chain)


def filled_track(track):
    """(Z, 2) ``track`` with every slice off the column given the position of the nearest slice on it
    (the upper one on a tie): where the rules look when the canal's track has ended."""
    known = np.nonzero(np.isfinite(track[:, 0]))[0]
    if not len(known):
        return track.copy()
    nearest = known[np.argmin(np.abs(known[None, :] - np.arange(len(track))[:, None]), axis=1)]
    return track[nearest]


def disc_candidates(column):
    """Slices where a disc fits better than just above and below it (local maxima of the evidence over MIN_DIP,
    where the column is present): the disc chain's candidates, chosen or not."""
    return [k for k, _ in _dips(column.profile) if column.present[k]]


def with_last_disc(column, k):
    """A copy of ``column`` whose discs end at slice ``k`` (a disc put in at its evidence's tilt; the chain's
    discs under it dropped)."""
    import dataclasses

    return dataclasses.replace(column, discs=[d for d in column.discs if d < k] + [int(k)])


def hold_track_below(column, disc):
    """A copy of ``column`` whose track below slice ``disc`` stays where it was at that disc."""
    import dataclasses

    track = column.track.copy()
    k = int(round(disc))
    known = np.nonzero(np.isfinite(track[: k + 1, 0]))[0]
    if len(known):
        track[k + 1 :] = track[known[-1]]
    return dataclasses.replace(column, track=track)


def find_column(hu, spacing):
    track, score = find_track(hu, spacing)
    smooth_score = running_median(score, 2)
    present = np.isfinite(track[:, 0]) & (smooth_score >= MIN_SCORE)
    half = max(1, int(round(TRACK_SMOOTH_MM / spacing[0])))
    smooth = np.stack([running_median(np.where(present, track[:, a], np.nan), half) for a in range(2)], 1)
    smooth[~present] = np.nan
    values = strip(hu, spacing, smooth)
    profile, tilt = body_profile(values, spacing)
    depth = body_depth(values, spacing)
    discs = find_discs(profile, spacing, present, depth)
    return Column(smooth, score, present, profile, discs, depth, tilt)
