"""Tissue codes of the CT phantom and the Hounsfield units drawn for them per case."""

import numpy as np

(AIR, LUNG, FAT, MUSCLE, VESSEL, GLAND, BRAIN, CSF, CORD, DISC, CARTILAGE, HEMATOMA,
 CORTEX, CANCELLOUS, IMPACTED, TOOTH, METAL, TABLE) = range(18)
NAMES = ("air", "lung", "fat", "muscle", "vessel", "gland", "brain", "csf", "cord", "disc", "cartilage", "hematoma",
         "cortex", "cancellous", "impacted", "tooth", "metal", "table")
BONE = (CORTEX, CANCELLOUS, IMPACTED)


def draw_hu(rng, contrast=False, osteoporotic=False):
    """Mean HU per tissue code for one case (literature ranges; bone density varies most)."""
    u = rng.uniform
    cancellous = u(110, 190) if osteoporotic else u(170, 340)
    hu = {
        AIR: u(-1010, -990), LUNG: u(-880, -800), FAT: u(-115, -85), MUSCLE: u(40, 60),
        VESSEL: u(220, 360) if contrast else u(35, 55), GLAND: u(85, 130), BRAIN: u(28, 40), CSF: u(3, 14),
        CORD: u(28, 40), DISC: u(70, 100), CARTILAGE: u(90, 220), HEMATOMA: u(50, 75),
        CORTEX: u(700, 1000) if osteoporotic else u(900, 1500), CANCELLOUS: cancellous,
        IMPACTED: cancellous + u(180, 380), TOOTH: u(1800, 2600), METAL: 3071.0, TABLE: u(150, 400),
    }
    return np.array([hu[c] for c in range(len(NAMES))], dtype=np.float32)
