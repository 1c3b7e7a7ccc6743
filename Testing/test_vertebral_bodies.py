"""Vertebral body measurements (SpineAILib.vertebral_bodies): heights, Genant grades, core attenuation and
the L1 bone-density flag, on phantoms of known geometry and on the real thoraco-lumbar CT."""

import json

import numpy as np
import pytest
from conftest import SHARED_DATA, require

from SpineAILib.errors import InputError
from SpineAILib.images import VolumeImage
from SpineAILib.vertebral_bodies import (BAND_FRACTIONS, CUT_NOTE, GENANT_SOURCE, PICKHARDT_SOURCE, TSV_COLUMNS,
                                         genant, l1_bone_density, measure_vertebral_bodies, tsv_text)

# The phantom's bodies, in mm: width (left-right), depth (anterior-posterior), posterior height.
WIDTH, DEPTH, HEIGHT, DISC = 44.0, 34.0, 28.0, 8.0
TRABECULAR_HU, CORTEX_HU, ARCH_HU, SOFT_HU = 150.0, 800.0, 500.0, 40.0
CORTEX_MM = 1.5


def _rotation(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    t = np.radians(degrees)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def _height(shape, y):
    """Body height (mm) at anterior coordinate ``y`` (0 = mid-depth, +DEPTH/2 = anterior wall)."""
    kind, value = shape
    if kind == "box":
        return np.full_like(y, HEIGHT * value)
    if kind in ("wedge", "superior wedge"):  # ``value``: anterior / posterior height where those heights are read
        y_anterior, y_posterior = DEPTH / 2 - 0.1 * DEPTH, -DEPTH / 2 + 0.1 * DEPTH
        return HEIGHT * (1 + (value - 1) * (y - y_posterior) / (y_anterior - y_posterior))
    if kind == "biconcave":  # ``value``: the depth of the central depression, a fraction of the height
        return HEIGHT * (1 - value * np.clip(1 - (2 * y / DEPTH) ** 2, 0, None))
    raise ValueError(kind)


def _endplates(shape, z, y):
    """(inside, mm from the nearest endplate) at height ``z`` along the body's axis: the body spans -h/2..+h/2
    (both endplates tilt alike), or for a "superior wedge" -H/2..-H/2 + h (the inferior endplate intact,
    square to the walls, as in most osteoporotic wedge fractures)."""
    h = _height(shape, y)
    bottom = -HEIGHT / 2 if shape[0] == "superior wedge" else -h / 2
    return (z >= bottom) & (z <= bottom + h), np.minimum(z - bottom, bottom + h - z)


def _truth(shape):
    """Heights as the module defines them: the median over each band's depths (lines along the axis)."""
    out = {}
    for band, fractions in BAND_FRACTIONS.items():
        y = np.array([DEPTH / 2 - f * DEPTH for f in fractions])
        out[band] = float(np.median(_height(shape, y)))
    return out


def _phantom(middle=("box", 1.0), sagittal=20.0, coronal=10.0, axial=0.0, spacing=(0.8, 1.0, 1.4), flips=(-1, -1, 1),
             arch=True, focus=False, crop_top_mm=None):
    """(ct, labels, axes) of T12, L1, L2 stacked along a tilted spine; L1 has the ``middle`` shape.

    Bodies: trabecular core 150 HU in a 1.5 mm cortex of 800 HU; with ``arch`` the labels also hold
    pedicles, lamina, spinous and transverse processes (500 HU) around a 12 mm deep canal. Voxel
    axes i, j, k of ``spacing`` mm point along ``flips`` x (R, A, S). ``focus`` plants a 1000 HU
    sphere of 3 mm radius in L1's core; ``crop_top_mm`` cuts the image that far above the stack's
    centre (so T12 reaches the edge).
    """
    rotation = _rotation((0, 1, 0), coronal) @ _rotation((1, 0, 0), sagittal) @ _rotation((0, 0, 1), axial)
    lateral, anterior, superior = rotation.T
    size = np.array([110.0, 150.0, 150.0])  # mm along R, A, S, centred on the stack
    spacing = np.asarray(spacing, float)
    shape_ijk = np.round(size / spacing).astype(int)
    matrix = np.eye(4)
    matrix[:3, :3] = np.diag(np.asarray(flips) * spacing)
    matrix[:3, 3] = -np.asarray(flips) * spacing * (shape_ijk - 1) / 2.0
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape_ijk[::-1]), indexing="ij")
    ras = [matrix[a, 0] * i + matrix[a, 1] * j + matrix[a, 2] * k + matrix[a, 3] for a in range(3)]
    x = sum(lateral[a] * ras[a] for a in range(3))
    y = sum(anterior[a] * ras[a] for a in range(3))
    z0 = sum(superior[a] * ras[a] for a in range(3))
    labels = np.zeros(x.shape, np.uint8)
    hu = np.full(x.shape, SOFT_HU, np.float32)
    for value, offset, shape in ((19, HEIGHT + DISC, ("box", 1.0)), (20, 0.0, middle), (21, -(HEIGHT + DISC), ("box", 1.0))):
        z = z0 - offset
        between, from_endplate = _endplates(shape, z, y)
        body = (np.abs(x) <= WIDTH / 2) & (np.abs(y) <= DEPTH / 2) & between
        edge = np.minimum.reduce([WIDTH / 2 - np.abs(x), DEPTH / 2 - np.abs(y), from_endplate])
        hu[body] = np.where(edge[body] < CORTEX_MM, CORTEX_HU, TRABECULAR_HU)
        labels[body] = value
        if arch:
            back = -DEPTH / 2 - y  # mm behind the posterior wall
            pedicles = (np.abs(x) >= 11) & (np.abs(x) <= 18) & (back > 0) & (back <= 12) & (z >= -6) & (z <= 8)
            lamina = (np.abs(x) <= 18) & (back > 12) & (back <= 20) & (z >= -8) & (z <= 8)
            spinous = (np.abs(x) <= 3) & (back > 20) & (back <= 45) & (z >= -10) & (z <= 5)
            transverse = (np.abs(x) > 18) & (np.abs(x) <= 36) & (back > 3) & (back <= 10) & (z >= -3) & (z <= 5)
            parts = (pedicles | lamina | spinous | transverse) & ~body
            labels[parts] = value
            hu[parts] = ARCH_HU
    if focus:
        sphere = (x**2 + y**2 + z0**2) <= 3.0**2
        hu[sphere] = 1000.0
    if crop_top_mm is not None:
        keep = int(np.ceil((crop_top_mm - matrix[2, 3]) / matrix[2, 2]))  # slices (k) up to that height
        labels, hu = labels[:keep], hu[:keep]
    ct = VolumeImage(hu, matrix, modality="CT")
    return ct, VolumeImage(labels, matrix, is_labelmap=True), (lateral, anterior, superior)


def _by_name(rows):
    return {row["name"]: row for row in rows}


@pytest.fixture(scope="module")
def box_stack():
    ct, labels, axes = _phantom()
    return measure_vertebral_bodies(ct, labels), axes


def test_a_height_tolerance_makes_a_grade_borderline_and_says_so():
    """Equal boxes grade 0; with each height allowed 5 mm off (an outline's tolerance, not the voxel's), a loss up
    to about a third is within reach: still grade 0, now borderline 0-2, and the note names the tolerance."""
    ct, labels, _ = _phantom()
    for row in measure_vertebral_bodies(ct, labels, height_tolerance_mm=5.0):
        assert row["genant_grade"] == 0 and row["genant_borderline"] and row["genant_grade_range"] == [0, 2], row
        assert any("the outline's tolerance (5.0 mm)" in n for n in row["notes"]), row["notes"]


def test_box_heights_axes_and_core_on_an_oblique_anisotropic_grid(box_stack):
    rows, (lateral, anterior, superior) = box_stack
    assert [r["name"] for r in rows] == ["T12", "L1", "L2"]
    for row in rows:
        assert not row["cut_by_field_of_view"] and not row["label_touches_edge"]
        for band in BAND_FRACTIONS:
            assert row[f"{band}_height_mm"] == pytest.approx(HEIGHT, abs=1.0), (row["name"], band)
        assert row["depth_mm"] == pytest.approx(DEPTH, abs=1.0)
        assert row["width_mm"] == pytest.approx(WIDTH, abs=1.0)
        assert np.dot(row["superior_axis"], superior) > np.cos(np.radians(2))
        assert np.dot(row["anterior_axis"], anterior) > np.cos(np.radians(2))
        # the arch is not body: the body volume is the box's, the label's is larger
        assert row["body_volume_ml"] == pytest.approx(WIDTH * DEPTH * HEIGHT / 1000, rel=0.04)
        assert row["volume_ml"] > row["body_volume_ml"] * 1.2
        # the planted trabecular value, the 800 HU cortex never in the core
        assert row["hu_mean"] == TRABECULAR_HU and row["hu_median"] == TRABECULAR_HU and row["core_voxels"] > 1000
        assert row["genant_grade"] == 0 and row["genant_morphology"] is None and not row["genant_borderline"]
    l1 = _by_name(rows)["L1"]
    assert l1["genant_reference"] == "own posterior height" and l1["height_loss_neighbours"] == pytest.approx(0, abs=0.04)


def test_box_heights_with_axial_rotation_and_body_only_labels():
    ct, labels, _ = _phantom(axial=10.0, arch=False, spacing=(1.0, 0.7, 1.2), flips=(1, -1, 1), sagittal=-15, coronal=-8)
    for row in measure_vertebral_bodies(ct, labels):
        for band in BAND_FRACTIONS:
            assert row[f"{band}_height_mm"] == pytest.approx(HEIGHT, abs=1.0), (row["name"], band)
        assert row["body_volume_ml"] == pytest.approx(row["volume_ml"])  # no canal: the label is all body


@pytest.mark.parametrize("shape, grade, morphology, reference", [
    (("wedge", 0.60), 3, "wedge", "own"),  # a 40 % loss: Genant's grade 3 starts there (borderline by design)
    (("wedge", 0.78), 1, "wedge", "own"),
    # middle 77 % of its own posterior height (grade 1), 68 % of the neighbours' (grade 2): they grade it
    (("biconcave", 0.32), 2, "biconcave", "neighbours"),
])  # fmt: skip
def test_deformed_l1_heights_and_genant_grade(shape, grade, morphology, reference):
    ct, labels, _ = _phantom(middle=shape)
    l1 = _by_name(measure_vertebral_bodies(ct, labels))["L1"]
    truth = _truth(shape)
    for band in BAND_FRACTIONS:
        assert l1[f"{band}_height_mm"] == pytest.approx(truth[band], abs=1.0), band
    assert (l1["genant_grade"], l1["genant_morphology"]) == (grade, morphology), l1
    assert l1["genant_reference"].startswith({"own": "own posterior height", "neighbours": "neighbours'"}[reference])
    assert l1["hu_mean"] == TRABECULAR_HU


@pytest.mark.parametrize("sagittal", [20.0, -25.0])
def test_a_superior_endplate_wedge_is_measured_along_the_mean_endplate_normal(sagittal):
    """The intact inferior endplate and the collapsed superior one are 22 degrees apart: heights are read along
    the normal halfway between them (a planar wedge keeps its height ratios along it; absolute heights read about
    2 % short, the cosine of half that angle squared), not along the principal axis, which leans 19 degrees."""
    shape = ("superior wedge", 0.60)
    ct, labels, (_, _, superior) = _phantom(middle=shape, sagittal=sagittal)
    l1 = _by_name(measure_vertebral_bodies(ct, labels))["L1"]
    truth = _truth(shape)
    for band in BAND_FRACTIONS:
        assert l1[f"{band}_height_mm"] == pytest.approx(truth[band], abs=1.5), band
    assert l1["anterior_height_mm"] / l1["posterior_height_mm"] == pytest.approx(0.60, abs=0.03)
    assert (l1["genant_grade"], l1["genant_morphology"]) == (3, "wedge")
    tilt = np.degrees(np.arccos(np.dot(l1["superior_axis"], superior)))
    assert 8.0 <= tilt <= 14.0  # halfway to the collapsed endplate's normal


def test_crush_is_graded_against_the_neighbours():
    ct, labels, _ = _phantom(middle=("box", 0.65))
    rows = _by_name(measure_vertebral_bodies(ct, labels))
    l1 = rows["L1"]
    assert l1["posterior_height_mm"] == pytest.approx(0.65 * HEIGHT, abs=1.0)
    assert l1["height_loss_own"] == pytest.approx(0, abs=0.05)  # its own shape is a box
    assert (l1["genant_grade"], l1["genant_morphology"]) == (2, "crush")
    assert l1["genant_reference"] == "neighbours' mean posterior height (T12, L2)"
    assert rows["T12"]["genant_grade"] == 0 == rows["L2"]["genant_grade"]  # their only neighbour is lower, not they


def test_a_dense_focus_is_left_out_of_the_core_mean():
    ct, labels, _ = _phantom(focus=True)
    l1 = _by_name(measure_vertebral_bodies(ct, labels))["L1"]
    assert l1["core_focus_voxels"] > 20
    assert l1["hu_mean"] == TRABECULAR_HU and l1["hu_median"] == TRABECULAR_HU
    assert any("focus" in note for note in l1["notes"])


def test_metal_in_a_vertebra_withholds_its_attenuation_not_its_heights():
    """Pedicle screws (3071 HU, the scanner's ceiling) in L1's arch: its core is not read, and L1's bone density
    flag says why; its heights and grade are still measured (a held-out phantom read 564 HU for a planted 282)."""
    ct, labels, _ = _phantom()
    hu = np.asarray(ct.voxels).copy()
    arch = (np.asarray(labels.voxels) == 20) & (hu == ARCH_HU)
    screw = np.argwhere(arch)[:: max(1, int(arch.sum()) // 40)]  # a few dozen arch voxels of L1
    hu[tuple(screw.T)] = 3071.0
    rows = _by_name(measure_vertebral_bodies(VolumeImage(hu, ct.ijk_to_ras, modality="CT"), labels))
    l1 = rows["L1"]
    assert l1["hu_mean"] is None and l1["core_voxels"] is None
    assert any(note.startswith("metal in or beside the vertebra") for note in l1["notes"]), l1["notes"]
    assert l1["middle_height_mm"] is not None and l1["genant_grade"] == 0
    flag = l1_bone_density(list(rows.values()))
    assert flag["flag"] is None and "metal" in flag["text"] and "not assessed" in flag["text"]


def test_metal_away_from_a_vertebra_does_not_withhold_its_attenuation():
    """Dense metal-like voxels in L1's box but over 3 mm from its label (a calcified aorta, bowel contrast)."""
    from SpineAILib.morphology import max_filter

    ct, labels, _ = _phantom()
    hu, l1 = np.asarray(ct.voxels).copy(), np.asarray(labels.voxels) == 20
    lo, hi = np.argwhere(l1).min(axis=0), np.argwhere(l1).max(axis=0) + 1
    box = np.zeros_like(l1)
    box[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    spacing_kji = np.linalg.norm(ct.ijk_to_ras[:3, :3], axis=0)[::-1]
    near = max_filter(l1, [int(np.ceil(6.0 / sp)) for sp in spacing_kji], fill=False)
    far = np.argwhere(box & ~near & (np.asarray(labels.voxels) == 0))
    assert len(far) > 20
    hu[tuple(far[:: max(1, len(far) // 30)].T)] = 3071.0
    l1_row = _by_name(measure_vertebral_bodies(VolumeImage(hu, ct.ijk_to_ras, modality="CT"), labels))["L1"]
    assert l1_row["hu_mean"] == TRABECULAR_HU and not any(n.startswith("metal") for n in l1_row["notes"])


def test_a_body_at_the_image_edge_is_cut_by_the_field_of_view():
    ct, labels, _ = _phantom(crop_top_mm=HEIGHT + DISC)  # through T12's centre
    rows = _by_name(measure_vertebral_bodies(ct, labels))
    t12, l1 = rows["T12"], rows["L1"]
    assert t12["cut_by_field_of_view"] and CUT_NOTE in t12["notes"]
    assert t12["anterior_height_mm"] is None and t12["genant_grade"] is None and t12["hu_mean"] is None
    assert t12["body_volume_ml"] is None and t12["volume_ml"] > 0
    assert l1["genant_grade"] == 0 and l1["height_loss_neighbours"] is not None  # graded against L2 alone


def test_genant_thresholds_and_borderline():
    assert genant(30, 30, 30)["grade"] == 0
    assert genant(24.3, 30, 30)["grade"] == 0  # 19 %
    assert genant(23.7, 30, 30)["grade"] == 1  # 21 %
    assert genant(21.0, 30, 30)["grade"] == 2  # 30 %
    assert genant(18.0, 30, 30)["grade"] == 3  # 40 % or more (Genant 1993)
    assert genant(30, 20.0, 30)["morphology"] == "biconcave"
    result = genant(23.7, 30, 30, resolution_mm=3.0)
    assert result["borderline"] and result["grade_range"] == [0, 2]
    assert not genant(23.7, 30, 30, resolution_mm=0.2)["borderline"]
    assert "1137" in GENANT_SOURCE and "Genant" in GENANT_SOURCE


@pytest.mark.parametrize("hu, flag", [(95.0, "low"), (110.0, "low"), (135.0, "indeterminate"),
                                      (160.0, "indeterminate"), (161.0, "normal")])  # fmt: skip
def test_l1_bone_density_flag(hu, flag):
    result = l1_bone_density([{"name": "L1", "cut_by_field_of_view": False, "hu_mean": hu}])
    assert result["flag"] == flag and result["hu_mean"] == hu
    assert result["thresholds_hu"] == {"osteoporosis_likely_at_or_below": 110.0, "normal_above": 160.0}
    assert "Ann Intern Med 2013;158" in result["source"] == PICKHARDT_SOURCE
    assert "contrast" in result["caveat"] and "contrast" in result["text"]


def test_l1_bone_density_says_why_not():
    assert "not labelled" in l1_bone_density([{"name": "L2", "cut_by_field_of_view": False, "hu_mean": 90}])["text"]
    cut = l1_bone_density([{"name": "L1", "cut_by_field_of_view": True, "hu_mean": None}])
    assert cut["flag"] is None and CUT_NOTE in cut["text"]


def test_rows_are_json_and_tsv(box_stack):
    rows, _ = box_stack
    assert json.loads(json.dumps(rows)) == rows
    lines = tsv_text(rows).splitlines()
    assert lines[0].split("\t") == [name for name, _ in TSV_COLUMNS]
    assert len(lines) == 1 + len(rows) and all(len(line.split("\t")) == len(TSV_COLUMNS) for line in lines)
    assert lines[2].split("\t")[:3] == ["L1", "20", "no"]


def test_a_label_map_on_another_grid_is_refused():
    ct, labels, _ = _phantom()
    with pytest.raises(InputError, match="grid"):
        measure_vertebral_bodies(VolumeImage(ct.voxels[:-1], ct.ijk_to_ras), labels)


# The real abdominal CT (TotalSegmentator's test case) and TotalSegmentator's own labels (a model's output,
# not a manual truth), renumbered to VerSe here: the library takes VerSe numbers only.
TOTALSEGMENTATOR_TO_VERSE = {26: 26, 27: 24, 28: 23, 29: 22, 30: 21, 31: 20, 32: 19, 33: 18}


@pytest.fixture(scope="module")
def real_rows():
    from SpineAILib.io import load

    folder = SHARED_DATA / "ct_thoracolumbar"
    ct = load(require(folder / "ct.nii.gz"))
    model = load(require(folder / "ct_model_labels_totalsegmentator.nii.gz"))
    verse = np.zeros_like(model.voxels)
    for total, number in TOTALSEGMENTATOR_TO_VERSE.items():
        verse[model.voxels == total] = number
    return measure_vertebral_bodies(ct, VolumeImage(verse, model.ijk_to_ras, is_labelmap=True))


@pytest.mark.realdata
def test_real_ct_lumbar_heights_grades_and_l1_density(real_rows):
    rows = _by_name(real_rows)
    assert list(rows) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    for name in ("L1", "L2", "L3", "L4", "L5"):
        row = rows[name]
        assert not row["cut_by_field_of_view"], name
        for band in BAND_FRACTIONS:
            assert 20.0 <= row[f"{band}_height_mm"] <= 40.0, (name, band, row)
        # no fracture is known: posterior / anterior near 1 (L1's physiological wedging reads ~1.25 at 3 mm voxels)
        assert 0.8 <= row["posterior_height_mm"] / row["anterior_height_mm"] <= 1.3, (name, row)
        assert row["genant_grade"] == 0 or (row["genant_grade"] == 1 and row["genant_borderline"]), (name, row)
        assert 30.0 <= row["depth_mm"] <= 45.0 and 35.0 <= row["width_mm"] <= 60.0, (name, row)
        assert 25.0 <= row["body_volume_ml"] < row["volume_ml"], (name, row)
    for name in ("T11", "T12"):  # T11 only by its arch, T12's body reaches the top slice
        assert rows[name]["cut_by_field_of_view"] and rows[name]["anterior_height_mm"] is None, name
    density = l1_bone_density(real_rows)
    assert 50.0 <= density["hu_mean"] <= 350.0 and density["flag"] in ("low", "indeterminate", "normal")
    assert rows["S1"]["anterior_height_mm"] is None and rows["S1"]["volume_ml"] > 0


def test_a_normally_wedged_l5_is_not_read_as_a_crush():
    # L5 in lordosis: front 33 mm, middle 29 mm, posterior wall 22 mm, L4's posterior 28 mm: a healthy L5
    healthy = genant(33.0, 29.0, 22.0, 28.0, ["L4"], posterior_normally_short=True)
    assert healthy["grade"] == 0
    # the same heights on another level are graded against the neighbours (a crush of the posterior wall)
    assert genant(33.0, 29.0, 22.0, 28.0, ["T12"])["grade"] == 1
    # a real L5 compression still grades: its front and middle against the neighbours' posterior height
    crushed = genant(17.0, 18.0, 21.0, 28.0, ["L4"], posterior_normally_short=True)
    assert crushed["grade"] == 2 and crushed["morphology"] != "crush"


def test_a_label_of_a_few_stray_voxels_is_noted_not_measured(box_stack):
    ct, labels, _ = _phantom()
    voxels = labels.voxels.copy()
    voxels[0, 0, 0] = 22  # one voxel labelled L3 (a crafted or corrupted label map): no axes to find
    rows = _by_name(measure_vertebral_bodies(ct, VolumeImage(voxels, labels.ijk_to_ras, is_labelmap=True)))
    assert rows["L3"]["anterior_height_mm"] is None and rows["L3"]["notes"] == ["no vertebral body found in the label"]
    assert rows["L1"]["posterior_height_mm"] is not None
