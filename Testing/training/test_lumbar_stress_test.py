"""The lumbar-mri stress test's variants keep their truth (issue 12, item 5).

``SpineAITraining.lumbar.stress_test`` (fields of view, curves, missing bodies, contrasts, voxel
sizes) and ``SpineAITraining.lumbar.scan_variants``: every variant's truth label map (S1 merged
in as VerSe 26) and affine must agree with its image, so that a name is scored against the right
body. Synthetic volumes for the transforms and the scoring (an S1 given by a sacrum model), one
real case (``realdata``) for the fields of view and the resampled grids. The model itself runs in
the realdata naming tests (Testing/workflows/lumbar/test_lumbar_naming_checks.py) and in the
stress test proper.
"""

import numpy as np
import pytest
from conftest import SHARED_DATA, require

from SpineAITraining.lumbar import scan_variants as sv
from SpineAITraining.lumbar import stress_test as st

L3, L4, L5, S1 = 22, 23, 24, 26


def _phantom():
    """A small canonical (sagittal, row, column) spine at 1 mm: L3-L5 and S1 bodies (marrow 70), discs (150), a
    fluid-filled canal behind them (200), muscle around (45), posterior fat at the back edge (150), air at the front
    edge (2); uint8 intensities."""
    shape = (40, 160, 90)
    k, r, c = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    image = np.full(shape, 45, np.uint8)  # muscle
    truth = np.zeros(shape, np.uint8)
    for value, top in ((L3, 10), (L4, 45), (L5, 80), (S1, 115)):
        body = (abs(k - 20) < 12) & (r >= top) & (r < top + 28) & (c >= 20) & (c < 50)
        truth[body] = value
        image[body] = 70  # marrow
        image[(abs(k - 20) < 12) & (r >= top + 28) & (r < top + 35) & (c >= 22) & (c < 48)] = 150  # disc
    image[(abs(k - 20) < 6) & (c >= 53) & (c < 63)] = 200  # canal: fluid
    image[:, :, 80:] = 150  # posterior fat
    image[:, :, :5] = 2  # air
    return image, truth


def c_index(image):
    """Each voxel's column (anterior -> posterior)."""
    return np.broadcast_to(np.arange(image.shape[2])[None, None, :], image.shape)


def _ras_centroid(truth, value, affine):
    kji = np.argwhere(truth == value).mean(axis=0)
    return (affine @ np.r_[kji[::-1], 1.0])[:3]


def _rotated_affine(spacing):
    """A canonical affine with a small rotation and an origin, as a real scan's."""
    theta = np.radians(12)
    rotation = np.array([[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]])
    affine = st.canonical_affine(spacing)
    affine[:3, :3] = rotation @ affine[:3, :3]
    affine[:3, 3] = [-40.0, 12.5, 300.0]
    return affine


def _grid_agrees(variant):
    """The variant's affine has its voxel size, and the layout the workflow reads from it is canonical."""
    from SpineAILib.workflows.lumbar.grid import SagittalLayout

    norms = np.linalg.norm(variant.affine[:3, :3], axis=0)  # (column, row, sagittal)
    assert np.allclose(norms[::-1], variant.spacing, atol=1e-6)
    layout = SagittalLayout.of(variant.image.shape, variant.affine)
    assert layout.perm == (0, 1, 2) and layout.shape == variant.image.shape == variant.truth.shape
    assert np.allclose(layout.spacing, variant.spacing)


# -- resolution ------------------------------------------------------------------------------


@pytest.mark.parametrize("thickness", [3.0, 4.0, 5.0])
def test_thick_slices_keep_the_truth_where_the_image_is(thickness):
    image, truth = _phantom()
    affine = _rotated_affine((1.0, 1.0, 1.0))
    made = sv.thick_slices(image, truth, affine, (1.0, 1.0, 1.0), thickness)
    thick, labels, new_affine, spacing = made
    group = int(thickness)
    assert spacing == (thickness, 1.0, 1.0) and thick.dtype == image.dtype and thick.shape[0] == 40 // group
    assert np.isclose(np.linalg.norm(new_affine[:3, 2]), thickness)
    first = (40 - thick.shape[0] * group) // 2
    assert np.allclose(thick[1], np.rint(image[first + group : first + 2 * group].mean(axis=0)))
    for value in (L3, L4, L5, S1):  # every body where it was, in RAS (within half a thick slice)
        assert np.linalg.norm(_ras_centroid(labels, value, new_affine) - _ras_centroid(truth, value, affine)) < thickness / 2
    # the thick slice's centre lies where its thin slices' centres lie
    centre_thin = (affine @ np.r_[0, 0, first + (group - 1) / 2, 1.0])[:3]
    assert np.allclose(new_affine[:3, 3], centre_thin)


@pytest.mark.parametrize("pixel", [1.5, 0.7])
def test_in_plane_pixels_keep_the_truth_where_the_image_is(pixel):
    image, truth = _phantom()
    affine = _rotated_affine((1.0, 1.0, 1.0))
    resampled, labels, new_affine, spacing = sv.in_plane_pixels(image, truth, affine, (1.0, 1.0, 1.0), pixel)
    assert abs(spacing[1] - pixel) < 0.02 and abs(spacing[2] - pixel) < 0.02 and spacing[0] == 1.0
    assert resampled.dtype == image.dtype and labels.dtype == truth.dtype and resampled.shape == labels.shape
    last = np.array(image.shape) - 1
    for corner in ([0, 0, 0], last):  # align-corners: the first and last samples stay where they were
        new_corner = np.array(corner) * (np.array(resampled.shape) - 1) // np.maximum(1, last)
        assert np.allclose(affine @ np.r_[np.array(corner)[::-1], 1.0], new_affine @ np.r_[new_corner[::-1], 1.0])
    for value in (L3, L4, L5, S1):
        assert np.linalg.norm(_ras_centroid(labels, value, new_affine) - _ras_centroid(truth, value, affine)) < pixel
    # the image follows the truth: marrow (70) inside the bodies, not elsewhere
    assert abs(float(np.median(resampled[labels == L4])) - 70) <= 2


def test_resolution_variants_have_their_own_grid():
    image, truth = _phantom()
    affine = _rotated_affine((1.0, 1.0, 1.0))
    made = list(st.variants(image, truth, (1.0, 1.0, 1.0), {"resolution"}, affine))
    assert [v.type for v in made] == ["resolution 3 mm slices", "resolution 4 mm slices", "resolution 5 mm slices",
                                      "resolution 1.5 mm pixels", "resolution 0.7 mm pixels",
                                      "resolution 4 mm slices, 0.7 mm pixels, spin-echo-like"]  # fmt: skip
    for v in made:
        assert v.kind == "resolution" and v.s1_in_view
        _grid_agrees(v)
        assert sorted(int(x) for x in np.unique(v.truth) if x) == [L3, L4, L5, S1]
    assert made[-1].spacing[0] == 4.0 and abs(made[-1].spacing[1] - 0.7) < 0.02


# -- contrast ----------------------------------------------------------------------------------


def test_contrast_variants_change_intensities_not_the_truth():
    image, truth = _phantom()
    made = list(st.variants(image, truth, (1.0, 1.0, 1.0), {"contrast"}))
    assert [v.type for v in made] == [sv.CONTRAST_TITLES[c] for c in sv.CONTRASTS]
    for v in made:
        assert v.truth is truth and v.image.shape == image.shape and v.image.dtype == image.dtype
        assert not np.array_equal(v.image, image), v.type
        assert np.allclose(v.affine, st.canonical_affine((1.0, 1.0, 1.0))) and v.spacing == (1.0, 1.0, 1.0)
    by = {c: v.image.astype(float) for c, v in zip(sv.CONTRASTS, made)}
    marrow, fluid, fat = truth == L4, image == 200, (image == 150) & (c_index(image) >= 80)
    muscle, air = image == 45, image == 2
    mean = {name: {t: float(by[name][m].mean()) for t, m in (("marrow", marrow), ("fluid", fluid), ("fat", fat),
            ("muscle", muscle), ("air", air))} for name in by}  # fmt: skip
    stir = mean["stir"]  # fat bright -> dark, fluid stays brightest, marrow below muscle
    assert stir["fat"] < stir["muscle"] and stir["marrow"] < stir["muscle"] and stir["fluid"] == max(stir.values())
    t1 = mean["t1-like"]  # fluid dark, fat and marrow bright, air dark
    assert t1["fluid"] < t1["marrow"] < t1["fat"] and t1["air"] < t1["muscle"]
    assert mean["spin-echo"]["fat"] < mean["fast-spin-echo"]["fat"]  # fat dimmer on spin echo
    for name in ("shading-posterior", "shading-top"):
        gain = sv.shading_gain(image.shape, name)
        assert gain.max() <= 1.0 and abs(gain.min() - (0.25 if name == "shading-posterior" else 0.3)) < 1e-6
    # the posterior coil: the front of the image is darker than the back, for the same tissue
    shaded = by["shading-posterior"]
    assert shaded[:, :, 6:15][muscle[:, :, 6:15]].mean() < 0.5 * shaded[:, :, 64:75][muscle[:, :, 64:75]].mean()


def test_the_stir_remap_finds_fluid_below_the_brightest_fat():
    """vb2-like T2 TSE: the posterior fat brighter than CSF; the remap still keeps fluid bright and fat dark."""
    image, truth = _phantom()
    fluid, fat = image == 200, image == 150
    image[fluid], image[fat] = 120, 230  # fluid now darker than fat (and the discs)
    v, _, _ = sv._normalised(image)
    marrow, level = sv.tissue_levels(v, truth)
    assert abs(level - float(v[fluid].mean())) < 0.05 and marrow < level
    out = sv.contrast_variant(image, truth, "stir").astype(float)
    assert out[fluid].mean() > 3 * out[fat].mean()


# -- fields of view, curves, missing bodies: S1 travels with the levels ------------------------------


def test_fov_variants_say_whether_s1_is_in_view():
    image, truth = _phantom()
    rows, labelled = st.body_rows(truth, (1.0, 1.0, 1.0))
    assert list(rows) == ["L3", "L4", "L5"] and S1 in labelled
    made = {v.type: v for v in st.variants(image, truth, (1.0, 1.0, 1.0), {"fov"})}
    assert list(made) == ["as acquired", "starts as acquired, ends L4", "starts as acquired, ends L5"]  # no L1/L2 here
    assert made["as acquired"].s1_in_view and made["as acquired"].truth is truth
    to_l4, to_l5 = made["starts as acquired, ends L4"], made["starts as acquired, ends L5"]
    assert not to_l4.s1_in_view and not np.any(to_l4.truth == S1) and not np.any(to_l4.truth == L5)
    assert not to_l5.s1_in_view and to_l5.end == "L5" and np.any(to_l5.truth == L5)


def test_a_crop_from_the_top_moves_the_origin_and_keeps_s1(monkeypatch):
    """A top cut (rows removed above L4): the truth's bodies stay where they were in RAS, L3 (cut away) leaves it."""
    image, truth = _phantom()
    affine = _rotated_affine((1.0, 1.0, 1.0))
    rows, _ = st.body_rows(truth, (1.0, 1.0, 1.0))
    monkeypatch.setattr(st, "STARTS", ("L4",))  # the phantom holds L3-S1 only
    made = {v.type: v for v in st.variants(image, truth, (1.0, 1.0, 1.0), {"fov"}, affine)}
    cut = made["starts L4, ends below"]
    assert cut.start == "L4" and cut.end == "below" and cut.s1_in_view and not np.any(cut.truth == L3)
    assert cut.image.shape[1] == truth.shape[1] - (rows["L4"][0] - 2)
    for value in (L4, S1):
        assert np.allclose(_ras_centroid(cut.truth, value, cut.affine), _ras_centroid(truth, value, affine))
    assert not made["starts L4, ends L5"].s1_in_view


def test_curves_and_missing_bodies_keep_s1():
    image, truth = _phantom()
    made = list(st.variants(image, truth, (1.0, 1.0, 1.0), {"curve", "missing"}))
    assert [v.kind for v in made] == ["curve", "curve", "missing"]  # L2 is not in the phantom: only L3 is blanked
    for v in made:
        assert v.s1_in_view and np.any(v.truth == S1)
    assert made[2].blanked == ("blank", L3)


# -- scoring ---------------------------------------------------------------------------------------


class _Result:
    def __init__(self, bodies, vertebrae=(), anchor="column"):
        self.naming = {"bodies": bodies, "anchor": anchor, "status": "named", "reasons": [], "column_names": [],
                       "evidence": {}, "gaps": []}  # fmt: skip
        self.vertebrae = list(vertebrae)


def _body(truth, value, column_name, name, shift_rows=0.0):
    kji = np.argwhere(truth == value).mean(axis=0) + [0, shift_rows, 0]
    return {"column_name": column_name, "name": name, "centre_ras": list(kji[::-1])}  # identity affine


def test_an_s1_name_is_right_in_the_true_s1_or_within_a_few_mm():
    _, truth = _phantom()
    eye = np.eye(4)
    column = [_body(truth, v, n, n) for v, n in ((L3, "L3"), (L4, "L4"), (L5, "L5"))]
    required = {L3, L4, L5}
    in_s1 = _body(truth, S1, None, "S1")
    near = {**in_s1, "centre_ras": [in_s1["centre_ras"][0], 115.0 + 27 + 4.0, in_s1["centre_ras"][2]]}  # 4 mm below
    for s1 in (in_s1, near):
        bodies = st.with_s1(_Result(column, [{"name": "S1", "label": S1, "centre_ras": s1["centre_ras"]}]))
        outcome, _, levels = st.score(bodies, truth, eye, (1.0, 1.0, 1.0), required, use_column=False)
        assert outcome == "right" and levels == {"L3": "right", "L4": "right", "L5": "right", "S1": "right"}
        assert st.s1_outcome(bodies, truth, eye, (1.0, 1.0, 1.0), True) == "found"
        assert st.score(bodies, truth, eye, (1.0, 1.0, 1.0), required, use_column=True)[0] == "right"  # no column S1
    on_l5 = column + [_body(truth, L5, None, "S1", shift_rows=3)]  # an S1 given on L5
    outcome, detail, _ = st.score(on_l5, truth, eye, (1.0, 1.0, 1.0), required, use_column=False)
    assert outcome == "wrong" and detail == ["S1 on true 24"]
    assert st.s1_outcome(on_l5, truth, eye, (1.0, 1.0, 1.0), True) == "misplaced"
    assert st.s1_outcome(column, truth, eye, (1.0, 1.0, 1.0), True) == "missed"
    assert st.s1_outcome(column, truth, eye, (1.0, 1.0, 1.0), False) == "none"


def test_s1_called_l5_is_wrong_and_s1_counts_right_after_l5():
    _, truth = _phantom()
    eye = np.eye(4)
    shifted = [_body(truth, v, n, n) for v, n in ((L3, "L2"), (L4, "L3"), (L5, "L4"), (S1, "L5"))]
    outcome, detail, levels = st.score(shifted, truth, eye, (1.0, 1.0, 1.0), {L3, L4, L5}, use_column=True)
    assert outcome == "wrong" and "L5 on true 26" in detail and levels["S1"] == "wrong"
    # an unlabelled body between L4 and S1 is estimated as L5 (S1 follows L5: VerSe 25 is L6)
    hidden = truth.copy()
    hidden[hidden == L5] = 0
    bodies = [_body(truth, v, n, n) for v, n in ((L3, "L3"), (L4, "L4"), (L5, "L5"), (S1, "S1"))]
    assert st.true_levels(bodies, hidden, eye, (1.0, 1.0, 1.0)) == [L3, L4, -L5, S1]
    below = truth.copy()
    below[below == S1] = 0  # and a body under a labelled L5 where nothing is labelled: estimated S1
    assert st.true_levels(bodies, below, eye, (1.0, 1.0, 1.0))[-1] == -S1


def test_the_sacrum_bundle_reaches_segment_vertebrae(monkeypatch):
    """``--sacrum``: evaluate_variant passes the bundle to a pipeline that takes it; the record keeps the anchor."""
    from SpineAILib.workflows.lumbar import pipeline

    image, truth = _phantom()
    seen = {}

    def fake(volume, bundle, progress=None, refiner=None, sacrum=None):
        seen["sacrum"] = sacrum
        bodies = [_body(truth, v, n, n) for v, n in ((L3, "L3"), (L4, "L4"), (L5, "L5"))]
        result = _Result(bodies, [{"name": "S1", "label": S1, "centre_ras": _body(truth, S1, None, "S1")["centre_ras"]}],
                         anchor="sacrum")  # fmt: skip
        result.naming["column_names"] = ["L3", "L4", "L5"]
        return result

    monkeypatch.setattr(pipeline, "segment_vertebrae", fake)
    assert st.pipeline_takes_sacrum()
    record = st.evaluate_variant(None, image, truth, np.eye(4), (1.0, 1.0, 1.0), None, sacrum="S1 bundle", s1_in_view=True)
    assert seen["sacrum"] == "S1 bundle"
    assert record["after"] == "right" and record["s1"] == "found" and record["anchor"] == "sacrum"
    assert record["required"] == ["L3", "L4", "L5"]
    assert st.load_sacrum("none", "cpu")[0] is None
    text = st.table([dict(record, kind="fov", type="as acquired")])
    assert "| as acquired | 1 | 1 / 0 / 0 / 0 | 1 / 0 / 0 / 0 | 3/3 (100%) | 3/3 (100%) | 1/1 | sacrum 1 |" in text


def test_kinds_are_checked():
    args = st.parse_args(["--data", "x"])
    assert set(args.kinds.split(",")) == {"fov", "curve", "missing", "contrast", "resolution"}
    with pytest.raises(SystemExit):
        st.parse_args(["--data", "x", "--kinds", "fov,warp"])


# -- one real case: the S1 label and the levels go through every variant ----------------------------


@pytest.mark.realdata
def test_a_real_case_keeps_its_truth_in_every_variant():
    from SpineAITraining.lumbar import mri_lumbar

    require(SHARED_DATA / "mri_lumbar" / "vb2_06.nii.gz")
    case = next(c for c in mri_lumbar.list_cases(SHARED_DATA / "mri_lumbar") if c.case_id == "vb2_06")
    layout, image, truth = st.case_arrays(case)
    assert S1 in np.unique(truth) and not np.any((truth == S1) & np.isin(truth, range(18, 25)))
    original = layout.canonical_to_ras
    made = list(st.variants(image, truth, layout.spacing, set(st.KINDS), original))
    kinds = {v.kind for v in made}
    assert kinds == set(st.KINDS)
    for v in made:
        _grid_agrees(v)
        if v.end == "below" or v.kind != "fov" or v.type == "as acquired":
            assert v.s1_in_view, v.type
        elif v.end == "L4":
            assert not v.s1_in_view and not np.any(v.truth == S1), v.type
        else:
            assert not v.s1_in_view, v.type
        if v.kind in ("resolution", "fov"):  # S1 and L3 lie where they lay in the case (RAS)
            for value in (22, S1):
                if np.any(v.truth == value) and (v.kind == "resolution" or v.end == "below"):
                    error = np.linalg.norm(_ras_centroid(v.truth, value, v.affine) - _ras_centroid(truth, value, original))
                    assert error < v.spacing[0] / 2 + 1.0, (v.type, value, error)
    thick = next(v for v in made if v.type == "resolution 4 mm slices")
    assert thick.image.shape[0] == image.shape[0] // 4 and thick.spacing[0] == 4.0


def test_an_unknown_part_is_one_line_not_a_key_error(tmp_path, capsys):
    """(A --data folder without cases is covered with the other research scripts: test_research_scripts.py.)"""
    with pytest.raises(SystemExit) as stopped:
        st.main(["--data", str(tmp_path), "--part", "bogus"])
    assert stopped.value.code == 2 and "unknown --part bogus" in capsys.readouterr().err
