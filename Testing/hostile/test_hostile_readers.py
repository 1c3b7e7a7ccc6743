"""Issue 17, rows 4, 8, 9, 10: every reader (series, lumbar study, NIfTI/NRRD, bundles) applies the
same checks and refuses hostile headers with one line and exit 2."""

import struct

import nibabel as nib
import numpy as np
import pytest
from hostile_files import assert_refused, cli, copy_bundle, dicom_series


def test_detached_header_cannot_read_a_file_from_elsewhere(tmp_path, capsys):
    header = tmp_path / "frame.nhdr"
    header.write_text("NRRD0004\ntype: uchar\ndimension: 2\nsizes: 16 8\nencoding: raw\ndata file: /etc/passwd\n")
    assert_refused(*cli(capsys, "info", header), "/etc/passwd", "refused")
    assert_refused(*cli(capsys, "run", "lp-ultrasound", header, "--out", tmp_path / "R"), "/etc/passwd")
    assert not (tmp_path / "R").exists()
    header.write_text(header.read_text().replace("/etc/passwd", "../outside.raw"))
    assert_refused(*cli(capsys, "info", header), "outside")


def test_detached_header_beside_its_data_still_reads(tmp_path, capsys):
    (tmp_path / "frame.raw").write_bytes(bytes(range(128)))
    header = tmp_path / "frame.nhdr"
    header.write_text("NRRD0004\ntype: uchar\ndimension: 2\nsizes: 16 8\nencoding: raw\ndata file: frame.raw\n")
    code, lines = cli(capsys, "info", header)
    assert code == 0, lines


def nifti(path, srow_x):
    """A NIfTI-1 file whose sform's first row is ``srow_x``, written into the header bytes
    (nibabel itself would recompute the sform from a clean affine)."""
    image = nib.Nifti1Image(np.ones((6, 6, 6), np.int16), np.eye(4))
    image.header.set_sform(np.eye(4), code=1)
    nib.save(image, path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<4f", data, 280, *srow_x)  # srow_x: bytes 280..295 of the header
    path.write_bytes(bytes(data))
    return path


def test_nifti_with_nan_in_its_sform_is_refused(tmp_path, capsys):
    assert_refused(*cli(capsys, "info", nifti(tmp_path / "nan.nii", [1, 0, 0, float("nan")])), "NaN")
    assert_refused(*cli(capsys, "info", nifti(tmp_path / "flat.nii", [0, 0, 0, 0])), "degenerate")


@pytest.mark.parametrize("field, value, fragment", [
    ("PixelSpacing", [0, 0.9], "not positive"),
    ("PixelSpacing", [-0.9, 0.9], "not positive"),
    ("ImageOrientationPatient", [1, 0, 0, 0.5, 0.5, 0], "perpendicular"),
    ("ImageOrientationPatient", [0, 0, 0, 0, 0, 0], "zero direction"),
    ("RescaleSlope", "NaN", "RescaleSlope"),
    ("RescaleSlope", 1e308, "RescaleSlope"),
])  # fmt: skip
def test_series_headers_are_checked(tmp_path, capsys, field, value, fragment):
    def edit(ds, k):
        setattr(ds, field, value)

    folder = dicom_series(tmp_path / "s", edit=edit)
    assert_refused(*cli(capsys, "info", folder / sorted(p.name for p in folder.iterdir())[0]), fragment)
    assert_refused(*cli(capsys, "run", "cervical-ct", folder, "--out", tmp_path / "R"), fragment)
    assert not (tmp_path / "R").exists()


def lumbar_study(root, edit=None, layout="sagittal+axial"):
    """Two series, so that lumbar-mri reads the folder through its study reader; two axial
    series make it an axial-only study, whose stack the study reader itself decodes."""
    first = ("Sagittal T2", "sagittal") if layout == "sagittal+axial" else ("Axial T2", "axial")
    dicom_series(root / "series1", description=first[0], orientation=first[1], edit=edit)
    dicom_series(root / "series2", description="Axial T2 second", orientation="axial", edit=edit)
    return root


def truncate(ds, k):
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]


def huge(ds, k):
    ds.Rows, ds.Columns = 60000, 60000


def bits8(ds, k):
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7


@pytest.mark.parametrize("edit, fragment", [
    (lambda ds, k: setattr(ds, "RescaleSlope", 1e308), "RescaleSlope"),
    (lambda ds, k: setattr(ds, "RescaleSlope", "NaN"), "RescaleSlope"),
    (huge, "limit"),
    (truncate, "truncated"),
    (bits8, ""),
    (lambda ds, k: setattr(ds, "ImageOrientationPatient", [0, 0, 0, 0, 0, 0]), ""),
    (lambda ds, k: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0.7, 0.7, 0]), ""),
])  # fmt: skip
@pytest.mark.parametrize("layout", ["sagittal+axial", "axial-only"])
def test_lumbar_study_reader_applies_the_same_checks(tmp_path, capsys, edit, fragment, layout):
    study = lumbar_study(tmp_path / "study", edit, layout)
    line = assert_refused(*cli(capsys, "run", "lumbar-mri", study, "--out", tmp_path / "R"), fragment)
    assert not (tmp_path / "R").exists(), line


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: m["input"].update(size=[100000, 100000]), "input.size"),
    (lambda m: m["network"]["args"].update(widen_factor=1e6), "widen_factor"),
    (lambda m: m["network"]["args"].update(widen_factor=float("nan")), "widen_factor"),
    (lambda m: m.update(labels=["quality", "cord", "fluid"]), "labels"),
])  # fmt: skip
def test_hostile_bundle_metadata_is_one_line(tmp_path, capsys, edit, fragment):
    from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_dicom

    bundle = copy_bundle("lp-ultrasound-classifier", tmp_path / "bundle", edit)
    cine = write_cine_dicom(make_cine_phantom(n_frames=2, rows=32, cols=40), tmp_path / "cine.dcm") or tmp_path / "cine.dcm"
    assert_refused(*cli(capsys, "run", "lp-ultrasound", cine, "--out", tmp_path / "R", "--model", bundle), fragment)
    assert not (tmp_path / "R").exists()


def test_renamed_vertebra_labels_are_refused(tmp_path):
    from SpineAILib.errors import BundleError
    from SpineAILib.models.bundle import read_metadata

    def rename(meta):
        meta["labels"] = ["background", "first", "second"] + meta["labels"][3:]

    bundle = copy_bundle("lumbar-mri-vertebrae", tmp_path / "bundle", rename)
    with pytest.raises(BundleError, match="vertebra names"):
        read_metadata(bundle)


@pytest.mark.parametrize("bits", [8, 32])
def test_consistent_8_and_32_bit_series_read_through_the_study_reader(tmp_path, bits):
    from SpineAILib.io import load
    from SpineAILib.workflows.lumbar.severity.study import load_study_folder

    def store(ds, k):
        array = ds.pixel_array.astype(np.uint8 if bits == 8 else np.uint32)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
        ds.PixelData = array.tobytes()

    study = lumbar_study(tmp_path / "study", store)
    series = [s for s in load_study_folder(study).series if s.kind == "sagittal_t2"][0]
    assert series.pixels(0).shape == (16, 16) and np.isfinite(series.pixels(0)).all()
    assert load(study / "series1").voxels.shape == (6, 16, 16)


def test_a_cine_of_too_many_frames_is_refused_before_decoding(tmp_path, capsys):
    import cv2

    from SpineAILib.io.checks import MAX_CINE_FRAMES

    frame = np.full((16, 16), 128, np.uint8)
    ok, png = cv2.imencode(".png", frame)
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in range(MAX_CINE_FRAMES + 1):
        (folder / f"frame{n}.png").write_bytes(png.tobytes())
    assert_refused(*cli(capsys, "run", "lp-ultrasound", folder, "--out", tmp_path / "R"), f"{MAX_CINE_FRAMES + 1} frames")
    assert not (tmp_path / "R").exists()


def damaged_modality(tmp_path, vr):
    """A slice whose Modality element (explicit VR 'CS', value 'MR') has its VR bytes changed to ``vr``."""
    folder = dicom_series(tmp_path / "s", shape=(3, 12, 12))
    data = bytearray(sorted(folder.iterdir())[0].read_bytes())
    at = data.find(b"\x08\x00\x60\x00CS")  # (0008,0060) Modality
    data[at + 4 : at + 6] = vr
    damaged = tmp_path / "damaged.dcm"
    damaged.write_bytes(bytes(data))
    return damaged


def test_an_element_of_unknown_value_representation_is_one_line(tmp_path, capsys):
    """pydicom decodes a value only when it is read: a Modality whose VR bytes were damaged ('KS')
    raised NotImplementedError in the SEG check of `info`, found by the fuzz test (exit 1)."""
    damaged = damaged_modality(tmp_path, b"KS")
    assert_refused(*cli(capsys, "info", damaged), "Unknown Value Representation")
    assert_refused(*cli(capsys, "run", "lumbar-mri", damaged, "--out", tmp_path / "R", "--model", tmp_path / "none"),
                   "damaged.dcm")  # fmt: skip
    from SpineAILib.pacs import is_dicom_seg
    from SpineAILib.pacs.source import _headers

    assert not is_dicom_seg(damaged) and _headers(damaged) == []


def test_a_value_of_impossible_length_is_one_line(tmp_path, capsys):
    """'MR' read as a 4-byte float: pydicom's BytesLengthException (not a ValueError) was an internal error."""
    damaged = damaged_modality(tmp_path, b"FL")
    assert_refused(*cli(capsys, "run", "lumbar-mri", damaged, "--out", tmp_path / "R", "--model", tmp_path / "none"),
                   "BytesLengthException")  # fmt: skip


def test_library_warnings_do_not_break_the_one_line(tmp_path):
    """pydicom warns (Python warnings, on stderr) about a malformed UID; the CLI shows its own line only."""
    import os
    import subprocess
    import sys

    def edit(ds, k):
        ds.SOPClassUID = "1.2.840.x"  # no image class, and not a valid UID
        del ds.Rows

    folder = dicom_series(tmp_path / "s", shape=(3, 12, 12), edit=edit)
    result = subprocess.run([sys.executable, "-m", "SpineAILib.cli", "info", str(sorted(folder.iterdir())[0])],
                            capture_output=True, text=True, timeout=120, env=dict(os.environ, SPINEAI_DEBUG="0"))  # fmt: skip
    assert result.returncode == 2 and result.stderr.startswith("spineai: error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
