"""DICOM reader: exact geometry, real JPEG 2000 CT, and one-line errors on bad folders."""

import math
import sys
import types
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import require
from pydicom.dataset import Dataset, FileMetaDataset

from SpineAILib import io as spineio
from SpineAILib.errors import AmbiguousInputError, InputError
from SpineAILib.images import Cine, VolumeImage
from SpineAILib.io import dicom
from SpineAILib.samples.dicom_writer import write_dicom_series


# ---------------------------------------------------------------- helpers


def rotation(ax, ay, az):
    """Rotation about x, then y, then z (degrees)."""
    x, y, z = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_image(shape=(6, 7, 9), spacing=(0.8, 1.3, 2.5), angles=(20, -35, 110), origin=(-40.5, 12.25, 301.0),
               flips=(-1, 1, -1), seed=0):
    """Volume with an oblique, anisotropic, partly negative IJK->RAS and random HU-like voxels."""
    m = np.eye(4)
    m[:3, :3] = rotation(*angles) @ np.diag(np.multiply(spacing, flips))
    m[:3, 3] = origin
    voxels = np.random.default_rng(seed).integers(-1000, 2500, size=shape).astype(np.int16)
    return VolumeImage(voxels=voxels, ijk_to_ras=m, modality="CT")


def axial_image(n=10, rows=6, cols=7, step=3.0, seed=1):
    m = np.diag([-0.7, -0.7, step, 1.0])
    m[:3, 3] = (100.0, 80.0, -200.0)
    voxels = np.random.default_rng(seed).integers(-1000, 1500, size=(n, rows, cols)).astype(np.int16)
    return VolumeImage(voxels=voxels, ijk_to_ras=m, modality="CT")


def sagittal_image(n=4, rows=8, cols=5, seed=2):
    m = np.zeros((4, 4))
    m[:3, 0] = (0, -0.9, 0)  # I towards posterior
    m[:3, 1] = (0, 0, -0.9)  # J towards inferior
    m[:3, 2] = (4.0, 0, 0)  # K towards the right (right-handed, so DICOM's normal order)
    m[:, 3] = (-8.0, 20.0, 30.0, 1.0)
    voxels = np.random.default_rng(seed).integers(0, 800, size=(n, rows, cols)).astype(np.int16)
    return VolumeImage(voxels=voxels, ijk_to_ras=m, modality="MR")


def ras_from_header(ds, row, col):
    """RAS of pixel (row, col) straight from DICOM PS3.3 C.7.6.2.1.1, then LPS -> RAS."""
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    lps = ipp + iop[:3] * col_spacing * col + iop[3:] * row_spacing * row
    return lps * np.array([-1.0, -1.0, 1.0])


def shuffle_names(paths, seed=3):
    """Rename files to random names so the reader cannot rely on file order."""
    order = np.random.default_rng(seed).permutation(len(paths))
    renamed = []
    for p, n in zip(paths, order):
        new = p.with_name(f"IM{n * 7919 % 10007:05d}")
        p.rename(new)
        renamed.append(new)
    return renamed


def one_line(error):
    text = str(error.value)
    assert "\n" not in text and text.strip() == text
    return text


# ---------------------------------------------------------------- geometry


def test_round_trip_keeps_oblique_geometry_and_voxels(tmp_path):
    image = make_image()
    assert np.linalg.det(image.ijk_to_ras[:3, :3]) > 0  # right-handed: K runs along the DICOM normal
    shuffle_names(write_dicom_series(image, tmp_path, series_description="oblique phantom"))
    loaded = dicom.load_folder(tmp_path)
    np.testing.assert_allclose(loaded.ijk_to_ras, image.ijk_to_ras, atol=1e-4)
    np.testing.assert_array_equal(loaded.voxels, image.voxels)
    assert loaded.voxels.dtype == np.int16
    assert loaded.modality == "CT" and loaded.description == "oblique phantom"
    assert loaded.orientation == image.orientation


def test_left_handed_input_comes_back_sorted_along_the_normal(tmp_path):
    """DICOM orders slices along row x column; a left-handed grid is reversed in K, same anatomy."""
    image = make_image(flips=(1, 1, -1))
    assert np.linalg.det(image.ijk_to_ras[:3, :3]) < 0
    write_dicom_series(image, tmp_path)
    loaded = dicom.load_folder(tmp_path)
    n = image.voxels.shape[0]
    flip_k = np.eye(4)
    flip_k[2, 2], flip_k[2, 3] = -1, n - 1
    np.testing.assert_allclose(loaded.ijk_to_ras, image.ijk_to_ras @ flip_k, atol=1e-4)
    np.testing.assert_array_equal(loaded.voxels, image.voxels[::-1])


def test_matrix_agrees_with_each_header_computed_independently(tmp_path):
    image = make_image(seed=5)
    paths = write_dicom_series(image, tmp_path, rescale=(2.0, -1024.0))
    loaded = dicom.load_folder(tmp_path)
    ras_to_ijk = np.linalg.inv(loaded.ijk_to_ras)
    for path in paths[::2]:
        ds = pydicom.dcmread(path)
        for row, col in [(0, 0), (5, 8), (3, 1)]:
            ras = ras_from_header(ds, row, col)
            i, j, k = (ras_to_ijk @ np.append(ras, 1.0))[:3]
            assert (i, j) == pytest.approx((col, row), abs=1e-4)
            assert k == pytest.approx(round(k), abs=1e-4)
            value = ds.pixel_array[row, col] * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            assert loaded.voxels[round(k), row, col] == value


def test_single_slice_file_uses_slice_thickness(tmp_path):
    image = axial_image(n=3, step=2.5)
    paths = write_dicom_series(image, tmp_path)
    single = dicom.load_file(paths[1])
    assert single.voxels.shape == (1, 6, 7)
    np.testing.assert_allclose(single.ijk_to_ras[:3, 3], image.ras_of_ijk((0, 0, 1)), atol=1e-4)
    assert single.spacing == pytest.approx((0.7, 0.7, 2.5))
    assert any("single slice" in w for w in single.warnings)


def make_enhanced_ct(image, path, reverse_frames=True):
    """An Enhanced CT Image Storage file of ``image`` with per-frame positions (frames reversed)."""
    lps = np.diag([-1.0, -1.0, 1.0]) @ image.ijk_to_ras[:3]
    col_spacing, row_spacing = np.linalg.norm(lps[:, 0]), np.linalg.norm(lps[:, 1])
    iop = [*(lps[:, 0] / col_spacing), *(lps[:, 1] / row_spacing)]
    order = list(range(image.voxels.shape[0]))[:: -1 if reverse_frames else 1]

    def item(**sequences):
        it = Dataset()
        for name, attrs in sequences.items():
            inner = Dataset()
            for key, value in attrs.items():
                setattr(inner, key, value)
            setattr(it, name, [inner])
        return it

    ds = Dataset()
    ds.SOPClassUID = pydicom.uid.EnhancedCTImageStorage
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.Modality, ds.SeriesDescription, ds.ImageType = "CT", "enhanced", ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.Rows, ds.Columns = image.voxels.shape[1:]
    ds.NumberOfFrames = len(order)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SharedFunctionalGroupsSequence = [
        item(
            PixelMeasuresSequence={"PixelSpacing": [f"{row_spacing:.10g}", f"{col_spacing:.10g}"], "SliceThickness": "1"},
            PlaneOrientationSequence={"ImageOrientationPatient": [f"{v:.12g}" for v in iop]},
            PixelValueTransformationSequence={"RescaleSlope": "1", "RescaleIntercept": "0", "RescaleType": "HU"},
        )
    ]
    ds.PerFrameFunctionalGroupsSequence = [
        item(PlanePositionSequence={"ImagePositionPatient": [f"{v:.12g}" for v in lps @ [0, 0, k, 1]]}) for k in order
    ]
    ds.PixelData = np.ascontiguousarray(image.voxels[order]).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_enhanced_multiframe_ct_is_a_volume(tmp_path):
    image = make_image(seed=7)
    path = make_enhanced_ct(image, tmp_path / "enhanced.dcm")
    for loaded in (dicom.load_file(path), dicom.load_folder(tmp_path)):
        assert isinstance(loaded, VolumeImage)
        np.testing.assert_allclose(loaded.ijk_to_ras, image.ijk_to_ras, atol=1e-4)
        np.testing.assert_array_equal(loaded.voxels, image.voxels)
    (item,) = dicom.describe_folder(tmp_path)
    assert item["multiframe"] and item["slices"] == image.voxels.shape[0] and item["kind"] == "volume"


def test_jpeg_baseline_series_decodes_with_its_geometry(tmp_path):
    """JPEG baseline (1.2.840.10008.1.2.4.50, 8-bit, lossy): written here with Pillow's encoder and
    pydicom's encapsulation, decoded through the reader's plugins; geometry exact, pixels within JPEG's loss."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate

    shape = (5, 48, 64)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    smooth = 40 + 120 * np.exp(-((j - 24) ** 2 + (i - 30 - 2 * k) ** 2) / 300.0) + 0.8 * i  # 8-bit range, smooth
    m = np.eye(4)
    m[:3, :3] = rotation(10, -5, 30) @ np.diag([0.6, 0.6, 2.0])
    m[:3, 3] = (-20.0, 15.0, 40.0)
    image = VolumeImage(voxels=np.round(smooth).astype(np.int16), ijk_to_ras=m, modality="MR")
    folder = tmp_path / "jpeg"
    write_dicom_series(image, folder, modality="MR", series_description="JPEG baseline")
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        values = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
        plain = np.round(values).astype(np.uint8)  # 40..215: stored as they are, no rescale
        ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
        buffer = io.BytesIO()
        Image.fromarray(plain, mode="L").save(buffer, format="JPEG", quality=95)
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit
        ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(next(folder.iterdir())).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    loaded = spineio.load(folder)
    assert isinstance(loaded, VolumeImage) and loaded.voxels.shape == shape
    np.testing.assert_allclose(loaded.ijk_to_ras, image.ijk_to_ras, atol=1e-4)
    error = np.abs(loaded.voxels.astype(float) - image.voxels)
    assert error.mean() < 1.5 and error.max() < 12, (error.mean(), error.max())
    (item,) = dicom.describe_folder(folder)
    assert "JPEG" in item["transfer_syntax"] and "Baseline" in item["transfer_syntax"], item["transfer_syntax"]


# ---------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_ct(shared_data):
    folder = require(shared_data / "ct_thoracolumbar" / "dicom_series")
    return folder, dicom.load_folder(folder)


@pytest.mark.realdata
def test_real_jpeg2000_ct_loads_with_plausible_hounsfield_units(real_ct):
    folder, ct = real_ct
    assert ct.voxels.shape == (20, 512, 512) and ct.voxels.dtype == np.int16
    # 3 mm thick slices reconstructed every 2 mm (overlapping): K spacing is the 2 mm step, not SliceThickness.
    assert ct.spacing == pytest.approx((0.9765625, 0.9765625, 2.0))
    assert ct.metadata["SliceThickness"] == 3.0
    assert ct.orientation == "axial" and ct.modality == "CT"
    assert ct.voxels.min() >= -1024 and np.mean(ct.voxels < -900) > 0.2  # air around the body
    assert ct.voxels.max() > 1000 and np.mean(ct.voxels > 300) > 0.005  # bone
    assert ct.warnings == []
    first = pydicom.dcmread(sorted(folder.iterdir())[-1])  # the most inferior slice comes first in K
    np.testing.assert_allclose(ct.ras_of_ijk((10, 20, 0)), ras_from_header(first, 20, 10), atol=1e-4)
    np.testing.assert_array_equal(ct.voxels[0], first.pixel_array.astype(np.int16) - 1024)


@pytest.mark.realdata
def test_real_ct_geometry_matches_the_label_nifti(real_ct, shared_data):
    nib = pytest.importorskip("nibabel")
    _, ct = real_ct
    labels = nib.load(require(shared_data / "ct_thoracolumbar" / "dicom_series_model_labels_totalsegmentator.nii.gz"))
    assert labels.shape == ct.dimensions  # same I, J, K sizes
    # The NIfTI was written (dcm2niix style) with the rows stored bottom-up: its voxel j is our
    # row 511 - j, so its affine is ours with J flipped; I (columns) and K (inferior first) agree.
    rows = ct.voxels.shape[1]
    flip_j = np.eye(4)
    flip_j[1, 1], flip_j[1, 3] = -1, rows - 1
    np.testing.assert_allclose(labels.affine, ct.ijk_to_ras @ flip_j, atol=1e-3)
    # The same voxels, through RAS: TotalSegmentator's T11/T12 labels (33/32) sit on bone,
    # the spinal cord (79) on soft tissue.
    data = np.asarray(labels.dataobj)
    to_ours = np.linalg.inv(ct.ijk_to_ras) @ labels.affine
    for label, low, high in [(32, 150, 2000), (33, 150, 2000), (79, -50, 120)]:
        ijk = np.argwhere(data == label)
        i, j, k = np.rint((to_ours[:3, :3] @ ijk.T).T + to_ours[:3, 3]).astype(int).T
        assert low < ct.voxels[k, j, i].mean() < high, label


@pytest.mark.realdata
def test_real_folder_description(shared_data):
    folder = require(shared_data / "ct_thoracolumbar" / "dicom_series")
    (item,) = dicom.describe_folder(folder)
    assert item["index"] == 1 and item["slices"] == 20 and item["dimensions"] == [512, 512, 20]
    assert item["orientation"] == "axial" and item["transfer_syntax"].startswith("JPEG 2000")
    assert item["series_instance_uid"] == ""  # the public copy was anonymised by blanking the UIDs
    assert item["loadable"] and not item["localizer"]


@pytest.mark.realdata
def test_ultrasound_files_are_dicom_and_go_to_the_cine_reader(shared_data, monkeypatch):
    folder = require(shared_data / "us_format")
    us_files = sorted(folder.glob("*.dcm"))
    assert us_files and all(dicom.is_dicom_file(p) for p in us_files)
    assert not any(dicom.is_dicom_file(p) for p in folder.glob("*.nrrd"))
    calls = []
    fake = types.ModuleType("SpineAILib.io.cine")
    fake.load_dicom_cine = lambda path: calls.append(Path(path)) or Cine(np.zeros((2, 4, 4), np.uint8), [0, 33])
    monkeypatch.setitem(sys.modules, "SpineAILib.io.cine", fake)
    for path in us_files:
        assert isinstance(dicom.load_file(path), Cine)
    assert calls == us_files
    kinds = {item["kind"] for item in dicom.describe_folder(folder)}
    assert kinds == {"cine"}


@pytest.mark.realdata
def test_ultrasound_cine_loads_through_the_real_cine_reader(shared_data):
    pytest.importorskip("SpineAILib.io.cine")
    cine = dicom.load_file(require(shared_data / "us_format" / "cine_echo_30frames_ybr.dcm"))
    assert isinstance(cine, Cine) and cine.n_frames == 30


# ---------------------------------------------------------------- bad input


def test_corrupt_files_are_warned_and_the_good_series_still_loads(tmp_path):
    image = axial_image(n=5)
    paths = write_dicom_series(image, tmp_path)
    rng = np.random.default_rng(0)
    (tmp_path / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + rng.integers(0, 256, 400, dtype=np.uint8).tobytes())
    (tmp_path / "truncated.dcm").write_bytes(paths[0].read_bytes()[:600])
    (tmp_path / "notes.txt").write_text("not an image")  # silently ignored
    loaded = dicom.load_folder(tmp_path)
    np.testing.assert_array_equal(loaded.voxels, image.voxels)
    text = " ".join(loaded.warnings)
    assert "garbage.dcm" in text and "truncated.dcm" in text and "notes.txt" not in text
    (item,) = dicom.describe_folder(tmp_path)
    assert any("garbage.dcm" in w for w in item["warnings"])


def test_two_series_are_ambiguous_until_one_is_chosen(tmp_path):
    ct, mr = axial_image(), sagittal_image()
    write_dicom_series(ct, tmp_path / "a", series_description="CT axial")
    write_dicom_series(mr, tmp_path / "b" / "deeper", modality="MR", series_description="T2 sag", rescale=(1, 0))
    with pytest.raises(AmbiguousInputError) as error:
        dicom.load_folder(tmp_path)
    text = one_line(error)
    assert "CT axial" in text and "T2 sag" in text and "--series" in text
    assert "axial" in text and "sagittal" in text and "10 slices" in text and "4 slices" in text
    items = dicom.describe_folder(tmp_path)
    assert [i["index"] for i in items] == [1, 2] and len(error.value.choices) == 2
    by_desc = {i["description"]: i for i in items}
    chosen = dicom.load_folder(tmp_path, series=str(by_desc["T2 sag"]["index"]))
    assert chosen.modality == "MR" and chosen.orientation == "sagittal"
    np.testing.assert_array_equal(chosen.voxels, mr.voxels)
    np.testing.assert_allclose(chosen.ijk_to_ras, mr.ijk_to_ras, atol=1e-4)
    assert dicom.load_folder(tmp_path, series=by_desc["CT axial"]["index"]).modality == "CT"
    assert dicom.load_folder(tmp_path, series=by_desc["CT axial"]["series_instance_uid"]).description == "CT axial"
    with pytest.raises(InputError) as error:
        dicom.load_folder(tmp_path, series=3)
    assert "1 to 2" in one_line(error)


def test_localizer_does_not_make_a_folder_ambiguous(tmp_path):
    write_dicom_series(axial_image(), tmp_path / "ct", series_description="CT axial")
    write_dicom_series(sagittal_image(n=1), tmp_path / "scout", modality="MR", series_description="scout", rescale=(1, 0))
    assert dicom.load_folder(tmp_path).description == "CT axial"
    assert [i["localizer"] for i in dicom.describe_folder(tmp_path)] == [False, True]


def test_missing_slice_is_refused_with_the_gap(tmp_path):
    write_dicom_series(axial_image(n=10, step=3.0), tmp_path, drop_slices=[5])
    with pytest.raises(InputError) as error:
        dicom.load_folder(tmp_path)
    assert "missing slice(s): gap of 6.0 mm between slice 5 and 6 where 3.0 mm is expected" in one_line(error)
    (item,) = dicom.describe_folder(tmp_path)  # describing still works, and says why it cannot load
    assert not item["loadable"] and "gap of 6.0 mm" in item["problem"]


def test_duplicate_slice_is_warned_and_dropped(tmp_path):
    image = axial_image(n=6)
    paths = write_dicom_series(image, tmp_path)
    (tmp_path / "copy.dcm").write_bytes(paths[2].read_bytes())
    loaded = dicom.load_folder(tmp_path)
    np.testing.assert_array_equal(loaded.voxels, image.voxels)
    assert any("repeat a position" in w for w in loaded.warnings)


def _tilt_one_slice(path, degrees):
    ds = pydicom.dcmread(path)
    r = rotation(degrees, 0, 0)
    iop = [float(v) for v in ds.ImageOrientationPatient]
    ds.ImageOrientationPatient = [f"{v:.10f}" for v in (*(r @ iop[:3]), *(r @ iop[3:]))]
    ds.save_as(path)


def test_a_tilted_slice_is_refused(tmp_path):
    paths = write_dicom_series(axial_image(n=8), tmp_path)
    _tilt_one_slice(paths[3], 5.0)
    with pytest.raises(InputError) as error:
        dicom.load_folder(tmp_path)
    text = one_line(error)
    assert "differing orientation" in text and paths[3].name in text and "5.0 degrees" in text


def test_two_clean_stacks_in_one_series_load_the_largest(tmp_path):
    uid = pydicom.uid.generate_uid()
    axial = axial_image(n=6)
    write_dicom_series(axial, tmp_path / "ax", series_uid=uid)
    write_dicom_series(sagittal_image(n=3), tmp_path / "sag", series_uid=uid)
    loaded = dicom.load_folder(tmp_path)
    assert loaded.voxels.shape == axial.voxels.shape and loaded.orientation == "axial"
    assert any("different orientations" in w for w in loaded.warnings)


def test_slices_of_different_sizes_are_refused(tmp_path):
    uid = pydicom.uid.generate_uid()
    write_dicom_series(axial_image(n=4, rows=6), tmp_path / "a", series_uid=uid)
    write_dicom_series(axial_image(n=4, rows=5), tmp_path / "b", series_uid=uid)
    with pytest.raises(InputError) as error:
        dicom.load_folder(tmp_path)
    assert "different sizes" in one_line(error)


def test_huge_series_is_refused_from_its_headers_before_decoding(tmp_path):
    """3 files claim 30000x30000 pixels (5 GiB as int16) but hold only a few bytes of pixel data."""
    for path in write_dicom_series(axial_image(n=3, rows=2, cols=2), tmp_path):
        ds = pydicom.dcmread(path)
        ds.Rows = ds.Columns = 30000
        ds.save_as(path)
    (item,) = dicom.describe_folder(tmp_path)
    assert item["dimensions"] == [30000, 30000, 3]
    with pytest.raises(InputError) as error:
        dicom.load_folder(tmp_path)
    text = one_line(error)
    assert "GiB" in text and "limit" in text and "decode" not in text


def test_undecodable_pixel_data_names_the_file(tmp_path):
    paths = write_dicom_series(axial_image(n=4), tmp_path)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) - 20])  # pixel data cut short
    with pytest.raises(InputError) as error:
        dicom.load_folder(tmp_path)
    assert paths[1].name in one_line(error)


# Run in a child process: pydicom's own plugin registry loses every JPEG 2000 decoder there (what a
# machine without pylibjpeg-openjpeg, Pillow's OpenJPEG and python-gdcm has), then the real series is read.
_WITHOUT_J2K = """
import sys
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000, JPEG2000Lossless
for uid in (JPEG2000Lossless, JPEG2000):
    decoder = get_decoder(uid)
    for label in list(decoder.available_plugins):
        decoder.remove_plugin(label)
    assert not decoder.is_available
from SpineAILib.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.realdata
def test_missing_jpeg2000_plugin_is_named_on_the_real_series(shared_data, tmp_path):
    import subprocess

    folder = require(shared_data / "ct_thoracolumbar" / "dicom_series")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", _WITHOUT_J2K, "run", "cervical-ct", str(folder), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("spineai")]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("spineai: error: ") and "cannot decode pixel data stored as JPEG 2000" in lines[0]
    assert "install pylibjpeg-openjpeg" in lines[0] and "1.2.840.10008.1.2.4.90" in lines[0]
    assert not out.exists()
    # with the plugins in place (this process) the same files decode; a damaged stream is named as such
    path = next(folder.iterdir())
    ds = pydicom.dcmread(path)
    assert "could not be decoded" in str(dicom._decode_error(Path(path), ds, RuntimeError("boom")))


def test_empty_folder_and_text_file_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    for path, expected in [(empty, "folder is empty"), (text_file, "not a recognised image file")]:
        with pytest.raises(InputError) as error:
            spineio.describe(path)
        assert expected in one_line(error)
    assert not dicom.is_dicom_file(text_file) and not dicom.is_dicom_file(empty)
    with pytest.raises(InputError) as error:
        dicom.load_file(text_file)
    assert "not a DICOM file" in one_line(error)
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    (nothing / "a.txt").write_text("x")
    with pytest.raises(InputError) as error:
        dicom.load_folder(nothing)
    assert "no DICOM images found" in one_line(error)


def test_through_the_generic_loader(tmp_path):
    pytest.importorskip("SpineAILib.io.cine")
    pytest.importorskip("SpineAILib.io.volumes")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError) as error:
        spineio.load(empty)
    assert "folder is empty" in one_line(error)
    image = axial_image(n=4)
    write_dicom_series(image, tmp_path / "series")
    np.testing.assert_array_equal(spineio.load(tmp_path / "series").voxels, image.voxels)


def test_file_without_preamble_is_detected_and_loaded(tmp_path):
    image = axial_image(n=1)
    (path,) = write_dicom_series(image, tmp_path / "with")
    ds = pydicom.dcmread(path)
    del ds.file_meta
    ds.preamble = None
    bare = tmp_path / "bare"
    pydicom.dcmwrite(bare, ds, implicit_vr=True, little_endian=True)  # old-style: no preamble, no 'DICM'
    assert bare.read_bytes()[128:132] != b"DICM"
    assert dicom.is_dicom_file(bare)
    np.testing.assert_array_equal(dicom.load_file(bare).voxels, image.voxels)


def test_no_identifying_fields_in_metadata(tmp_path):
    write_dicom_series(axial_image(n=3), tmp_path, patient_name="Doe^Jane", patient_id="MRN-123456")
    loaded = dicom.load_folder(tmp_path)
    flat = repr(loaded.metadata) + repr(loaded.summary())
    assert "Doe" not in flat and "MRN-123456" not in flat
    assert loaded.metadata["SeriesInstanceUID"] and loaded.metadata["Modality"] == "CT"
