"""Synthetic lumbar MRI studies written in exactly the RSNA 2024 Kaggle layout.

No real RSNA data can reach this machine, so the whole train -> evaluate -> infer
path is exercised on studies drawn here: an analytic lumbar spine (T12 to S1, in
the spirit of SpineAILib.samples.spine_phantom, but with foramina, lateral recesses
and a canal that narrow as the drawn severities say) sampled onto three real DICOM
series per study (sagittal T1, sagittal T2/STIR, axial T2 stacks through the five
discs) with exact geometry, plus train.csv, train_label_coordinates.csv and
train_series_descriptions.csv. Sizes, positions, intensities, noise, field of view,
slice direction and axial tilt vary between studies so a model cannot learn a
fixed pixel position.

Anatomy lives in each study's local frame: RAS millimetres relative to the canal
axis (x right, y anterior, z superior); `Anatomy.tissue` answers for any RAS point,
which the tests use to check that labels land in the right structure.
"""

import csv
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from SpineAILib.images import VolumeImage
from SpineAILib.samples.dicom_writer import write_dicom_series
from SpineAILib.vocabulary import SEVERITY_GRADE_NAMES as GRADE_NAMES
from SpineAILib.workflows.lumbar.severity.submission import CONDITIONS, LEVELS, condition_group
from SpineAITraining.common.dataset_folder import TRUTH_FILE, prepare_output

LEVEL_NAMES = ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")
CONDITION_NAMES = (
    "Spinal Canal Stenosis",
    "Left Neural Foraminal Narrowing",
    "Right Neural Foraminal Narrowing",
    "Left Subarticular Stenosis",
    "Right Subarticular Stenosis",
)
SERIES_DESCRIPTIONS = ("Sagittal T1", "Sagittal T2/STIR", "Axial T2")
# The series each condition group's points are annotated on (as in the RSNA labels).
LABELLED_ON = {"spinal": "Sagittal T2/STIR", "foraminal": "Sagittal T1", "subarticular": "Axial T2"}

# Tissue codes.
AIR, SOFT, FAT, CORTEX, MARROW, POST_BONE, NUCLEUS, ANNULUS, CSF, ROOT, LIGAMENT, CORD = range(12)
TISSUE_NAMES = ("air", "soft", "fat", "cortex", "marrow", "posterior_bone", "nucleus", "annulus", "csf", "root", "ligament", "cord")
# Signal per sequence (arbitrary units): fat bright on T1 outlines the foramina; CSF bright on
# T2 outlines the canal and the lateral recesses. STIR suppresses fat.
SIGNAL = {
    "T1": {AIR: 0, SOFT: 300, FAT: 880, CORTEX: 60, MARROW: 600, POST_BONE: 420, NUCLEUS: 330, ANNULUS: 250,
           CSF: 130, ROOT: 300, LIGAMENT: 110, CORD: 380},
    "T2": {AIR: 0, SOFT: 230, FAT: 560, CORTEX: 40, MARROW: 320, POST_BONE: 230, NUCLEUS: 760, ANNULUS: 250,
           CSF: 950, ROOT: 210, LIGAMENT: 90, CORD: 400},
    "STIR": {AIR: 0, SOFT: 260, FAT: 70, CORTEX: 30, MARROW: 120, POST_BONE: 100, NUCLEUS: 720, ANNULUS: 230,
             CSF: 960, ROOT: 250, LIGAMENT: 80, CORD: 420},
}
# Fraction by which a structure narrows, drawn per grade: well separated, so grades are learnable.
NARROWING = ((0.0, 0.22), (0.40, 0.55), (0.68, 0.82))
# Grade frequencies (Normal/Mild, Moderate, Severe): the lower levels degenerate more often.
GRADE_P = {"upper": (0.74, 0.17, 0.09), "lower": (0.56, 0.26, 0.18)}
SIGMA_Z = 4.0  # mm: how far above and below a disc its narrowing reaches


@dataclass
class Anatomy:
    """One study's spine, in mm; ``offset`` moves the local frame into patient RAS."""

    offset: list
    canal_rx: float
    canal_ry: float
    gap: float  # canal front to vertebral body back
    body_rx: float
    body_ry: float
    body_height: float
    disc_height: float
    narrowing: dict = field(default_factory=dict)  # "condition|level" -> fraction 0..1

    # --- where things are (local frame)
    def body_centres_z(self):
        """T12, L1 ... L5, S1: L3 sits at z = 0."""
        step = self.body_height + self.disc_height
        return np.array([(3 - i) * step for i in range(7)], dtype=float)

    def discs_z(self):
        """L1/L2 ... L5/S1."""
        c = self.body_centres_z()
        return c[1:6] - self.body_height / 2 - self.disc_height / 2

    def body_cy(self):
        return self.canal_ry + self.gap + self.body_ry

    def foramen_x(self):
        return self.canal_rx + 6.0

    def n(self, condition, level):
        return float(self.narrowing.get(f"{condition}|{level}", 0.0))

    def _profile(self, condition, z):
        """Narrowing along z: each disc's fraction spread over +-SIGMA_Z."""
        out = np.zeros_like(z)
        for level, zd in zip(LEVELS, self.discs_z()):
            n = self.n(condition, level)
            if n:
                out = np.maximum(out, n * np.exp(-0.5 * ((z - zd) / SIGMA_Z) ** 2))
        return out

    def label_points_local(self, level):
        """Local coordinates of the five labelled points at a level (RSNA's annotation habit)."""
        i = LEVELS.index(level)
        zd = self.discs_z()[i]
        ns = self.n("spinal_canal_stenosis", level)
        points = {"spinal_canal_stenosis": (0.0, -0.2 * ns * self.canal_ry, zd)}
        for side, sign in (("left", -1.0), ("right", 1.0)):  # patient left is -x in RAS
            points[f"{side}_neural_foraminal_narrowing"] = (sign * self.foramen_x(), -2.0, zd + 3.0)
            points[f"{side}_subarticular_stenosis"] = (sign * (self.canal_rx + 0.5), 0.45 * self.canal_ry, zd)
        return points

    def to_ras(self, local):
        return np.asarray(local, dtype=float) + np.asarray(self.offset, dtype=float)

    # --- what is where
    def tissue(self, ras):
        """Tissue code at RAS points, shape (..., 3) -> (...)."""
        p = np.asarray(ras, dtype=np.float32) - np.asarray(self.offset, dtype=np.float32)
        x, y, z = p[..., 0], p[..., 1], p[..., 2]
        t = np.full(x.shape, AIR, np.uint8)
        trunk = (x / 130) ** 2 + ((y - 30) / 95) ** 2
        t[trunk <= 1] = FAT
        t[trunk <= 0.82] = SOFT

        rx, ry = self.canal_rx, self.canal_ry
        centres = self.body_centres_z()
        half = self.body_height / 2
        nearest_body = np.min(np.abs(z[..., None] - centres), axis=-1)
        # Posterior arch: lamina ring per vertebra, ligamentum flavum between them; spinous processes.
        ring = ((x / (rx + 7)) ** 2 + (y / (ry + 7)) ** 2 <= 1) & (y <= 2)
        t[ring] = np.where(nearest_body[ring] <= half + 1, POST_BONE, LIGAMENT)
        spinous = (np.abs(x) <= 3) & (y <= -(ry + 5)) & (y >= -42)
        spinous &= np.min(np.abs(z[..., None] - (centres - 4)), axis=-1) <= 9
        t[spinous] = POST_BONE
        # Pedicles and facets: a bony column each side, cut by the foramina below.
        column = (np.abs(x) >= rx - 1) & (np.abs(x) <= rx + 13) & (y >= -12) & (y <= ry + self.gap)
        t[column] = POST_BONE

        e = (x / self.body_rx) ** 2 + ((y - self.body_cy()) / self.body_ry) ** 2
        for zc in centres:
            dz = np.abs(z - zc)
            body = (e <= 1) & (dz <= half)
            t[body] = MARROW
            t[body & ((e >= 0.8) | (dz >= half - 1.2))] = CORTEX
        for zd in self.discs_z():
            disc = (e <= 1.05) & (np.abs(z - zd) < self.disc_height / 2)
            t[disc] = ANNULUS
            t[disc & (e <= 0.55)] = NUCLEUS

        self._foramina(t, x, y, z)
        self._canal(t, x, y, z)
        return t

    def _foramina(self, t, x, y, z):
        fx = self.foramen_x()
        for side, sign in (("left", -1.0), ("right", 1.0)):
            across = np.abs(x - sign * fx) <= 7.5
            for level, zd in zip(LEVELS, self.discs_z()):
                n = self.n(f"{side}_neural_foraminal_narrowing", level)
                scale = 1 - 0.65 * n
                fz = zd + 3.0
                fat = across & (((y + 2) / (5 * scale)) ** 2 + ((z - fz) / (7 * scale)) ** 2 <= 1)
                t[fat] = FAT
                t[across & ((y + 2) ** 2 + (z - fz - 2.5 * scale) ** 2 <= 2.0**2)] = ROOT

    def _canal(self, t, x, y, z):
        rx, ry = self.canal_rx, self.canal_ry
        n = self._profile("spinal_canal_stenosis", z)
        # Disc bulge from the front (1.2 n) and ligament from behind (0.8 n) close the canal.
        cy = -0.2 * n * ry
        half_y = ry * (1 - n)
        half_x = rx * (1 - 0.35 * n)
        normal = (x / rx) ** 2 + (y / ry) ** 2 <= 1
        open_ = (x / half_x) ** 2 + ((y - cy) / np.maximum(half_y, 0.3)) ** 2 <= 1
        lost = normal & ~open_
        t[lost] = np.where(y[lost] > cy[lost], ANNULUS, LIGAMENT)
        t[open_] = CSF
        # Conus above L1/L2, cauda equina roots below it.
        cord = ((x ** 2 + (y + 1) ** 2) <= 4.0**2) & (z > self.discs_z()[0] + 10)
        for rx_root, ry_root in ((-2.5, -3.0), (2.5, -3.0), (-5.0, -1.0), (5.0, -1.0)):
            t[open_ & ~cord & ((x - rx_root) ** 2 + (y - ry_root) ** 2 <= 0.9**2)] = ROOT
        t[open_ & cord] = CORD
        # Lateral recesses: shrink (facet and ligament grow in) as subarticular stenosis says.
        for side, sign in (("left", -1.0), ("right", 1.0)):
            ns = self._profile(f"{side}_subarticular_stenosis", z)
            cx, cyr = sign * (rx + 0.5), 0.45 * ry
            normal_r = ((x - cx) / 3.5) ** 2 + ((y - cyr) / 3.0) ** 2 <= 1
            s = np.maximum(1 - 0.75 * ns, 0.1)
            open_r = ((x - cx) / (3.5 * s)) ** 2 + ((y - cyr) / (3.0 * s)) ** 2 <= 1
            t[normal_r & ~open_r] = LIGAMENT
            t[open_r] = CSF
            t[open_r & ((x - cx) ** 2 + (y - cyr) ** 2 <= (1.6 * (1 - 0.4 * ns)) ** 2)] = ROOT


# ---------------------------------------------------------------- drawing a study


def _draw_anatomy(rng):
    return Anatomy(
        offset=[float(rng.uniform(-5, 5)), float(rng.uniform(-8, 8)), float(rng.uniform(-10, 10))],
        canal_rx=float(rng.uniform(9.0, 11.0)),
        canal_ry=float(rng.uniform(6.0, 7.5)),
        gap=float(rng.uniform(1.0, 2.5)),
        body_rx=float(rng.uniform(19.0, 23.0)),
        body_ry=float(rng.uniform(13.0, 16.0)),
        body_height=float(rng.uniform(24.0, 28.0)),
        disc_height=float(rng.uniform(8.0, 10.5)),
    )


def _draw_grades(rng, anatomy):
    grades = {}
    for condition in CONDITIONS:
        for i, level in enumerate(LEVELS):
            p = GRADE_P["lower" if i >= 3 else "upper"]
            g = int(rng.choice(3, p=p))
            grades[(condition, level)] = g
            lo, hi = NARROWING[g]
            anatomy.narrowing[f"{condition}|{level}"] = float(rng.uniform(lo, hi))
    return grades


def _render(anatomy, shape_kji, matrix, sequence, rng, gain, noise):
    from SpineAILib.samples.spine_phantom import grid_ras

    tissue = anatomy.tissue(grid_ras(shape_kji, matrix))
    table = SIGNAL[sequence]
    lut = np.array([table[c] for c in range(len(TISSUE_NAMES))], np.float32) * gain
    values = lut[tissue]
    # A gentle coil shading across the field of view, then Rician-like noise.
    ramp = np.linspace(-0.12, 0.12, shape_kji[1], dtype=np.float32)[None, :, None] * rng.uniform(-1, 1)
    values = values * (1 + ramp)
    values = np.hypot(values + rng.normal(0, noise, values.shape), rng.normal(0, noise, values.shape))
    return np.clip(np.rint(values), 0, 4095).astype(np.uint16)


def _sagittal_matrix(rng, anatomy, n_slices, spacing_k, rows, cols, fov):
    """I: anterior -> posterior, J: superior -> inferior, K: along x (either way)."""
    pixel = fov / rows
    direction_k = 1.0 if rng.random() < 0.5 else -1.0
    directions = np.array([[0, -1, 0], [0, 0, -1], [direction_k, 0, 0]], float).T
    centre_local = np.array([rng.uniform(-2, 2), rng.uniform(0, 14), rng.uniform(-8, 8)])
    centre = anatomy.to_ras(centre_local)
    matrix = np.eye(4)
    matrix[:3, :3] = directions * np.array([pixel, pixel, spacing_k])
    extent = (np.array([cols, rows, n_slices]) - 1) * np.array([pixel, pixel, spacing_k])
    matrix[:3, 3] = centre - directions @ (extent / 2)
    return matrix


def _axial_matrix(rng, anatomy, zd, n_slices, spacing_k, size, fov):
    """One stack through a disc: I right -> left, J anterior -> posterior, K superior -> inferior, tilted."""
    pixel = fov / size
    tilt = np.radians(rng.uniform(-6, 6))
    c, s = np.cos(tilt), np.sin(tilt)
    rotation = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])  # about x: the disc's own angle
    directions = rotation @ np.array([[-1, 0, 0], [0, -1, 0], [0, 0, -1]], float).T
    centre = anatomy.to_ras([rng.uniform(-3, 3), rng.uniform(2, 14), zd + rng.uniform(-1.5, 1.5)])
    matrix = np.eye(4)
    matrix[:3, :3] = directions * np.array([pixel, pixel, spacing_k])
    extent = (np.array([size, size, n_slices]) - 1) * np.array([pixel, pixel, spacing_k])
    matrix[:3, 3] = centre - directions @ (extent / 2)
    return matrix


def _write_series(stacks, folder, description, study_id, series_id, frame_uid, first_instance=1):
    """Write [(voxels, matrix)] as one series of files `<instance>.dcm`, numbered in order."""
    folder.mkdir(parents=True, exist_ok=True)
    instance = first_instance
    numbers = []
    with tempfile.TemporaryDirectory(dir=folder.parent) as temp:
        for s, (voxels, matrix) in enumerate(stacks):
            image = VolumeImage(voxels, matrix, modality="MR", description=description)
            paths = write_dicom_series(
                image, Path(temp) / str(s), modality="MR", series_description=description,
                patient_name="Synthetic^Phantom", patient_id=str(study_id), study_uid=str(study_id),
                series_uid=str(series_id), rescale=(1.0, 0.0),
            )
            stack_numbers = []
            for path in paths:
                ds = pydicom.dcmread(path)
                ds.InstanceNumber = instance
                ds.FrameOfReferenceUID = frame_uid
                ds.save_as(folder / f"{instance}.dcm", enforce_file_format=True)
                stack_numbers.append(instance)
                instance += 1
            numbers.append(stack_numbers)
    return numbers


def _distinct_ids(rng, n, low, high):
    ids = []
    while len(ids) < n:
        value = int(rng.integers(low, high))
        if value not in ids:
            ids.append(value)
    return ids


def _pixel_of(matrix, ras):
    """(k, column x, row y) of a RAS point in a stack (k as a float)."""
    i, j, k = (np.linalg.inv(matrix) @ np.append(ras, 1.0))[:3]
    return float(k), float(i), float(j)


def generate_study(folder, study_id, rng, *, sequence_t2=None):
    """Write one study's three series under ``folder/<study_id>``; return its labels and truth."""
    anatomy = _draw_anatomy(rng)
    grades = _draw_grades(rng, anatomy)
    frame_uid = pydicom.uid.generate_uid()
    series_ids = _distinct_ids(rng, 3, 10**6, 10**9)
    study_dir = folder / str(study_id)
    sequence_t2 = sequence_t2 or ("STIR" if rng.random() < 0.3 else "T2")

    # Sagittal T1 and T2/STIR: own grids (real protocols differ), the same patient.
    sag = {}
    for name, sequence, sid in (("Sagittal T1", "T1", series_ids[0]), ("Sagittal T2/STIR", sequence_t2, series_ids[1])):
        n = int(rng.choice([15, 17, 19]))
        size = int(rng.choice([112, 128, 144]))
        matrix = _sagittal_matrix(rng, anatomy, n, float(rng.uniform(3.3, 4.0)), size, size, float(rng.uniform(190, 230)))
        gain, noise = float(rng.uniform(0.7, 1.4)), float(rng.uniform(15, 45))
        voxels = _render(anatomy, (n, size, size), matrix, sequence, rng, gain, noise)
        numbers = _write_series([(voxels, matrix)], study_dir / str(sid), name, study_id, sid, frame_uid)
        sag[name] = (sid, [(matrix, numbers[0], n)])

    # Axial T2: a short stack through each disc, each tilted to its own angle.
    stacks, axial_geometry = [], []
    size, fov = int(rng.choice([96, 104, 112])), float(rng.uniform(140, 170))
    gain, noise = float(rng.uniform(0.7, 1.4)), float(rng.uniform(15, 45))
    for zd in anatomy.discs_z():
        n = int(rng.choice([3, 4, 5]))
        matrix = _axial_matrix(rng, anatomy, zd, n, float(rng.uniform(3.5, 4.5)), size, fov)
        stacks.append((_render(anatomy, (n, size, size), matrix, "T2", rng, gain, noise), matrix))
        axial_geometry.append((matrix, n))
    numbers = _write_series(stacks, study_dir / str(series_ids[2]), "Axial T2", study_id, series_ids[2], frame_uid)
    sag["Axial T2"] = (series_ids[2], [(m, nums, n) for (m, n), nums in zip(axial_geometry, numbers)])

    # Labelled coordinates: the slice nearest each point, and the point projected onto it.
    coordinates = []
    for level, level_name in zip(LEVELS, LEVEL_NAMES):
        for condition, local in anatomy.label_points_local(level).items():
            sid, stacks_geometry = sag[LABELLED_ON[condition_group(condition)]]
            ras = anatomy.to_ras(local)
            best = None
            for matrix, instance_numbers, n in stacks_geometry:
                k, x, y = _pixel_of(matrix, ras)
                kr = int(round(k))
                if 0 <= kr < n and (best is None or abs(k - kr) < best[0]):
                    best = (abs(k - kr), instance_numbers[kr], x, y)
            if best is None:
                continue  # out of the series' coverage: RSNA has no coordinate then either
            coordinates.append({
                "study_id": study_id, "series_id": sid, "instance_number": best[1],
                "condition": CONDITION_NAMES[CONDITIONS.index(condition)], "level": level_name,
                "x": round(best[2], 3), "y": round(best[3], 3),
            })
    descriptions = [{"study_id": study_id, "series_id": sag[d][0], "series_description": d} for d in SERIES_DESCRIPTIONS]
    wide = {"study_id": study_id}
    for condition in CONDITIONS:
        for level in LEVELS:
            wide[f"{condition}_{level}"] = GRADE_NAMES[grades[(condition, level)]]
    truth = {"study_id": study_id, "sequence_t2": sequence_t2, "anatomy": asdict(anatomy),
             "series": {d: sag[d][0] for d in SERIES_DESCRIPTIONS},
             "axial_stacks": dict(zip(LEVELS, numbers))}  # instance numbers of the stack through each disc
    return wide, coordinates, descriptions, truth


def _write_csv(path, rows, columns):
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


GENERATOR = "SpineAITraining.lumbar.severity.generator"
OWNED = ("train_images", "train.csv", "train_label_coordinates.csv", "train_series_descriptions.csv", TRUTH_FILE)


def generate(out_dir, n_studies, seed=0, overwrite=False):
    """Write ``n_studies`` synthetic studies in the RSNA 2024 training layout; return the study ids.

    Also writes generator_truth.json (anatomy per study; not part of Kaggle's layout).
    """
    out_dir = prepare_output(out_dir, GENERATOR, overwrite, OWNED)
    images = out_dir / "train_images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = sorted(_distinct_ids(rng, n_studies, 10**7, 10**8))
    wide, coordinates, descriptions, truth = [], [], [], []
    for study_id in ids:
        w, c, d, t = generate_study(images, study_id, np.random.default_rng([seed, study_id]))
        wide.append(w)
        coordinates.extend(c)
        descriptions.extend(d)
        truth.append(t)
    _write_csv(out_dir / "train.csv", wide, ["study_id"] + [f"{c}_{l}" for c in CONDITIONS for l in LEVELS])
    _write_csv(out_dir / "train_label_coordinates.csv", coordinates,
               ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"])
    _write_csv(out_dir / "train_series_descriptions.csv", descriptions, ["study_id", "series_id", "series_description"])
    (out_dir / TRUTH_FILE).write_text(
        json.dumps({"generator": GENERATOR, "seed": seed, "studies": truth}, indent=1) + "\n",
        encoding="utf-8",
    )
    return ids


def anatomy_of(truth_entry):
    """The Anatomy of one generator_truth.json study entry."""
    return Anatomy(**truth_entry["anatomy"])


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Write synthetic lumbar MRI studies in the RSNA 2024 Kaggle layout.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    ids = generate(args.out, args.studies, args.seed, overwrite=args.overwrite)
    print(f"wrote {len(ids)} synthetic studies to {args.out}")
    return 0


if __name__ == "__main__":
    from SpineAILib.errors import run_reporting_errors

    raise SystemExit(run_reporting_errors("generator", main))
