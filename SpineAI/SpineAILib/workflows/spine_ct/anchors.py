"""The sacrum, the anchor at the bottom of the column (the ribs, the other one, are in ribs.py).

Names come from anatomy, never from where a body sits in the picture. The sacrum is the
bone below the column's lowest disc when, in the slices under that disc, the bone around
the column reaches far to both sides (the sacral alae and the iliac bones joined to them at
the sacroiliac joints) and, above it, does not (a lumbar body is narrow; a fifth lumbar body
fused to the sacrum or the ilium is a transitional vertebra, and the count is then
uncertain). Measured on the canonical coarse grid ([inferior, posterior, left], ~3 mm).
"""

from dataclasses import dataclass

import numpy as np

from SpineAILib.workflows.spine_ct.column import MIN_LEVEL_MM, disc_candidates, filled_track

BONE_HU = 150.0
WIDE_MM = 110.0  # the bone around the column this wide: sacrum with alae and ilia (a lumbar body is ~50 mm)
PROBE_MM = 30.0  # slices this far below (and above) the lowest disc are looked at
WIDE_SHARE_BELOW = 0.6
SACRUM_SEARCH_MM = 150.0  # the lumbosacral disc is looked for this far above the column's lowest disc
AIR_HU = -400.0
AIR_REACH_MM = 100.0
MAX_AIR_SHARE = 0.15
WIDE_SHARE_ABOVE = 0.25  # the body above the sacrum is narrow in all but a few slices (transverse processes)
MIN_BELOW_MM = 30.0  # the image must go on at least this far below the disc (S1 alone is ~30 mm)
SEARCH_FRONT_MM, SEARCH_BACK_MM, SEARCH_HALF_WIDTH_MM = 25.0, 10.0, 9.0  # where the column's bone is looked for
WING_FROM_MM = 30.0  # bone further than this to the side of the column ...
WING_BAND_MM = 40.0  # ... within this far in front of or behind the canal ...
WING_AREA_MM2 = (200.0, 900.0)  # ... at least this much on the smaller side and on the larger side
OFF_CHAIN_EVIDENCE = 0.25  # a disc the chain passed over is looked at for L5/S1 if its evidence is this strong


@dataclass
class Sacrum:
    found: bool
    disc: object  # int index into the column's discs (the lumbosacral disc), or None
    reason: str
    wide_below: float = 0.0
    wide_above: float = 0.0
    transitional: bool = False
    off_chain: object = None  # the slice of an L5/S1 disc that the disc chain had passed over (its discs end there)


def is_wide(hu, spacing, k, y, x):
    """Does the slice's bone around the column at canal (y, x) (canonical) reach out like a sacrum joined
    to the iliac bones: a component WIDE_MM wide, with a thick plate of bone beside the column on both
    sides (ribs beside a thoracic body are thin: WING_AREA_MM2 tells them apart)?"""
    import cv2

    bone = (hu[k] > BONE_HU).astype(np.uint8)
    bone = cv2.morphologyEx(bone, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(bone, connectivity=8)
    rows = slice(max(0, int(round(y - SEARCH_FRONT_MM / spacing[1]))), max(0, int(round(y + SEARCH_BACK_MM / spacing[1]))))
    half = int(round(SEARCH_HALF_WIDTH_MM / spacing[2]))
    cols = slice(max(0, int(round(x)) - half), max(0, int(round(x)) + half + 1))
    ids = [i for i in np.unique(labels[rows, cols]) if i]
    if not ids:
        return False
    best = max(ids, key=lambda i: stats[i, cv2.CC_STAT_WIDTH])
    if stats[best, cv2.CC_STAT_WIDTH] * spacing[2] < WIDE_MM:
        return False
    ys, xs = np.nonzero(labels == best)
    band = np.abs(ys - y) * spacing[1] <= WING_BAND_MM
    pixel = spacing[1] * spacing[2]
    left = float(((xs - x) * spacing[2] > WING_FROM_MM)[band].sum()) * pixel
    right = float(((x - xs) * spacing[2] > WING_FROM_MM)[band].sum()) * pixel
    return max(left, right) >= WING_AREA_MM2[1] and min(left, right) >= WING_AREA_MM2[0]


def air_share(hu, spacing, slices, fallback_track):
    """Share of air (lung, HU < AIR_HU) beside the column in ``slices``: lungs sit beside the upper
    thoracic spine, never beside the sacrum."""
    shares = []
    for k in slices:
        if not (0 <= k < hu.shape[0]):
            continue
        y, x = fallback_track(k)
        rows = slice(max(0, int(round(y - WING_BAND_MM / spacing[1]))), max(0, int(round(y + WING_BAND_MM / spacing[1]))))
        half = int(round(AIR_REACH_MM / spacing[2]))
        cols = slice(max(0, int(round(x)) - half), max(0, int(round(x)) + half + 1))
        shares.append(float((hu[k, rows, cols] < AIR_HU).mean()))
    return float(np.mean(shares)) if shares else 0.0


def find_sacrum(hu, spacing, column):
    """The lumbosacral disc, looked for from the bottom up among the discs in the column's lowest
    SACRUM_SEARCH_MM: the lowest disc with wide, thick bone (the sacrum joined to the iliac bones) in
    most slices below and no lung beside it. Above it, a narrow body (wide in under WIDE_SHARE_ABOVE of
    the slices: transverse processes): the lumbosacral disc, found. Wide bone above as well: a disc
    inside the sacrum (rudimentary S1/S2) or the coccyx, the search goes on upwards. Partly wide above:
    a transitional L5, or a disc inside the sacrum: uncertain, not found, and said so. When no disc of the
    chain has the sacrum under it, the disc candidates the chain passed over (evidence at least
    OFF_CHAIN_EVIDENCE, a level's height from the chain's discs) are judged the same way; one that passes
    is L5/S1 and ``off_chain`` says where (the column's discs are to end there: column.with_last_disc)."""
    if not column.discs:
        return Sacrum(False, None, "no disc found along the column")
    if not np.isfinite(column.track[:, 0]).any():
        return Sacrum(False, None, "no column found")
    filled = filled_track(column.track)  # the canal's position, held where the track has ended
    probe = max(2, int(round(PROBE_MM / spacing[0])))

    def judge(disc):
        """(wide share below, wide share above) of a disc slice; None below: the image ends, or no sacrum under it."""
        if (hu.shape[0] - 1 - disc) * spacing[0] < MIN_BELOW_MM:
            return None, None  # the image ends under this disc: nothing to see below it
        below_slices = range(disc + 2, min(hu.shape[0], disc + 2 + probe))
        below = float(np.mean([is_wide(hu, spacing, k, *filled[k]) for k in below_slices]))
        if below < WIDE_SHARE_BELOW or air_share(hu, spacing, below_slices, lambda k: filled[k]) > MAX_AIR_SHARE:
            return None, None
        above = float(np.mean([is_wide(hu, spacing, k, *filled[k]) for k in range(max(0, disc - 1 - probe), max(1, disc - 1))]))
        return below, above

    lowest = column.discs[-1]
    wide_above_seen = None
    for index in range(len(column.discs) - 1, -1, -1):
        disc = int(round(column.discs[index]))
        if (lowest - disc) * spacing[0] > SACRUM_SEARCH_MM:
            break
        below, above = judge(disc)
        if below is None:
            continue
        if above < WIDE_SHARE_ABOVE:
            return Sacrum(True, index, "sacrum below this disc, joined to both iliac bones", below, above)
        if above < WIDE_SHARE_BELOW:  # partly wide above: a transitional L5, or this disc is inside the sacrum
            return Sacrum(False, None, "the body above the sacrum is partly as wide as the sacrum (joined to it or to "
                          "the iliac bones in some slices): a lumbosacral transitional vertebra, or a disc inside the "
                          "sacrum; which disc is L5/S1 is uncertain", below, above, transitional=True)  # fmt: skip
        wide_above_seen = (below, above)  # wide on both sides: a disc inside the sacrum, look further up
    if wide_above_seen is not None:
        below, above = wide_above_seen
        return Sacrum(False, None, "the body above the sacrum is as wide as the sacrum (joined to it or to the iliac "
                      "bones): a lumbosacral transitional vertebra, or a disc missed", below, above,
                      transitional=True)  # fmt: skip
    # No disc of the chain has the sacrum under it. A steep L5/S1 disc reads weaker than the rudimentary S1/S2
    # disc below it on a blurred grid, and the chain, which cannot hold both (too close), may take the latter:
    # the discs it passed over are looked at the same way, from the bottom up.
    chain = np.array(column.discs, float)
    for disc in sorted(disc_candidates(column), reverse=True):
        if column.profile[disc] < OFF_CHAIN_EVIDENCE or np.min(np.abs(chain - disc)) * spacing[0] < MIN_LEVEL_MM / 2:
            continue
        if (lowest - disc) * spacing[0] > SACRUM_SEARCH_MM:
            break
        upper = chain[chain < disc]
        if len(upper) and (disc - upper[-1]) * spacing[0] < MIN_LEVEL_MM:
            continue
        below, above = judge(disc)
        if below is not None and above < WIDE_SHARE_ABOVE:
            return Sacrum(True, len(upper), "sacrum below this disc, joined to both iliac bones (a disc the chain of "
                          "discs had passed over: the discs end here)", below, above, off_chain=int(disc))  # fmt: skip
    return Sacrum(False, None, "no sacrum in view: no disc near the bottom of the column has the sacrum and the "
                  "iliac bones under it")  # fmt: skip
