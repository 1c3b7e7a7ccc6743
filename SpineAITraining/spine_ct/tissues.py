"""Tissue codes of the whole-spine CT phantom and the Hounsfield units drawn for them per case.

The first 18 codes are the cervical phantom's (SpineAITraining.cervical.tissues); the trunk
adds solid organs, kidneys, fluid (bladder, bowel), bowel wall and content, heart muscle and
vascular calcification. Bone is not a tissue code here: bones are rendered from their signed
distances with partial volume (see SpineAITraining.spine_ct.phantom), so their HU are drawn
separately (``draw_bone_hu``).
"""

import numpy as np

from SpineAITraining.cervical import tissues as C
from SpineAITraining.cervical.tissues import (  # noqa: F401
    AIR,
    BRAIN,
    CARTILAGE,
    CORD,
    CSF,
    DISC,
    FAT,
    GLAND,
    LUNG,
    METAL,
    MUSCLE,
    TABLE,
    TOOTH,
    VESSEL,
)

ORGAN, KIDNEY, FLUID, BOWEL, HEART, CALCIUM = range(len(C.NAMES), len(C.NAMES) + 6)
NAMES = C.NAMES + ("organ", "kidney", "fluid", "bowel", "heart", "calcification")
CONTRAST_PHASES = (None, "arterial", "portal")


def draw_hu(rng, contrast=None, oral_contrast=False):
    """Mean HU per tissue code for one case: the cervical table, then the trunk's tissues.

    ``contrast``: None, "arterial" or "portal" (portal venous): what enhances and how much.
    """
    if contrast not in CONTRAST_PHASES:
        raise ValueError(f"contrast must be one of {CONTRAST_PHASES}, got {contrast!r}")
    u = rng.uniform
    hu = np.zeros(len(NAMES), np.float32)
    hu[:len(C.NAMES)] = C.draw_hu(rng, contrast=False)
    blood = {None: u(35, 55), "arterial": u(250, 420), "portal": u(140, 210)}[contrast]
    hu[VESSEL] = blood
    hu[ORGAN] = {None: u(48, 65), "arterial": u(60, 80), "portal": u(95, 130)}[contrast]
    hu[KIDNEY] = {None: u(25, 40), "arterial": u(140, 220), "portal": u(140, 200)}[contrast]
    hu[FLUID] = u(250, 450) if oral_contrast else u(0, 18)
    hu[BOWEL] = u(20, 45) if contrast is None else u(60, 110)
    hu[HEART] = u(35, 50) if contrast is None else u(90, 130)
    hu[CALCIUM] = u(350, 900)
    return hu


def draw_bone_hu(rng, osteoporotic=False, age=50.0):
    """Cortex and base trabecular HU of one case (per-vertebra trabecular HU: see planted_trabecular_hu).

    L1's trabecular bone reads about 250 HU at 20-30 years and falls by about 1.7 HU a year
    (opportunistic CT screening cohorts, e.g. Jang et al., Radiology 2019), +- 30 HU between
    people; osteoporotic bone 55-110 HU (at or below 110 HU osteoporosis is likely, Pickhardt
    et al. 2013). The vertebral cortical shell is thin (0.2-0.5 mm, Silva et al. 1994), so its
    HU here is that of a shell of the drawn thickness, lower in osteoporosis.
    """
    u = rng.uniform
    normal = float(np.clip(265.0 - 1.7 * (age - 25.0) + rng.normal(0, 30), 115, 320))
    l1 = u(55, 110) if osteoporotic else normal
    cortex = u(500, 800) if osteoporotic else u(700, 1200)
    return {"l1_trabecular": float(l1), "cortex": float(cortex), "tooth": float(u(1800, 2600)), "metal": 3071.0}


def planted_trabecular_hu(rng, names, l1_hu, contrast=None):
    """{vertebra name: planted mean trabecular HU}: denser towards the neck (cervical bodies
    read about 1.5x lumbar ones), a slow fall down the lumbar spine, fatty sacrum, per-level
    jitter; contrast (portal venous) adds 5-25 HU to every body, as it does in patients."""
    boost = 0.0 if contrast is None else float(rng.uniform(5, 25))
    out = {}
    for name in names:
        region, number = name[0], int(name[1:]) if name[1:].isdigit() else 1
        if region == "C":
            factor = 1.55 - 0.03 * number
        elif region == "T":
            factor = 1.25 - 0.02 * number
        elif region == "L":
            factor = 1.0 - 0.025 * (number - 1)
        else:  # the sacrum: fatty marrow
            factor = 0.8
        out[name] = round(float(l1_hu * factor * rng.normal(1.0, 0.04) + boost), 1)
    return out
