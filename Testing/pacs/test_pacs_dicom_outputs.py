"""`spineai run ... --dicom` (SpineAILib.pacs): DICOM SEG, SR and secondary captures, read back and sent.

One run per fixture (module scope): lumbar-mri on a generated MRI study, cervical-ct on a
generated cervical CT phantom written as a DICOM series (vertebrae found) and on the real CT
series of ../shared/data (nothing cervical found: SR and pictures, no SEG), lp-ultrasound on
a generated multi-frame ultrasound DICOM (per-frame cord/CSF masks). The SEGs are read back
with highdicom frame for frame on the source instances and compared voxel for voxel, by
segment name, with the run's .seg.nrrd; the SR must carry every level and grade of report.json.
"""

import csv
import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import SHARED_DATA, one_line_error, require

SPINEAI = str(Path(sys.executable).with_name("spineai"))
REAL_CT = SHARED_DATA / "ct_thoracolumbar" / "dicom_series"


def _run(task, input_path, out, **options):
    from SpineAILib.tasks import run_task

    return run_task(task, input_path, out, device="cpu", dicom=True, **options)


@pytest.fixture(scope="module")
def mri(tmp_path_factory):
    """A real held-out T2 case (vb2_10, named right) written as a DICOM study: the box phantom's
    names are withheld by the naming checks, and a withheld body has no segment to send."""
    from SpineAILib.io import load
    from SpineAILib.samples.mri_study import write_mri_study

    root = tmp_path_factory.mktemp("mri")
    image = load(require(SHARED_DATA / "mri_lumbar" / "vb2_10.nii.gz"))
    study = write_mri_study(image, root / "study", series=("Sagittal T2/STIR",))
    return study, _run("lumbar-mri", study, root / "out"), root / "out"


@pytest.fixture(scope="module")
def cervical(tmp_path_factory):
    phantom = pytest.importorskip("SpineAITraining.cervical.phantom")
    from SpineAILib.samples.dicom_writer import write_dicom_series

    root = tmp_path_factory.mktemp("cervical")
    case = phantom.make_case(90011, levels=("C2", "C3", "C4", "C5", "C6"), spacing=(1.0, 1.0, 2.0), fracture_rate=0.0)
    write_dicom_series(case.ct, root / "ct", modality="CT", series_description="Phantom cervical CT",
                       patient_name="Phantom^Cervical", patient_id="PHANTOM-CT")  # fmt: skip
    return root / "ct", _run("cervical-ct", root / "ct", root / "out"), root / "out"


@pytest.fixture(scope="module")
def real_ct(tmp_path_factory):
    source = require(REAL_CT)
    root = tmp_path_factory.mktemp("realct")
    return source, _run("cervical-ct", source, root / "out"), root / "out"


@pytest.fixture(scope="module")
def ultrasound(tmp_path_factory):
    from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_dicom

    root = tmp_path_factory.mktemp("us")
    path = write_cine_dicom(make_cine_phantom(n_frames=12, seed=0), root / "cine.dcm", frame_time_ms=40.0)
    return path, _run("lp-ultrasound", path, root / "out"), root / "out"


# ---------------------------------------------------------------- helpers


def _source_order(folder, image):
    """SOP Instance UIDs of the source slices in the run image's K order."""
    from SpineAILib.pacs import find_source

    return [str(ds.SOPInstanceUID) for ds in find_source(folder, image).datasets]


def _valid(path):
    """pydicom's validation (reading and writing in RAISE mode, file meta) and highdicom's reader."""
    import highdicom as hd
    from pydicom import config
    from pydicom.dataset import validate_file_meta

    saved = config.settings.reading_validation_mode, config.settings.writing_validation_mode
    config.settings.reading_validation_mode = config.settings.writing_validation_mode = config.RAISE
    try:
        ds = pydicom.dcmread(path)
        validate_file_meta(ds.file_meta, enforce_standard=True)
        for element in ds.iterall():
            element.value  # noqa: B018 (parses and validates every value)
        ds.save_as(io.BytesIO(), enforce_file_format=True)
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = saved
    sop = str(ds.SOPClassUID)
    if sop == "1.2.840.10008.5.1.4.1.1.66.4":
        hd.seg.segread(path)
    elif sop == "1.2.840.10008.5.1.4.1.1.88.34":
        hd.sr.srread(path)
    else:
        hd.imread(path)
    return ds


def _identity_checks(out, source_file):
    source = pydicom.dcmread(source_file, stop_before_pixels=True)
    series = set()
    for path in sorted((out / "dicom").glob("*.dcm")):
        ds = _valid(path)
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.PatientID == source.PatientID and str(ds.PatientName) == str(source.PatientName)
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID and ds.SOPInstanceUID != source.SOPInstanceUID
        series.add((ds.Modality, ds.SeriesInstanceUID))
    assert len({uid for _, uid in series}) == len(series)  # one new series per kind (SEG, SR, SC)


def _groups(path):
    """SR measurement groups: {tracking identifier: [(concept name, value text)]} over the whole subtree."""
    import highdicom as hd

    sr = hd.sr.srread(path)

    def walk(items, out):
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
            kind = item.ValueType
            if kind == "CODE":
                out.append((name, item.ConceptCodeSequence[0].CodeMeaning))
            elif kind in ("TEXT", "UIDREF"):
                out.append((name, str(item.get("TextValue", item.get("UID", "")))))
            elif kind == "NUM":
                out.append((name, float(item.MeasuredValueSequence[0].NumericValue)))
            elif kind == "SCOORD3D":
                out.append((name, ("SCOORD3D", item.GraphicType, [float(v) for v in item.GraphicData])))
            walk(item.get("ContentSequence", []), out)
        return out

    groups = {}
    for container in sr.ContentSequence:
        if container.ConceptNameCodeSequence[0].CodeMeaning != "Imaging Measurements":
            continue
        for group in container.ContentSequence:
            items = walk(group.get("ContentSequence", []), [])
            tracking = next(v for n, v in items if n == "Tracking Identifier")
            groups[tracking] = items
    return sr, groups


def _names_of_labels(voxels, segments):
    names = np.full(voxels.shape, "", dtype=object)
    for segment in segments:
        names[voxels == segment["label"]] = segment["name"]
    return names


def _seg_round_trip(out, source_folder, workflow_task):
    """The SEG read back on the source instances equals the .seg.nrrd, voxel for voxel and by name."""
    import highdicom as hd

    from SpineAILib.io import load
    from SpineAILib.pacs import read_seg
    from SpineAILib.workflows.registry import get_workflow

    labels = load(out / "vertebrae.seg.nrrd")
    image = get_workflow(workflow_task).load_input(source_folder)
    assert labels.voxels.shape == image.voxels.shape and np.allclose(labels.ijk_to_ras, image.ijk_to_ras)
    seg = hd.seg.segread(out / "dicom" / "seg_vertebrae.dcm")
    order = _source_order(source_folder, image)
    numbers = seg.get_pixels_by_source_instance(source_sop_instance_uids=order, combine_segments=True, relabel=False)
    assert numbers.shape == labels.voxels.shape
    by_number = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    expected = _names_of_labels(labels.voxels, labels.metadata["segments"])
    got = _names_of_labels(numbers, [{"label": n, "name": name} for n, name in by_number.items()])
    assert (got == expected).all()
    assert sorted(by_number.values()) == sorted(s["name"] for s in labels.metadata["segments"])
    # the front ends' one call: the label map on the source geometry, with the names
    from SpineAILib.pacs.seg import on_source_grid

    volume, names = read_seg(out / "dicom" / "seg_vertebrae.dcm")
    assert sorted(volume.voxels.shape) == sorted(image.voxels.shape)  # highdicom may order the slices the other way
    resampled = on_source_grid(volume, image.voxels.shape, image.ijk_to_ras)  # in world space: the geometry is right
    assert (_names_of_labels(resampled, [{"label": n, "name": v} for n, v in names.items()]) == expected).all()
    # the codes are the .seg.nrrd terminology's
    from SpineAILib import terminology

    for item in seg.SegmentSequence:
        codes = terminology.codes(item.SegmentLabel)
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes["type"][1]
        assert item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == codes["type"][0]
    return seg, expected


# ---------------------------------------------------------------- lumbar-mri


@pytest.mark.realdata
def test_mri_seg_round_trip_and_identifiers(mri):
    study, report, out = mri
    assert report["outputs"]["dicom"] == "dicom" and "dicom_s" in report["timings"]
    assert sorted(report["dicom"]["files"]) == sorted(f"dicom/{p.name}" for p in (out / "dicom").iterdir())
    seg, expected = _seg_round_trip(out, study, "lumbar-mri")
    assert {n for n in np.unique(expected) if n} == set(report["results"]["levels_found"])
    _identity_checks(out, next((study / "series1").iterdir()))


@pytest.mark.realdata
def test_mri_sr_carries_every_level_and_grade(mri):
    _, report, out = mri
    sr, groups = _groups(out / "dicom" / "sr_report.dcm")
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    for vertebra in report["results"]["vertebrae"]:
        items = groups[f"vertebra {vertebra['name']}"]
        assert ("Volume", vertebra["volume_ml"]) in items
    with open(out / "severity.tsv", newline="") as stream:
        rows = list(csv.DictReader(stream, delimiter="\t"))
    for disc in report["results"]["disc_levels"]:
        items = groups[f"disc {disc['level']}"]
        if disc.get("visible"):
            point = next(v for n, v in items if isinstance(v, tuple) and v[0] == "SCOORD3D")
            assert point[1] == "POINT" and np.allclose(point[2], np.asarray(disc["centre_ras"]) * [-1, -1, 1], atol=1e-3)
        for row in (r for r in rows if r["level"] == disc["level"]):
            grade = row["grade"] if row["assessed"] == "1" else "Not assessed"
            assert (row["condition"].replace("_", " ").capitalize(), grade) in items, (disc["level"], row)
    texts = " ".join(str(v) for items in groups.values() for _, v in items)
    assert "lumbar-mri-vertebrae 1.0.0" in texts or f"{report['model']['bundle_id']} {report['model']['version']}" in texts
    assert "lumbar-mri-severity-synthetic" in texts and "trained on synthetic data" in texts


# ---------------------------------------------------------------- cervical-ct


def test_ct_phantom_seg_round_trip_and_fracture_calls(cervical):
    source, report, out = cervical
    assert report["results"]["vertebrae"], report["results"]["message"]
    _seg_round_trip(out, source, "cervical-ct")
    _identity_checks(out, next(source.iterdir()))
    _, groups = _groups(out / "dicom" / "sr_report.dcm")
    for row in report["results"]["fractures"]["rows"]:
        items = groups[f"fracture {row['vertebra']}"]
        if row["probability"] is not None:
            assert ("Fracture probability", pytest.approx(row["probability"], abs=1e-6)) in items
        assert any(n == "Fracture of bone" for n, _ in items)
    assert (out / "dicom" / "sc_overlay_sagittal.dcm").is_file()


@pytest.mark.realdata
def test_real_ct_without_cervical_vertebrae_gets_sr_and_pictures_but_no_seg(real_ct):
    _, report, out = real_ct
    names = sorted(p.name for p in (out / "dicom").iterdir())
    assert names == ["sc_overlay_coronal.dcm", "sc_overlay_sagittal.dcm", "sr_report.dcm"]
    assert any(w.startswith("no DICOM SEG written") for w in report["warnings"])
    assert any("no Study Instance UID" in w for w in report["warnings"])  # the real series is anonymised
    for path in (out / "dicom").iterdir():
        _valid(path)
    _, groups = _groups(out / "dicom" / "sr_report.dcm")
    summary = groups["summary"]
    assert ("Number of vertebrae found", 0.0) in summary
    texts = " ".join(str(v) for _, v in summary)
    assert "no cervical vertebrae found" in texts and "trained on synthetic data" in texts
    assert "no DICOM SEG written" in texts
    assert json.loads((out / "report.json").read_text())["warnings"] == report["warnings"]


# ---------------------------------------------------------------- lp-ultrasound


def test_ultrasound_frame_segs_reference_their_frames(ultrasound):
    import highdicom as hd

    path, report, out = ultrasound
    frames = sorted((out / "dicom").glob("seg_frame_*.dcm"))
    localisation = report["results"].get("localisation")
    if not localisation or not (localisation["frames_with_cord_mask"] or localisation["frames_with_csf_mask"]):
        pytest.skip("the localiser found no cord or CSF on the generated cine")
    assert frames
    source = pydicom.dcmread(path, stop_before_pixels=True)
    for file in frames:
        _valid(file)
        seg = hd.seg.segread(file)
        frame = int(file.stem.split("_")[-1])
        ref = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID and int(ref.ReferencedFrameNumber) == frame
        assert {str(s.SegmentLabel) for s in seg.SegmentSequence} == {"spinal_cord", "csf"}
    _, groups = _groups(out / "dicom" / "sr_report.dcm")
    items = groups["ultrasound cine"]
    assert ("Frames", float(report["results"]["frames"])) in items
    for label, count in report["results"]["counts"].items():
        assert (f"Frames called {label.replace('_', ' ')}", float(count)) in items


def test_ultrasound_masks_round_trip(ultrasound, tmp_path):
    """The per-frame SEGs hold exactly the localiser's masks (rerun in memory on the same cine)."""
    import highdicom as hd

    from SpineAILib.io import load
    from SpineAILib.pacs import read_seg
    from SpineAILib.workflows.ultrasound import localise

    path, report, out = ultrasound
    frames = sorted((out / "dicom").glob("seg_frame_*.dcm"))
    if not frames:
        pytest.skip("no mask frames")
    bundle = localise.default_localiser_path()
    found = localise.localise(localise.load_localiser(bundle, device="cpu", backend="auto"), load(path).frames)
    with open(out / "frames.tsv", newline="") as stream:
        bad = [r["bad_quality"] == "1" for r in csv.DictReader(stream, delimiter="\t")]
    for key in ("cord_masks", "csf_masks"):
        found[key][np.asarray(bad)] = False
    expected_frames = np.flatnonzero(found["cord_masks"].any(axis=(1, 2)) | found["csf_masks"].any(axis=(1, 2))) + 1
    assert [int(f.stem.split("_")[-1]) for f in frames] == list(expected_frames)
    for file in frames:
        seg = hd.seg.segread(file)
        frame = int(file.stem.split("_")[-1])
        numbers = {str(s.SegmentLabel): int(s.SegmentNumber) for s in seg.SegmentSequence}
        for name, key in (("spinal_cord", "cord_masks"), ("csf", "csf_masks")):
            got = np.zeros(found[key].shape[1:], bool)
            for index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
                if int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber) == numbers[name]:
                    got |= np.asarray(seg.pixel_array).reshape(-1, *got.shape)[index] > 0
            assert np.array_equal(got, found[key][frame - 1]), (file.name, name)
        volume, names = read_seg(file)
        assert volume.metadata["referenced_frame"] == frame and set(names.values()) == {"spinal_cord", "csf"}


# ---------------------------------------------------------------- refusals


def test_non_dicom_inputs_are_refused_before_the_run(tmp_path):
    from SpineAILib.samples.cine_phantom import make_cine_phantom, write_cine_video, write_frame_folder
    from SpineAILib.tasks import run_task

    cine = make_cine_phantom(n_frames=3)
    write_frame_folder(cine, tmp_path / "frames")
    inputs = {"lp-ultrasound": [write_cine_video(cine, tmp_path / "cine.mp4"), tmp_path / "frames"]}
    nifti = SHARED_DATA / "ct_thoracolumbar" / "ct.nii.gz"
    if nifti.is_file():
        inputs["cervical-ct"] = [nifti]
    for task, paths in inputs.items():
        for path in paths:
            message = one_line_error(run_task, task, path, tmp_path / "out", dicom=True)
            assert message.startswith("DICOM output needs a DICOM input: ")
            assert not (tmp_path / "out").exists()
    result = subprocess.run([SPINEAI, "run", "lp-ultrasound", str(tmp_path / "cine.mp4"), "--out", str(tmp_path / "o"),
                             "--dicom"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("spineai: error: DICOM output needs a DICOM input: ")


def _ct_series(folder):
    from SpineAILib.samples.dicom_writer import write_dicom_series
    from SpineAILib.samples.spine_phantom import make_phantom

    image, _ = make_phantom("CT", shape_kji=(12, 48, 48), spacing=(3.0, 3.0, 6.0))
    return write_dicom_series(image, folder, modality="CT")


def test_missing_instance_uids_and_mixed_studies_are_refused(tmp_path):
    from pydicom.uid import generate_uid

    from SpineAILib.tasks import run_task

    paths = _ct_series(tmp_path / "no_uid")
    for path in paths[:2]:
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ""
        ds.file_meta.MediaStorageSOPInstanceUID = ""
        ds.save_as(path, enforce_file_format=False)
    message = one_line_error(run_task, "cervical-ct", tmp_path / "no_uid", tmp_path / "out", dicom=True)
    assert message.startswith("DICOM output needs SOP Instance UIDs") and not (tmp_path / "out").exists()

    paths = _ct_series(tmp_path / "mixed")
    for path in paths[:3]:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = generate_uid()
        ds.save_as(path, enforce_file_format=True)
    message = one_line_error(run_task, "cervical-ct", tmp_path / "mixed", tmp_path / "out", dicom=True)
    assert message.startswith("DICOM output needs one study") and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- C-STORE


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def storage_scp():
    """A real DICOM storage server (pynetdicom's storage SCP) on a free port, AE title STORESCP."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    received = []

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append(ds)
        return 0x0000

    ae = AE(ae_title="STORESCP")
    ae.supported_contexts = AllStoragePresentationContexts
    ae.require_called_aet = True
    port = _free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    yield port, received
    server.shutdown()


@pytest.mark.realdata
def test_send_stores_every_instance(mri, storage_scp):
    _, _, out = mri
    port, received = storage_scp
    result = subprocess.run([SPINEAI, "send", str(out / "dicom"), "--to", f"127.0.0.1:{port}", "--aet", "STORESCP"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    sent = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in (out / "dicom").iterdir()}
    assert {str(ds.SOPInstanceUID) for ds in received} == sent and len(received) == len(sent)
    assert f"{len(sent)} instance(s) stored" in result.stdout


@pytest.mark.realdata
def test_send_refused_or_unreachable_is_one_line_exit_2(mri, storage_scp):
    _, _, out = mri
    port, received = storage_scp
    for to, aet, words in ((f"127.0.0.1:{port}", "WRONGAET", "refused the association"),
                           (f"127.0.0.1:{_free_port()}", "STORESCP", "cannot reach")):  # fmt: skip
        result = subprocess.run([SPINEAI, "send", str(out / "dicom"), "--to", to, "--aet", aet],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 2 and words in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("spineai: error: ")
    assert not received


@pytest.mark.realdata
def test_info_lists_the_segments_of_a_seg(mri):
    _, report, out = mri
    result = subprocess.run([SPINEAI, "info", str(out / "dicom" / "seg_vertebrae.dcm")], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for n, name in enumerate(report["results"]["levels_found"], start=1):
        meaning = "Sacrum" if name == "S1" else f"{name} vertebra"  # SNOMED CT codes S1 as the sacrum
        assert f"segment {n}: {name}  ({meaning})" in result.stdout


@pytest.mark.realdata
def test_a_crafted_seg_is_refused_in_one_line(mri, tmp_path):
    """What the web app's Load does with a SEG (pacs.read_seg): a truncated file, frame counts that do
    not add up or a missing segment list are refused with one line naming the file, never a raw error."""
    from SpineAILib.errors import InputError
    from SpineAILib.pacs import read_seg

    _, _, out = mri
    seg = out / "dicom" / "seg_vertebrae.dcm"
    data = seg.read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(data[: len(data) // 2])
    ds = pydicom.dcmread(seg)
    ds.NumberOfFrames = 99999
    ds.save_as(tmp_path / "frames.dcm")
    ds = pydicom.dcmread(seg)
    del ds.SegmentSequence
    ds.save_as(tmp_path / "no_segments.dcm")
    for name in ("truncated.dcm", "frames.dcm", "no_segments.dcm"):
        with pytest.raises(InputError) as caught:
            read_seg(tmp_path / name)
        message = str(caught.value)
        assert name in message and "not a readable DICOM SEG" in message and "\n" not in message
