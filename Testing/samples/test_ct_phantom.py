"""Cervical CT phantom (SpineAITraining.rsna2022.phantom): labels, HU, fractures and
their boxes, geometry, determinism and speed. Small grids keep it fast."""


import numpy as np
import pytest

from SpineAITraining.cervical import fractures as F
from SpineAITraining.cervical.anatomy import VERSE, draw_spine, vertebra_shape
from SpineAITraining.cervical.phantom import CervicalCase, make_case
from SpineAITraining.cervical.sdf import Block

CERVICAL = ("C1", "C2", "C3", "C4", "C5", "C6", "C7")
SMALL = dict(spacing=(1.0, 1.0, 1.25), shape_limit=(200, 112, 112))


@pytest.fixture(scope="module")
def clean_case():
    """C1..T1 requested, no fractures, no artefacts: HU as drawn plus noise."""
    return make_case(11, levels=CERVICAL + ("T1",), fracture_rate=0.0, artefacts=False, **SMALL)


@pytest.fixture(scope="module")
def broken_case():
    return make_case(5, levels=CERVICAL, fracture_levels=["C2", "C6"], **SMALL)


def test_case_types_and_grid(clean_case):
    case = clean_case
    assert isinstance(case, CervicalCase)
    assert case.ct.voxels.dtype == np.int16 and case.ct.modality == "CT"
    assert case.labels.voxels.dtype == np.uint8 and case.labels.is_labelmap
    assert case.labels.voxels.shape == case.ct.voxels.shape
    np.testing.assert_array_equal(case.labels.ijk_to_ras, case.ct.ijk_to_ras)
    assert case.ct.spacing == pytest.approx((1.0, 1.0, 1.25))
    assert case.ct.orientation == "axial"
    # DICOM's axial habit: I towards the patient's left, J posterior, K inferior -> superior.
    np.testing.assert_allclose(case.ct.directions, np.diag([-1.0, -1.0, 1.0]), atol=1e-9)
    assert set(case.fractured) == set(CERVICAL) and case.patient_overall == 0 and case.boxes == []
    assert case.meta["levels_complete"][:8] == list(CERVICAL) + ["T1"]


def test_labels_cover_every_requested_level_with_plausible_volume_and_hu(clean_case):
    case = clean_case
    labels, hu = case.labels.voxels, case.ct.voxels
    voxel_cm3 = float(np.prod(case.ct.spacing)) / 1000
    volumes = {}
    for name in CERVICAL + ("T1",):
        mask = labels == VERSE[name]
        assert mask.any(), f"{name} missing from the labels"
        k = np.nonzero(mask.any(axis=(1, 2)))[0]
        assert k.min() > 0 and k.max() < labels.shape[0] - 1, f"{name} touches the end of the scan"
        volumes[name] = mask.sum() * voxel_cm3
        values = hu[mask]
        # Cortex (bright rim) and cancellous core (150-350 HU drawn) both present.
        assert np.percentile(values, 95) > 600, name
        assert 60 < np.percentile(values, 20) < 450, name
    for name in ("C3", "C4", "C5", "C6"):
        assert 4 < volumes[name] < 25, volumes
    assert volumes["T1"] > volumes["C4"] and volumes["C7"] > volumes["C3"]
    assert 5 < volumes["C1"] < 30 and 6 < volumes["C2"] < 30
    # Bodies stack from T1 up to C1 along the patient's z.
    z = [case.ct.ras_of_ijk((0, 0, np.nonzero((labels == VERSE[n]).any(axis=(1, 2)))[0].mean()))[2]
         for n in ("T1", "C7", "C5", "C3", "C2", "C1")]
    assert np.all(np.diff(z) > 0)


def test_soft_tissue_fat_air_hu(clean_case):
    hu = clean_case.ct.voxels
    soft = hu[(hu > -200) & (hu < 200)]
    counts, edges = np.histogram(soft, bins=40, range=(-200, 200))
    assert 15 <= edges[np.argmax(counts)] <= 70  # muscle is the commonest tissue
    assert np.mean((hu > -160) & (hu < -60)) > 0.02  # fat
    assert np.mean(hu < -900) > 0.02  # air outside and in the airway
    assert hu.max() > 700 and hu.min() >= -3024


def test_fractures_are_labelled_zoned_and_boxed(broken_case):
    case = broken_case
    assert case.fractured["C2"] == 1 and case.fractured["C6"] == 1 and case.patient_overall == 1
    assert sum(case.fractured.values()) == 2
    zone, labels = case.fracture_zone.voxels, case.labels.voxels
    assert set(np.unique(zone)) == {0, VERSE["C2"], VERSE["C6"]}
    assert {b["vertebra"] for b in case.boxes} == {"C2", "C6"}
    for box in case.boxes:
        k = box["slice_number"] - 1
        assert 0 <= k < labels.shape[0]
        r0, c0 = int(box["y"]), int(box["x"])
        r1, c1 = r0 + int(box["height"]), c0 + int(box["width"])
        inside = labels[k, r0:r1, c0:c1]
        assert np.count_nonzero(inside == VERSE[box["vertebra"]]) >= 3, box  # the box is on that vertebra
        assert np.any(zone[k, r0:r1, c0:c1] == VERSE[box["vertebra"]])
    # Every zone slice has its box, and the zone lies on (or within 3 voxels of) its vertebra.
    for name in ("C2", "C6"):
        slices = set(np.nonzero((zone == VERSE[name]).any(axis=(1, 2)))[0] + 1)
        boxed = {b["slice_number"] for b in case.boxes if b["vertebra"] == name}
        assert boxed <= slices and len(boxed) >= 0.8 * len(slices)
        near = labels == VERSE[name]
        for _ in range(3):  # dilate by 3 voxels
            for axis in range(3):
                near = near | np.roll(near, 1, axis) | np.roll(near, -1, axis)
        assert np.all(near[zone == VERSE[name]])
    assert [f["vertebra"] for f in case.meta["fractures"]].count("C2") >= 1


def test_no_fracture_rate_means_no_labels():
    case = make_case(3, fracture_rate=0.0, spacing=(1.5, 1.5, 2.0), shape_limit=(120, 64, 64))
    assert case.patient_overall == 0 and not case.boxes and not case.fracture_zone.voxels.any()


def _local_block(shape, res=0.5):
    lo, hi = shape.bounds()
    lo, hi = np.asarray(lo) - 3, np.asarray(hi) + 3
    n = np.ceil((hi - lo) / res).astype(int)
    to_index = np.eye(4)
    to_index[:3, :3] = np.eye(3) / res
    to_index[:3, 3] = -lo / res
    return Block(to_index, (0, 0, 0), (n[2], n[1], n[0]))


def test_gap_cuts_the_bone_and_fragment_moves():
    spine = draw_spine(np.random.default_rng(0))
    level = spine.levels["C5"]
    whole = vertebra_shape(level)
    gap = F._gap((0.0, level.body_cy, 0.0), (0.0, 0.0, 1.0), 2.0, 30.0)  # right through the body
    broken, zone = F.fractured_shape(whole, [F.Fracture("C5", "body_line", gaps=[gap])])
    block = _local_block(whole)
    d0, d1 = whole.evaluate(block), broken.evaluate(block)
    assert np.all(d1[d0 >= 0] >= 0)  # a gap only removes bone
    lost = (d0 < 0) & (d1 >= 0)
    assert abs(block.z[lost]).max() <= 1.01 + 0.5  # within the 2 mm slab (plus a voxel)
    assert np.all(zone.evaluate(block)[lost] < 0)

    c2 = spine.levels["C2"]
    move = F.rigid((0, c2.body_cy, 9.5), (1, 0, 0), 0.0, (0.0, 3.0, 0.0))
    frag = F._fragment((0, c2.body_cy - 1.2, c2.sizes["body_hh"] + 1.0), (0, 0, 1), 1.5,
                       (0, c2.body_cy - 1.2, c2.sizes["body_hh"] + 10.0), (6.2, 7.0, 11.0), move)
    whole = vertebra_shape(c2)
    broken, _ = F.fractured_shape(whole, [F.Fracture("C2", "dens", fragment=frag)])
    block = _local_block(broken)
    above = block.z > c2.sizes["body_hh"] + 3.0
    dens_before = (whole.evaluate(block) < 0) & above & (np.abs(block.x) < 6)
    dens_after = (broken.evaluate(block) < 0) & above & (np.abs(block.x) < 6)
    shift = block.y[dens_after].mean() - block.y[dens_before].mean()
    assert shift == pytest.approx(3.0, abs=0.3)  # the dens moved forward 3 mm


def test_spacing_and_orientation_are_honoured():
    for orientation in ("sagittal", "coronal"):
        case = make_case(7, spacing=(1.2, 1.1, 1.6), orientation=orientation, shape_limit=(80, 140, 110),
                         fracture_rate=0.0)
        assert case.ct.orientation == orientation
        assert case.ct.spacing == pytest.approx((1.2, 1.1, 1.6))
        assert all(s <= m for s, m in zip(case.ct.voxels.shape, (80, 140, 110)))
        assert np.any(case.labels.voxels == VERSE["C4"])
    # A drawn grid never exceeds the limit; a given spacing is kept and the grid cropped.
    case = make_case(8, shape_limit=(40, 48, 48), spacing=(0.5, 0.5, 0.7), fracture_rate=0.0)
    assert case.ct.voxels.shape == (40, 48, 48) and case.ct.spacing == pytest.approx((0.5, 0.5, 0.7))
    assert case.meta["notes"]


def test_deterministic_and_varied():
    a = make_case(21, spacing=(1.5, 1.5, 2.0), shape_limit=(100, 64, 64))
    b = make_case(21, spacing=(1.5, 1.5, 2.0), shape_limit=(100, 64, 64))
    c = make_case(22, spacing=(1.5, 1.5, 2.0), shape_limit=(100, 64, 64))
    np.testing.assert_array_equal(a.ct.voxels, b.ct.voxels)
    np.testing.assert_array_equal(a.labels.voxels, b.labels.voxels)
    assert a.meta == b.meta
    assert not np.array_equal(a.ct.ijk_to_ras, c.ct.ijk_to_ras) or not np.array_equal(a.ct.voxels, c.ct.voxels)


def test_typical_case_has_the_typical_grid():
    """About 0.8 x 0.8 x 1.0 mm, 160 x 160 x 200 voxels (its speed, ~1.5 s on one core, is the README's
    number, not a test: a busy 2-core machine would make any time limit flaky)."""
    case = make_case(4, spacing=(0.8, 0.8, 1.0), shape_limit=(200, 160, 160))
    assert case.ct.voxels.shape[1:] == (160, 160) and case.ct.voxels.shape[0] >= 150
    assert case.ct.spacing == pytest.approx((0.8, 0.8, 1.0))
    assert case.labels.voxels.shape == case.ct.voxels.shape
