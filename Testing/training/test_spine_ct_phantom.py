"""The whole-spine CT phantom (SpineAITraining.spine_ct): fields of view, labels in bone, level order,
planted rib counts and transitional vertebrae, planted compressions measured back with
SpineAILib.vertebral_bodies, reproducibility, spacing, and the quick look."""

import numpy as np
import pytest
from SpineAILib.terminology import VERTEBRAE
from SpineAILib.vertebral_bodies import measure_vertebral_bodies

from SpineAITraining.spine_ct.look import axial_look, quick_look
from SpineAITraining.spine_ct.phantom import make_spine_ct
from SpineAITraining.spine_ct.ribs import describe_rib_label

ANATOMICAL_ORDER = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 14)] + [f"L{i}" for i in range(1, 7)] \
    + ["S1"]
NUMBER = {name: number for number, name in VERTEBRAE.items()}


def _in_view(case):
    return set(case.truth["levels_in_view"])


def _names(first, last):
    return set(ANATOMICAL_ORDER[ANATOMICAL_ORDER.index(first):ANATOMICAL_ORDER.index(last) + 1]) - {"T13", "L6"}


@pytest.mark.parametrize("seed", [0, 1])
def test_each_field_of_view_holds_its_levels(seed):
    neck = make_spine_ct(seed, "neck", spacing=4.0)
    assert _names("C1", "T1") <= _in_view(neck) and not _in_view(neck) & _names("T8", "S1")
    chest = make_spine_ct(seed, "chest", spacing=4.0)
    assert _names("C7", "T12") <= _in_view(chest) and not _in_view(chest) & ({"C1", "C2", "L4", "L5", "S1"})
    abdomen = make_spine_ct(seed, "abdomen", spacing=4.0)
    assert _names("T12", "S1") <= _in_view(abdomen) and not _in_view(abdomen) & _names("C1", "T6")
    pelvis = make_spine_ct(seed, "pelvis", spacing=4.0)
    assert {"L5", "S1"} <= _in_view(pelvis) and not _in_view(pelvis) & _names("C1", "T12")
    whole = make_spine_ct(seed, "whole", spacing=4.0)
    assert _names("C1", "S1") <= _in_view(whole) and not whole.truth["levels_partial"]
    assert whole.truth["anchors_in_view"] == {"skull_base": True, "dens": True, "first_rib": True, "last_rib": True,
                                              "sacrum": True}
    assert neck.truth["anchors_in_view"]["dens"] and not neck.truth["anchors_in_view"]["sacrum"]
    assert abdomen.truth["anchors_in_view"]["sacrum"] and not abdomen.truth["anchors_in_view"]["first_rib"]


def test_labels_sit_in_bone_and_levels_run_head_to_tail():
    case = make_spine_ct(2, "whole", spacing=3.0, variants={"osteoporotic": False})
    hu, labels = case.ct.voxels, case.vertebrae.voxels
    centres = {}
    for name in case.truth["levels_in_view"]:
        mask = labels == NUMBER[name]
        assert np.median(hu[mask]) > 100, f"{name}: label not on bone"
        # the label is brighter than the 3 mm shell around it (soft tissue, discs, canal)
        shell = np.zeros_like(mask)
        for axis in range(3):
            shell |= np.roll(mask, 1, axis) | np.roll(mask, -1, axis)
        shell &= ~mask & (labels == 0) & (case.ribs.voxels == 0)
        assert hu[mask].mean() > hu[shell].mean() + 100, name
        centres[name] = case.affine[:3, :3] @ np.argwhere(mask).mean(axis=0)[::-1] + case.affine[:3, 3]
    order = [n for n in ANATOMICAL_ORDER if n in centres]
    z = [centres[n][2] for n in order]
    assert all(a > b for a, b in zip(z, z[1:])), list(zip(order, np.round(z)))
    ribs = case.ribs.voxels > 0
    assert np.median(hu[ribs]) > 100


@pytest.mark.parametrize("variants, pairs, last", [({}, 12, "T12"), ({"rib_pairs": 11}, 11, "T11"),
                                                   ({"thoracic": 13}, 13, "T13"),
                                                   ({"rib_pairs": 13, "thoracic": 12}, 13, "L1")])
def test_rib_labels_match_the_planted_count(variants, pairs, last):
    case = make_spine_ct(3, "whole", spacing=5.0, variants={"cervical_rib": False, **variants})  # every rib in view
    truth = case.truth
    assert truth["rib_pairs"] == pairs and truth["last_rib_vertebra"] == last and truth["first_rib_vertebra"] == "T1"
    present = np.unique(case.ribs.voxels)
    sides = {"left": set(), "right": set()}
    for label in present[present > 0]:
        side, number = describe_rib_label(int(label))
        sides[side].add(VERTEBRAE[number])
    assert len(sides["left"]) == len(sides["right"]) == pairs, sides
    assert max(sides["left"], key=ANATOMICAL_ORDER.index) == last
    assert ("T13" in truth["levels_in_view"]) == (last == "T13")


def test_transitional_vertebrae_change_the_lumbar_count():
    l6 = make_spine_ct(4, "pelvis", spacing=3.0, variants={"transitional": "L6"})
    assert l6.truth["lumbar_count"] == 6 and l6.truth["lumbar_mobile"] == 6
    assert NUMBER["L6"] in np.unique(l6.vertebrae.voxels)
    fused = make_spine_ct(4, "pelvis", spacing=2.0,
                          variants={"transitional": "sacralised_L5", "sacral_contact": "fused"})
    assert fused.truth["lumbar_count"] == 5 and fused.truth["lumbar_mobile"] == 4
    labels = fused.vertebrae.voxels
    l5, sacrum = labels == NUMBER["L5"], labels == NUMBER["S1"]
    touching = np.zeros_like(l5)
    for axis in range(3):
        touching |= np.roll(l5, 1, axis) | np.roll(l5, -1, axis)
    assert (touching & sacrum).sum() > 20, "a fused sacralised L5 joins the sacrum"
    normal = make_spine_ct(4, "pelvis", spacing=3.0, variants={"transitional": None})
    assert normal.truth["lumbar_count"] == normal.truth["lumbar_mobile"] == 5
    assert NUMBER["L6"] not in np.unique(normal.vertebrae.voxels)


def test_planted_compressions_measure_back():
    """Heights within 1.5 mm and the Genant grade of planted compressions, read by the measurement module."""
    planted = [("L1", "wedge", 2), ("L3", "biconcave", 3), ("L4", "crush", 2)]
    case = make_spine_ct(5, "abdomen", spacing=1.0, size_mm=(170, 170, 330),
                         variants={"targeted": True, "compressions": planted, "scoliosis_deg": 0.0, "metal": None,
                                   "arms": "up"})  # arms down streak across the bodies (truth says how much)
    rows = {r["name"]: r for r in measure_vertebral_bodies(case.ct, case.vertebrae)}
    for name, morphology, grade in planted:
        truth, row = case.truth["levels"][name], rows[name]
        assert truth["genant_grade"] == grade and truth["morphology"] == morphology
        for band in ("anterior", "middle", "posterior"):
            assert abs(row[f"{band}_height_mm"] - truth["heights_mm"][band]) < 1.5, (name, band, row, truth)
        assert row["genant_grade"] == grade, (name, row)
        assert abs(row["hu_mean"] - truth["trabecular_hu"]) < 15
    for name in ("L2", "L5"):
        assert case.truth["levels"][name]["genant_grade"] == 0 and rows[name]["genant_grade"] == 0


def test_a_seed_reproduces_its_case_exactly():
    a = make_spine_ct(6, "random", spacing=4.0)
    b = make_spine_ct(6, "random", spacing=4.0)
    assert np.array_equal(a.ct.voxels, b.ct.voxels) and np.array_equal(a.vertebrae.voxels, b.vertebrae.voxels)
    assert np.array_equal(a.ribs.voxels, b.ribs.voxels) and np.array_equal(a.affine, b.affine)
    assert a.truth == b.truth
    c = make_spine_ct(7, "random", spacing=4.0)
    assert c.truth != a.truth


@pytest.mark.parametrize("spacing", [0.5, 2.5, 5.0, (0.7, 0.7, 3.0)])
def test_spacing_is_honoured_in_the_affine(spacing):
    size = (80, 80, 60) if spacing == 0.5 else (150, 150, 120) if np.ndim(spacing) else None
    case = make_spine_ct(8, "abdomen", spacing=spacing, size_mm=size)
    expected = [spacing] * 3 if np.ndim(spacing) == 0 else list(spacing)
    assert np.allclose(case.ct.spacing, expected) and np.allclose(case.vertebrae.spacing, expected)
    assert np.allclose(case.affine, case.ribs.ijk_to_ras) and case.ct.voxels.dtype == np.int16
    assert np.allclose(case.ct.directions, np.diag([-1.0, -1.0, 1.0]))  # axial, K inferior -> superior
    if size:
        extent = np.array(case.ct.voxels.shape[::-1]) * np.array(expected)
        assert np.allclose(extent[:2], size[:2], atol=1.0)


def test_drawn_spacing_stays_within_the_voxel_budget():
    case = make_spine_ct(9, "whole", max_voxels=2_000_000)
    assert 1_000_000 <= case.ct.voxels.size <= 2_300_000
    assert case.ct.spacing[0] <= case.ct.spacing[2] <= 8.0 and case.truth["notes"]


def test_quick_look_writes_pictures(tmp_path):
    case = make_spine_ct(10, "chest", spacing=4.0)
    for path in (quick_look(case, tmp_path / "look.png"), axial_look(case, tmp_path / "axial.png", ["T4", "T10"])):
        assert path.stat().st_size > 1000


def test_unknown_arguments_are_refused():
    with pytest.raises(ValueError, match="field_of_view"):
        make_spine_ct(0, "head")
    with pytest.raises(ValueError, match="unknown variants"):
        make_spine_ct(0, "neck", variants={"ribs": 12})
    with pytest.raises(ValueError, match="compression"):
        make_spine_ct(0, "neck", spacing=4.0, variants={"compressions": [("C5", "wedge", 2)]})
