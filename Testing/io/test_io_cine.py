"""Ultrasound cine readers: real DICOM/NRRD files, phantom round trips, bad input."""

import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import one_line_error, require
from pydicom.pixels import apply_color_lut, convert_color_space, pixel_array

from SpineAILib import images
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


# ---------------------------------------------------------------------------- 4K: downscaled on read

UHD = (2160, 3840)  # rows, cols of a 4K (UHD) frame
UHD_FRAMES = 24
UHD_FPS = 25.0


def _screen_frames(n=UHD_FRAMES, shape=UHD):
    """A generated infant spine cine as a 4K screen recording would show it: the 224 px
    image scaled up into the middle of a black 16:9 screen (grey content, RGB frames)."""
    import cv2

    from SpineAITraining.ultrasound.generator import generate_cine

    small = generate_cine(5, machine="linear_hf", n_frames=n).to_cine().frames
    rows, cols = shape
    left = (cols - rows) // 2
    for frame in small:
        screen = np.zeros((rows, cols, 3), np.uint8)
        screen[:, left : left + rows] = cv2.resize(frame, (rows, rows), interpolation=cv2.INTER_LINEAR)[..., np.newaxis]
        yield screen


@pytest.fixture(scope="module")
def uhd_video(tmp_path_factory):
    """A real 3840x2160 MPEG-4 file written by OpenCV, 24 frames at 25 frames/s (about 6 s to write)."""
    import cv2

    path = tmp_path_factory.mktemp("uhd") / "screen_4k.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), UHD_FPS, (UHD[1], UHD[0]))
    assert writer.isOpened()
    first = None
    for frame in _screen_frames():
        first = frame if first is None else first
        writer.write(frame)
    writer.release()
    return path, first


def test_4k_video_is_downscaled_on_read(uhd_video):
    import cv2

    path, first = uhd_video
    cine = load(path)
    assert cine.n_frames == UHD_FRAMES
    assert cine.frame_shape == (1080, 1920)  # the longer side capped at 1920 px, aspect ratio kept
    assert not cine.is_color
    np.testing.assert_allclose(cine.frame_times_ms, np.arange(UHD_FRAMES) * 1000.0 / UHD_FPS, atol=1e-6)
    assert cine.pixel_spacing == pytest.approx((2.0, 2.0))  # 1 mm per original pixel, two per stored pixel
    assert cine.metadata["downscaled_from"] == [2160, 3840]
    assert any("downscaled on read from 3840x2160 to 1920x1080" in w for w in cine.warnings), cine.warnings
    assert any("1 mm per pixel of the original frames" in w for w in cine.warnings)
    # the picture itself, not just its size: the first frame is the source frame shrunk (lossy codec)
    expected = cv2.cvtColor(cv2.resize(first, (1920, 1080), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    assert np.abs(cine.frames[0].astype(int) - expected).mean() < 4


def test_4k_video_over_the_memory_limit_is_downscaled_to_fit(uhd_video):
    path, _ = uhd_video
    limit = 60_000_000  # bytes; 24 RGB frames at 1920x1080 would need 149 MB
    cine = load_video(path, max_bytes=limit)
    rows, cols = cine.frame_shape
    assert cine.n_frames == UHD_FRAMES and UHD_FRAMES * rows * cols * 3 <= limit
    assert 640 <= cols < 1920 and abs(cols / rows - 16 / 9) < 0.01
    assert cine.pixel_spacing == pytest.approx((2160 / rows, 3840 / cols))  # the same size in mm
    note = next(w for w in cine.warnings if "downscaled on read" in w)
    assert f"from 3840x2160 to {cols}x{rows}" in note and "limit" in note
    # no cap on the side: only the limit shrinks the frames
    cine = load_video(path, max_side=None, max_bytes=limit)
    assert UHD_FRAMES * cine.frame_shape[0] * cine.frame_shape[1] * 3 <= limit


def test_4k_video_is_refused_when_even_downscaled_it_cannot_fit(uhd_video):
    path, _ = uhd_video
    message = one_line_error(load_video, path, max_bytes=5_000_000)
    assert "3840x2160" in message and "640x360" in message and "limit" in message


def test_4k_video_read_never_holds_the_full_size_cine(uhd_video, tmp_path):
    """Peak memory (VmHWM) of a fresh process reading the 4K file stays below what the
    full-size frames alone would take; without downscaling the same read needs more."""
    import subprocess
    import sys

    if not Path("/proc/self/status").is_file():
        pytest.skip("VmHWM needs Linux /proc")
    path, _ = uhd_video
    script = (
        "import json, sys\n"
        "import cv2, numpy\n"
        "from SpineAILib.io.cine import load_video\n"
        "def hwm():\n"
        "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) * 1024\n"
        "before = hwm()\n"
        "cine = load_video(sys.argv[1], **json.loads(sys.argv[2]))\n"
        "print(json.dumps({'grown': hwm() - before, 'shape': list(cine.frames.shape)}))\n"
    )

    def peak(**kwargs):
        done = subprocess.run([sys.executable, "-c", script, str(path), json.dumps(kwargs)], capture_output=True, text=True,
                              timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    full_rgb = UHD_FRAMES * UHD[0] * UHD[1] * 3  # 597 MB: what the reader held before it downscaled
    shrunk = peak()
    assert shrunk["shape"] == [UHD_FRAMES, 1080, 1920]
    assert shrunk["grown"] < 0.6 * full_rgb, shrunk  # measured: 286 MB (RGB 149 MB + grey 50 MB + decoder)
    whole = peak(max_side=None, max_bytes=4 * 1024**3)  # the same read without downscaling
    assert whole["shape"] == [UHD_FRAMES, 2160, 3840]
    assert whole["grown"] > full_rgb > shrunk["grown"], (whole, shrunk)


def test_spineai_run_lp_ultrasound_on_a_4k_video(uhd_video, tmp_path):
    import csv
    import subprocess
    import sys

    path, _ = uhd_video
    out = tmp_path / "run"
    env = dict(os.environ, SPINEAI_HEATMAPS="0", SPINEAI_MASKS="0", OMP_NUM_THREADS="1")
    done = subprocess.run([str(Path(sys.executable).with_name("spineai")), "run", "lp-ultrasound", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["results"]["frames"] == UHD_FRAMES
    assert any("downscaled on read from 3840x2160 to 1920x1080" in w for w in report["warnings"]), report["warnings"]
    assert report["results"]["scene_cine_downscaled_to"] == [720, 1280]  # the scene copy is smaller still
    with open(out / "frames.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == UHD_FRAMES
    assert [float(r["time_ms"]) for r in rows[:3]] == pytest.approx([0.0, 40.0, 80.0])
    assert (out / "scene.mrb").stat().st_size > 0 and (out / "timeline.png").is_file()


def test_frame_folder_wider_than_1920_px_is_downscaled(tmp_path):
    import cv2

    frames = [f[:1440, :2560] for f in _screen_frames(n=4)]  # 2560x1440 screenshots
    for n, frame in enumerate(frames, start=1):
        assert cv2.imwrite(str(tmp_path / f"shot{n}.png"), frame)
    cine = load(tmp_path)
    assert cine.n_frames == 4 and cine.frame_shape == (1080, 1920)
    assert cine.pixel_spacing == pytest.approx((1440 / 1080, 2560 / 1920))
    assert any("from 2560x1440 to 1920x1080" in w for w in cine.warnings), cine.warnings
    expected = cv2.cvtColor(cv2.resize(frames[2], (1920, 1080), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    assert np.abs(cine.frames[2].astype(int) - expected).max() <= 1  # PNG is lossless
    small = load_frame_folder(tmp_path, max_bytes=4 * 900 * 500 * 3)
    assert 4 * small.frame_shape[0] * small.frame_shape[1] * 3 <= 4 * 900 * 500 * 3
    message = one_line_error(load_frame_folder, tmp_path, max_bytes=100_000)
    assert "2560x1440" in message and "limit" in message


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
