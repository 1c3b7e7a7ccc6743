"""NIfTI / NRRD reading and writing: exact geometry, label maps, 2-D frames, bad input."""

import os

import nibabel as nib
import nrrd
import numpy as np
import pytest
from conftest import one_line_error, require

from SpineAILib.images import Cine, VolumeImage
from SpineAILib.io import load
from SpineAILib.io.volumes import load_volume_file, save_volume_file

REAL_NIFTI = [
    "ct_thoracolumbar/ct.nii.gz",
    "ct_thoracolumbar/ct_model_labels_totalsegmentator.nii.gz",
    "mri_lumbar/vb3_01.nii.gz",
    "mri_lumbar/vb3_01_labels.nii.gz",
    "mri_lumbar/vb2_02.nii.gz",
    "mri_lumbar/vb2_02_labels.nii.gz",
    "mri_cervical/t2.nii.gz",
    "mri_cervical/t2_seg-manual_labeled.nii.gz",
]


def rotation(axis, degrees):
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    a = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


# ---------------------------------------------------------------------------- real files


@pytest.mark.realdata
@pytest.mark.parametrize("name", REAL_NIFTI)
def test_real_nifti_voxels_and_geometry_match_nibabel(shared_data, name):
    path = require(shared_data / name)
    reference = nib.load(str(path))
    data = np.asanyarray(reference.dataobj)
    image = load_volume_file(path)
    assert isinstance(image, VolumeImage)
    assert image.dimensions == data.shape[:3]
    np.testing.assert_array_equal(image.ijk_to_ras, reference.affine)  # exact, float64
    rng = np.random.default_rng(0)
    corners = [(0, 0, 0), tuple(s - 1 for s in data.shape[:3])]
    for ijk in corners + [tuple(rng.integers(0, s) for s in data.shape[:3]) for _ in range(5)]:
        i, j, k = ijk
        np.testing.assert_array_equal(image.ras_of_ijk(ijk), (reference.affine @ [i, j, k, 1])[:3])
        assert image.voxels[k, j, i] == data[i, j, k]


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, labels",
    [
        ("mri_lumbar/vb3_01_labels.nii.gz", [20, 21, 22, 23, 24]),
        ("mri_lumbar/vb2_02_labels.nii.gz", [18, 19, 20, 21, 22, 23, 24]),
        ("ct_thoracolumbar/ct_model_labels_totalsegmentator.nii.gz", list(range(26, 34))),
        ("mri_cervical/t2_seg-manual_labeled.nii.gz", [2, 3, 4, 5]),  # stored as float64
    ],
)
def test_real_label_maps_are_detected_with_their_values(shared_data, name, labels):
    image = load_volume_file(require(shared_data / name))
    assert image.is_labelmap
    assert np.issubdtype(image.voxels.dtype, np.integer)
    assert image.metadata["label_values"] == labels
    assert sorted(int(v) for v in np.unique(image.voxels) if v) == labels


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["mri_lumbar/vb3_01.nii.gz", "mri_cervical/t2.nii.gz", "ct_thoracolumbar/ct.nii.gz"])
def test_real_intensity_volumes_are_not_label_maps(shared_data, name):
    image = load_volume_file(require(shared_data / name))
    assert not image.is_labelmap
    assert image.orientation in ("sagittal", "axial")


@pytest.mark.realdata
def test_labelmap_argument_overrides_the_guess(shared_data):
    path = require(shared_data / "mri_lumbar/vb3_01_labels.nii.gz")
    assert not load_volume_file(path, labelmap=False).is_labelmap
    assert load_volume_file(require(shared_data / "mri_lumbar/vb3_01.nii.gz"), labelmap=True).is_labelmap


@pytest.mark.realdata
def test_real_label_map_round_trips_through_both_formats(shared_data, tmp_path):
    original = load_volume_file(require(shared_data / "mri_lumbar/vb3_01_labels.nii.gz"))
    for name in ("labels.nii.gz", "labels.seg.nrrd"):
        again = load_volume_file(save_volume_file(original, tmp_path / name))
        np.testing.assert_array_equal(again.voxels, original.voxels)
        np.testing.assert_array_equal(again.ijk_to_ras, original.ijk_to_ras)
        assert again.is_labelmap and again.voxels.dtype == original.voxels.dtype


# ---------------------------------------------------------------------------- NRRD geometry


@pytest.mark.parametrize(
    "space, to_ras",
    [
        ("left-posterior-superior", [-1, -1, 1]),
        ("right-anterior-superior", [1, 1, 1]),
        ("left-anterior-superior", [-1, 1, 1]),
    ],
)
def test_nrrd_rotated_directions_load_to_the_right_ras(tmp_path, space, to_ras):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 1000, size=(6, 5, 4)).astype(np.int16)  # (I, J, K), as pynrrd's default 'F' order
    directions = rotation([1, 2, 3], 25) * [0.5, 0.7, 2.0]  # columns: I, J, K step vectors in file space
    origin = np.array([10.25, -20.5, 30.125])
    path = tmp_path / "rotated.nrrd"
    header = {"space": space, "space directions": directions.T, "space origin": origin, "kinds": ["domain"] * 3}
    nrrd.write(str(path), data, header)

    image = load_volume_file(path)
    flip = np.diag(to_ras)
    for ijk in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:
        expected = flip @ (origin + directions @ np.array(ijk, dtype=float))
        np.testing.assert_allclose(image.ras_of_ijk(ijk), expected, rtol=0, atol=1e-12)
        assert image.voxels[ijk[2], ijk[1], ijk[0]] == data[ijk]
    np.testing.assert_allclose(image.spacing, [0.5, 0.7, 2.0], rtol=1e-12)


def test_nrrd_with_size_one_fourth_axis_is_squeezed(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(1, 2, 3, 4)  # (list=1, I, J, K)
    directions = np.vstack([np.full(3, np.nan), np.eye(3)])
    path = tmp_path / "vol.nrrd"
    nrrd.write(str(path), data, {"space": "RAS", "space directions": directions, "kinds": ["list", "domain", "domain", "domain"]})
    image = load_volume_file(path)
    assert image.voxels.shape == (4, 3, 2)
    assert image.voxels[3, 2, 1] == data[0, 1, 2, 3]


def test_rgb_nrrd_frame_is_a_colour_cine(tmp_path):
    rgb = np.zeros((3, 40, 30), dtype=np.uint8)  # (colour, I, J)
    rgb[0, 5:10, 5:10] = 200  # a red square makes it real colour
    directions = np.array([[np.nan] * 3, [0.2, 0, 0], [0, 0.3, 0]])
    path = tmp_path / "frame.nrrd"
    nrrd.write(str(path), rgb, {"space": "LPS", "space directions": directions, "kinds": ["RGB-color", "domain", "domain"]})
    cine = load_volume_file(path)
    assert isinstance(cine, Cine) and cine.is_color
    assert cine.frames.shape == (1, 30, 40, 3)  # rows along J, columns along I
    assert cine.pixel_spacing == pytest.approx((0.3, 0.2))
    assert cine.frames[0, 7, 7, 0] == 200 and cine.frames[0, 7, 7, 1] == 0


def test_two_d_nifti_is_a_one_frame_cine(tmp_path):
    data = (np.arange(30 * 20).reshape(30, 20) % 256).astype(np.uint8)  # (I, J)
    path = tmp_path / "frame.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.4, 0.25, 1.0, 1.0])), str(path))
    cine = load(path)
    assert isinstance(cine, Cine)
    assert cine.frames.shape == (1, 20, 30)
    assert cine.pixel_spacing == pytest.approx((0.25, 0.4))
    np.testing.assert_array_equal(cine.frames[0], data.T)


# ---------------------------------------------------------------------------- writing


def test_save_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(2)
    voxels = rng.integers(-1000, 2000, size=(7, 9, 11)).astype(np.int16)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation([0.3, -1, 0.2], 17) * [0.781, 0.781, 3.3]
    matrix[:3, 3] = [-123.456789, 45.6789012, -7.891]
    image = VolumeImage(voxels=voxels, ijk_to_ras=matrix)

    # NRRD keeps float64 exactly.
    again = load_volume_file(save_volume_file(image, tmp_path / "ct.nrrd"))
    np.testing.assert_array_equal(again.voxels, voxels)
    np.testing.assert_array_equal(again.ijk_to_ras, matrix)

    # NIfTI-1 stores the affine as float32: exact for float32-representable matrices.
    image.ijk_to_ras = matrix.astype(np.float32).astype(np.float64)
    again = load_volume_file(save_volume_file(image, tmp_path / "ct.nii.gz"))
    np.testing.assert_array_equal(again.voxels, voxels)
    np.testing.assert_array_equal(again.ijk_to_ras, image.ijk_to_ras)
    assert sorted(os.listdir(tmp_path)) == ["ct.nii.gz", "ct.nrrd"]  # no temporary files left


def test_save_replaces_atomically_and_refuses_unknown_suffix(tmp_path):
    from SpineAILib.errors import OutputError

    image = VolumeImage(voxels=np.ones((2, 2, 2), np.uint8), ijk_to_ras=np.eye(4))
    target = tmp_path / "a.nrrd"
    save_volume_file(image, target)
    image.voxels = image.voxels * 7
    save_volume_file(image, target)  # overwrite goes through os.replace
    assert load_volume_file(target).voxels.max() == 7
    with pytest.raises(OutputError):
        save_volume_file(image, tmp_path / "a.mha")
    with pytest.raises(OutputError):
        save_volume_file(image, tmp_path / "missing" / "a.nrrd")


# ---------------------------------------------------------------------------- bad input


def test_four_d_nifti_is_refused(tmp_path):
    path = tmp_path / "fmri.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 3), np.int16), np.eye(4)), str(path))
    message = one_line_error(load_volume_file, path)
    assert "4-D image (shape 4x5x6x3)" in message and "one 3-D volume" in message


def test_four_d_nifti_with_one_time_point_loads(tmp_path):
    path = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 1), np.int16), np.eye(4)), str(path))
    assert load_volume_file(path).voxels.shape == (6, 5, 4)


def test_four_d_nrrd_is_refused(tmp_path):
    path = tmp_path / "dwi.nrrd"
    directions = np.vstack([np.full(3, np.nan), np.eye(3)])
    nrrd.write(str(path), np.zeros((3, 4, 5, 6), np.int16), {"space": "RAS", "space directions": directions, "kinds": ["list", "domain", "domain", "domain"]})
    assert "4-D image (shape 3x4x5x6)" in one_line_error(load_volume_file, path)


def test_nifti_with_nan_voxels_is_refused(tmp_path):
    data = np.zeros((5, 5, 5), np.float32)
    data[1, 2, 3] = np.nan
    data[0, 0, 0] = np.inf
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    assert "2 NaN/inf voxels" in one_line_error(load_volume_file, path)


def test_huge_header_is_refused_before_reading(tmp_path):
    (tmp_path / "tiny.raw").write_bytes(b"\0" * 16)
    header = tmp_path / "huge.nhdr"
    header.write_text(
        "NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 2048 2048 300\n"
        "space directions: (1,0,0) (0,1,0) (0,0,1)\nkinds: domain domain domain\nendian: little\n"
        "encoding: raw\nspace origin: (0,0,0)\ndata file: tiny.raw\n"
    )
    message = one_line_error(load_volume_file, header)
    assert "2048x2048x300" in message and "4.7 GiB" in message


def test_damaged_files_give_one_line_errors(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not gzip at all" * 10)
    one_line_error(load_volume_file, bad)
    bad_nrrd = tmp_path / "broken.nrrd"
    bad_nrrd.write_bytes(b"NRRD0004\ntype: what\n")
    one_line_error(load_volume_file, bad_nrrd)


def test_nifti_sform_is_preferred_over_qform(tmp_path):
    """The README: sform preferred over qform. A file whose two matrices disagree is read with its
    sform; with the sform unset (code 0) the qform is used; float64 geometry either way."""
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # nibabel order: i, j, k
    sform = np.array([[0.0, 0.0, 2.5, -30.0], [-0.7, 0.0, 0.0, 41.25], [0.0, -0.8, 0.0, 12.125], [0, 0, 0, 1]])
    qform = np.diag([1.1, 1.2, 1.3, 1.0])
    qform[:3, 3] = (5.0, 6.0, 7.0)
    image = nib.Nifti1Image(data, None)
    image.set_qform(qform, code=1)
    image.set_sform(sform, code=2)
    path = tmp_path / "both.nii.gz"
    nib.save(image, path)
    header = nib.load(path).header
    assert header["sform_code"] == 2 and header["qform_code"] == 1
    assert not np.allclose(header.get_qform(), header.get_sform())
    loaded = load(path)
    np.testing.assert_allclose(loaded.ijk_to_ras, sform, atol=1e-6)
    assert loaded.ijk_to_ras.dtype == np.float64
    assert loaded.voxels[1, 2, 3] == data[3, 2, 1]  # voxels [k, j, i]
    # without an sform the qform holds the geometry
    image.set_sform(None, code=0)
    nib.save(image, tmp_path / "qform_only.nii.gz")
    np.testing.assert_allclose(load(tmp_path / "qform_only.nii.gz").ijk_to_ras, qform, atol=1e-5)
