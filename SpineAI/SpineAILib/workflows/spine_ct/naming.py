"""Names for the column's levels, from the anchors in view (never from where a body sits in the picture).

With the sacrum found (anchors.find_sacrum), the level below the lumbosacral disc is S1 and
the levels above it are L5, L4, ... counted up disc by disc, as long as each level is about as
tall as the ones already counted below it: a level much taller than them (STEP_RATIO, or
over MAX_LEVEL_MM) is likely two vertebrae with the disc between them missed, a much shorter
one a body split in two; every name above it would be off by one, so naming stops there and
says why. Without an anchor the levels are segmented but not named (``vertebra 1..n``, top to
bottom) and the reason is given.
"""

from dataclasses import dataclass, field

import numpy as np

from SpineAILib.terminology import VERTEBRAE

S1 = 26
L5 = 24
NO_ANCHOR = "no anatomical anchor in view: levels not named"
MAX_LEVEL_MM = 45.0  # disc to disc: a lumbar vertebra with its disc is at most about 42 mm
STEP_RATIO = (0.65, 1.35)  # a level's height against the median of the (up to) three counted below it
REFERENCE_LEVELS = 3
MAX_ABOVE_S1 = 5  # counted from the sacrum alone, names stop at L1 (on held-out phantoms thoracic names were off)


@dataclass
class Naming:
    anchor: object  # "sacrum", or None
    names: dict  # level index -> name ("L5", "S1", ...) or "vertebra N"
    verse: dict  # level index -> VerSe number (named levels only)
    warnings: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def name_levels(n_levels, sacrum, heights_mm=None, resolution_mm=0.0):
    """Names for levels 0..n_levels-1 (top to bottom; level i lies below disc i-1 and above disc i).
    ``heights_mm``: disc-to-disc height of each level (NaN for the partial top and bottom ones);
    ``resolution_mm``: how far a disc's position may be off (a level's height twice that)."""
    if sacrum is None or not sacrum.found:
        names = {i: f"vertebra {i + 1}" for i in range(n_levels)}
        warnings = [NO_ANCHOR + (f" ({sacrum.reason})" if sacrum is not None else "")]
        if sacrum is not None and sacrum.transitional:
            warnings.append("level count uncertain: " + sacrum.reason)
        return Naming(None, names, {}, warnings)
    s1_level = sacrum.disc + 1
    names, verse, warnings = {}, {}, []
    counted = []  # heights of the levels named so far, from L5 up
    for level in range(min(s1_level, n_levels - 1), -1, -1):
        number = S1 if level == s1_level else L5 - (s1_level - 1 - level)
        if number < 1:
            break
        if level < s1_level - MAX_ABOVE_S1:
            warnings.append(f"names stop at {names[level + 1]}, {MAX_ABOVE_S1} levels above S1: counted from the sacrum "
                            "alone, a disc missed further up would shift every name above it (the ribs are not used)")
            break
        height = None if heights_mm is None else heights_mm[level]
        if level != s1_level and height is not None and np.isfinite(height):
            problem = _implausible(height, counted, 2.0 * resolution_mm)
            if problem:
                warnings.append(f"names stop at {names[level + 1]}: the level above it is {height:.0f} mm from disc to "
                                f"disc, {problem}; counted from the sacrum, every name above it could be off by one")
                break
            counted.append(height)
        verse[level] = number
        names[level] = VERTEBRAE[number]
    notes = ["named from the sacrum up, disc by disc; the last rib was not used to check the count, so a "
             "lumbosacral transitional vertebra (six lumbar-type bodies, or a sacralised L5) cannot be excluded"]
    return Naming("sacrum", names, verse, warnings, notes)


def _implausible(height, counted, slack):
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
