"""Ultrasound cine readers: real DICOM/NRRD files, phantom round trips, bad input."""

import json

import numpy as np
import pydicom
import pytest
from conftest import one_line_error, require
from pydicom.pixels import apply_color_lut, convert_color_space, pixel_array

from SpineAILib import images
from SpineAILib.errors import InputError
from SpineAILib.images import Cine
from SpineAILib.io import load
from SpineAILib.io.cine import collapse_grey, load_dicom_cine, load_frame_folder, load_image, load_video
from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_dicom, write_cine_video, write_frame_folder


@pytest.fixture(scope="module")
def grey():
    return make_cine_phantom()


@pytest.fixture(scope="module")
def colour():
    return make_cine_phantom(color=True)


# ---------------------------------------------------------------------------- real files


@pytest.mark.realdata
def test_real_ybr_cine_frames_timing_and_spacing(shared_data):
    cine = load_dicom_cine(require(shared_data / "us_format/cine_echo_30frames_ybr.dcm"))
    assert cine.n_frames == 30 and cine.frame_shape == (240, 320)
    assert cine.frame_times_ms[1] - cine.frame_times_ms[0] == pytest.approx(33.333, abs=0.01)
    assert cine.frame_times_ms[-1] == pytest.approx(29 * 33.333, abs=0.1)
    assert cine.pixel_spacing == pytest.approx((0.5105, 0.5105), abs=1e-3)  # region in cm -> mm
    assert cine.metadata["PhotometricInterpretation"] == "YBR_FULL_422"
    assert cine.warnings == []


@pytest.mark.realdata
def test_real_ybr_cine_colour_conversion(shared_data):
    path = require(shared_data / "us_format/cine_echo_30frames_ybr.dcm")
    cine = load_dicom_cine(path)
    assert cine.is_color  # green marker, bluish tool bar: real colour content
    ybr = pixel_array(pydicom.dcmread(str(path)), as_rgb=False).astype(np.int16)  # values as stored
    rgb = cine.frames.astype(np.int16)
    # Pixels stored with neutral chroma (Cb = Cr = 128) must come out grey with R = G = B = Y;
    # reading YBR as if it were RGB would give (Y, 128, 128) there instead.
    neutral = (np.abs(ybr[..., 1] - 128) <= 1) & (np.abs(ybr[..., 2] - 128) <= 1) & (ybr[..., 0] > 40)
    assert neutral.sum() > 10000
    assert np.abs(rgb[neutral] - ybr[neutral][:, :1]).max() <= 3
    # Everywhere: the BT.601 YBR_FULL -> RGB conversion of the stored values.
    expected = convert_color_space(ybr.astype(np.uint8), "YBR_FULL", "RGB", per_frame=True).astype(np.int16)
    assert np.abs(rgb - expected).max() <= 1
    # The marker dot at the top of the sector is green (swapped channels would not be).
    red, green, blue = rgb[0, 18:21, 188:192].reshape(-1, 3).mean(axis=0)
    assert green > red + 30 and green > blue + 10


@pytest.mark.realdata
def test_real_cine_metadata_has_no_patient_identifiers(shared_data):
    path = require(shared_data / "us_format/cine_echo_30frames_ybr.dcm")
    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    cine = load_dicom_cine(path)
    text = json.dumps(cine.metadata)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate"):
        value = str(ds.get(keyword, "") or "")
        assert not value or value not in text
    assert cine.metadata["Manufacturer"] == "SonoSite, Inc."
    assert cine.metadata["SeriesInstanceUID"] == ds.SeriesInstanceUID


@pytest.mark.realdata
def test_real_palette_colour_frame(shared_data):
    path = require(shared_data / "us_format/us_palette_single.dcm")
    cine = load_dicom_cine(path)
    ds = pydicom.dcmread(str(path))
    assert cine.n_frames == 1 and cine.is_color and cine.frames.shape == (1, 350, 800, 3)
    expected = (apply_color_lut(ds.pixel_array, ds) >> 8).astype(np.uint8)  # 16-bit LUT entries
    np.testing.assert_array_equal(cine.frames[0], expected)
    assert cine.frame_times_ms.tolist() == [0.0]
    assert cine.pixel_spacing == pytest.approx((0.2623, 0.2623), abs=1e-3)


@pytest.mark.realdata
def test_real_ultrasound_nrrd_frame_is_a_one_frame_cine(shared_data):
    import nrrd

    path = require(shared_data / "us_format/us_frame_no_anatomy_1.nrrd")
    cine = load(path)
    assert isinstance(cine, Cine)
    assert cine.n_frames == 1 and cine.frame_shape == (512, 512) and not cine.is_color
    data, _ = nrrd.read(str(path))  # (I, J, K=1)
    np.testing.assert_array_equal(cine.frames[0], data[:, :, 0].T)


# ---------------------------------------------------------------------------- phantom round trips


@pytest.mark.parametrize(
    "photometric, source",
    [("MONOCHROME2", "grey"), ("RGB", "grey"), ("RGB", "colour"), ("YBR_FULL_422", "grey"), ("YBR_FULL_422", "colour")],
)
def test_dicom_round_trip(tmp_path, request, photometric, source):
    cine = request.getfixturevalue(source)
    path = write_cine_dicom(cine, tmp_path / "cine.dcm", color=photometric, patient_name="Doe^Jane", patient_id="ID-4711")
    again = load_dicom_cine(path)
    assert pydicom.dcmread(str(path)).SOPClassUID == pydicom.uid.UltrasoundMultiFrameImageStorage
    assert again.n_frames == cine.n_frames
    assert again.is_color == cine.is_color  # grey stored as RGB/YBR comes back grey
    assert np.abs(again.frames.astype(int) - cine.frames).max() <= (1 if photometric == "YBR_FULL_422" else 0)
    np.testing.assert_allclose(again.frame_times_ms, cine.frame_times_ms)
    assert again.pixel_spacing == pytest.approx(cine.pixel_spacing)
    assert "Doe" not in json.dumps(again.metadata) and "4711" not in json.dumps(again.metadata)


def test_dicom_frame_time_vector_and_default_rate(tmp_path, grey):
    path = write_cine_dicom(grey, tmp_path / "cine.dcm")
    ds = pydicom.dcmread(str(path))
    del ds.FrameTime, ds.CineRate
    ds.FrameTimeVector = [0] + [40, 60] * 5 + [40]
    ds.FrameIncrementPointer = 0x00181065
    ds.save_as(str(path))
    times = load_dicom_cine(path).frame_times_ms
    assert times[:4].tolist() == [0, 40, 100, 140] and times[-1] == 540

    ds.FrameTimeVector = [40, 60] * 5 + [40]  # first frame's 0 left out
    ds.FrameIncrementPointer = [0x00181065, 0x00181063]  # multi-valued pointer
    ds.save_as(str(path))
    assert load_dicom_cine(path).frame_times_ms[-1] == 540

    ds.CineRate = 25
    del ds.FrameTimeVector
    ds.save_as(str(path))
    assert load_dicom_cine(path).frame_times_ms[2] == pytest.approx(80)

    del ds.CineRate, ds.FrameIncrementPointer
    ds.save_as(str(path))
    cine = load_dicom_cine(path)
    assert cine.frame_times_ms[1] == pytest.approx(1000 / 30)
    assert any("30 frames/s assumed" in w for w in cine.warnings)


def test_monochrome1_is_inverted(tmp_path, grey):
    path = write_cine_dicom(grey, tmp_path / "cine.dcm")
    ds = pydicom.dcmread(str(path))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(str(path))
    np.testing.assert_array_equal(load_dicom_cine(path).frames, 255 - grey.frames)


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
@pytest.mark.parametrize("source", ["grey", "colour"])
def test_video_round_trip(tmp_path, request, suffix, source):
    cine = request.getfixturevalue(source)
    path = write_cine_video(cine, tmp_path / f"cine{suffix}", fps=20)
    again = load(path)
    assert isinstance(again, Cine)
    assert again.n_frames == cine.n_frames and again.frame_shape == cine.frame_shape
    assert again.is_color == cine.is_color
    assert np.abs(again.frames.astype(int) - cine.frames).mean() < 6  # lossy codec
    np.testing.assert_allclose(again.frame_times_ms, np.arange(cine.n_frames) * 50.0, atol=1e-6)


def test_frame_folder_natural_order_and_fps(tmp_path, grey):
    write_frame_folder(grey, tmp_path / "frames")
    (tmp_path / "frames" / "notes.txt").write_text("not a frame")
    cine = load(tmp_path / "frames")
    assert cine.metadata["files"][8:11] == ["frame9.png", "frame10.png", "frame11.png"]
    np.testing.assert_array_equal(cine.frames, grey.frames)  # PNG is lossless
    assert cine.frame_times_ms[1] == pytest.approx(1000 / 30)
    assert any("30 frames/s assumed" in w for w in cine.warnings)
    cine = load_frame_folder(tmp_path / "frames", fps=10)
    assert cine.frame_times_ms[-1] == pytest.approx(1100) and not any("frames/s" in w for w in cine.warnings)


def test_single_image_is_a_one_frame_cine(tmp_path, colour):
    path = write_frame_folder(colour, tmp_path)[0]
    cine = load_image(path)
    assert cine.n_frames == 1 and cine.is_color
    np.testing.assert_array_equal(cine.frames[0], colour.frames[0])


def test_grey_detection_tolerates_codec_noise_but_keeps_colour():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, size=(2, 20, 30), dtype=np.uint8)
    rgb = np.repeat(base[..., None], 3, axis=-1).astype(np.int16)
    rgb[..., 0] += rng.integers(-3, 4, size=base.shape)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    assert collapse_grey(rgb).shape == (2, 20, 30)
    rgb[1, 5, 5] = (250, 0, 0)  # one coloured pixel is colour content
    assert collapse_grey(rgb).shape == (2, 20, 30, 3)


# ---------------------------------------------------------------------------- bad input


def test_corrupt_video_is_refused(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(np.random.default_rng(4).bytes(20000))
    assert "cannot decode video" in one_line_error(load_video, path)


def test_huge_video_is_refused_before_reading(tmp_path, grey, monkeypatch):
    path = write_cine_video(grey, tmp_path / "cine.avi", fps=20)
    monkeypatch.setattr(images, "MAX_VOLUME_BYTES", 1_000_000)  # 12x160x200x3 = 1.15 MB
    assert "12x160x200x3" in one_line_error(load_video, path)


def test_frames_of_different_sizes_are_refused(tmp_path, grey):
    write_frame_folder(grey, tmp_path)
    small = make_cine_phantom(n_frames=1, rows=100, cols=120)
    (tmp_path / "frame7.png").unlink()
    write_frame_folder(small, tmp_path, prefix="frame7_")  # writes frame7_1.png, sorted after frame7
    message = one_line_error(load_frame_folder, tmp_path)
    assert "frame7_1.png" in message and "120x100" in message and "200x160" in message


def test_sixteen_bit_png_is_scaled_with_a_warning(tmp_path):
    import cv2

    image = (np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)  # 0 .. 61420
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), image)
    cine = load_image(path)
    assert cine.frames.dtype == np.uint8 and cine.frames.max() == 255 and cine.frames.min() == 0
    assert any("16-bit" in w and "scaled" in w for w in cine.warnings)


def test_not_dicom_is_refused(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_bytes(b"hello" * 100)
    one_line_error(load_dicom_cine, path)
