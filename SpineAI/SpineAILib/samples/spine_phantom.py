"""A simple lumbar spine phantom, sampled onto any voxel grid.

Used for the demo and as test data where no real image fits (DICOM series with
planted problems, MRI-like and CT-like volumes of the same anatomy). Anatomy is
defined analytically in RAS millimetres, so a CT (axial grid) and an MRI
(sagittal grid) of the same phantom agree exactly on where every vertebra is.
It is not realistic enough to train models on; the workflows have their own
generators for that.
"""

import numpy as np

from SpineAILib.images import VolumeImage

LUMBAR_VERSE_NUMBERS = (20, 21, 22, 23, 24)  # VerSe numbers of L1..L5
BODY_HEIGHT = 26.0  # mm, superior-inferior
DISC_HEIGHT = 9.0
BODY_RADII = (22.0, 16.0)  # left-right, anterior-posterior
BODY_CENTRE_A = 18.0  # body centre, anterior of the canal
CANAL_RADIUS = 8.0

# Tissue codes and their intensities in each modality.
AIR, SOFT, FAT, BONE_SHELL, BONE, DISC, CSF, CORD = range(8)
CT_HU = {AIR: -1000, SOFT: 45, FAT: -90, BONE_SHELL: 900, BONE: 260, DISC: 85, CSF: 8, CORD: 35}
MR_T2 = {AIR: 0, SOFT: 55, FAT: 190, BONE_SHELL: 12, BONE: 115, DISC: 205, CSF: 245, CORD: 120}


def vertebra_centres_s(n=len(LUMBAR_VERSE_NUMBERS), top_s=0.0):
    """Superior coordinate (S, mm) of each vertebral body's centre, L1 first."""
    step = BODY_HEIGHT + DISC_HEIGHT
    return np.array([top_s - BODY_HEIGHT / 2 - i * step for i in range(n)])


def disc_centres_ras(top_s=0.0):
    """RAS centre of the discs below each lumbar body: L1/L2 ... L5/S1."""
    s = vertebra_centres_s(top_s=top_s) - BODY_HEIGHT / 2 - DISC_HEIGHT / 2
    return [np.array([0.0, BODY_CENTRE_A, v]) for v in s]


def tissues_and_labels(ras):
    """Tissue code and VerSe label for RAS points, shape (..., 3)."""
    x, y, z = ras[..., 0], ras[..., 1], ras[..., 2]
    tissue = np.full(x.shape, AIR, np.uint8)
    labels = np.zeros(x.shape, np.uint8)

    trunk = (x / 150) ** 2 + ((y - 55) / 105) ** 2
    tissue[trunk <= 1] = FAT
    tissue[trunk <= 0.8] = SOFT

    body_e = (x / BODY_RADII[0]) ** 2 + ((y - BODY_CENTRE_A) / BODY_RADII[1]) ** 2
    r_canal = np.hypot(x, y)
    centres = vertebra_centres_s()
    for label, cs in zip(LUMBAR_VERSE_NUMBERS, centres):
        dz = np.abs(z - cs)
        in_body = (body_e <= 1) & (dz <= BODY_HEIGHT / 2)
        shell = in_body & ((body_e >= 0.78) | (dz >= BODY_HEIGHT / 2 - 1.5))
        arch = (r_canal >= CANAL_RADIUS + 1) & (r_canal <= CANAL_RADIUS + 6) & (y < BODY_CENTRE_A - BODY_RADII[1] + 2) & (dz <= BODY_HEIGHT / 2 - 3)
        spinous = (np.abs(x) <= 3) & (y <= -CANAL_RADIUS - 4) & (y >= -45) & (np.abs(z - cs - 3) <= 8)
        bone = in_body | arch | spinous
        tissue[bone] = BONE
        tissue[shell | ((arch | spinous) & ~in_body)] = BONE_SHELL
        labels[bone] = label
        disc = (body_e <= 0.97) & (np.abs(z - (cs - BODY_HEIGHT / 2 - DISC_HEIGHT / 2)) < DISC_HEIGHT / 2)
        tissue[disc] = DISC
    canal = r_canal < CANAL_RADIUS
    tissue[canal] = CSF
    # The cord ends (conus) near L1/L2, as in an adult; below it the canal holds CSF (and roots).
    cord = (np.hypot(x, y + 1) < 3.5) & (z > centres[0] - BODY_HEIGHT / 2 - DISC_HEIGHT)
    tissue[cord] = CORD
    return tissue, labels


def grid_ras(shape_kji, ijk_to_ras):
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape_kji), indexing="ij")
    ijk = np.stack([i, j, k, np.ones_like(i)], axis=-1)
    return (ijk @ ijk_to_ras.T.astype(np.float32))[..., :3]


def make_phantom(modality="CT", shape_kji=(64, 128, 128), spacing=(1.5, 1.5, 3.0), plane="axial", noise=None, seed=0):
    """Return (image, labelmap) VolumeImages of the lumbar phantom.

    plane: "axial" (slices along S, the CT habit) or "sagittal" (slices along R,
    the MRI habit). The grid is centred on the L3 body.
    """
    rng = np.random.default_rng(seed)
    sp = np.asarray(spacing, dtype=float)
    if plane == "axial":  # I: R->L (as DICOM stores it), J: A->P, K: I->S
        directions = np.array([[-1, 0, 0], [0, -1, 0], [0, 0, 1]], float).T
    elif plane == "sagittal":  # I: A->P, J: S->I, K: L->R
        directions = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], float).T
    else:
        raise ValueError(f"plane must be axial or sagittal, not {plane!r}")
    matrix = np.eye(4)
    matrix[:3, :3] = directions * sp
    centre = np.array([0.0, 0.0, vertebra_centres_s()[2]])
    extent = (np.array(shape_kji[::-1]) - 1) * sp
    matrix[:3, 3] = centre - directions @ (extent / 2)

    # Slab by slab: a 512x512x300 grid of RAS points would need several GiB at once.
    tissue = np.empty(shape_kji, np.uint8)
    labels = np.empty(shape_kji, np.uint8)
    for k0 in range(0, shape_kji[0], 16):
        k1 = min(k0 + 16, shape_kji[0])
        slab = matrix.copy()
        slab[:3, 3] = matrix[:3, 3] + matrix[:3, 2] * k0
        tissue[k0:k1], labels[k0:k1] = tissues_and_labels(grid_ras((k1 - k0,) + tuple(shape_kji[1:]), slab))
    table = CT_HU if modality == "CT" else MR_T2
    values = np.zeros(tissue.shape, np.float32)
    for code, value in table.items():
        values[tissue == code] = value
    sigma = noise if noise is not None else (12.0 if modality == "CT" else 6.0)
    values += rng.normal(0, sigma, values.shape).astype(np.float32)
    if modality == "CT":
        voxels = np.clip(np.round(values), -1024, 3071).astype(np.int16)
    else:
        voxels = np.clip(np.round(values), 0, 255).astype(np.uint8)
    desc = f"SpineAI lumbar phantom ({modality}, {plane})"
    image = VolumeImage(voxels, matrix, modality=modality, description=desc, source="phantom")
    labelmap = VolumeImage(labels, matrix.copy(), modality=modality, description=desc + " labels", source="phantom", is_labelmap=True)
    return image, labelmap
